//! Structured target `pop3_server_ops`: `arbitrary` builds a sequence of POP3 client
//! operations (USER/PASS, APOP and AUTH PLAIN with the right or a wrong password, STAT,
//! LIST, UIDL, RETR, TOP, DELE, RSET, NOOP, CAPA, QUIT, garbage lines, clock ticks and
//! dropped connections) played on one to three interleaved sessions of one world.
//!
//! Input: a setup octet (sessions = 1 + setup % 3; bit 2: the `exchange` profile), then
//! operations (a session octet, a kind octet, argument octets; see [`Op::arbitrary`]).
//! Checked: no panic; every command line gets a reply that starts `+OK`, `-ERR` or (AUTH)
//! `+ `; every write is CRLF-terminated and bounded; a session is authenticated only as a
//! user whose password (or APOP digest) its input carried; no session shows another user's
//! mail; **the store loses messages only at a QUIT of the session holding that maildrop,
//! exactly the messages it marked with DELE** (never after EOF, a timeout or RSET); every
//! maildrop lock is released at the end.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::Unstructured;

use super::ops::{self, account, byte, choice, flag, Seed, USERS};
use crate::pop3::{apop_digest, check_write, stream_reveals, Command, Pop3Server};
use crate::profile::Profile;
use crate::sasl::encode_base64;
use crate::session::{Output, ServerSession, SessionContext};
use crate::world::World;

/// What one operation does (message numbers are taken as given, 0 meaning "none").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    User {
        user: u8,
    },
    /// PASS with the password of the last USER (or alice's when there was none).
    Pass {
        right: bool,
    },
    Apop {
        user: u8,
        right: bool,
    },
    AuthPlain {
        user: u8,
        right: bool,
    },
    Stat,
    List(u8),
    Uidl(u8),
    Retr(u8),
    Top(u8, u8),
    Dele(u8),
    Rset,
    Noop,
    Capa,
    Quit,
    Garbage(Vec<u8>),
    Tick(u8),
    /// Drop the connection without QUIT and open a new one in its place.
    Reconnect,
}

const KINDS: u8 = 17;

pub type Op = ops::Op<Action>;

impl ops::OpAction for Action {
    fn read(u: &mut Unstructured<'_>) -> Self {
        match choice(u, KINDS) {
            0 => Action::User { user: byte(u) },
            1 => Action::Pass { right: flag(u) },
            2 => Action::Apop {
                user: byte(u),
                right: flag(u),
            },
            3 => Action::AuthPlain {
                user: byte(u),
                right: flag(u),
            },
            4 => Action::Stat,
            5 => Action::List(byte(u)),
            6 => Action::Uidl(byte(u)),
            7 => Action::Retr(byte(u)),
            8 => Action::Top(byte(u), byte(u)),
            9 => Action::Dele(byte(u)),
            10 => Action::Rset,
            11 => Action::Noop,
            12 => Action::Capa,
            13 => Action::Quit,
            14 => Action::Garbage(ops::raw(u)),
            15 => Action::Tick(byte(u)),
            _ => Action::Reconnect,
        }
    }

    fn write(&self, s: &mut Seed) {
        match self {
            Action::User { user } => s.byte(0).byte(*user),
            Action::Pass { right } => s.byte(1).flag(*right),
            Action::Apop { user, right } => s.byte(2).byte(*user).flag(*right),
            Action::AuthPlain { user, right } => s.byte(3).byte(*user).flag(*right),
            Action::Stat => s.byte(4),
            Action::List(n) => s.byte(5).byte(*n),
            Action::Uidl(n) => s.byte(6).byte(*n),
            Action::Retr(n) => s.byte(7).byte(*n),
            Action::Top(n, k) => s.byte(8).byte(*n).byte(*k),
            Action::Dele(n) => s.byte(9).byte(*n),
            Action::Rset => s.byte(10),
            Action::Noop => s.byte(11),
            Action::Capa => s.byte(12),
            Action::Quit => s.byte(13),
            Action::Garbage(g) => s.byte(14).raw(g),
            Action::Tick(secs) => s.byte(15).byte(*secs),
            Action::Reconnect => s.byte(16),
        };
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    pub authenticated: bool,
    pub retrieved: bool,
    /// A QUIT removed messages.
    pub committed: bool,
    /// Messages were marked and the session then ended without QUIT.
    pub abandoned: bool,
    /// A second session was refused the maildrop another one holds.
    pub in_use: bool,
}

struct Lane {
    /// The user the session authenticated as (kept after LOGOUT/QUIT).
    user: Option<String>,
    server: Pop3Server,
    out: Vec<u8>,
    sent: Vec<u8>,
    timestamp: Option<String>,
    last_user: u8,
    /// Message numbers DELE answered `+OK` for since the last RSET.
    marked: BTreeSet<u32>,
}

struct Run {
    world: Arc<World>,
    profile: Arc<Profile>,
    incarnation: u64,
    now: Duration,
    done: Vec<(Option<String>, Vec<u8>)>,
    all_input: Vec<u8>,
    reached: Reached,
}

impl Run {
    fn lane(&mut self) -> Lane {
        self.incarnation += 1;
        let mut ctx = SessionContext::new(Arc::clone(&self.world), Arc::clone(&self.profile));
        ctx.limits.max_line = 1024;
        ctx.limits.idle_timeout = Duration::from_secs(120);
        ctx.seed = self.incarnation;
        ctx.epoch_secs = 1_700_000_000;
        let server = Pop3Server::new(ctx);
        let timestamp = server.apop_timestamp().map(str::to_string);
        let mut lane = Lane {
            user: None,
            server,
            out: Vec::new(),
            sent: Vec::new(),
            timestamp,
            last_user: 0,
            marked: BTreeSet::new(),
        };
        drain(&mut lane, self.now);
        lane
    }

