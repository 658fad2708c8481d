//! STATUS (RFC 3501 6.3.10).

use std::sync::Arc;

use imap_codec::imap_types::mailbox::Mailbox as MailboxName;
use imap_codec::imap_types::status::StatusDataItemName;

use super::NO_MAILBOX;
use crate::imap::mailbox_name::name_of;
use crate::imap::message::write_astring;
use crate::imap::server::{ImapServer, Reply};

impl ImapServer {
    pub(in crate::imap) fn status(
        &mut self,
        mailbox: &MailboxName<'_>,
        items: &[StatusDataItemName],
    ) -> Option<Reply> {
        let Some(name) = name_of(mailbox) else {
            return Reply::no(NO_MAILBOX);
        };
        // The selected mailbox: what is recent in this session; any other: what no
        // session has claimed yet (RFC 3501 6.3.10, 2.3.2).
        let selected_recent = self
            .view
            .as_ref()
            .filter(|v| v.mailbox == name)
            .map(|v| v.msgs.iter().filter(|m| m.recent).count());
        let world = Arc::clone(&self.ctx.world);
        let line = world.store.with_account(&self.user_key(), |acct| {
            let mb = acct.mailbox(&name)?;
            let recent = selected_recent.unwrap_or_else(|| {
                mb.messages
                    .iter()
                    .filter(|m| m.uid > mb.recent_through)
                    .count()
            });
            let mut parts = Vec::new();
            for item in items {
                let (word, value) = match item {
                    StatusDataItemName::Messages => ("MESSAGES", mb.messages.len() as u64),
                    StatusDataItemName::Recent => ("RECENT", recent as u64),
                    StatusDataItemName::UidNext => ("UIDNEXT", u64::from(mb.uid_next)),
                    StatusDataItemName::UidValidity => ("UIDVALIDITY", u64::from(mb.uid_validity)),
                    StatusDataItemName::Unseen => (
                        "UNSEEN",
                        mb.messages
                            .iter()
                            .filter(|m| !m.flags.contains("\\Seen"))
                            .count() as u64,
                    ),
                    StatusDataItemName::Deleted => (
                        "DELETED",
                        mb.messages
                            .iter()
                            .filter(|m| m.flags.contains("\\Deleted"))
                            .count() as u64,
                    ),
                    StatusDataItemName::DeletedStorage => (
                        "DELETED-STORAGE",
                        mb.messages
                            .iter()
                            .filter(|m| m.flags.contains("\\Deleted"))
                            .map(|m| m.size() as u64)
                            .sum(),
                    ),
                };
                parts.push(format!("{word} {value}"));
            }
            let mut line = b"* STATUS ".to_vec();
            write_astring(&mut line, name.as_bytes());
            line.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
            Some(line)
        });
        match line {
            Some(line) => {
                self.write(&line);
                Reply::ok("STATUS completed")
            }
            None => Reply::no(NO_MAILBOX),
        }
    }
}
