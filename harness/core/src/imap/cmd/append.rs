//! APPEND (RFC 3501 6.3.11), with APPENDUID (RFC 4315 3).

use std::sync::Arc;

use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox as MailboxName;

use super::{settable, FULL, NO_MAILBOX};
use crate::imap::mailbox_name::name_of;
use crate::imap::server::{ImapServer, Reply};
use crate::notify::{MailEvent, MailEventKind};
use crate::world::Account;

impl ImapServer {
    pub(in crate::imap) fn append(
        &mut self,
        mailbox: &MailboxName<'_>,
        flags: &[Flag<'_>],
        date: Option<&DateTime>,
        message: &LiteralOrLiteral8<'_>,
    ) -> Option<Reply> {
        let data = match message {
            LiteralOrLiteral8::Literal(l) => l.as_ref().to_vec(),
            LiteralOrLiteral8::Literal8(_) => {
                return Reply::bad("literal8 is not supported (BINARY is not advertised)")
            }
        };
        let date = date.map(|d| d.as_ref().timestamp());
        let Some(name) = name_of(mailbox) else {
            return Reply::no(NO_MAILBOX);
        };
        let flags = settable(flags);
        let date = date.unwrap_or_else(|| {
            i64::try_from(self.ctx.epoch_secs.saturating_add(self.now.as_secs())).unwrap_or(0)
        });
        let world = Arc::clone(&self.ctx.world);
        let caps = self.caps;
        let uidplus = self.has_capability("UIDPLUS");
        let user = self.user_key();
        let mut stored = None;
        let reply = world
            .store
            .with_account(&user, |acct| match acct.mailbox_mut(&name) {
                Some(mb) if !caps.fits(mb, 1, data.len()) => Reply::no(FULL),
                Some(mb) => {
                    let uid = mb.append(Arc::from(data), flags, date);
                    stored = Some((Account::mailbox_key(&mb.name), uid));
                    if uidplus {
                        // RFC 4315 3: resp-code-apnd = "APPENDUID" SP nz-number SP append-uid
                        Reply::ok(format!(
                            "[APPENDUID {} {uid}] APPEND completed",
                            mb.uid_validity
                        ))
                    } else {
                        Reply::ok("APPEND completed")
                    }
                }
                None => Reply::no("[TRYCREATE] Mailbox does not exist"),
            });
        // Outside the store's lock: a subscriber's waker may run its session at once.
        if let Some((mailbox, uid)) = stored {
            world.notifications.publish(MailEvent {
                kind: MailEventKind::NewMail,
                user,
                mailbox,
                uid,
            });
        }
        reply
    }
}