    fn counts(&self) -> Vec<usize> {
        USERS
            .iter()
            .map(|(name, _)| {
                self.world
                    .store
                    .with_account(name, |a| a.mailbox("INBOX").map_or(0, |m| m.messages.len()))
            })
            .collect()
    }
}

fn drain(lane: &mut Lane, now: Duration) -> usize {
    let start = lane.out.len();
    while let Some(o) = lane.server.poll_output() {
        match o {
            Output::Write(w) => {
                check_write(&w);
                lane.out.extend_from_slice(&w);
            }
            Output::StartTls => lane.server.handle_tls_established(now),
            Output::Close => {}
        }
    }
    start
}

/// Sends one line (CRLF added) and returns the server's answer.
fn send(lane: &mut Lane, all_input: &mut Vec<u8>, now: Duration, line: &[u8]) -> Vec<u8> {
    let mut bytes = line.to_vec();
    bytes.extend_from_slice(b"\r\n");
    lane.sent.extend_from_slice(&bytes);
    all_input.extend_from_slice(&bytes);
    lane.server.handle_input(now, &bytes);
    let start = drain(lane, now);
    lane.out.get(start..).unwrap_or_default().to_vec()
}

/// Fuzz target `pop3_server_ops`.
pub fn pop3_server_ops(data: &[u8]) {
    run(data);
}

pub fn run(data: &[u8]) -> Reached {
    let mut u = Unstructured::new(data);
    let setup = byte(&mut u);
    let Some(world) = crate::fuzzing::ops::default_world() else {
        return Reached::default();
    };
    let profile = if setup & 4 == 0 {
        Profile::default_profile()
    } else {
        Profile::exchange()
    };
    let mut run = Run {
        world: Arc::new(world),
        profile: Arc::new(profile),
        incarnation: 0,
        now: Duration::ZERO,
        done: Vec::new(),
        all_input: Vec::new(),
        reached: Reached::default(),
    };
    let sessions = 1 + usize::from(setup % 3);
    let mut lanes: Vec<Lane> = (0..sessions).map(|_| run.lane()).collect();
    for op in ops::read_ops::<Action>(&mut u) {
        let k = usize::from(op.session) % sessions;
        let before = run.counts();
        // Who may commit deletions in this operation, and how many.
        let committer = lanes[k]
            .server
            .authenticated_user()
            .map(|u| (u.to_ascii_lowercase(), lanes[k].marked.len()));
        let (quit, quit_ok) = play(&mut run, &mut lanes, k, &op.action);
        let after = run.counts();
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            let name = USERS[i].0;
            if a == b {
                continue;
            }
            assert!(a < b, "{name}'s maildrop grew from {b} to {a}");
            let Some((who, marked)) = committer.as_ref() else {
                panic!("{name} lost {} messages outside a session", b - a);
            };
            assert!(
                quit && who == name,
                "{name} lost {} messages without a QUIT of its session ({:?})",
                b - a,
                op.action
            );
            assert_eq!(
                b - a,
                *marked,
                "QUIT removed other than the marked messages"
            );
            run.reached.committed = true;
        }
        if let (true, true, Some((who, marked))) = (quit, quit_ok, &committer) {
            let i = USERS.iter().position(|(n, _)| n == who).unwrap_or(0);
            assert_eq!(
                before[i] - after[i],
                *marked,
                "QUIT +OK did not remove the {marked} messages DELE marked"
            );
        }
        check_lane(&lanes[k], k);
        note_user(&mut lanes[k]);
    }
    for (k, lane) in lanes.into_iter().enumerate() {
        let before = run.counts();
        let abandoned = !lane.marked.is_empty();
        finish(&mut run, k, lane);
        assert_eq!(before, run.counts(), "EOF without QUIT removed messages");
        run.reached.abandoned |= abandoned;
    }
    for (name, _) in USERS {
        assert!(
            run.world.store.try_lock_maildrop(name),
            "maildrop lock of {name} leaked"
        );
        run.world.store.unlock_maildrop(name);
    }
    ops::assert_isolated(&run.done, &run.all_input);
    run.reached
}

