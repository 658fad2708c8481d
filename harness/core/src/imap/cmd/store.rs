//! STORE and UID STORE (RFC 3501 6.4.6, 6.4.8).

use std::collections::BTreeSet;

use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;

use super::{completed, settable};
use crate::imap::server::{ImapServer, Reply};

impl ImapServer {
    pub(in crate::imap) fn store(
        &mut self,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
    ) -> Option<Reply> {
        let idxs = match self.select_msgs(set, uid) {
            Ok(i) => i,
            Err(e) => return Reply::bad(e),
        };
        let Some(view) = self.view.take() else {
            return Reply::bad("No mailbox selected");
        };
        if view.read_only {
            self.view = Some(view);
            return Reply::no("Mailbox is read-only");
        }
        let given = settable(flags);
        self.each_selected_message(view, idxs, |out, i, msg, vm| {
            let new: BTreeSet<String> = match kind {
                StoreType::Replace => given.clone(),
                StoreType::Add => msg.flags.union(&given).cloned().collect(),
                StoreType::Remove => msg.flags.difference(&given).cloned().collect(),
            };
            let changed = new != msg.flags;
            if changed {
                msg.flags = new;
            }
            vm.flags = msg.flags.clone();
            if response == StoreResponse::Answer {
                out.extend_from_slice(
                    format!("* {} FETCH (FLAGS {}", i + 1, vm.flag_list()).as_bytes(),
                );
                if uid {
                    out.extend_from_slice(format!(" UID {}", vm.uid).as_bytes());
                }
                out.extend_from_slice(b")\r\n");
            }
            changed
        });
        Reply::ok(completed(uid, "UID STORE completed"))
    }
}
