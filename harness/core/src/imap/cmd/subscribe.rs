//! SUBSCRIBE and UNSUBSCRIBE (RFC 3501 6.3.6, 6.3.7).

use std::sync::Arc;

use imap_codec::imap_types::mailbox::Mailbox as MailboxName;

use super::NO_MAILBOX;
use crate::imap::mailbox_name::name_of;
use crate::imap::server::{ImapServer, Reply};

impl ImapServer {
    pub(in crate::imap) fn subscribe(
        &mut self,
        mailbox: &MailboxName<'_>,
        on: bool,
    ) -> Option<Reply> {
        let Some(name) = name_of(mailbox) else {
            return Reply::no(NO_MAILBOX);
        };
        let world = Arc::clone(&self.ctx.world);
        world.store.with_account(&self.user_key(), |acct| {
            let exists = acct.mailbox(&name).is_some();
            if on && exists {
                acct.subscribe(&name);
                Reply::ok("SUBSCRIBE completed")
            } else if !on && (acct.unsubscribe(&name) || exists) {
                // A subscribed name whose mailbox is gone can still be unsubscribed
                // (RFC 3501 6.3.7).
                Reply::ok("UNSUBSCRIBE completed")
            } else {
                // SUBSCRIBE checks that the mailbox exists (RFC 3501 6.3.6 MAY).
                Reply::no(NO_MAILBOX)
            }
        })
    }
}
