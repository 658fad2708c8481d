//! The world the endpoints serve: a directory of principals with their passwords, and a
//! mail store shared by every session of a lab. Loaded from a TOML lab file, or the
//! built-in default lab.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde::Deserialize;

/// Everything the mock servers know: who exists and what their mail is. A clone is a
/// separate world: its store is a copy (message bytes are immutable and shared).
#[derive(Debug, Clone)]
pub struct World {
    /// NetBIOS domain name, as NTLM shows it (`EXAMPLE`).
    pub domain: String,
    /// DNS domain (`example.test`).
    pub dns_domain: String,
    /// The server's host name, shown in greetings and the APOP timestamp.
    pub hostname: String,
    pub directory: Directory,
    pub store: Mailstore,
    /// Mail events for the sessions that asked for them (EMSMDB notifications); a
    /// cloned world starts with no subscribers.
    pub notifications: crate::notify::NotificationHub,
}

/// A user the directory knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub password: String,
}

/// Principals by name. Names match case-insensitively, as Windows account names do.
#[derive(Debug, Default, Clone)]
pub struct Directory {
    users: BTreeMap<String, Principal>,
}

impl Directory {
    pub fn insert(&mut self, name: &str, password: &str) {
        self.users.insert(
            name.to_ascii_lowercase(),
            Principal {
                name: name.to_string(),
                password: password.to_string(),
            },
        );
    }

    pub fn lookup(&self, name: &str) -> Option<&Principal> {
        self.users.get(&name.to_ascii_lowercase())
    }

    /// A copy of the password of `name` (NTLM's look-up, the fuzz checks).
    pub fn password(&self, name: &str) -> Option<String> {
        self.lookup(name).map(|p| p.password.clone())
    }

    /// The principal, when `password` is exactly its password.
    pub fn verify_password(&self, name: &str, password: &str) -> Option<&Principal> {
        self.lookup(name)
            .filter(|p| constant_time_eq(p.password.as_bytes(), password.as_bytes()))
    }

    pub fn principals(&self) -> impl Iterator<Item = &Principal> {
        self.users.values()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A message as stored: the RFC 5322 bytes plus IMAP metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub uid: u32,
    /// System flags (`\Seen`) and keywords, as written on the wire.
    pub flags: BTreeSet<String>,
    /// INTERNALDATE, seconds since the Unix epoch (UTC).
    pub internal_date: i64,
    pub data: Arc<[u8]>,
    /// What IMAP derives from `data`, computed once and shared by every copy.
    pub derived: Derived,
}

/// Texts a server derives from a message's bytes (IMAP's ENVELOPE, BODY and
/// BODYSTRUCTURE), computed on first use. The bytes never change, so a COPY of the message
/// and every clone of the world (the fuzz targets clone one template per input) share
/// them.
#[derive(Debug, Clone, Default)]
pub struct Derived(Arc<DerivedTexts>);

#[derive(Debug, Default)]
struct DerivedTexts {
    envelope: OnceLock<Box<[u8]>>,
    body: OnceLock<Box<[u8]>>,
    body_structure: OnceLock<Box<[u8]>>,
}

/// Which derived text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerivedText {
    Envelope,
    Body,
    BodyStructure,
}

impl Derived {
    /// The text, written by `make` the first time it is asked for.
    pub fn get(&self, which: DerivedText, make: impl FnOnce(&mut Vec<u8>)) -> &[u8] {
        let cell = match which {
            DerivedText::Envelope => &self.0.envelope,
            DerivedText::Body => &self.0.body,
            DerivedText::BodyStructure => &self.0.body_structure,
        };
        cell.get_or_init(|| {
            let mut text = Vec::new();
            make(&mut text);
            text.into_boxed_slice()
        })
    }
}

/// A function of the message's bytes, which the message compares already.
impl PartialEq for Derived {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Derived {}

impl StoredMessage {
    pub fn size(&self) -> usize {
        self.data.len()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: String,
    pub uid_validity: u32,
    pub uid_next: u32,
    pub messages: Vec<StoredMessage>,
    /// Bumped on every change, so a session can tell cheaply that it must look again.
    pub generation: u64,
    /// The highest UID some session has already been told about with the mailbox selected
    /// read-write: messages above it are still `\Recent` for the next session that is
    /// (RFC 3501 2.3.2: a message is recent in at most one session).
    pub recent_through: u32,
}

impl Mailbox {
    pub fn new(name: &str, uid_validity: u32) -> Self {
        Mailbox {
            name: name.to_string(),
            uid_validity,
            uid_next: 1,
            messages: Vec::new(),
            generation: 0,
            recent_through: 0,
        }
    }

