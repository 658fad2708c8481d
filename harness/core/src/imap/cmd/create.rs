//! CREATE (RFC 3501 6.3.3).

use std::sync::Arc;

use imap_codec::imap_types::mailbox::Mailbox as MailboxName;

use crate::imap::mailbox_name::{checked_name, DELIMITER};
use crate::imap::server::{ImapServer, Reply};
use crate::world::Mailbox;

impl ImapServer {
    pub(in crate::imap) fn create(&mut self, mailbox: &MailboxName<'_>) -> Option<Reply> {
        let name = match checked_name(mailbox) {
            Ok(n) => n,
            Err(why) => return Reply::no(why),
        };
        let name = name.trim_end_matches(DELIMITER).to_string();
        if name.is_empty() || name.split(DELIMITER).any(str::is_empty) {
            return Reply::no("Invalid mailbox name");
        }
        let world = Arc::clone(&self.ctx.world);
        let caps = self.caps;
        world.store.with_account(&self.user_key(), |acct| {
            if acct.mailbox(&name).is_some() {
                return Reply::no("Mailbox already exists");
            }
            // RFC 3501 6.3.3: superior hierarchical names that do not exist are created
            // too, so `CREATE a/b` leaves both `a` and `a/b` selectable.
            let parts: Vec<&str> = name.split(DELIMITER).collect();
            let missing: Vec<String> = (1..=parts.len())
                .map(|n| {
                    parts
                        .get(..n)
                        .unwrap_or_default()
                        .join(&DELIMITER.to_string())
                })
                .filter(|n| acct.mailbox(n).is_none())
                .collect();
            if acct.mailboxes.len() + missing.len() > caps.max_mailboxes {
                return Reply::no("[LIMIT] Too many mailboxes");
            }
            for n in missing {
                let validity = acct.next_uid_validity();
                // Subscribing is the client's choice (RFC 3501 6.3.6); CREATE leaves the
                // subscription list as it is.
                acct.mailboxes.insert(n.clone(), Mailbox::new(&n, validity));
            }
            Reply::ok("CREATE completed")
        })
    }
}
