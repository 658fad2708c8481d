//! What the structured targets share: a byte-per-choice reading of `arbitrary`'s
//! [`Unstructured`] (so that a seed can be written back from a list of operations), the
//! lab's accounts, and the isolation check.
//!
//! Every choice takes exactly one octet (`u8::arbitrary`, zero once the data is used up)
//! and is reduced modulo the number of alternatives; a byte string is a length octet and
//! that many octets. [`Seed`] writes the same format, which keeps the seeds in
//! `corpus/fuzz/` generated from operation lists rather than edited by hand.

use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};

use crate::imap::{ImapServer, StoreCaps};
use crate::pop3::Pop3Server;
use crate::profile::Profile;
use crate::session::{Limits, ServerSession, SessionContext};
use crate::world::{LabFile, World};
use crate::Protocol;

/// Operations played per input at most: keeps one execution short whatever its length.
pub const MAX_OPS: usize = 64;

/// The default lab's accounts: (user, password). The targets build that lab.
pub const USERS: [(&str, &str); 3] = [("alice", "secret"), ("bob", "hunter2"), ("user", "pass")];

/// A password that belongs to nobody.
pub const WRONG_PASSWORD: &str = "wrong";

/// Back-end sessions for a fuzzed front-end: the mock server of `protocol` on `world`,
/// with the fuzz limits, a capped IMAP store and a fixed clock, seeded by connection id.
pub fn fuzz_backends(
    world: &Arc<World>,
    limits: &Limits,
    caps: StoreCaps,
    protocol: Protocol,
) -> impl FnMut(u64) -> Box<dyn ServerSession> + Send + 'static {
    fuzz_backends_offering(world, limits, caps, protocol, false)
}

/// [`fuzz_backends`] whose IMAP back-ends also offer UNAUTHENTICATE (RFC 8437) when
/// `unauthenticate` is set.
pub fn fuzz_backends_offering(
    world: &Arc<World>,
    limits: &Limits,
    caps: StoreCaps,
    protocol: Protocol,
    unauthenticate: bool,
) -> impl FnMut(u64) -> Box<dyn ServerSession> + Send + 'static {
    let world = Arc::clone(world);
    let limits = limits.clone();
    let mut profile = Profile::default_profile();
    profile.imap.unauthenticate = unauthenticate;
    let profile = Arc::new(profile);
    move |conn| -> Box<dyn ServerSession> {
        let mut ctx = SessionContext::new(Arc::clone(&world), Arc::clone(&profile));
        ctx.limits = limits.clone();
        ctx.seed = conn;
        ctx.epoch_secs = 1_700_000_000;
        match protocol {
            Protocol::Imap => {
                let mut s = ImapServer::new(ctx);
                s.set_store_caps(caps);
                Box::new(s)
            }
            Protocol::Pop3 => Box::new(Pop3Server::new(ctx)),
        }
    }
}

/// A fresh world of the default lab. The lab is built once per process; every call
/// returns a clone of that template, whose store is a separate copy (no input sees
/// another input's APPENDs, deletions or maildrop locks).
pub fn default_world() -> Option<World> {
    static TEMPLATE: OnceLock<Option<World>> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| LabFile::default_lab().build().ok())
        .clone()
}

/// One choice octet.
pub fn byte(u: &mut Unstructured<'_>) -> u8 {
    u8::arbitrary(u).unwrap_or(0)
}

/// One of `n` alternatives (n > 0).
pub fn choice(u: &mut Unstructured<'_>, n: u8) -> u8 {
    byte(u) % n.max(1)
}

pub fn flag(u: &mut Unstructured<'_>) -> bool {
    byte(u) & 1 == 1
}

/// A length octet, then up to that many octets (fewer when the data ends).
pub fn raw(u: &mut Unstructured<'_>) -> Vec<u8> {
    let n = usize::from(byte(u)).min(u.len());
    u.bytes(n).map(<[u8]>::to_vec).unwrap_or_default()
}

/// An item of a non-empty table, by a stored index.
pub fn at<T: Copy>(table: &[T], i: u8) -> T {
    table[usize::from(i) % table.len()]
}

/// The user name and password an operation means: the right one or [`WRONG_PASSWORD`].
pub fn account(user: u8, right: bool) -> (&'static str, &'static str) {
    let (name, password) = at(&USERS, user);
    (name, if right { password } else { WRONG_PASSWORD })
}

/// An operation that can be written as the octets its reader takes back.
pub trait SeedOp {
    fn write(&self, s: &mut Seed);
}

/// What one protocol's operations are: read from octets, written back as the same octets.
pub trait OpAction: Sized {
    fn read(u: &mut Unstructured<'_>) -> Self;
    fn write(&self, s: &mut Seed);
}

/// One operation on one of the interleaved sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op<A> {
    pub session: u8,
    pub action: A,
}

impl<'a, A: OpAction> Arbitrary<'a> for Op<A> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let session = byte(u);
        Ok(Op {
            session,
            action: A::read(u),
        })
    }
}

/// The operations of an input, in order: at most [`MAX_OPS`], until the input runs out.
pub fn read_ops<'u, 'd, A: OpAction>(
    u: &'u mut Unstructured<'d>,
) -> impl Iterator<Item = Op<A>> + use<'u, 'd, A> {
    let mut played = 0;
    std::iter::from_fn(move || {
        if u.is_empty() || played >= MAX_OPS {
            return None;
        }
        played += 1;
        Op::arbitrary(u).ok()
    })
}

impl<A: OpAction> SeedOp for Op<A> {
    fn write(&self, s: &mut Seed) {
        s.byte(self.session);
        self.action.write(s);
    }
}

