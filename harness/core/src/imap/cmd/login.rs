//! LOGIN (RFC 3501 6.2.3): a plaintext password, refused while the profile requires TLS
//! first.

use imap_codec::imap_types::core::AString;

use crate::imap::server::{ImapServer, Reply};

impl ImapServer {
    pub(in crate::imap) fn login(
        &mut self,
        username: &AString<'_>,
        password: &AString<'_>,
    ) -> Option<Reply> {
        if self.login_disabled() {
            return Reply::no("[PRIVACYREQUIRED] LOGIN is disabled until TLS is active");
        }
        let user = std::str::from_utf8(username.as_ref()).ok();
        let pass = std::str::from_utf8(password.as_ref()).ok();
        let found = match (user, pass) {
            (Some(u), Some(p)) => self
                .ctx
                .world
                .directory
                .verify_password(u, p)
                .map(|p| p.name.clone()),
            _ => None,
        };
        match found {
            Some(name) => {
                self.user = Some(name);
                Reply::ok(self.ctx.profile.imap.login_ok_text.clone())
            }
            None => Reply::no(self.ctx.profile.imap.login_failed_text.clone()),
        }
    }
}