    /// Every message in the mailbox has now been reported to a session that had it
    /// selected read-write, so none is `\Recent` for another session.
    pub fn claim_recent(&mut self) {
        let newest = self.messages.last().map(|m| m.uid).unwrap_or(0);
        self.recent_through = self.recent_through.max(newest);
    }

    /// Appends a message, giving it the next UID.
    pub fn append(&mut self, data: Arc<[u8]>, flags: BTreeSet<String>, internal_date: i64) -> u32 {
        let uid = self.uid_next;
        self.uid_next += 1;
        self.messages.push(StoredMessage {
            uid,
            flags,
            internal_date,
            data,
            derived: Derived::default(),
        });
        self.generation += 1;
        uid
    }
}

/// One user's mailboxes. `INBOX` always exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub mailboxes: BTreeMap<String, Mailbox>,
    /// Subscribed names ([`Account::mailbox_key`] form), kept apart from the mailboxes:
    /// the server must not drop a subscription because its mailbox went away (RFC 3501
    /// 6.3.6), so one outlives DELETE and holds again for a mailbox created anew.
    pub subscriptions: BTreeSet<String>,
    /// The highest UIDVALIDITY [`Account::next_uid_validity`] has handed out; it only goes
    /// up, so a deleted mailbox's value is never given again.
    uid_validity_high: u32,
}

impl Account {
    /// `INBOX` is case-insensitive (RFC 3501 5.1); other names are taken as written.
    pub fn mailbox_key(name: &str) -> String {
        if name.eq_ignore_ascii_case("INBOX") {
            "INBOX".to_string()
        } else {
            name.to_string()
        }
    }

    pub fn mailbox(&self, name: &str) -> Option<&Mailbox> {
        self.mailboxes.get(&Self::mailbox_key(name))
    }

    pub fn mailbox_mut(&mut self, name: &str) -> Option<&mut Mailbox> {
        self.mailboxes.get_mut(&Self::mailbox_key(name))
    }

    /// Adds `name` to the subscription list; false if it was there already.
    pub fn subscribe(&mut self, name: &str) -> bool {
        self.subscriptions.insert(Self::mailbox_key(name))
    }

    /// Takes `name` off the subscription list; false if it was not there.
    pub fn unsubscribe(&mut self, name: &str) -> bool {
        self.subscriptions.remove(&Self::mailbox_key(name))
    }

    /// The UIDVALIDITY of a new mailbox: above that of every mailbox the account has now
    /// and every value handed out before, so a name deleted and created again, or renamed
    /// onto, never shows a former value (RFC 3501 2.3.1.1). A counter, not the clock, so
    /// that a seeded world stays deterministic.
    pub fn next_uid_validity(&mut self) -> u32 {
        let highest = self
            .mailboxes
            .values()
            .map(|m| m.uid_validity)
            .max()
            .unwrap_or(1)
            .max(self.uid_validity_high);
        self.uid_validity_high = highest.saturating_add(1);
        self.uid_validity_high
    }
}

/// Every account's mail, shared by all sessions of a lab.
#[derive(Debug, Default)]
pub struct Mailstore {
    accounts: Mutex<BTreeMap<String, Account>>,
    /// Users whose POP3 maildrop is held by a session (RFC 1939 section 8: exclusive lock).
    maildrop_locks: Mutex<HashSet<String>>,
}

/// UIDVALIDITY values handed out are distinct per mailbox within a lab run.
const FIRST_UID_VALIDITY: u32 = 1_700_000_000;

/// A copy of the accounts and the maildrop locks held at the time of the clone; the copy
/// shares no state with the original (message bytes are immutable `Arc<[u8]>`).
impl Clone for Mailstore {
    fn clone(&self) -> Mailstore {
        let accounts = self.lock().clone();
        let locks = self
            .maildrop_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Mailstore {
            accounts: Mutex::new(accounts),
            maildrop_locks: Mutex::new(locks),
        }
    }
}

impl Mailstore {
    /// Locks the whole store. Keep the guard for one command's worth of work only.
    pub fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Account>> {
        // A panic while holding the lock would be a bug in an endpoint; the map itself is
        // still consistent between statements, so carry on rather than poison every
        // other session.
        self.accounts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on `user`'s account (created with an empty INBOX if new).
    pub fn with_account<R>(&self, user: &str, f: impl FnOnce(&mut Account) -> R) -> R {
        let mut accounts = self.lock();
        let next_validity = FIRST_UID_VALIDITY + accounts.len() as u32 * 64;
        let account = accounts
            .entry(user.to_ascii_lowercase())
            .or_insert_with(|| {
                let mut mailboxes = BTreeMap::new();
                mailboxes.insert("INBOX".to_string(), Mailbox::new("INBOX", next_validity));
                Account {
                    mailboxes,
                    subscriptions: BTreeSet::from(["INBOX".to_string()]),
                    uid_validity_high: 0,
                }
            });
        f(account)
    }

    /// Takes the POP3 maildrop lock for `user`; false if another session holds it.
    pub fn try_lock_maildrop(&self, user: &str) -> bool {
        let mut locks = self
            .maildrop_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        locks.insert(user.to_ascii_lowercase())
    }

    pub fn unlock_maildrop(&self, user: &str) {
        let mut locks = self
            .maildrop_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        locks.remove(&user.to_ascii_lowercase());
    }
}

/// Errors loading a lab file.
#[derive(Debug, thiserror::Error)]
pub enum LabFileError {
    #[error("lab file is not valid TOML for a lab: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("user {0:?} is defined twice")]
    DuplicateUser(String),
    #[error(
        "user name {0:?} is not allowed (empty, or has spaces, control characters, ':' or '\\\\')"
    )]
    BadUserName(String),
    #[error("message {index} of user {user:?}: give either `raw` or `subject`/`body`, not both")]
    AmbiguousMessage { user: String, index: usize },
}

