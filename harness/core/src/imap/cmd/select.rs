//! SELECT and EXAMINE (RFC 3501 6.3.1, 6.3.2): open a mailbox read-write or read-only
//! and report its state.

use std::sync::Arc;

use imap_codec::imap_types::mailbox::Mailbox as MailboxName;

use super::NO_MAILBOX;
use crate::imap::mailbox_name::name_of;
use crate::imap::server::{ImapServer, Reply};
use crate::imap::view::{View, ViewMsg};

/// RFC 3501 2.3.2 system flags, as the FLAGS response lists them.
const SYSTEM_FLAGS: &str = "(\\Answered \\Flagged \\Deleted \\Seen \\Draft)";

impl ImapServer {
    pub(in crate::imap) fn select(
        &mut self,
        mailbox: &MailboxName<'_>,
        examine: bool,
    ) -> Option<Reply> {
        // RFC 3501 6.3.1: a SELECT leaves the selected state first, even if it fails.
        self.view = None;
        let Some(name) = name_of(mailbox) else {
            return Reply::no(NO_MAILBOX);
        };
        let world = Arc::clone(&self.ctx.world);
        let snapshot = world.store.with_account(&self.user_key(), |acct| {
            acct.mailbox_mut(&name).map(|mb| {
                // RFC 3501 2.3.2: what no session has seen yet is recent here; SELECT
                // claims it, EXAMINE must not (6.3.2).
                let seen_through = mb.recent_through;
                let msgs: Vec<ViewMsg> = mb
                    .messages
                    .iter()
                    .map(|m| ViewMsg {
                        uid: m.uid,
                        flags: m.flags.clone(),
                        recent: m.uid > seen_through,
                    })
                    .collect();
                if !examine {
                    mb.claim_recent();
                }
                (msgs, mb.uid_validity, mb.uid_next)
            })
        });
        let Some((msgs, uid_validity, uid_next)) = snapshot else {
            return Reply::no(NO_MAILBOX);
        };
        let mut out = format!(
            "* FLAGS {SYSTEM_FLAGS}\r\n* {} EXISTS\r\n* {} RECENT\r\n",
            msgs.len(),
            msgs.iter().filter(|m| m.recent).count()
        );
        if let Some(i) = msgs.iter().position(|m| !m.flags.contains("\\Seen")) {
            out.push_str(&format!(
                "* OK [UNSEEN {n}] Message {n} is first unseen\r\n",
                n = i + 1
            ));
        }
        if examine {
            out.push_str("* OK [PERMANENTFLAGS ()] No permanent flags permitted\r\n");
        } else {
            out.push_str(
                "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted\r\n",
            );
        }
        out.push_str(&format!("* OK [UIDNEXT {uid_next}] Predicted next UID\r\n"));
        out.push_str(&format!("* OK [UIDVALIDITY {uid_validity}] UIDs valid\r\n"));
        self.write(out.as_bytes());
        self.view = Some(View {
            mailbox: name,
            read_only: examine,
            uid_validity,
            msgs,
        });
        if examine {
            Reply::ok("[READ-ONLY] EXAMINE completed")
        } else {
            Reply::ok("[READ-WRITE] SELECT completed")
        }
    }
}
