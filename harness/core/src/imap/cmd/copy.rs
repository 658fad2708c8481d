//! COPY and MOVE, plain and UID (RFC 3501 6.4.7, RFC 6851), with COPYUID (RFC 4315 3):
//! MOVE is a COPY followed by the removal of the sources.

use std::sync::Arc;

use imap_codec::imap_types::mailbox::Mailbox as MailboxName;
use imap_codec::imap_types::sequence::SequenceSet;

use super::{completed, find_msg, FULL};
use crate::imap::mailbox_name::name_of;
use crate::imap::server::{ImapServer, Reply};
use crate::notify::{MailEvent, MailEventKind};
use crate::world::{Account, StoredMessage};

impl ImapServer {
    pub(in crate::imap) fn copy(
        &mut self,
        set: &SequenceSet,
        mailbox: &MailboxName<'_>,
        uid: bool,
    ) -> Option<Reply> {
        let idxs = match self.select_msgs(set, uid) {
            Ok(i) => i,
            Err(e) => return Reply::bad(e),
        };
        let Some(dest) = name_of(mailbox) else {
            return Reply::no("[TRYCREATE] Mailbox does not exist");
        };
        let Some(view) = &self.view else {
            return Reply::bad("No mailbox selected");
        };
        let uids: Vec<u32> = idxs
            .iter()
            .filter_map(|&i| view.msgs.get(i).map(|m| m.uid))
            .collect();
        let source = view.mailbox.clone();
        let world = Arc::clone(&self.ctx.world);
        let caps = self.caps;
        let uidplus = self.has_capability("UIDPLUS");
        let user = self.user_key();
        let mut stored = Vec::new();
        let reply = world.store.with_account(&user, |acct| {
            if acct.mailbox(&dest).is_none() {
                return Reply::no("[TRYCREATE] Mailbox does not exist");
            }
            let copies: Vec<StoredMessage> = match acct.mailbox(&source) {
                Some(mb) => uids
                    .iter()
                    .filter_map(|&u| find_msg(mb, u).and_then(|p| mb.messages.get(p)).cloned())
                    .collect(),
                None => Vec::new(),
            };
            let bytes: usize = copies.iter().map(StoredMessage::size).sum();
            let source_uids: Vec<u32> = copies.iter().map(|m| m.uid).collect();
            let mut dest_uids = Vec::with_capacity(copies.len());
            let mut validity = 0;
            if let Some(d) = acct.mailbox_mut(&dest) {
                if !caps.fits(d, copies.len(), bytes) {
                    return Reply::no(FULL);
                }
                validity = d.uid_validity;
                for m in copies {
                    dest_uids.push(d.append(m.data, m.flags, m.internal_date));
                }
                stored = dest_uids.clone();
            }
            let done = completed(uid, "UID COPY completed");
            if uidplus && !dest_uids.is_empty() {
                // RFC 4315 3: resp-code-copy = "COPYUID" SP nz-number SP uid-set SP uid-set
                Reply::ok(format!(
                    "[COPYUID {validity} {} {}] {done}",
                    uid_set(&source_uids),
                    uid_set(&dest_uids)
                ))
            } else {
                Reply::ok(done)
            }
        });
        // New messages in the destination: news for its MAPI subscribers (outside the
        // store's lock, as APPEND publishes).
        for uid in stored {
            world.notifications.publish(MailEvent {
                kind: MailEventKind::NewMail,
                user: user.clone(),
                mailbox: Account::mailbox_key(&dest),
                uid,
            });
        }
        reply
    }

    /// MOVE / UID MOVE (RFC 6851): a COPY whose COPYUID goes in an untagged OK, then the
    /// sources are expunged (the `* n EXPUNGE` responses come from the sync that follows).
    pub(in crate::imap) fn move_messages(
        &mut self,
        set: &SequenceSet,
        mailbox: &MailboxName<'_>,
        uid: bool,
    ) -> Option<Reply> {
        if self.view.as_ref().is_some_and(|v| v.read_only) {
            return Reply::no("Mailbox is read-only");
        }
        let uids: Vec<u32> = match self.select_msgs(set, uid) {
            Ok(idxs) => idxs
                .iter()
                .filter_map(|&i| {
                    self.view
                        .as_ref()
                        .and_then(|v| v.msgs.get(i))
                        .map(|m| m.uid)
                })
                .collect(),
            Err(e) => return Reply::bad(e),
        };
        let copied = self.copy(set, mailbox, uid)?;
        if copied.status != crate::profile::ImapStatus::Ok {
            return Some(copied);
        }
        if let Some(code) = copied
            .text
            .strip_suffix(" UID COPY completed")
            .or_else(|| copied.text.strip_suffix(" COPY completed"))
        {
            self.write(format!("* OK {code} Moved\r\n").as_bytes());
        }
        let Some(source) = self.view.as_ref().map(|v| v.mailbox.clone()) else {
            return Reply::bad("No mailbox selected");
        };
        self.remove_messages(&source, |m| uids.contains(&m.uid));
        Reply::ok(completed(uid, "UID MOVE completed"))
    }
}

/// UIDs in ascending order as an RFC 4315 `uid-set`: runs of consecutive UIDs as `a:b`.
fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while let Some(&start) = uids.get(i) {
        let mut end = start;
        while uids
            .get(i + 1)
            .is_some_and(|&n| Some(n) == end.checked_add(1))
        {
            i += 1;
            end = uids.get(i).copied().unwrap_or(end);
        }
        if !out.is_empty() {
            out.push(',');
        }
        if end == start {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_are_compressed() {
        assert_eq!(super::uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(super::uid_set(&[4]), "4");
        assert_eq!(super::uid_set(&[]), "");
        assert_eq!(
            super::uid_set(&[u32::MAX - 1, u32::MAX]),
            "4294967294:4294967295"
        );
    }
}