/// The lab file as written (TOML).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabFile {
    pub domain: Option<String>,
    pub dns_domain: Option<String>,
    pub hostname: Option<String>,
    #[serde(default, rename = "user")]
    pub users: Vec<UserEntry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    pub password: String,
    /// Extra mailboxes besides INBOX.
    #[serde(default, rename = "mailbox")]
    pub mailboxes: Vec<String>,
    #[serde(default, rename = "message")]
    pub messages: Vec<MessageEntry>,
    /// Mail to read from mbox files or Maildir directories (resolved by the lab crate,
    /// which does the file reading, into `messages` before the world is built).
    #[serde(default, rename = "import")]
    pub imports: Vec<ImportEntry>,
}

/// `[[user.import]]`: an mbox file or a Maildir directory to seed a mailbox from. Paths
/// are relative to the lab file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportEntry {
    /// Mailbox to fill (default INBOX).
    pub mailbox: Option<String>,
    pub mbox: Option<String>,
    pub maildir: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageEntry {
    /// Mailbox to put it in (default INBOX; created if missing).
    pub mailbox: Option<String>,
    /// The whole message, RFC 5322, as written (bare LF is turned into CRLF).
    pub raw: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub date: Option<String>,
    pub body: Option<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    /// INTERNALDATE as seconds since the Unix epoch.
    pub internal_date: Option<i64>,
    /// The whole message as bytes (from an import; never written in a lab file).
    #[serde(skip)]
    pub raw_bytes: Option<Vec<u8>>,
}

/// The default lab: the users of the Dovecot peer recipe (so transcripts compare), plus
/// `bob`, each with three small messages in INBOX.
pub const DEFAULT_LAB: &str = r#"
domain = "EXAMPLE"
dns_domain = "example.test"
hostname = "mail.example.test"

[[user]]
name = "alice"
password = "secret"

[[user]]
name = "user"
password = "pass"

[[user]]
name = "bob"
password = "hunter2"
"#;

/// A message the lab file puts in a mailbox: (mailbox, bytes, flags, INTERNALDATE).
type SeedMessage = (String, Arc<[u8]>, BTreeSet<String>, i64);

/// INTERNALDATE given to lab messages that do not set one: 2024-01-01T00:00:00Z.
const LAB_EPOCH: i64 = 1_704_067_200;

impl LabFile {
    pub fn parse(text: &str) -> Result<Self, LabFileError> {
        Ok(toml::from_str(text)?)
    }

    pub fn default_lab() -> Self {
        // The constant is tested to parse; an error here is a bug in this file.
        Self::parse(DEFAULT_LAB).unwrap_or_default()
    }

    /// Adds (or replaces the password of) a user, as `--user NAME:PASSWORD` does.
    pub fn add_user(&mut self, name: &str, password: &str) {
        if let Some(u) = self
            .users
            .iter_mut()
            .find(|u| u.name.eq_ignore_ascii_case(name))
        {
            u.password = password.to_string();
        } else {
            self.users.push(UserEntry {
                name: name.to_string(),
                password: password.to_string(),
                ..UserEntry::default()
            });
        }
    }

