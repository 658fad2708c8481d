//! The IMAP commands, one per file, as `ImapServer` methods that `server.rs` dispatches to
//! once it has checked the state: LOGIN and AUTHENTICATE (RFC 3501 6.2), the mailbox
//! commands of the authenticated and selected states on the shared store (6.3, 6.4), and
//! IDLE (RFC 2177), UNAUTHENTICATE (RFC 8437). Commands of a line or two stay in the dispatch. Here: what several
//! commands share.

mod append;
mod authenticate;
mod copy;
mod create;
mod delete;
mod expunge;
mod fetch;
mod idle;
mod list;
mod login;
mod rename;
mod search;
mod select;
mod status;
mod store;
mod subscribe;
mod unauthenticate;

use std::collections::BTreeSet;
use std::sync::Arc;

use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::sequence::SequenceSet;

use super::server::ImapServer;
use super::view::{Ranges, View, ViewMsg};
use crate::world::{Mailbox, StoredMessage};

/// RFC 5530 3: the LIMIT response code.
const FULL: &str = "[LIMIT] Mailbox is full";
const NO_MAILBOX: &str = "Mailbox does not exist";
const INVALID_SEQ: &str = "Invalid message sequence number";

fn find_msg(mb: &Mailbox, uid: u32) -> Option<usize> {
    mb.messages.binary_search_by_key(&uid, |m| m.uid).ok()
}

/// The completion text of a command with a UID form (RFC 3501 6.4.8): `with_uid` as given
/// for the UID form, without its `UID ` for the plain one.
fn completed(uid: bool, with_uid: &'static str) -> &'static str {
    match with_uid.strip_prefix("UID ") {
        Some(plain) if !uid => plain,
        _ => with_uid,
    }
}

fn flag_name(f: &Flag<'_>) -> String {
    f.to_string()
}

/// Flags a client may set: `\Recent` is the server's to give (RFC 3501 2.3.2).
fn settable(flags: &[Flag<'_>]) -> BTreeSet<String> {
    flags
        .iter()
        .map(flag_name)
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .collect()
}

impl ImapServer {
    /// Indexes (0-based) of the view's messages a set names, in ascending order.
    /// `Err` when a sequence number names no message (RFC 3501 9 `seq-number`).
    fn select_msgs(&self, set: &SequenceSet, uid: bool) -> Result<Vec<usize>, &'static str> {
        let Some(view) = &self.view else {
            return Ok(Vec::new());
        };
        if uid {
            let r = Ranges::resolve(set, view.max_uid());
            Ok((0..view.msgs.len())
                .filter(|&i| view.msgs.get(i).is_some_and(|m| r.contains(m.uid)))
                .collect())
        } else {
            let exists = u32::try_from(view.msgs.len()).unwrap_or(u32::MAX);
            if Ranges::max_value(set) > exists {
                return Err(INVALID_SEQ);
            }
            let r = Ranges::resolve(set, exists);
            Ok((0..view.msgs.len())
                .filter(|&i| r.contains(i as u32 + 1))
                .collect())
        }
    }

    /// Shows or changes the view's messages at `idxs` (from [`Self::select_msgs`]): `each`
    /// gets the output, the message's 0-based index, the stored message and the view's
    /// copy, and says whether it changed the message (the mailbox's generation goes up).
    /// A message expunged by another session is passed over until the EXPUNGE can be
    /// reported (RFC 3501 7.4.1 allows omitting it). The view goes back into the session
    /// and the output is written.
    fn each_selected_message(
        &mut self,
        mut view: View,
        idxs: Vec<usize>,
        mut each: impl FnMut(&mut Vec<u8>, usize, &mut StoredMessage, &mut ViewMsg) -> bool,
    ) {
        let world = Arc::clone(&self.ctx.world);
        let out = world.store.with_account(&self.user_key(), |acct| {
            let mut out = Vec::new();
            let Some(mb) = acct.mailbox_mut(&view.mailbox) else {
                return out;
            };
            for i in idxs {
                let Some(vm) = view.msgs.get_mut(i) else {
                    continue;
                };
                let Some(msg) = find_msg(mb, vm.uid).and_then(|p| mb.messages.get_mut(p)) else {
                    continue;
                };
                if each(&mut out, i, msg, vm) {
                    mb.generation += 1;
                }
            }
            out
        });
        self.view = Some(view);
        self.write(&out);
    }

    /// Removes from the store the messages of mailbox `name` that `remove` picks; the
    /// view learns of it at the next sync.
    fn remove_messages(&mut self, name: &str, remove: impl Fn(&StoredMessage) -> bool) {
        let world = Arc::clone(&self.ctx.world);
        world.store.with_account(&self.user_key(), |acct| {
            if let Some(mb) = acct.mailbox_mut(name) {
                let before = mb.messages.len();
                mb.messages.retain(|m| !remove(m));
                if mb.messages.len() != before {
                    mb.generation += 1;
                }
            }
        });
    }
}
