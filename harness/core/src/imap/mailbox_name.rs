//! Mailbox names: the hierarchy delimiter and the check that a name the client sent is
//! one (RFC 3501 5.1, 5.1.3).

use imap_codec::imap_types::mailbox::Mailbox as MailboxName;

use super::mutf7::valid_modified_utf7;
use crate::world::Account;

/// Hierarchy delimiter of the mock store (RFC 3501 6.3.8).
pub const DELIMITER: char = '/';

/// The mailbox name, or `None` when it is not a valid one.
pub(super) fn name_of(m: &MailboxName<'_>) -> Option<String> {
    checked_name(m).ok()
}

const BAD_NAME: &str = "[CANNOT] Mailbox name is not valid modified UTF-7 (RFC 3501 5.1.3)";

/// The mailbox name, or why it is not one: names are 7-bit, with anything else in
/// modified UTF-7.
pub(super) fn checked_name(m: &MailboxName<'_>) -> Result<String, &'static str> {
    match m {
        MailboxName::Inbox => Ok("INBOX".into()),
        MailboxName::Other(o) => match std::str::from_utf8(o.as_ref()) {
            Ok(name) if valid_modified_utf7(name) => Ok(Account::mailbox_key(name)),
            _ => Err(BAD_NAME),
        },
    }
}
