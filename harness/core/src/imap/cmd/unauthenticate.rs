//! UNAUTHENTICATE (RFC 8437): back to the not-authenticated state on the same connection,
//! where the profile offers it.

use crate::imap::server::{CommandError, ImapServer, Reply};
use crate::profile::ImapStatus;

impl ImapServer {
    /// RFC 8437 3: valid in the authenticated and selected states (6: `command-auth`,
    /// `command-select`), takes no arguments, and is never answered NO: BAD only for the
    /// wrong state or arguments. Everything the session holds for the user goes: the
    /// selected mailbox (left without an expunge, so `\Deleted` messages stay) with its
    /// `\Recent` view, the user, the mechanism that authenticated. No SASL mechanism
    /// offered here negotiates a security layer, so there is none to end after the OK;
    /// ENABLE enables nothing in this server, so nothing enabled is left; TLS stays.
    pub(in crate::imap) fn unauthenticate(&mut self, has_arguments: bool) -> Reply {
        if has_arguments {
            return Reply::of(
                ImapStatus::Bad,
                CommandError::InvalidArguments("UNAUTHENTICATE".into()).to_string(),
            );
        }
        if self.user.is_none() {
            return Reply::of(
                ImapStatus::Bad,
                CommandError::WrongState("UNAUTHENTICATE").to_string(),
            );
        }
        self.view = None;
        self.user = None;
        self.auth_mechanism = None;
        Reply::of(ImapStatus::Ok, "UNAUTHENTICATE completed")
    }
}