/// Plays one operation: (it sent a line that decodes as QUIT, the reply was `+OK`).
fn play(run: &mut Run, lanes: &mut [Lane], k: usize, action: &Action) -> (bool, bool) {
    run.now += Duration::from_millis(10);
    let now = run.now;
    match action {
        Action::Reconnect => {
            let fresh = run.lane();
            let old = std::mem::replace(&mut lanes[k], fresh);
            let abandoned = !old.marked.is_empty();
            finish(run, k, old);
            run.reached.abandoned |= abandoned;
            return (false, false);
        }
        Action::Tick(secs) => {
            run.now += Duration::from_secs(u64::from(*secs));
            let now = run.now;
            for lane in lanes.iter_mut() {
                if lane.server.poll_timeout().is_some_and(|t| t <= now) {
                    lane.server.handle_timeout(now);
                    drain(lane, now);
                }
            }
            return (false, false);
        }
        _ => {}
    }
    let lane = &mut lanes[k];
    if lane.server.is_closed() {
        return (false, false);
    }
    let line: Vec<u8> = match action {
        Action::User { user } => {
            lane.last_user = *user;
            format!("USER {}", account(*user, true).0).into_bytes()
        }
        Action::Pass { right } => {
            format!("PASS {}", account(lane.last_user, *right).1).into_bytes()
        }
        Action::Apop { user, right } => {
            let (name, password) = account(*user, *right);
            let digest = lane
                .timestamp
                .as_deref()
                .map_or_else(|| "0".repeat(32), |ts| apop_digest(ts, password));
            format!("APOP {name} {digest}").into_bytes()
        }
        Action::AuthPlain { user, right } => {
            let (name, password) = account(*user, *right);
            let ir = encode_base64(format!("\0{name}\0{password}").as_bytes());
            format!("AUTH PLAIN {ir}").into_bytes()
        }
        Action::Stat => b"STAT".to_vec(),
        Action::List(0) => b"LIST".to_vec(),
        Action::List(n) => format!("LIST {n}").into_bytes(),
        Action::Uidl(0) => b"UIDL".to_vec(),
        Action::Uidl(n) => format!("UIDL {n}").into_bytes(),
        Action::Retr(n) => format!("RETR {n}").into_bytes(),
        Action::Top(n, l) => format!("TOP {n} {l}").into_bytes(),
        Action::Dele(n) => format!("DELE {n}").into_bytes(),
        Action::Rset => b"RSET".to_vec(),
        Action::Noop => b"NOOP".to_vec(),
        Action::Capa => b"CAPA".to_vec(),
        Action::Quit => b"QUIT".to_vec(),
        Action::Garbage(g) => {
            let mut line = ops::garbage_line(g);
            line.truncate(line.len().saturating_sub(2));
            line
        }
        Action::Tick(_) | Action::Reconnect => return (false, false),
    };
    let command = Command::decode(&line).ok();
    let was_authenticated = lane.server.authenticated_user().is_some();
    let answer = send(lane, &mut run.all_input, now, &line);
    let ok = answer.starts_with(b"+OK");
    assert!(
        ok || answer.starts_with(b"-ERR") || answer.starts_with(b"+ ") || lane.server.is_closed(),
        "reply to {:?}: {:?}",
        String::from_utf8_lossy(&line),
        String::from_utf8_lossy(&answer)
    );
    if answer.starts_with(b"+ ") {
        // An AUTH (from a garbage line) waits for a response: cancel it.
        send(lane, &mut run.all_input, now, b"*");
    }
    if ops::contains(&answer, b"[IN-USE]") {
        run.reached.in_use = true;
    }
    match command {
        Some(Command::Dele(n)) if ok && was_authenticated => {
            lane.marked.insert(n);
        }
        Some(Command::Rset) if ok => lane.marked.clear(),
        Some(Command::Retr(_)) if ok => run.reached.retrieved = true,
        _ => {}
    }
    run.reached.authenticated |= lane.server.authenticated_user().is_some();
    (matches!(command, Some(Command::Quit)), ok)
}

fn check_lane(lane: &Lane, k: usize) {
    // Checked when the session becomes authenticated (its user never changes after).
    if let Some(user) = lane
        .server
        .authenticated_user()
        .filter(|_| lane.user.is_none())
    {
        let password = USERS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(user))
            .map_or("", |(_, p)| p);
        assert!(
            stream_reveals(&lane.sent, password, lane.timestamp.as_deref()),
            "session {k} authenticated as {user} without its password"
        );
    }
    assert!(
        lane.out.len() <= 8192 + lane.sent.len() * 4096,
        "session {k}: output {} for input {}",
        lane.out.len(),
        lane.sent.len()
    );
}

fn finish(run: &mut Run, k: usize, mut lane: Lane) {
    let now = run.now;
    if !lane.server.is_closed() {
        check_lane(&lane, k);
        lane.server.handle_eof(now);
        drain(&mut lane, now);
    }
    note_user(&mut lane);
    run.done.push((lane.user, lane.out));
}

/// Remembers the authenticated user, which a session may forget once it logs out.
fn note_user(lane: &mut Lane) {
    if let Some(u) = lane.server.authenticated_user() {
        lane.user = Some(u.to_ascii_lowercase());
    }
}