/// A whole input: the setup octet, then each operation.
pub fn seed<T: SeedOp>(setup: u8, ops: &[T]) -> Vec<u8> {
    let mut s = Seed::default();
    s.byte(setup);
    for op in ops {
        op.write(&mut s);
    }
    s.0
}

/// Writes inputs in the format the readers above take.
#[derive(Debug, Default, Clone)]
pub struct Seed(pub Vec<u8>);

impl Seed {
    pub fn byte(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }
    pub fn flag(&mut self, b: bool) -> &mut Self {
        self.byte(u8::from(b))
    }
    pub fn raw(&mut self, data: &[u8]) -> &mut Self {
        let n = data.len().min(255);
        self.byte(n as u8);
        self.0.extend_from_slice(&data[..n]);
        self
    }
}

/// A garbage line from fuzz bytes: CR and LF become spaces (so it is one line), a
/// trailing `}` is dropped (so it announces no literal that would swallow the next
/// command) and a leading `T`/`t` becomes `x` (the targets' own tags start with `T`).
pub fn garbage_line(bytes: &[u8]) -> Vec<u8> {
    let mut line: Vec<u8> = bytes
        .iter()
        .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
        .collect();
    while line.last() == Some(&b'}') {
        line.pop();
    }
    if let Some(first) = line.first_mut() {
        if first.eq_ignore_ascii_case(&b't') {
            *first = b'x';
        }
    }
    line.extend_from_slice(b"\r\n");
    line
}

/// The text that marks the mail of `user`: the default lab's messages say
/// `Hello <user>, this is message`, and the targets' APPENDs say `appended by <user> #`.
pub fn markers(user: &str) -> [String; 2] {
    [
        format!("Hello {user}, this is message"),
        format!("appended by {user} #"),
    ]
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(hay, needle).is_some()
}

/// No session shows mail of a user it is not authenticated as. `sessions` holds each
/// session's authenticated user (lower case) and everything it wrote; a marker some
/// client sent itself (it could have stored it) does not count.
pub fn assert_isolated(sessions: &[(Option<String>, Vec<u8>)], all_input: &[u8]) {
    // Each marker is looked for in the input once, not once per session.
    let watched: Vec<(&str, String)> = USERS
        .iter()
        .flat_map(|(other, _)| markers(other).map(|m| (*other, m)))
        .filter(|(_, m)| !contains(all_input, m.as_bytes()))
        .collect();
    for (k, (user, out)) in sessions.iter().enumerate() {
        for (other, m) in &watched {
            if user.as_deref() == Some(*other) {
                continue;
            }
            assert!(
                !contains(out, m.as_bytes()),
                "session {k} (user {user:?}) received mail of {other}: {m:?}"
            );
        }
    }
}

/// Whether the client sent UNAUTHENTICATE (any case) itself: through a lease it may then
/// log in past the front-end as anyone whose password it has, so the front-end's idea of
/// its user no longer says whose mail it may see.
pub fn sent_unauthenticate(sent: &[u8]) -> bool {
    sent.to_ascii_uppercase()
        .windows(14)
        .any(|w| w == b"UNAUTHENTICATE")
}

/// Whether the client's input carries the password, in clear or inside a base64 token
/// (SASL PLAIN and LOGIN).
pub fn reveals(sent: &[u8], password: &str) -> bool {
    let pw = password.as_bytes();
    contains(sent, pw)
        || sent
            .split(|&b| !(b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='))
            .filter(|t| !t.is_empty())
            .filter_map(|t| crate::sasl::decode_base64(t).ok())
            .any(|d| contains(&d, pw))
}

/// The words of a seeded smoke run: `words`, then `extra` (binary ones).
#[cfg(test)]
pub(crate) fn dictionary(words: &[&str], extra: impl IntoIterator<Item = Vec<u8>>) -> Vec<Vec<u8>> {
    words
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .chain(extra)
        .collect()
}

/// A seeded smoke input: `setup`, then fewer than `words_below` words of `dict`, each
/// followed, one time in `flip_one_in`, by one random octet of the input changed.
#[cfg(test)]
pub(crate) fn dictionary_input(
    rng: &mut crate::rng::SeededRng,
    setup: u8,
    dict: &[Vec<u8>],
    words_below: u64,
    flip_one_in: u64,
) -> Vec<u8> {
    let mut data = vec![setup];
    for _ in 0..(rng.next_u64() % words_below) {
        let pick = (rng.next_u64() as usize) % dict.len();
        data.extend_from_slice(&dict[pick]);
        if rng.next_u64() % flip_one_in == 0 {
            let at = (rng.next_u64() as usize) % data.len();
            data[at] = rng.next_u64() as u8;
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_writer_is_the_readers_inverse() {
        let mut s = Seed::default();
        s.byte(7).flag(true).raw(b"abc").byte(200);
        let mut u = Unstructured::new(&s.0);
        assert_eq!(byte(&mut u), 7);
        assert!(flag(&mut u));
        assert_eq!(raw(&mut u), b"abc");
        assert_eq!(choice(&mut u, 3), 200 % 3);
        assert!(u.is_empty());
        assert_eq!(byte(&mut u), 0, "an exhausted input reads zeros");
    }

    #[test]
    fn garbage_lines_stay_one_line_without_literal_or_our_tag() {
        assert_eq!(garbage_line(b"t1 FOO {5}"), b"x1 FOO {5\r\n");
        assert_eq!(garbage_line(b"a\r\nb"), b"a  b\r\n");
    }

    #[test]
    #[should_panic(expected = "received mail of bob")]
    fn isolation_check_can_fail() {
        let out = b"* 1 FETCH (BODY[] {5}\r\nHello bob, this is message number 1.\r\n";
        assert_isolated(&[(Some("alice".into()), out.to_vec())], b"");
    }
}
