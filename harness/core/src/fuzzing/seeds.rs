//! The seeds of the structured targets, generated here from operation lists (and, for the
//! `_to_bytes_and_back` targets, from a seeded generator), checked against
//! `corpus/fuzz/<target>/`; and seeded smoke runs of a few thousand generated inputs that
//! fail when the targets stop reaching the states their invariants are about.
//!
//! After changing an operation format: `HARNESS_WRITE_SEEDS=1 cargo test -p harness-core
//! fuzzing::seeds` rewrites the seed files.

use std::path::PathBuf;

use arbitrary::{Arbitrary, Unstructured};

use super::{codec_ops, frontend_ops as fe, imap_ops as imap, pop3_ops as pop3};
use crate::rng::SeededRng;

fn imap_op(session: u8, action: imap::Action) -> imap::Op {
    imap::Op { session, action }
}
fn pop3_op(session: u8, action: pop3::Action) -> pop3::Op {
    pop3::Op { session, action }
}
fn fe_op(session: u8, action: fe::Action) -> fe::Op {
    fe::Op { session, action }
}

/// Users by index into `ops::USERS`.
const ALICE: u8 = 0;
const BOB: u8 = 1;
const USER: u8 = 2;

fn imap_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use imap::Action::*;
    let o = imap_op;
    let login = |session, user, right| o(session, Login { user, right });
    let select = |session, mailbox, examine| o(session, Select { mailbox, examine });
    let fetch = |session, seq, item, uid| o(session, Fetch { seq, item, uid });
    let store = |session, seq, mode, flag| o(session, Store { seq, mode, flag });
    let append = |session, mailbox, size, non_sync| {
        o(
            session,
            Append {
                mailbox,
                size,
                non_sync,
            },
        )
    };
    let auth_plain = |session, user, right, cancel| {
        o(
            session,
            AuthPlain {
                user,
                right,
                cancel,
            },
        )
    };
    vec![
        (
            "login-select-fetch-expunge",
            super::ops::seed(
                0,
                &[
                    login(0, ALICE, true),
                    select(0, 0, false),
                    fetch(0, 1, 1, false),
                    store(0, 0, 0, 0),
                    o(0, Expunge),
                    o(0, Logout),
                ],
            ),
        ),
        (
            "two-users-interleaved",
            super::ops::seed(
                1,
                &[
                    login(0, ALICE, true),
                    login(1, BOB, true),
                    select(0, 0, true),
                    select(1, 2, false),
                    append(1, 0, 4, false),
                    fetch(0, 1, 7, true),
                    fetch(1, 1, 1, false),
                    o(0, Search { key: 1 }),
                ],
            ),
        ),
        (
            "wrong-password-and-garbage",
            super::ops::seed(
                2,
                &[
                    login(0, BOB, false),
                    auth_plain(1, USER, true, false),
                    o(2, Garbage(b"a1 AUTHENTICATE PLAIN".to_vec())),
                    fetch(0, 0, 0, false),
                    o(2, Garbage(b"\xff\xfe LOGIN {5}".to_vec())),
                    o(1, Idle { done: false }),
                    o(0, Tick(2)),
                    o(1, Noop),
                    auth_plain(2, ALICE, false, true),
                ],
            ),
        ),
        (
            "same-user-expunge-while-idle",
            super::ops::seed(
                1,
                &[
                    login(0, ALICE, true),
                    login(1, ALICE, true),
                    select(0, 0, false),
                    select(1, 0, false),
                    o(1, Idle { done: false }),
                    store(0, 2, 2, 0),
                    o(0, Expunge),
                    o(0, Tick(2)),
                    fetch(1, 1, 0, false),
                ],
            ),
        ),
        (
            "append-copy-reconnect-timeout",
            super::ops::seed(
                4,
                &[
                    login(0, USER, true),
                    append(0, 0, 40, false),
                    append(0, 0, 3, true),
                    o(0, Create { mailbox: 1 }),
                    o(0, Reconnect),
                    login(0, USER, true),
                    select(0, 0, false),
                    o(0, Copy { seq: 1, mailbox: 1 }),
                    fetch(0, 3, 1, false),
                    o(1, Tick(200)),
                ],
            ),
        ),
    ]
}

