//! Authenticated- and selected-state commands (RFC 3501 6.3, 6.4) on the shared store, and
//! the session's view of its selected mailbox (sequence numbers, flags it has shown,
//! changes by other sessions reported as `EXISTS` / `EXPUNGE` / `FETCH`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItemName, Part, Section,
};
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox as MailboxName};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use imap_codec::imap_types::status::StatusDataItemName;

use super::message::{self, write_astring};
use super::mime;
use super::server::{ImapServer, Reply};
use crate::world::{Account, DerivedText, Mailbox, StoredMessage};

/// Hierarchy delimiter of the mock store (RFC 3501 6.3.8).
pub const DELIMITER: char = '/';

/// RFC 3501 2.3.2 system flags, as the FLAGS response lists them.
const SYSTEM_FLAGS: &str = "(\\Answered \\Flagged \\Deleted \\Seen \\Draft)";

/// How much one session may grow an account through APPEND, COPY and CREATE, so that a
/// client cannot exhaust the lab's memory (COPY 1:* into the same mailbox doubles it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCaps {
    pub max_messages: usize,
    /// Total octets of the messages of one mailbox.
    pub max_bytes: usize,
    pub max_mailboxes: usize,
}

impl Default for StoreCaps {
    fn default() -> Self {
        StoreCaps {
            max_messages: 100_000,
            max_bytes: 256 * 1024 * 1024,
            max_mailboxes: 1000,
        }
    }
}

impl StoreCaps {
    /// True if `extra` messages of `extra_bytes` octets still fit in `mb`.
    fn fits(&self, mb: &Mailbox, extra: usize, extra_bytes: usize) -> bool {
        let bytes: usize = mb.messages.iter().map(StoredMessage::size).sum();
        mb.messages.len().saturating_add(extra) <= self.max_messages
            && bytes.saturating_add(extra_bytes) <= self.max_bytes
    }
}

/// RFC 5530 3: the LIMIT response code.
const FULL: &str = "[LIMIT] Mailbox is full";

