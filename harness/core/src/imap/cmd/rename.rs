//! RENAME (RFC 3501 6.3.5).

use std::sync::Arc;

use imap_codec::imap_types::mailbox::Mailbox as MailboxName;

use super::NO_MAILBOX;
use crate::imap::mailbox_name::{checked_name, DELIMITER};
use crate::imap::server::{ImapServer, Reply};
use crate::world::{Account, Mailbox};

impl ImapServer {
    pub(in crate::imap) fn rename(
        &mut self,
        from: &MailboxName<'_>,
        to: &MailboxName<'_>,
    ) -> Option<Reply> {
        let (from, to) = match (checked_name(from), checked_name(to)) {
            (Ok(f), Ok(t)) => (f, t.trim_end_matches(DELIMITER).to_string()),
            (Err(why), _) | (_, Err(why)) => return Reply::no(why),
        };
        if to == "INBOX" || to.is_empty() || to.split(DELIMITER).any(str::is_empty) {
            return Reply::no("[CANNOT] Invalid target name");
        }
        if self.view.as_ref().is_some_and(|v| v.mailbox == from) {
            return Reply::no("Mailbox is selected");
        }
        let inferior = format!("{from}{DELIMITER}");
        if to.starts_with(&inferior) {
            return Reply::no("[CANNOT] Cannot rename a mailbox into itself");
        }
        let world = Arc::clone(&self.ctx.world);
        let caps = self.caps;
        world.store.with_account(&self.user_key(), |acct| {
            if acct.mailboxes.contains_key(&to) {
                return Reply::no("[ALREADYEXISTS] Target mailbox already exists");
            }
            if from == "INBOX" {
                if acct.mailboxes.len() >= caps.max_mailboxes {
                    return Reply::no("[LIMIT] Too many mailboxes");
                }
                let validity = acct.next_uid_validity();
                let Some(inbox) = acct.mailbox_mut("INBOX") else {
                    return Reply::no(NO_MAILBOX);
                };
                let moved = std::mem::take(&mut inbox.messages);
                inbox.generation += 1;
                let mut target = Mailbox::new(&to, validity);
                for m in moved {
                    target.append(m.data, m.flags, m.internal_date);
                }
                acct.mailboxes.insert(to.clone(), target);
                // The mailbox made from INBOX starts subscribed, as INBOX is.
                acct.subscribe(&to);
                return Reply::ok("RENAME completed");
            }
            let Some(mut mb) = acct.mailboxes.remove(&from) else {
                return Reply::no(NO_MAILBOX);
            };
            mb.name = to.clone();
            acct.mailboxes.insert(to.clone(), mb);
            move_subscription(acct, &from, &to);
            let inferiors: Vec<String> = acct
                .mailboxes
                .keys()
                .filter(|k| k.starts_with(&inferior))
                .cloned()
                .collect();
            for old in inferiors {
                if let Some(mut child) = acct.mailboxes.remove(&old) {
                    let renamed = format!("{to}{}", old.get(from.len()..).unwrap_or_default());
                    child.name = renamed.clone();
                    move_subscription(acct, &old, &renamed);
                    acct.mailboxes.insert(renamed, child);
                }
            }
            Reply::ok("RENAME completed")
        })
    }
}

/// A renamed mailbox keeps its subscription under the new name; a subscription the new
/// name already had stays (RFC 3501 6.3.6: none is removed by the server on its own).
fn move_subscription(acct: &mut Account, from: &str, to: &str) {
    if acct.unsubscribe(from) {
        acct.subscribe(to);
    }
}
