//! FETCH and UID FETCH (RFC 3501 6.4.5, 6.4.8): which messages, and `\Seen` set by
//! reading; the response for each message is rendered by `fetch_render.rs`.

use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
use imap_codec::imap_types::sequence::SequenceSet;

use super::completed;
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
        let Some(view) = self.view.take() else {
            return Reply::bad("No mailbox selected");
        };
        let sets_seen = !view.read_only
            && items.iter().any(|i| match i {
                MessageDataItemName::BodyExt { peek, .. } => !peek,
                MessageDataItemName::Rfc822 | MessageDataItemName::Rfc822Text => true,
                _ => false,
            });
        self.each_selected_message(view, idxs, |out, i, msg, vm| {
            let newly_seen = sets_seen && msg.flags.insert("\\Seen".to_string());
            vm.flags = msg.flags.clone();
            fetch_one(out, i + 1, msg, vm, items, uid, newly_seen);
            newly_seen
        });
        Reply::ok(completed(uid, "UID FETCH completed"))
    }
}