    pub fn build(&self) -> Result<World, LabFileError> {
        let domain = self.domain.clone().unwrap_or_else(|| "EXAMPLE".into());
        let dns_domain = self
            .dns_domain
            .clone()
            .unwrap_or_else(|| "example.test".into());
        let hostname = self
            .hostname
            .clone()
            .unwrap_or_else(|| format!("mail.{dns_domain}"));
        let mut directory = Directory::default();
        let store = Mailstore::default();
        for user in &self.users {
            let bad = user.name.is_empty()
                || user
                    .name
                    .chars()
                    .any(|c| c.is_control() || c == ' ' || c == ':' || c == '\\');
            if bad {
                return Err(LabFileError::BadUserName(user.name.clone()));
            }
            if directory.lookup(&user.name).is_some() {
                return Err(LabFileError::DuplicateUser(user.name.clone()));
            }
            directory.insert(&user.name, &user.password);
            let messages: Vec<SeedMessage> = if user.messages.is_empty() && user.imports.is_empty()
            {
                (1..=3)
                    .map(|i| {
                        let data = sample_message(&user.name, &dns_domain, i);
                        (
                            "INBOX".to_string(),
                            data,
                            BTreeSet::new(),
                            LAB_EPOCH + i as i64,
                        )
                    })
                    .collect()
            } else {
                let mut out = Vec::new();
                for (index, m) in user.messages.iter().enumerate() {
                    let data = message_bytes(m, &user.name, &dns_domain).ok_or_else(|| {
                        LabFileError::AmbiguousMessage {
                            user: user.name.clone(),
                            index,
                        }
                    })?;
                    let mailbox = m.mailbox.clone().unwrap_or_else(|| "INBOX".into());
                    let flags = m.flags.iter().cloned().collect();
                    let date = m.internal_date.unwrap_or(LAB_EPOCH + index as i64 + 1);
                    out.push((mailbox, data, flags, date));
                }
                out
            };
            store.with_account(&user.name, |account| {
                for name in &user.mailboxes {
                    let key = Account::mailbox_key(name);
                    let validity = FIRST_UID_VALIDITY + 1 + account.mailboxes.len() as u32;
                    account
                        .mailboxes
                        .entry(key.clone())
                        .or_insert_with(|| Mailbox::new(&key, validity));
                }
                for (mailbox, data, flags, date) in messages {
                    let key = Account::mailbox_key(&mailbox);
                    let validity = FIRST_UID_VALIDITY + 1 + account.mailboxes.len() as u32;
                    account
                        .mailboxes
                        .entry(key.clone())
                        .or_insert_with(|| Mailbox::new(&key, validity))
                        .append(data, flags, date);
                }
                // A lab file's mailboxes start subscribed, as INBOX does.
                account
                    .subscriptions
                    .extend(account.mailboxes.keys().cloned());
            });
        }
        Ok(World {
            domain,
            dns_domain,
            hostname,
            directory,
            store,
            notifications: Default::default(),
        })
    }
}

fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

fn message_bytes(m: &MessageEntry, user: &str, dns_domain: &str) -> Option<Arc<[u8]>> {
    if let Some(bytes) = &m.raw_bytes {
        return Some(Arc::from(crate::mailfile::crlf_bytes(bytes)));
    }
    let composed = m.subject.is_some() || m.body.is_some() || m.from.is_some() || m.to.is_some();
    match (&m.raw, composed) {
        (Some(_), true) => None,
        (Some(raw), false) => Some(Arc::from(crlf(raw).into_bytes())),
        (None, _) => {
            let from = m
                .from
                .clone()
                .unwrap_or_else(|| format!("Sender <sender@{dns_domain}>"));
            let to =
                m.to.clone()
                    .unwrap_or_else(|| format!("{user}@{dns_domain}"));
            let date = m
                .date
                .clone()
                .unwrap_or_else(|| "Mon, 1 Jan 2024 00:00:00 +0000".into());
            let subject = m.subject.clone().unwrap_or_default();
            let body = m.body.clone().unwrap_or_default();
            let mut text = format!(
                "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n\r\n{}",
                crlf(&body)
            );
            if !text.ends_with("\r\n") {
                text.push_str("\r\n");
            }
            Some(Arc::from(text.into_bytes()))
        }
    }
}

