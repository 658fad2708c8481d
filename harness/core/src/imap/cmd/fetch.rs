//! FETCH and UID FETCH (RFC 3501 6.4.5, 6.4.8): which messages, and `\Seen` set by
//! reading; the response for each message is rendered by `fetch_render.rs`.

use std::sync::Arc;

use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
use imap_codec::imap_types::sequence::SequenceSet;

use super::find_msg;
use crate::imap::fetch_render::fetch_one;
use crate::imap::server::{ImapServer, Reply};

impl ImapServer {
    pub(in crate::imap) fn fetch(
        &mut self,
        set: &SequenceSet,
        items: &MacroOrMessageDataItemNames<'_>,
        uid: bool,
    ) -> Option<Reply> {
        match items {
            MacroOrMessageDataItemNames::Macro(m) => self.fetch_items(set, &m.expand(), uid),
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => self.fetch_items(set, v, uid),
        }
    }

    fn fetch_items(
        &mut self,
        set: &SequenceSet,
        items: &[MessageDataItemName<'_>],
        uid: bool,
    ) -> Option<Reply> {
        if items.iter().any(|i| {
            matches!(
                i,
                MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. }
            )
        }) {
            return Reply::bad("BINARY is not supported");
        }
        let idxs = match self.select_msgs(set, uid) {
            Ok(i) => i,
            Err(e) => return Reply::bad(e),
        };
        let Some(mut view) = self.view.take() else {
            return Reply::bad("No mailbox selected");
        };
        let sets_seen = !view.read_only
            && items.iter().any(|i| match i {
                MessageDataItemName::BodyExt { peek, .. } => !peek,
                MessageDataItemName::Rfc822 | MessageDataItemName::Rfc822Text => true,
                _ => false,
            });
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
                // A message expunged by another session: nothing to show until the
                // EXPUNGE can be reported (RFC 3501 7.4.1 allows omitting it).
                let Some(pos) = find_msg(mb, vm.uid) else {
                    continue;
                };
                let Some(msg) = mb.messages.get_mut(pos) else {
                    continue;
                };
                let mut newly_seen = false;
                if sets_seen && msg.flags.insert("\\Seen".to_string()) {
                    newly_seen = true;
                    mb.generation += 1;
                }
                vm.flags = msg.flags.clone();
                fetch_one(&mut out, i + 1, msg, vm, items, uid, newly_seen);
            }
            out
        });
        self.view = Some(view);
        self.write(&out);
        Reply::ok(if uid {
            "UID FETCH completed"
        } else {
            "FETCH completed"
        })
    }
}