fn pop3_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use pop3::Action::*;
    let o = pop3_op;
    let apop = |session, user, right| o(session, Apop { user, right });
    let auth_plain = |session, user, right| o(session, AuthPlain { user, right });
    vec![
        (
            "user-pass-dele-quit",
            super::ops::seed(
                0,
                &[
                    o(0, User { user: ALICE }),
                    o(0, Pass { right: true }),
                    o(0, Stat),
                    o(0, List(0)),
                    o(0, Retr(1)),
                    o(0, Dele(1)),
                    o(0, Dele(2)),
                    o(0, Quit),
                ],
            ),
        ),
        (
            "dele-eof-rset",
            super::ops::seed(
                0,
                &[
                    o(0, User { user: BOB }),
                    o(0, Pass { right: true }),
                    o(0, Dele(1)),
                    o(0, Reconnect),
                    o(0, User { user: BOB }),
                    o(0, Pass { right: true }),
                    o(0, Dele(3)),
                    o(0, Rset),
                    o(0, Dele(2)),
                    o(0, Quit),
                ],
            ),
        ),
        (
            "in-use-apop-timeout",
            super::ops::seed(
                1,
                &[
                    apop(0, ALICE, true),
                    o(1, User { user: ALICE }),
                    o(1, Pass { right: true }),
                    auth_plain(1, BOB, true),
                    o(0, Dele(2)),
                    o(1, Retr(1)),
                    o(0, Tick(250)),
                    o(1, Quit),
                ],
            ),
        ),
        (
            "garbage-and-wrong-passwords",
            super::ops::seed(
                2,
                &[
                    o(0, Garbage(b"AUTH PLAIN".to_vec())),
                    o(1, User { user: USER }),
                    o(1, Pass { right: false }),
                    o(2, Garbage(b"\x00\xffDELE 1".to_vec())),
                    auth_plain(2, USER, false),
                    o(0, Capa),
                    o(1, Top(1, 0)),
                    o(2, Uidl(0)),
                ],
            ),
        ),
    ]
}

fn frontend_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use fe::Action::*;
    let o = fe_op;
    let login = |session, user, right| o(session, Login { user, right });
    let ntlm = |session, user, right| o(session, Ntlm { user, right });
    let auth_plain = |session, user, right| o(session, AuthPlain { user, right });
    vec![
        (
            "imap-rtm-pool1-two-users",
            super::ops::seed(
                0,
                &[
                    login(0, ALICE, false),
                    login(0, ALICE, true),
                    login(1, BOB, true),
                    o(0, Select),
                    o(1, Select),
                    o(0, Read(0)),
                    o(1, Read(0)),
                    o(0, Append),
                    o(1, Read(3)),
                    o(0, Logout),
                    o(1, Logout),
                ],
            ),
        ),
        (
            "imap-affinity-ntlm",
            super::ops::seed(
                4,
                &[
                    ntlm(0, ALICE, true),
                    ntlm(1, BOB, false),
                    login(1, BOB, true),
                    o(0, Select),
                    o(0, Read(0)),
                    o(1, Select),
                    o(1, Read(1)),
                ],
            ),
        ),
        (
            "pop3-rtm-ntlm-then-plain",
            super::ops::seed(
                1,
                &[
                    ntlm(0, ALICE, true),
                    auth_plain(1, BOB, true),
                    o(1, Read(0)),
                    login(0, ALICE, true),
                    o(0, Read(1)),
                    o(0, Logout),
                    o(1, Logout),
                ],
            ),
        ),
        (
            "pop3-per-session-three-clients",
            super::ops::seed(
                1 | (3 << 1) | (1 << 3) | 0x20,
                &[
                    login(0, USER, true),
                    login(1, USER, true),
                    o(2, Garbage(b"PASS pass".to_vec())),
                    login(2, ALICE, false),
                    o(0, Read(2)),
                    o(0, Reconnect),
                    login(0, BOB, true),
                    o(0, Read(0)),
                ],
            ),
        ),
        (
            "imap-pool-unauthenticate-recycled",
            super::ops::seed(
                3 << 3,
                &[
                    login(0, ALICE, true),
                    o(0, Select),
                    o(0, Read(0)),
                    o(0, Logout),
                    login(1, BOB, true),
                    o(1, Select),
                    o(1, Read(0)),
                    auth_plain(0, ALICE, true),
                    o(1, Logout),
                ],
            ),
        ),
    ]
}

/// Seeded random octets: the `_to_bytes_and_back` targets read any input.
fn random_seeds(seed: u64) -> Vec<(&'static str, Vec<u8>)> {
    let mut rng = SeededRng::new(seed);
    [
        "seeded-16",
        "seeded-32",
        "seeded-64",
        "seeded-128",
        "seeded-256",
    ]
    .iter()
    .zip([16usize, 32, 64, 128, 256])
    .map(|(name, len)| {
        let mut v = vec![0u8; len];
        rng.fill(&mut v);
        (*name, v)
    })
    .collect()
}