/// One message as this session knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewMsg {
    pub uid: u32,
    /// Flags as last shown to (or set by) this session.
    pub flags: BTreeSet<String>,
    /// `\Recent` for this session: it arrived while the mailbox was selected here.
    pub recent: bool,
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
    fn max_uid(&self) -> u32 {
        self.msgs.last().map(|m| m.uid).unwrap_or(0)
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

fn name_of(m: &MailboxName<'_>) -> Option<String> {
    checked_name(m).ok()
}

const BAD_NAME: &str = "[CANNOT] Mailbox name is not valid modified UTF-7 (RFC 3501 5.1.3)";

/// The mailbox name, or why it is not one: names are 7-bit, with anything else in
/// modified UTF-7.
fn checked_name(m: &MailboxName<'_>) -> Result<String, &'static str> {
    match m {
        MailboxName::Inbox => Ok("INBOX".into()),
        MailboxName::Other(o) => match std::str::from_utf8(o.as_ref()) {
            Ok(name) if valid_modified_utf7(name) => Ok(Account::mailbox_key(name)),
            _ => Err(BAD_NAME),
        },
    }
}

/// RFC 3501 5.1.3: printable US-ASCII stands for itself, `&-` is `&`, and `&...-` holds
/// modified BASE64 (`,` for `/`, no padding) of UTF-16 that must not encode printable
/// US-ASCII. Anything else (8-bit bytes, controls, broken shifts) is invalid.
pub fn valid_modified_utf7(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        if c != b'&' {
            if !(0x20..=0x7e).contains(&c) {
                return false;
            }
            i += 1;
            continue;
        }
        let rest = bytes.get(i + 1..).unwrap_or_default();
        let Some(len) = rest.iter().position(|&b| b == b'-') else {
            return false;
        };
        let encoded = rest.get(..len).unwrap_or_default();
        i += len + 2;
        if encoded.is_empty() {
            continue; // "&-" is "&"
        }
        let mut units = Vec::with_capacity(encoded.len() * 6 / 16);
        let (mut acc, mut nbits) = (0u32, 0u32);
        for &b in encoded {
            let v = match b {
                b'A'..=b'Z' => b - b'A',
                b'a'..=b'z' => b - b'a' + 26,
                b'0'..=b'9' => b - b'0' + 52,
                b'+' => 62,
                b',' => 63,
                _ => return false,
            };
            acc = (acc << 6) | u32::from(v);
            nbits += 6;
            if nbits >= 16 {
                nbits -= 16;
                units.push((acc >> nbits) as u16);
                acc &= (1 << nbits) - 1;
            }
        }
        // Leftover bits: fewer than a sextet, all zero.
        if nbits >= 6 || acc != 0 {
            return false;
        }
        for ch in char::decode_utf16(units) {
            match ch {
                Ok(ch) if !(' '..='~').contains(&ch) => {}
                _ => return false,
            }
        }
    }
    true
}

fn find_msg(mb: &Mailbox, uid: u32) -> Option<usize> {
    mb.messages.binary_search_by_key(&uid, |m| m.uid).ok()
}

fn flag_list(flags: &BTreeSet<String>, recent: bool) -> String {
    let mut parts: Vec<&str> = flags.iter().map(String::as_str).collect();
    if recent {
        parts.push("\\Recent");
    }
    format!("({})", parts.join(" "))
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

const NO_MAILBOX: &str = "Mailbox does not exist";
const INVALID_SEQ: &str = "Invalid message sequence number";

impl ImapServer {
    /// Commands of the authenticated and selected states (state already checked).
    pub(super) fn mailbox_command(&mut self, body: CommandBody<'_>) -> Option<Reply> {
        match body {
            CommandBody::Select { mailbox } => self.select(&mailbox, false),
            CommandBody::Examine { mailbox } => self.select(&mailbox, true),
            CommandBody::Create { mailbox } => self.create(&mailbox),
            CommandBody::Delete { mailbox } => self.delete(&mailbox),
            CommandBody::Rename { from, to } => self.rename(&from, &to),
            CommandBody::Subscribe { mailbox } => self.subscribe(&mailbox, true),
            CommandBody::Unsubscribe { mailbox } => self.subscribe(&mailbox, false),
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => self.list(&reference, &mailbox_wildcard, false),
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => self.list(&reference, &mailbox_wildcard, true),
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status(&mailbox, &item_names),
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                let data = match &message {
                    LiteralOrLiteral8::Literal(l) => l.as_ref().to_vec(),
                    LiteralOrLiteral8::Literal8(_) => {
                        return Reply::bad("literal8 is not supported (BINARY is not advertised)")
                    }
                };
                let date = date.map(|d| d.as_ref().timestamp());
                self.append(&mailbox, &flags, date, data)
            }
            CommandBody::Check => Reply::ok("CHECK completed"),
            CommandBody::Close => {
                // RFC 3501 6.4.2: silent expunge, unless the mailbox is read-only.
                if let Some(view) = self.view.take() {
                    if !view.read_only {
                        self.expunge_store(&view.mailbox);
                    }
                }
                Reply::ok("CLOSE completed")
            }
            CommandBody::Unselect => {
                // RFC 3691 2: CLOSE without the expunge, read-write or not.
                self.view = None;
                Reply::ok("UNSELECT completed")
            }
            CommandBody::Expunge => {
                if self.view.as_ref().is_some_and(|v| v.read_only) {
                    return Reply::no("Mailbox is read-only");
                }
                let name = self.view.as_ref().map(|v| v.mailbox.clone());
                if let Some(name) = name {
                    self.expunge_store(&name);
                }
                // The `* n EXPUNGE` responses come from the sync that follows.
                Reply::ok("EXPUNGE completed")
            }
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => {
                if let Some(cs) = charset {
                    let cs = cs.as_ref().to_ascii_uppercase();
                    if cs != "US-ASCII" && cs != "UTF-8" {
                        return Reply::no("[BADCHARSET (US-ASCII UTF-8)] Unsupported charset");
                    }
                }
                let key = SearchKey::And(criteria);
                self.search(&key, uid)
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
            } => match macro_or_item_names {
                MacroOrMessageDataItemNames::Macro(m) => {
                    self.fetch(&sequence_set, &m.expand(), uid)
                }
                MacroOrMessageDataItemNames::MessageDataItemNames(v) => {
                    self.fetch(&sequence_set, &v, uid)
                }
            },
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
            } => self.store(&sequence_set, kind, response, &flags, uid),
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(&sequence_set, &mailbox, uid),
            // RFC 4315 2.1: UID EXPUNGE removes only the \Deleted messages it names.
            CommandBody::ExpungeUid { sequence_set } if self.has_capability("UIDPLUS") => {
                if self.view.as_ref().is_some_and(|v| v.read_only) {
                    return Reply::no("Mailbox is read-only");
                }
                let Some(view) = &self.view else {
                    return Reply::bad("No mailbox selected");
                };
                let name = view.mailbox.clone();
                let r = Ranges::resolve(&sequence_set, view.max_uid());
                let world = Arc::clone(&self.ctx.world);
                world.store.with_account(&self.user_key(), |acct| {
                    if let Some(mb) = acct.mailbox_mut(&name) {
                        let before = mb.messages.len();
                        mb.messages
                            .retain(|m| !(m.flags.contains("\\Deleted") && r.contains(m.uid)));
                        if mb.messages.len() != before {
                            mb.generation += 1;
                        }
                    }
                });
                Reply::ok("UID EXPUNGE completed")
            }
            CommandBody::ExpungeUid { .. } => {
                Reply::bad("UID EXPUNGE needs UIDPLUS, which is not advertised")
            }
            // RFC 2342: one personal namespace, no shared or other users' ones.
            CommandBody::Namespace if self.has_capability("NAMESPACE") => {
                self.write(format!("* NAMESPACE ((\"\" \"{DELIMITER}\")) NIL NIL\r\n").as_bytes());
                Reply::ok("NAMESPACE completed")
            }
            // RFC 5161: none of the extensions a client may ENABLE is implemented, so
            // nothing is enabled; the ENABLED response is still owed.
            CommandBody::Enable { .. } if self.has_capability("ENABLE") => {
                self.write(b"* ENABLED\r\n");
                Reply::ok("ENABLE completed")
            }
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } if self.has_capability("MOVE") => self.move_messages(&sequence_set, &mailbox, uid),
            other => Reply::bad(format!("{} is not supported", other.name())),
        }
    }

    fn user_key(&self) -> String {
        self.user.clone().unwrap_or_default()
    }

    fn select(&mut self, mailbox: &MailboxName<'_>, examine: bool) -> Option<Reply> {
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

    fn create(&mut self, mailbox: &MailboxName<'_>) -> Option<Reply> {
        let name = match checked_name(mailbox) {
            Ok(n) => n,
            Err(why) => return Reply::no(why),
        };
        let name = name.trim_end_matches(DELIMITER).to_string();
        if name.is_empty() || name.split(DELIMITER).any(str::is_empty) {
            return Reply::no("Invalid mailbox name");
        }
        let world = Arc::clone(&self.ctx.world);
        let caps = self.caps;
        world.store.with_account(&self.user_key(), |acct| {
            if acct.mailbox(&name).is_some() {
                return Reply::no("Mailbox already exists");
            }
            // RFC 3501 6.3.3: superior hierarchical names that do not exist are created
            // too, so `CREATE a/b` leaves both `a` and `a/b` selectable.
            let parts: Vec<&str> = name.split(DELIMITER).collect();
            let missing: Vec<String> = (1..=parts.len())
                .map(|n| {
                    parts
                        .get(..n)
                        .unwrap_or_default()
                        .join(&DELIMITER.to_string())
                })
                .filter(|n| acct.mailbox(n).is_none())
                .collect();
            if acct.mailboxes.len() + missing.len() > caps.max_mailboxes {
                return Reply::no("[LIMIT] Too many mailboxes");
            }
            for n in missing {
                let validity = next_validity(acct);
                // Subscribing is the client's choice (RFC 3501 6.3.6); CREATE does not.
                let mut mb = Mailbox::new(&n, validity);
                mb.subscribed = false;
                acct.mailboxes.insert(n.clone(), mb);
            }
            Reply::ok("CREATE completed")
        })
    }

    fn delete(&mut self, mailbox: &MailboxName<'_>) -> Option<Reply> {
        let Some(name) = name_of(mailbox) else {
            return Reply::no(NO_MAILBOX);
        };
        if name == "INBOX" {
            return Reply::no("INBOX cannot be deleted");
        }
        if self.view.as_ref().is_some_and(|v| v.mailbox == name) {
            return Reply::no("Mailbox is selected");
        }
        let world = Arc::clone(&self.ctx.world);
        world.store.with_account(&self.user_key(), |acct| {
            match acct.mailboxes.remove(&name) {
                Some(_) => Reply::ok("DELETE completed"),
                None => Reply::no(NO_MAILBOX),
            }
        })
    }

    /// RENAME (RFC 3501 6.3.5): inferior names move with the mailbox; renaming INBOX
    /// moves its messages into a new mailbox and leaves INBOX empty.
    fn rename(&mut self, from: &MailboxName<'_>, to: &MailboxName<'_>) -> Option<Reply> {
        let (from, to) = match (checked_name(from), checked_name(to)) {
            (Ok(f), Ok(t)) => (f, t.trim_end_matches(DELIMITER).to_string()),
            (Err(why), _) | (_, Err(why)) => return Reply::no(why),
        };
        if to == "INBOX" || to.is_empty() || to.split(DELIMITER).any(str::is_empty) {
            return Reply::no("[CANNOT] Invalid target name");
        }
        if self.view.as_ref().is_some_and(|v| v.mailbox == from) {
            return Reply::no("Mailbox is selected");
        }
        let inferior = format!("{from}{DELIMITER}");
        if to.starts_with(&inferior) {
            return Reply::no("[CANNOT] Cannot rename a mailbox into itself");
        }
        let world = Arc::clone(&self.ctx.world);
        let caps = self.caps;
        world.store.with_account(&self.user_key(), |acct| {
            if acct.mailboxes.contains_key(&to) {
                return Reply::no("[ALREADYEXISTS] Target mailbox already exists");
            }
            if from == "INBOX" {
                if acct.mailboxes.len() >= caps.max_mailboxes {
                    return Reply::no("[LIMIT] Too many mailboxes");
                }
                let validity = next_validity(acct);
                let Some(inbox) = acct.mailbox_mut("INBOX") else {
                    return Reply::no(NO_MAILBOX);
                };
                let moved = std::mem::take(&mut inbox.messages);
                inbox.generation += 1;
                let mut target = Mailbox::new(&to, validity);
                for m in moved {
                    target.append(m.data, m.flags, m.internal_date);
                }
                acct.mailboxes.insert(to.clone(), target);
                return Reply::ok("RENAME completed");
            }
            let Some(mut mb) = acct.mailboxes.remove(&from) else {
                return Reply::no(NO_MAILBOX);
            };
            mb.name = to.clone();
            acct.mailboxes.insert(to.clone(), mb);
            let inferiors: Vec<String> = acct
                .mailboxes
                .keys()
                .filter(|k| k.starts_with(&inferior))
                .cloned()
                .collect();
            for old in inferiors {
                if let Some(mut child) = acct.mailboxes.remove(&old) {
                    let renamed = format!("{to}{}", old.get(from.len()..).unwrap_or_default());
                    child.name = renamed.clone();
                    acct.mailboxes.insert(renamed, child);
                }
            }
            Reply::ok("RENAME completed")
        })
    }

    fn subscribe(&mut self, mailbox: &MailboxName<'_>, on: bool) -> Option<Reply> {
        let Some(name) = name_of(mailbox) else {
            return Reply::no(NO_MAILBOX);
        };
        let world = Arc::clone(&self.ctx.world);
        world
            .store
            .with_account(&self.user_key(), |acct| match acct.mailbox_mut(&name) {
                Some(mb) => {
                    mb.subscribed = on;
                    Reply::ok(if on {
                        "SUBSCRIBE completed"
                    } else {
                        "UNSUBSCRIBE completed"
                    })
                }
                None => Reply::no(NO_MAILBOX),
            })
    }

    /// LIST / LSUB (RFC 3501 6.3.8, 6.3.9).
    fn list(
        &mut self,
        reference: &MailboxName<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
    ) -> Option<Reply> {
        let word = if lsub { "LSUB" } else { "LIST" };
        let reference = match reference {
            MailboxName::Inbox => "INBOX".to_string(),
            MailboxName::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
        };
        let pattern_bytes: &[u8] = match pattern {
            ListMailbox::Token(t) => t.as_ref(),
            ListMailbox::String(s) => s.as_ref(),
        };
        let pattern = String::from_utf8_lossy(pattern_bytes).into_owned();
        if pattern.is_empty() && !lsub {
            // The delimiter and root of the reference's hierarchy.
            self.write(format!("* LIST (\\Noselect) \"{DELIMITER}\" \"\"\r\n").as_bytes());
            return Reply::ok("LIST completed");
        }
        let full = format!("{reference}{pattern}");
        let world = Arc::clone(&self.ctx.world);
        let names: BTreeMap<String, bool> = world.store.with_account(&self.user_key(), |acct| {
            // Real mailboxes (selectable), then parents implied by hierarchy names.
            let mut names = BTreeMap::new();
            for (name, mb) in &acct.mailboxes {
                if !lsub || mb.subscribed {
                    names.insert(name.clone(), true);
                }
            }
            if !lsub {
                let real: Vec<String> = names.keys().cloned().collect();
                for name in real {
                    let mut prefix = String::new();
                    let parts: Vec<&str> = name.split(DELIMITER).collect();
                    for part in parts.iter().take(parts.len().saturating_sub(1)) {
                        if !prefix.is_empty() {
                            prefix.push(DELIMITER);
                        }
                        prefix.push_str(part);
                        names.entry(prefix.clone()).or_insert(false);
                    }
                }
            }
            names
        });
        // RFC 3348: with CHILDREN, every LIST entry says whether it has inferiors.
        let children = !lsub && self.has_capability("CHILDREN");
        let parent_of = |name: &str| {
            let prefix = format!("{name}{DELIMITER}");
            names.keys().any(|k| k.starts_with(&prefix))
        };
        let mut out = Vec::new();
        for (name, &selectable) in &names {
            let matched = if name == "INBOX" {
                wildcard_match(&full.to_ascii_uppercase(), "INBOX")
            } else {
                wildcard_match(&full, name)
            };
            if matched {
                let mut attrs: Vec<&str> = Vec::new();
                if !selectable {
                    attrs.push("\\Noselect");
                }
                if children {
                    attrs.push(if parent_of(name) {
                        "\\HasChildren"
                    } else {
                        "\\HasNoChildren"
                    });
                }
                let attrs = format!("({})", attrs.join(" "));
                out.extend_from_slice(format!("* {word} {attrs} \"{DELIMITER}\" ").as_bytes());
                write_astring(&mut out, name.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        self.write(&out);
        Reply::ok(format!("{word} completed"))
    }

    fn status(&mut self, mailbox: &MailboxName<'_>, items: &[StatusDataItemName]) -> Option<Reply> {
        let Some(name) = name_of(mailbox) else {
            return Reply::no(NO_MAILBOX);
        };
        // The selected mailbox: what is recent in this session; any other: what no
        // session has claimed yet (RFC 3501 6.3.10, 2.3.2).
        let selected_recent = self
            .view
            .as_ref()
            .filter(|v| v.mailbox == name)
            .map(|v| v.msgs.iter().filter(|m| m.recent).count());
        let world = Arc::clone(&self.ctx.world);
        let line = world.store.with_account(&self.user_key(), |acct| {
            let mb = acct.mailbox(&name)?;
            let recent = selected_recent.unwrap_or_else(|| {
                mb.messages
                    .iter()
                    .filter(|m| m.uid > mb.recent_through)
                    .count()
            });
            let mut parts = Vec::new();
            for item in items {
                let (word, value) = match item {
                    StatusDataItemName::Messages => ("MESSAGES", mb.messages.len() as u64),
                    StatusDataItemName::Recent => ("RECENT", recent as u64),
                    StatusDataItemName::UidNext => ("UIDNEXT", u64::from(mb.uid_next)),
                    StatusDataItemName::UidValidity => ("UIDVALIDITY", u64::from(mb.uid_validity)),
                    StatusDataItemName::Unseen => (
                        "UNSEEN",
                        mb.messages
                            .iter()
                            .filter(|m| !m.flags.contains("\\Seen"))
                            .count() as u64,
                    ),
                    StatusDataItemName::Deleted => (
                        "DELETED",
                        mb.messages
                            .iter()
                            .filter(|m| m.flags.contains("\\Deleted"))
                            .count() as u64,
                    ),
                    StatusDataItemName::DeletedStorage => (
                        "DELETED-STORAGE",
                        mb.messages
                            .iter()
                            .filter(|m| m.flags.contains("\\Deleted"))
                            .map(|m| m.size() as u64)
                            .sum(),
                    ),
                };
                parts.push(format!("{word} {value}"));
            }
            let mut line = b"* STATUS ".to_vec();
            write_astring(&mut line, name.as_bytes());
            line.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
            Some(line)
        });
        match line {
            Some(line) => {
                self.write(&line);
                Reply::ok("STATUS completed")
            }
            None => Reply::no(NO_MAILBOX),
        }
    }

    fn append(
        &mut self,
        mailbox: &MailboxName<'_>,
        flags: &[Flag<'_>],
        date: Option<i64>,
        data: Vec<u8>,
    ) -> Option<Reply> {
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
        world
            .store
            .with_account(&self.user_key(), |acct| match acct.mailbox_mut(&name) {
                Some(mb) if !caps.fits(mb, 1, data.len()) => Reply::no(FULL),
                Some(mb) => {
                    let uid = mb.append(Arc::from(data), flags, date);
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
            })
    }

    /// Removes `\Deleted` messages from the store; the view learns of it at the next sync.
    fn expunge_store(&mut self, name: &str) {
        let world = Arc::clone(&self.ctx.world);
        world.store.with_account(&self.user_key(), |acct| {
            if let Some(mb) = acct.mailbox_mut(name) {
                let before = mb.messages.len();
                mb.messages.retain(|m| !m.flags.contains("\\Deleted"));
                if mb.messages.len() != before {
                    mb.generation += 1;
                }
            }
        });
    }

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

    fn fetch(
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

    fn store(
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
                        format!(
                            "* {} FETCH (FLAGS {}",
                            i + 1,
                            flag_list(&vm.flags, vm.recent)
                        )
                        .as_bytes(),
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

    fn copy(&mut self, set: &SequenceSet, mailbox: &MailboxName<'_>, uid: bool) -> Option<Reply> {
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
        world.store.with_account(&self.user_key(), |acct| {
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
            }
            let done = if uid {
                "UID COPY completed"
            } else {
                "COPY completed"
            };
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
        })
    }

    /// MOVE / UID MOVE (RFC 6851): a COPY whose COPYUID goes in an untagged OK, then the
    /// sources are expunged (the `* n EXPUNGE` responses come from the sync that follows).
    fn move_messages(
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
        let world = Arc::clone(&self.ctx.world);
        world.store.with_account(&self.user_key(), |acct| {
            if let Some(mb) = acct.mailbox_mut(&source) {
                let before = mb.messages.len();
                mb.messages.retain(|m| !uids.contains(&m.uid));
                if mb.messages.len() != before {
                    mb.generation += 1;
                }
            }
        });
        Reply::ok(if uid {
            "UID MOVE completed"
        } else {
            "MOVE completed"
        })
    }

    fn search(&mut self, key: &SearchKey<'_>, uid: bool) -> Option<Reply> {
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
        Reply::ok(if uid {
            "UID SEARCH completed"
        } else {
            "SEARCH completed"
        })
    }

    /// Brings the view up to date with the store and reports what changed:
    /// `* n EXPUNGE` (only when `allow_expunge`), flag changes as `* n FETCH (FLAGS ..)`,
    /// then `* n EXISTS` / `* n RECENT` for new messages.
    pub(super) fn sync(&mut self, allow_expunge: bool) {
        let Some(mut view) = self.view.take() else {
            return;
        };
        let world = Arc::clone(&self.ctx.world);
        let current = world.store.with_account(&self.user_key(), |acct| {
            acct.mailbox_mut(&view.mailbox).and_then(|mb| {
                // Compared in full rather than by `generation`, so that a writer that
                // forgets to bump it (another endpoint) is still noticed.
                let same = mb.messages.len() == view.msgs.len()
                    && mb
                        .messages
                        .iter()
                        .zip(&view.msgs)
                        .all(|(m, v)| m.uid == v.uid && m.flags == v.flags);
                (!same).then(|| {
                    // New arrivals are recent for the first read-write session told.
                    let seen_through = mb.recent_through;
                    if !view.read_only {
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
        let Some((store_msgs, seen_through)) = current else {
            self.view = Some(view);
            return;
        };
        let in_store: BTreeMap<u32, &BTreeSet<String>> =
            store_msgs.iter().map(|(u, f)| (*u, f)).collect();
        let mut out = String::new();
        if allow_expunge {
            // RFC 3501 7.4.1: each EXPUNGE renumbers the messages after it, so the
            // numbers are given relative to what the client knows at that moment.
            let mut kept = Vec::with_capacity(view.msgs.len());
            for m in std::mem::take(&mut view.msgs) {
                if in_store.contains_key(&m.uid) {
                    kept.push(m);
                } else {
                    out.push_str(&format!("* {} EXPUNGE\r\n", kept.len() + 1));
                }
            }
            view.msgs = kept;
        }
        for (i, m) in view.msgs.iter_mut().enumerate() {
            if let Some(flags) = in_store.get(&m.uid) {
                if **flags != m.flags {
                    m.flags = (*flags).clone();
                    out.push_str(&format!(
                        "* {} FETCH (FLAGS {})\r\n",
                        i + 1,
                        flag_list(&m.flags, m.recent)
                    ));
                }
            }
        }
        let max_uid = view.max_uid();
        let before = view.msgs.len();
        for (uid, flags) in &store_msgs {
            if *uid > max_uid {
                view.msgs.push(ViewMsg {
                    uid: *uid,
                    flags: flags.clone(),
                    recent: *uid > seen_through,
                });
            }
        }
        if view.msgs.len() != before {
            let recent = view.msgs.iter().filter(|m| m.recent).count();
            out.push_str(&format!(
                "* {} EXISTS\r\n* {recent} RECENT\r\n",
                view.msgs.len()
            ));
        }
        self.view = Some(view);
        self.write(out.as_bytes());
    }
}

fn next_validity(acct: &Account) -> u32 {
    acct.mailboxes
        .values()
        .map(|m| m.uid_validity)
        .max()
        .unwrap_or(1)
        .saturating_add(1)
}

/// Writes `* n FETCH (...)` for one message.
fn fetch_one(
    out: &mut Vec<u8>,
    seq: usize,
    msg: &StoredMessage,
    vm: &ViewMsg,
    items: &[MessageDataItemName<'_>],
    uid_cmd: bool,
    newly_seen: bool,
) {
    out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b' ');
        }
        first = false;
    };
    let asks_uid = items.iter().any(|i| matches!(i, MessageDataItemName::Uid));
    let asks_flags = items
        .iter()
        .any(|i| matches!(i, MessageDataItemName::Flags));
    // RFC 3501 6.4.8: UID FETCH responses always carry the UID.
    if uid_cmd && !asks_uid {
        sep(out);
        out.extend_from_slice(format!("UID {}", msg.uid).as_bytes());
    }
    let data: &[u8] = &msg.data;
    let (header, text) = message::split(data);
    for item in items {
        sep(out);
        match item {
            MessageDataItemName::Uid => {
                out.extend_from_slice(format!("UID {}", msg.uid).as_bytes());
            }
            MessageDataItemName::Flags => {
                out.extend_from_slice(
                    format!("FLAGS {}", flag_list(&vm.flags, vm.recent)).as_bytes(),
                );
            }
            MessageDataItemName::Rfc822Size => {
                out.extend_from_slice(format!("RFC822.SIZE {}", data.len()).as_bytes());
            }
            MessageDataItemName::InternalDate => {
                out.extend_from_slice(b"INTERNALDATE ");
                out.extend_from_slice(message::internal_date(msg.internal_date).as_bytes());
            }
            MessageDataItemName::Envelope => {
                out.extend_from_slice(b"ENVELOPE ");
                let envelope = msg.derived.get(DerivedText::Envelope, |text| {
                    message::write_envelope(text, header)
                });
                out.extend_from_slice(envelope);
            }
            MessageDataItemName::Body => {
                out.extend_from_slice(b"BODY ");
                let body = msg.derived.get(DerivedText::Body, |text| {
                    mime::write_structure(text, data, &mime::parse(data), false)
                });
                out.extend_from_slice(body);
            }
            MessageDataItemName::BodyStructure => {
                out.extend_from_slice(b"BODYSTRUCTURE ");
                let structure = msg.derived.get(DerivedText::BodyStructure, |text| {
                    mime::write_structure(text, data, &mime::parse(data), true)
                });
                out.extend_from_slice(structure);
            }
            MessageDataItemName::Rfc822 => literal_item(out, "RFC822", data),
            MessageDataItemName::Rfc822Header => literal_item(out, "RFC822.HEADER", header),
            MessageDataItemName::Rfc822Text => literal_item(out, "RFC822.TEXT", text),
            MessageDataItemName::BodyExt {
                section, partial, ..
            } => {
                let mut name = b"BODY[".to_vec();
                if let Some(s) = section {
                    write_section(&mut name, s);
                }
                name.push(b']');
                // RFC 3501 7.4.2: a section that does not exist is NIL.
                let Some(content) = section_data(section.as_ref(), header, text, data) else {
                    out.extend_from_slice(&name);
                    out.extend_from_slice(b" NIL");
                    continue;
                };
                let content: &[u8] = match partial {
                    // RFC 3501 6.4.5: <origin.octets>; the reply names only the origin.
                    Some((origin, len)) => {
                        name.extend_from_slice(format!("<{origin}>").as_bytes());
                        let start = (*origin as usize).min(content.len());
                        let end = start.saturating_add(len.get() as usize).min(content.len());
                        content.get(start..end).unwrap_or_default()
                    }
                    None => &content,
                };
                out.extend_from_slice(&name);
                out.extend_from_slice(format!(" {{{}}}\r\n", content.len()).as_bytes());
                out.extend_from_slice(content);
            }
            MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. } => {
                out.extend_from_slice(b"NIL");
            }
        }
    }
    // RFC 3501 6.4.5: setting \Seen implies an untagged FETCH of the new flags.
    if newly_seen && !asks_flags {
        sep(out);
        out.extend_from_slice(format!("FLAGS {}", flag_list(&vm.flags, vm.recent)).as_bytes());
    }
    out.extend_from_slice(b")\r\n");
}

fn literal_item(out: &mut Vec<u8>, name: &str, content: &[u8]) {
    out.extend_from_slice(format!("{name} {{{}}}\r\n", content.len()).as_bytes());
    out.extend_from_slice(content);
}

/// The octets a section names, or `None` when the message has no such part (RFC 3501
/// 6.4.5): part numbers walk the MIME tree; HEADER, TEXT and HEADER.FIELDS below the top
/// level need a message/rfc822 part; MIME is a part's own header.
fn section_data(
    section: Option<&Section<'_>>,
    header: &[u8],
    text: &[u8],
    data: &[u8],
) -> Option<Vec<u8>> {
    let names = |list: &[imap_codec::imap_types::core::AString<'_>]| -> Vec<Vec<u8>> {
        list.iter().map(|a| a.as_ref().to_vec()).collect()
    };
    let path = |p: &Part| -> Vec<u32> { p.0.as_ref().iter().map(|n| n.get()).collect() };
    let bytes = |r: std::ops::Range<usize>| data.get(r).unwrap_or_default().to_vec();
    let Some(section) = section else {
        return Some(data.to_vec());
    };
    // Top-level sections need no MIME parse.
    match section {
        Section::Header(None) => return Some(header.to_vec()),
        Section::HeaderFields(None, list) => {
            return Some(message::header_fields(header, &names(list.as_ref()), false))
        }
        Section::HeaderFieldsNot(None, list) => {
            return Some(message::header_fields(header, &names(list.as_ref()), true))
        }
        Section::Text(None) => return Some(text.to_vec()),
        _ => {}
    }
    let root = mime::parse(data);
    // The message inside a message/rfc822 part named by `p`.
    let inner = |p: &Part| match mime::find(&root, &path(p)).map(|part| &part.kind) {
        Some(mime::Kind::Message(m)) => Some((**m).clone()),
        _ => None,
    };
    match section {
        Section::Part(p) => mime::find(&root, &path(p)).map(|part| bytes(part.body.clone())),
        Section::Mime(p) => mime::find(&root, &path(p)).map(|part| bytes(part.header.clone())),
        Section::Header(Some(p)) => inner(p).map(|m| bytes(m.header)),
        Section::Text(Some(p)) => inner(p).map(|m| bytes(m.body)),
        Section::HeaderFields(Some(p), list) => {
            inner(p).map(|m| message::header_fields(&bytes(m.header), &names(list.as_ref()), false))
        }
        Section::HeaderFieldsNot(Some(p), list) => {
            inner(p).map(|m| message::header_fields(&bytes(m.header), &names(list.as_ref()), true))
        }
        _ => None,
    }
}

fn write_part(out: &mut Vec<u8>, p: &Part) {
    let nums: Vec<String> = p.0.as_ref().iter().map(|n| n.get().to_string()).collect();
    out.extend_from_slice(nums.join(".").as_bytes());
}

/// The section spec as the response names it (RFC 3501 7.4.2 `BODY[<section>]`).
fn write_section(out: &mut Vec<u8>, s: &Section<'_>) {
    let prefix = |out: &mut Vec<u8>, p: &Option<Part>| {
        if let Some(p) = p {
            write_part(out, p);
            out.push(b'.');
        }
    };
    let field_list = |out: &mut Vec<u8>, list: &[imap_codec::imap_types::core::AString<'_>]| {
        out.extend_from_slice(b" (");
        for (i, a) in list.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            write_astring(out, a.as_ref());
        }
        out.push(b')');
    };
    match s {
        Section::Part(p) => write_part(out, p),
        Section::Header(p) => {
            prefix(out, p);
            out.extend_from_slice(b"HEADER");
        }
        Section::HeaderFields(p, list) => {
            prefix(out, p);
            out.extend_from_slice(b"HEADER.FIELDS");
            field_list(out, list.as_ref());
        }
        Section::HeaderFieldsNot(p, list) => {
            prefix(out, p);
            out.extend_from_slice(b"HEADER.FIELDS.NOT");
            field_list(out, list.as_ref());
        }
        Section::Text(p) => {
            prefix(out, p);
            out.extend_from_slice(b"TEXT");
        }
        Section::Mime(p) => {
            write_part(out, p);
            out.extend_from_slice(b".MIME");
        }
    }
}

/// `*` and `%` matching (RFC 3501 6.3.8): `*` matches anything, `%` anything but the
/// delimiter. Iterative with one backtrack point per wildcard kind, O(pattern x name).
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // dp[j]: pattern prefix so far matches name prefix of length j.
    let mut dp = vec![false; n.len() + 1];
    dp[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                let mut reach = false;
                for j in 0..=n.len() {
                    if dp[j] {
                        reach = true;
                    }
                    next[j] = reach;
                    // `%` cannot run across a delimiter.
                    if pc == '%' && n.get(j) == Some(&DELIMITER) {
                        reach = false;
                    }
                }
            }
            c => {
                for j in 0..n.len() {
                    if dp[j] && n.get(j) == Some(&c) {
                        next[j + 1] = true;
                    }
                }
            }
        }
        dp = next;
    }
    dp[n.len()]
}

struct SearchCtx {
    exists: u32,
    max_uid: u32,
}

fn has(flags: &BTreeSet<String>, f: &str) -> bool {
    flags.iter().any(|x| x.eq_ignore_ascii_case(f))
}

/// Case-insensitive (ASCII) substring test in O(hay + needle) time (Knuth-Morris-Pratt),
/// so that a long SEARCH string against a large mailbox cannot hold the store lock for
/// hay x needle steps.
/// Case-insensitive substring on decoded (Unicode) text.
fn contains_text(hay: &str, needle: &[u8]) -> bool {
    hay.to_lowercase()
        .contains(&String::from_utf8_lossy(needle).to_lowercase())
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    let lower = |b: u8| b.to_ascii_lowercase();
    // fail[i]: length of the longest proper border of needle[..=i].
    let mut fail = vec![0usize; needle.len()];
    let mut k = 0;
    for i in 1..needle.len() {
        let c = needle.get(i).copied().map(lower);
        while k > 0 && needle.get(k).copied().map(lower) != c {
            k = fail.get(k - 1).copied().unwrap_or(0);
        }
        if needle.get(k).copied().map(lower) == c {
            k += 1;
        }
        if let Some(f) = fail.get_mut(i) {
            *f = k;
        }
    }
    let mut k = 0;
    for &h in hay {
        let c = Some(lower(h));
        while k > 0 && needle.get(k).copied().map(lower) != c {
            k = fail.get(k - 1).copied().unwrap_or(0);
        }
        if needle.get(k).copied().map(lower) == c {
            k += 1;
            if k == needle.len() {
                return true;
            }
        }
    }
    false
}

fn header_contains(data: &[u8], field: &str, needle: &[u8]) -> bool {
    let (header, _) = message::split(data);
    message::fields(header)
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case(field))
        .any(|f| contains_ci(&f.value, needle))
}

/// Days since 1970-01-01 of a civil date (inverse of `message::civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The day of a search date (chrono's `NaiveDate` prints as `YYYY-MM-DD`).
fn search_day(d: &imap_codec::imap_types::datetime::NaiveDate) -> Option<i64> {
    let text = d.as_ref().to_string();
    let mut it = text.rsplitn(3, '-');
    let dd: u32 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let y: i64 = it.next()?.parse().ok()?;
    Some(days_from_civil(y, m, dd))
}

/// The day of an RFC 5322 Date header (`[Wed, ] 1 Jan 2024 ...`), time zone ignored as
/// RFC 3501 6.4.4 SENTBEFORE says.
fn sent_day(data: &[u8]) -> Option<i64> {
    let (header, _) = message::split(data);
    let fs = message::fields(header);
    let value = String::from_utf8_lossy(message::field(&fs, "Date")?).into_owned();
    let value = value.split_once(',').map(|(_, r)| r).unwrap_or(&value);
    let mut words = value.split_whitespace();
    let day: u32 = words.next()?.parse().ok()?;
    let mon = words.next()?;
    let month = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|m| mon.eq_ignore_ascii_case(m))? as u32
        + 1;
    let year: i64 = words.next()?.parse().ok()?;
    // Keep the arithmetic of `days_from_civil` far from overflow.
    if !(0..=9999).contains(&year) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

fn eval(key: &SearchKey<'_>, ctx: &SearchCtx, seq: u32, vm: &ViewMsg, msg: &StoredMessage) -> bool {
    let flags = &vm.flags;
    let data: &[u8] = &msg.data;
    let internal_day = msg.internal_date.div_euclid(86_400);
    let astr = |a: &imap_codec::imap_types::core::AString<'_>| a.as_ref().to_vec();
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().all(|k| eval(k, ctx, seq, vm, msg)),
        SearchKey::Or(a, b) => eval(a, ctx, seq, vm, msg) || eval(b, ctx, seq, vm, msg),
        SearchKey::Not(k) => !eval(k, ctx, seq, vm, msg),
        SearchKey::SequenceSet(set) => Ranges::resolve(set, ctx.exists).contains(seq),
        SearchKey::Uid(set) => Ranges::resolve(set, ctx.max_uid).contains(vm.uid),
        SearchKey::All => true,
        SearchKey::Answered => has(flags, "\\Answered"),
        SearchKey::Deleted => has(flags, "\\Deleted"),
        SearchKey::Draft => has(flags, "\\Draft"),
        SearchKey::Flagged => has(flags, "\\Flagged"),
        SearchKey::Seen => has(flags, "\\Seen"),
        SearchKey::Unanswered => !has(flags, "\\Answered"),
        SearchKey::Undeleted => !has(flags, "\\Deleted"),
        SearchKey::Undraft => !has(flags, "\\Draft"),
        SearchKey::Unflagged => !has(flags, "\\Flagged"),
        SearchKey::Unseen => !has(flags, "\\Seen"),
        SearchKey::Recent => vm.recent,
        SearchKey::New => vm.recent && !has(flags, "\\Seen"),
        SearchKey::Old => !vm.recent,
        SearchKey::Keyword(k) => has(flags, k.as_ref()),
        SearchKey::Unkeyword(k) => !has(flags, k.as_ref()),
        SearchKey::Larger(n) => data.len() as u64 > u64::from(*n),
        SearchKey::Smaller(n) => (data.len() as u64) < u64::from(*n),
        SearchKey::Bcc(s) => header_contains(data, "Bcc", &astr(s)),
        SearchKey::Cc(s) => header_contains(data, "Cc", &astr(s)),
        SearchKey::From(s) => header_contains(data, "From", &astr(s)),
        SearchKey::To(s) => header_contains(data, "To", &astr(s)),
        SearchKey::Subject(s) => header_contains(data, "Subject", &astr(s)),
        SearchKey::Header(name, value) => {
            let name = String::from_utf8_lossy(name.as_ref()).into_owned();
            header_contains(data, &name, &astr(value))
        }
        // Raw bytes first (cheap); the decoded text only when something is encoded.
        SearchKey::Body(s) => {
            let needle = astr(s);
            contains_ci(message::split(data).1, &needle)
                || mime::decoded_text(data, false).is_some_and(|t| contains_text(&t, &needle))
        }
        SearchKey::Text(s) => {
            let needle = astr(s);
            contains_ci(data, &needle)
                || mime::decoded_text(data, true).is_some_and(|t| contains_text(&t, &needle))
        }
        SearchKey::Before(d) => search_day(d).is_some_and(|d| internal_day < d),
        SearchKey::On(d) => search_day(d).is_some_and(|d| internal_day == d),
        SearchKey::Since(d) => search_day(d).is_some_and(|d| internal_day >= d),
        SearchKey::SentBefore(d) => {
            matches!((sent_day(data), search_day(d)), (Some(s), Some(d)) if s < d)
        }
        SearchKey::SentOn(d) => {
            matches!((sent_day(data), search_day(d)), (Some(s), Some(d)) if s == d)
        }
        SearchKey::SentSince(d) => {
            matches!((sent_day(data), search_day(d)), (Some(s), Some(d)) if s >= d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", "Archive/2024"));
        assert!(!wildcard_match("%", "Archive/2024"));
        assert!(wildcard_match("%", "Archive"));
        assert!(wildcard_match("Archive/%", "Archive/2024"));
        assert!(wildcard_match("A*4", "Archive/2024"));
        assert!(!wildcard_match("A%4", "Archive/2024"));
        assert!(wildcard_match("INBOX", "INBOX"));
        assert!(!wildcard_match("INBOX", "INBOX2"));
        assert!(wildcard_match("", ""));
    }

    #[test]
    fn substring_search() {
        assert!(contains_ci(b"Hello World", b"o wOR"));
        assert!(contains_ci(b"aaab", b"AAB"));
        assert!(contains_ci(b"abababca", b"ababca"));
        assert!(!contains_ci(b"abababc", b"ababca"));
        assert!(contains_ci(b"", b""));
        assert!(!contains_ci(b"", b"a"));
        assert!(!contains_ci(b"ab", b"abc"));
        // Agrees with the naive definition on a few generated cases.
        let mut rng = crate::rng::SeededRng::new(3);
        for _ in 0..2000 {
            let hay: Vec<u8> = (0..rng.next_u64() % 20)
                .map(|_| b"abAB"[rng.next_u64() as usize % 4])
                .collect();
            let needle: Vec<u8> = (0..rng.next_u64() % 5)
                .map(|_| b"abAB"[rng.next_u64() as usize % 4])
                .collect();
            let naive = needle.is_empty()
                || hay
                    .windows(needle.len())
                    .any(|w| w.eq_ignore_ascii_case(&needle));
            assert_eq!(contains_ci(&hay, &needle), naive, "{hay:?} {needle:?}");
        }
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000i64, -1, 0, 1, 10_957, 19_723, 2_932_896] {
            let (y, m, d) = message::civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
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
mod uid_set_tests {
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
