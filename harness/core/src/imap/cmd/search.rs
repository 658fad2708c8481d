//! SEARCH and UID SEARCH (RFC 3501 6.4.4, 6.4.8): which messages to test; a key is
//! evaluated by `search_eval.rs`.

use std::sync::Arc;

use imap_codec::imap_types::core::Charset;
use imap_codec::imap_types::search::SearchKey;

use super::{completed, find_msg};
use crate::imap::search_eval::{eval, SearchCtx};
use crate::imap::server::{ImapServer, Reply};

impl ImapServer {
    /// SEARCH with the criteria `key` (their AND); a charset other than US-ASCII and
    /// UTF-8 is refused with `NO [BADCHARSET]` (RFC 3501 6.4.4, 7.1).
    pub(in crate::imap) fn search(
        &mut self,
        charset: Option<&Charset<'_>>,
        key: &SearchKey<'_>,
        uid: bool,
    ) -> Option<Reply> {
        if let Some(cs) = charset {
            let cs = cs.as_ref().to_ascii_uppercase();
            if cs != "US-ASCII" && cs != "UTF-8" {
                return Reply::no("[BADCHARSET (US-ASCII UTF-8)] Unsupported charset");
            }
        }
        let Some(view) = &self.view else {
            return Reply::bad("No mailbox selected");
        };
        let world = Arc::clone(&self.ctx.world);
        let hits = world.store.with_account(&self.user_key(), |acct| {
            let mut hits = Vec::new();
            let Some(mb) = acct.mailbox(&view.mailbox) else {
                return hits;
            };
            let ctx = SearchCtx {
                exists: u32::try_from(view.msgs.len()).unwrap_or(u32::MAX),
                max_uid: view.max_uid(),
            };
            for (i, vm) in view.msgs.iter().enumerate() {
                let Some(msg) = find_msg(mb, vm.uid).and_then(|p| mb.messages.get(p)) else {
                    continue;
                };
                let seq = u32::try_from(i + 1).unwrap_or(u32::MAX);
                if eval(key, &ctx, seq, vm, msg) {
                    hits.push(if uid { vm.uid } else { seq });
                }
            }
            hits
        });
        let mut line = String::from("* SEARCH");
        for h in hits {
            line.push_str(&format!(" {h}"));
        }
        line.push_str("\r\n");
        self.write(line.as_bytes());
        Reply::ok(completed(uid, "UID SEARCH completed"))
    }
}
