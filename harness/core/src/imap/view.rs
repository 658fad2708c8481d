//! The session's view of its selected mailbox (sequence numbers, flags it has shown) and
//! how changes by other sessions reach it as `EXISTS` / `EXPUNGE` / `FETCH` responses;
//! sequence sets resolved against it.

use std::collections::{BTreeMap, BTreeSet};

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use crate::world::World;

/// One message as this session knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewMsg {
    pub uid: u32,
    /// Flags as last shown to (or set by) this session.
    pub flags: BTreeSet<String>,
    /// `\Recent` for this session: it arrived while the mailbox was selected here.
    pub recent: bool,
}

impl ViewMsg {
    /// The FLAGS list as this session shows it: `\Recent` added where it applies.
    pub(super) fn flag_list(&self) -> String {
        let mut parts: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        if self.recent {
            parts.push("\\Recent");
        }
        format!("({})", parts.join(" "))
    }
}

/// The selected mailbox as this session sees it: index + 1 is the sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub mailbox: String,
    pub read_only: bool,
    pub uid_validity: u32,
    pub msgs: Vec<ViewMsg>,
}

impl View {
    /// The largest UID the session knows (the value of `*` in a UID set).
    pub(super) fn max_uid(&self) -> u32 {
        self.msgs.last().map(|m| m.uid).unwrap_or(0)
    }

    /// Brings the view up to date with `user`'s mailbox in the store and returns the
    /// responses that report what changed: `* n EXPUNGE` (only when `allow_expunge`),
    /// flag changes as `* n FETCH (FLAGS ..)`, then `* n EXISTS` / `* n RECENT` for new
    /// messages. `None` when the store holds what the view shows (or no such mailbox).
    pub(super) fn sync(
        &mut self,
        world: &World,
        user: &str,
        allow_expunge: bool,
    ) -> Option<String> {
        let current = world.store.with_account(user, |acct| {
            acct.mailbox_mut(&self.mailbox).and_then(|mb| {
                // Compared in full rather than by `generation`, so that a writer that
                // forgets to bump it (another endpoint) is still noticed.
                let same = mb.messages.len() == self.msgs.len()
                    && mb
                        .messages
                        .iter()
                        .zip(&self.msgs)
                        .all(|(m, v)| m.uid == v.uid && m.flags == v.flags);
                (!same).then(|| {
                    // New arrivals are recent for the first read-write session told.
                    let seen_through = mb.recent_through;
                    if !self.read_only {
                        mb.claim_recent();
                    }
                    let msgs = mb
                        .messages
                        .iter()
                        .map(|m| (m.uid, m.flags.clone()))
                        .collect::<Vec<(u32, BTreeSet<String>)>>();
                    (msgs, seen_through)
                })
            })
        });
        let (store_msgs, seen_through) = current?;
        let in_store: BTreeMap<u32, &BTreeSet<String>> =
            store_msgs.iter().map(|(u, f)| (*u, f)).collect();
        let mut out = String::new();
        if allow_expunge {
            // RFC 3501 7.4.1: each EXPUNGE renumbers the messages after it, so the
            // numbers are given relative to what the client knows at that moment.
            let mut kept = Vec::with_capacity(self.msgs.len());
            for m in std::mem::take(&mut self.msgs) {
                if in_store.contains_key(&m.uid) {
                    kept.push(m);
                } else {
                    out.push_str(&format!("* {} EXPUNGE\r\n", kept.len() + 1));
                }
            }
            self.msgs = kept;
        }
        for (i, m) in self.msgs.iter_mut().enumerate() {
            if let Some(flags) = in_store.get(&m.uid) {
                if **flags != m.flags {
                    m.flags = (*flags).clone();
                    out.push_str(&format!("* {} FETCH (FLAGS {})\r\n", i + 1, m.flag_list()));
                }
            }
        }
        let max_uid = self.max_uid();
        let before = self.msgs.len();
        for (uid, flags) in &store_msgs {
            if *uid > max_uid {
                self.msgs.push(ViewMsg {
                    uid: *uid,
                    flags: flags.clone(),
                    recent: *uid > seen_through,
                });
            }
        }
        if self.msgs.len() != before {
            let recent = self.msgs.iter().filter(|m| m.recent).count();
            out.push_str(&format!(
                "* {} EXISTS\r\n* {recent} RECENT\r\n",
                self.msgs.len()
            ));
        }
        Some(out)
    }
}

/// A sequence set resolved against `*`: inclusive ranges. Its size is that of the parsed
/// set, never that of the numbers it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranges(Vec<(u32, u32)>);

impl Ranges {
    /// `star` is the value of `*` (the largest number in use, RFC 3501 9 `seq-number`).
    pub fn resolve(set: &SequenceSet, star: u32) -> Ranges {
        let val = |v: &SeqOrUid| match v {
            SeqOrUid::Value(n) => n.get(),
            SeqOrUid::Asterisk => star,
        };
        Ranges(
            set.0
                .as_ref()
                .iter()
                .map(|s| match s {
                    Sequence::Single(v) => (val(v), val(v)),
                    Sequence::Range(a, b) => {
                        let (a, b) = (val(a), val(b));
                        (a.min(b), a.max(b))
                    }
                })
                .collect(),
        )
    }

    pub fn contains(&self, n: u32) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= n && n <= hi)
    }

    /// The largest explicit number in the set, to reject sequence numbers that do not
    /// exist. A range reaching `*` is exempt: `1:*` on an empty mailbox names nothing
    /// rather than something invalid.
    pub fn max_value(set: &SequenceSet) -> u32 {
        set.0
            .as_ref()
            .iter()
            .filter_map(|s| match s {
                Sequence::Single(SeqOrUid::Value(n)) => Some(n.get()),
                Sequence::Range(SeqOrUid::Value(a), SeqOrUid::Value(b)) => {
                    Some(a.get().max(b.get()))
                }
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }
}