fn all_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let groups = [
        ("imap_server_ops", imap_seeds()),
        ("pop3_server_ops", pop3_seeds()),
        ("frontend_pool_ops", frontend_seeds()),
        ("imap_command_to_bytes_and_back", random_seeds(1)),
        ("pop3_command_to_bytes_and_back", random_seeds(2)),
        ("ntlm_message_to_bytes_and_back", random_seeds(3)),
        ("dcerpc_pdu_to_bytes_and_back", random_seeds(4)),
        ("ndr_decode", super::ndr_ops::seeds()),
        ("emsmdb_call", super::emsmdb_ops::seeds()),
        ("gc_timeline", super::gc_ops::seeds()),
    ];
    for (target, seeds) in groups {
        for (name, data) in seeds {
            out.push((target, name, data));
        }
    }
    out.extend(super::rpc_ops::seeds());
    out
}

fn corpus_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../corpus/fuzz")
}

#[test]
fn structured_seeds_match_the_corpus() {
    let write = std::env::var_os("HARNESS_WRITE_SEEDS").is_some();
    for (target, name, data) in all_seeds() {
        let path = corpus_root().join(target).join(name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &data).unwrap();
        } else {
            assert_eq!(
                std::fs::read(&path).ok(),
                Some(data),
                "{} is stale: HARNESS_WRITE_SEEDS=1 cargo test -p harness-core fuzzing::seeds",
                path.display()
            );
        }
    }
}

#[test]
fn imap_seeds_reach_what_they_are_named_for() {
    let seeds = imap_seeds();
    let r = |i: usize| imap::run(&seeds[i].1);
    let first = r(0);
    assert!(first.authenticated && first.selected && first.fetched_body && first.expunged);
    let two = r(1);
    assert!(two.concurrent && two.appended && two.fetched_body);
    assert!(r(2).authenticated && r(2).idled);
    let idle = r(3);
    assert!(idle.concurrent && idle.idled && idle.expunged, "{idle:?}");
    assert!(r(4).appended);
}

#[test]
fn pop3_seeds_reach_what_they_are_named_for() {
    let seeds = pop3_seeds();
    let r = |i: usize| pop3::run(&seeds[i].1);
    let first = r(0);
    assert!(
        first.authenticated && first.retrieved && first.committed,
        "{first:?}"
    );
    let second = r(1);
    assert!(second.abandoned && second.committed, "{second:?}");
    let third = r(2);
    assert!(
        third.in_use && third.abandoned && !third.committed,
        "{third:?}"
    );
    assert!(!r(3).authenticated);
}

#[test]
fn frontend_seeds_reach_what_they_are_named_for() {
    let seeds = frontend_seeds();
    let r = |i: usize| fe::run(&seeds[i].1);
    let first = r(0);
    assert!(
        first.two_users && first.read_mail && first.reused,
        "{first:?}"
    );
    let affinity = r(1);
    assert!(
        affinity.ntlm_authenticated && affinity.two_users,
        "{affinity:?}"
    );
    let rtm = r(2);
    assert!(!rtm.ntlm_authenticated && rtm.read_mail, "{rtm:?}");
    assert!(r(3).read_mail);
    let recycled = r(4);
    assert!(recycled.recycled && recycled.read_mail, "{recycled:?}");
}

/// Random inputs of 1 to `max_len` octets.
fn inputs(seed: u64, count: usize, max_len: u64) -> impl Iterator<Item = Vec<u8>> {
    let mut rng = SeededRng::new(seed);
    (0..count).map(move |_| {
        let mut v = vec![0u8; 1 + (rng.next_u64() % max_len) as usize];
        rng.fill(&mut v);
        v
    })
}

