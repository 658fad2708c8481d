//! DELETE (RFC 3501 6.3.4).

use std::sync::Arc;

use imap_codec::imap_types::mailbox::Mailbox as MailboxName;

use super::NO_MAILBOX;
use crate::imap::mailbox_name::name_of;
use crate::imap::server::{ImapServer, Reply};

impl ImapServer {
    pub(in crate::imap) fn delete(&mut self, mailbox: &MailboxName<'_>) -> Option<Reply> {
        let Some(name) = name_of(mailbox) else {
            return Reply::no(NO_MAILBOX);
        };
        if name == "INBOX" {
            return Reply::no("INBOX cannot be deleted");
        }
        if self.view.as_ref().is_some_and(|v| v.mailbox == name) {
            return Reply::no("Mailbox is selected");
        }
        let world = Arc::clone(&self.ctx.world);
        world.store.with_account(&self.user_key(), |acct| {
            match acct.mailboxes.remove(&name) {
                Some(_) => Reply::ok("DELETE completed"),
                None => Reply::no(NO_MAILBOX),
            }
        })
    }
}