/// The messages the Dovecot peer recipe seeds, so the mock and Dovecot serve the same mail.
fn sample_message(user: &str, dns_domain: &str, i: u32) -> Arc<[u8]> {
    let text = format!(
        "Return-Path: <sender@{dns_domain}>\r\nFrom: Sender <sender@{dns_domain}>\r\nTo: {user}@{dns_domain}\r\nSubject: Test message {i}\r\nDate: Mon, 1 Jan 2024 00:00:0{i} +0000\r\nMessage-ID: <msg{i}.{user}@{dns_domain}>\r\n\r\nHello {user}, this is message number {i}.\r\nSecond line.\r\n"
    );
    Arc::from(text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_lab_builds_with_three_messages_each() {
        let world = LabFile::default_lab().build().expect("default lab");
        assert_eq!(world.directory.principals().count(), 3);
        assert!(world.directory.verify_password("ALICE", "secret").is_some());
        assert!(world.directory.verify_password("alice", "Secret").is_none());
        let n = world
            .store
            .with_account("alice", |a| a.mailbox("inbox").map(|m| m.messages.len()));
        assert_eq!(n, Some(3));
    }

    #[test]
    fn derived_texts_are_made_once_and_shared_by_copies_and_world_clones() {
        let world = LabFile::default_lab().build().expect("default lab");
        let clone = world.clone();
        let derived = |w: &World| {
            w.store.with_account("alice", |a| {
                a.mailbox("inbox").map(|m| m.messages[0].derived.clone())
            })
        };
        let (Some(a), Some(b)) = (derived(&world), derived(&clone)) else {
            panic!("alice's INBOX");
        };
        let mut made = 0;
        let first = a
            .get(DerivedText::Envelope, |t| {
                made += 1;
                t.extend_from_slice(b"(NIL)");
            })
            .to_vec();
        let again = b.get(DerivedText::Envelope, |_| made += 1).to_vec();
        assert_eq!(
            (first.as_slice(), again.as_slice(), made),
            (&b"(NIL)"[..], &b"(NIL)"[..], 1)
        );
        // Each text has its own cell.
        assert_eq!(a.get(DerivedText::Body, |t| t.push(b'B')), b"B");
    }

    #[test]
    fn lab_file_with_messages_and_mailboxes() {
        let text = r#"
            domain = "CORP"
            [[user]]
            name = "carol"
            password = "pw"
            mailbox = ["Sent", "Archive/2024"]
            [[user.message]]
            subject = "hi"
            body = "line one\nline two"
            flags = ["\\Seen"]
            [[user.message]]
            mailbox = "Sent"
            raw = "Subject: out\n\nbody\n"
        "#;
        let world = LabFile::parse(text).unwrap().build().unwrap();
        assert_eq!(world.domain, "CORP");
        world.store.with_account("carol", |a| {
            let inbox = a.mailbox("INBOX").unwrap();
            assert_eq!(inbox.messages.len(), 1);
            assert!(inbox.messages[0].flags.contains("\\Seen"));
            let text = std::str::from_utf8(&inbox.messages[0].data).unwrap();
            assert!(text.ends_with("line one\r\nline two\r\n"), "{text:?}");
            let sent = a.mailbox("Sent").unwrap();
            assert_eq!(&*sent.messages[0].data, b"Subject: out\r\n\r\nbody\r\n");
            assert!(a.mailbox("Archive/2024").is_some());
            assert_ne!(inbox.uid_validity, sent.uid_validity);
        });
    }

    #[test]
    fn lab_file_errors_are_typed() {
        assert!(matches!(
            LabFile::parse("[[user]]\nnom = 1"),
            Err(LabFileError::Syntax(_))
        ));
        let dup = "[[user]]\nname='a'\npassword='x'\n[[user]]\nname='A'\npassword='y'";
        assert!(matches!(
            LabFile::parse(dup).unwrap().build(),
            Err(LabFileError::DuplicateUser(_))
        ));
        let bad = "[[user]]\nname='a b'\npassword='x'";
        assert!(matches!(
            LabFile::parse(bad).unwrap().build(),
            Err(LabFileError::BadUserName(_))
        ));
    }

    #[test]
    fn add_user_overrides_password() {
        let mut lab = LabFile::default_lab();
        lab.add_user("Alice", "new");
        lab.add_user("dave", "pw");
        let world = lab.build().unwrap();
        assert!(world.directory.verify_password("alice", "new").is_some());
        assert!(world.directory.verify_password("dave", "pw").is_some());
    }

    #[test]
    fn maildrop_lock_is_exclusive() {
        let store = Mailstore::default();
        assert!(store.try_lock_maildrop("a"));
        assert!(!store.try_lock_maildrop("A"));
        store.unlock_maildrop("a");
        assert!(store.try_lock_maildrop("a"));
    }
}