/// Seeded mutations of a target's seeds (octets overwritten, slices of other seeds
/// spliced in, truncation, random tails), interleaved with plain random inputs: a cheap
/// stand-in for the fuzzer that runs under `cargo test`.
fn mutants(seeds: Vec<(&'static str, Vec<u8>)>, seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut rng = SeededRng::new(seed);
    let mut random = inputs(seed ^ 0x5eed, count / 2, 160);
    let mut out = Vec::with_capacity(count);
    let mut r = move |n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    for i in 0..count {
        if i % 2 == 1 {
            out.extend(random.next());
            continue;
        }
        let mut data = seeds[r(seeds.len())].1.clone();
        for _ in 0..1 + r(4) {
            match r(4) {
                0 => {
                    let at = r(data.len());
                    if let Some(b) = data.get_mut(at) {
                        *b = r(256) as u8;
                    }
                }
                1 => {
                    let other = &seeds[r(seeds.len())].1;
                    let a = r(other.len());
                    let b = a + r(other.len() - a + 1);
                    let at = r(data.len() + 1);
                    data.splice(at..at, other[a..b].iter().copied());
                }
                2 => data.truncate(1 + r(data.len())),
                _ => data.extend((0..1 + r(32)).map(|_| r(256) as u8)),
            }
        }
        out.push(data);
    }
    out
}

/// Plays `count` mutants of `seeds` (mutated from `seed`) through a target; each state it
/// reports must be reached at least 50 times.
fn assert_states_reached<const N: usize>(
    seeds: Vec<(&'static str, Vec<u8>)>,
    seed: u64,
    count: usize,
    states: impl Fn(&[u8]) -> [bool; N],
) {
    let mut n = [0usize; N];
    for data in mutants(seeds, seed, count) {
        for (c, hit) in n.iter_mut().zip(states(&data)) {
            *c += usize::from(hit);
        }
    }
    eprintln!("states reached: {n:?}");
    assert!(n.iter().all(|&c| c >= 50), "states reached: {n:?}");
}

#[test]
fn imap_server_ops_smoke_run() {
    assert_states_reached(imap_seeds(), 11, 1500, |data| {
        let r = imap::run(data);
        [
            r.authenticated,
            r.selected,
            r.fetched_body,
            r.appended,
            r.expunged,
            r.idled,
            r.concurrent,
        ]
    });
}

#[test]
fn pop3_server_ops_smoke_run() {
    assert_states_reached(pop3_seeds(), 12, 1500, |data| {
        let r = pop3::run(data);
        [
            r.authenticated,
            r.retrieved,
            r.committed,
            r.abandoned,
            r.in_use,
        ]
    });
}

#[test]
fn frontend_pool_ops_smoke_run() {
    assert_states_reached(frontend_seeds(), 13, 1000, |data| {
        let r = fe::run(data);
        [
            r.authenticated,
            r.ntlm_authenticated,
            r.read_mail,
            r.two_users,
            r.reused,
            r.recycled,
        ]
    });
}

#[test]
fn to_bytes_and_back_smoke_run() {
    let mut pop3_kinds = std::collections::BTreeSet::new();
    let mut ntlm_kinds = std::collections::BTreeSet::new();
    let mut imap_kinds = std::collections::BTreeSet::new();
    for data in inputs(14, 3000, 200) {
        codec_ops::pop3_command_to_bytes_and_back(&data);
        codec_ops::ntlm_message_to_bytes_and_back(&data);
        codec_ops::imap_command_to_bytes_and_back(&data);
        let mut u = Unstructured::new(&data);
        if let Ok(c) = crate::pop3::Command::arbitrary(&mut u) {
            pop3_kinds.insert(
                c.keyword()
                    .to_ascii_uppercase()
                    .chars()
                    .take(4)
                    .collect::<String>(),
            );
        }
        let mut u = Unstructured::new(&data);
        if let Ok(m) = codec_ops::arbitrary_ntlm_message(&mut u) {
            ntlm_kinds.insert(match &m {
                crate::ntlm::Message::Negotiate(_) => "negotiate",
                crate::ntlm::Message::Challenge(_) => "challenge",
                crate::ntlm::Message::Authenticate(a) if a.mic.is_some() => "authenticate+mic",
                crate::ntlm::Message::Authenticate(_) => "authenticate",
            });
        }
        let mut u = Unstructured::new(&data);
        if let Ok(c) = imap_codec::imap_types::command::Command::arbitrary(&mut u) {
            imap_kinds.insert(c.body.name());
        }
    }
    assert!(pop3_kinds.len() >= 15, "POP3 kinds: {pop3_kinds:?}");
    assert_eq!(ntlm_kinds.len(), 4, "NTLM message kinds: {ntlm_kinds:?}");
    assert!(imap_kinds.len() >= 15, "IMAP command kinds: {imap_kinds:?}");
}

#[test]
fn ndr_decode_smoke_run() {
    for data in mutants(super::ndr_ops::seeds(), 5, 20_000) {
        super::ndr_ops::ndr_decode(&data);
    }
}

#[test]
fn dcerpc_association_targets_smoke_run() {
    let all = super::rpc_ops::seeds();
    for target in [
        "dcerpc_server_bytes",
        "dcerpc_server_ops",
        "dcerpc_client_hostile",
        "dcerpc_interface_calls",
    ] {
        let seeds: Vec<(&'static str, Vec<u8>)> = all
            .iter()
            .filter(|(t, _, _)| *t == target)
            .map(|(_, name, data)| (*name, data.clone()))
            .collect();
        for data in mutants(seeds, 21, 600) {
            super::run(target, &data);
        }
    }
}

#[test]
fn emsmdb_call_smoke_run() {
    assert_states_reached(super::emsmdb_ops::seeds(), 15, 3000, |data| {
        let r = super::emsmdb_ops::run(data);
        [r.subscriptions > 0, r.parked > 0]
    });
}

#[test]
fn gc_timeline_smoke_run() {
    assert_states_reached(super::gc_ops::seeds(), 16, 600, |data| {
        let plan = super::gc_ops::decode(data);
        let Some(run) = super::gc_ops::play(&plan) else {
            return [false; 5];
        };
        let r = super::gc_ops::check(&plan, &run);
        [r.prompted, r.ended, r.stuck, r.settled, r.restarted]
    });
}
