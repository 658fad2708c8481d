//! STORE and UID STORE (RFC 3501 6.4.6, 6.4.8).

use std::collections::BTreeSet;
use std::sync::Arc;

use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;

use super::{find_msg, settable};
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
        let Some(mut view) = self.view.take() else {
            return Reply::bad("No mailbox selected");
        };
        if view.read_only {
            self.view = Some(view);
            return Reply::no("Mailbox is read-only");
        }
        let given = settable(flags);
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
                let new: BTreeSet<String> = match kind {
                    StoreType::Replace => given.clone(),
                    StoreType::Add => msg.flags.union(&given).cloned().collect(),
                    StoreType::Remove => msg.flags.difference(&given).cloned().collect(),
                };
                if new != msg.flags {
                    msg.flags = new;
                    mb.generation += 1;
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
            }
            out
        });
        self.view = Some(view);
        self.write(&out);
        Reply::ok(if uid {
            "UID STORE completed"
        } else {
            "STORE completed"
        })
    }
}
