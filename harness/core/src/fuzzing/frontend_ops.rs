//! Structured target `frontend_pool_ops`: interleaved client sessions of several users
//! through an [`InProcessFrontend`] with a small pool of real back-end sessions on one
//! world. `arbitrary` builds the operations: basic logins and AUTHENTICATE/AUTH PLAIN with
//! the right or a wrong password, a real NTLM exchange (an [`NtlmInitiator`] answering the
//! challenge that comes back), reading mail, APPEND, LOGOUT/QUIT, garbage lines and
//! reconnects.
//!
//! Input: a setup octet (bit 0: POP3 instead of IMAP; bits 1-2: the front-end profile
//! `exchange2000-rtm`, `exchange2000-sp1`, `affinity`, `per-session`; bits 3-4: pool size
//! 1-3, or, both set, `pool-unauthenticate` with a pool of one over back-ends offering
//! UNAUTHENTICATE, so every session after the first gets a recycled connection; bit 5:
//! three client sessions instead of two; bits 6-7 both set: the front-end
//! records its trace), then operations (session octet,
//! kind octet, argument octets). Checked: no panic; **no session shows mail of a user it
//! is not authenticated as, pooled connections included**; a session is authenticated
//! only as a user whose password (or an NTLM exchange with it) it sent; output and the
//! front-end's buffering are bounded; the pool never holds more idle connections than its
//! size. A session whose client sent UNAUTHENTICATE itself is left out of the mail check
//! (it may have logged in past the front-end).

use std::sync::Arc;
use std::time::Duration;

use arbitrary::Unstructured;

use super::imap_ops::continuation;
use super::ops::{self, account, byte, choice, flag, Seed, USERS};
use crate::frontend::inprocess::InProcessSession;
use crate::frontend::{FrontendProfile, InProcessFrontend, FRONTEND_PROFILE_NAMES};
use crate::imap::StoreCaps;
use crate::ntlm::{Credentials, InitiatorOptions, NtlmInitiator, ResponseKind};
use crate::sasl::{decode_base64, encode_base64};
use crate::session::{Limits, Output, ServerSession};
use crate::Protocol;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Login {
        user: u8,
        right: bool,
    },
    AuthPlain {
        user: u8,
        right: bool,
    },
    Ntlm {
        user: u8,
        right: bool,
    },
    /// IMAP SELECT INBOX, POP3 STAT.
    Select,
    /// IMAP FETCH n BODY[], POP3 RETR n.
    Read(u8),
    /// IMAP APPEND to INBOX, POP3 NOOP.
    Append,
    /// IMAP CAPABILITY, POP3 CAPA.
    Capability,
    Logout,
    Garbage(Vec<u8>),
    Reconnect,
}

const KINDS: u8 = 10;

/// Setup bits that turn the front-end's trace on.
const TRACED: u8 = 0xc0;

pub type Op = ops::Op<Action>;

impl ops::OpAction for Action {
    fn read(u: &mut Unstructured<'_>) -> Self {
        match choice(u, KINDS) {
            0 => Action::Login {
                user: byte(u),
                right: flag(u),
            },
            1 => Action::AuthPlain {
                user: byte(u),
                right: flag(u),
            },
            2 => Action::Ntlm {
                user: byte(u),
                right: flag(u),
            },
            3 => Action::Select,
            4 => Action::Read(byte(u)),
            5 => Action::Append,
            6 => Action::Capability,
            7 => Action::Logout,
            8 => Action::Garbage(ops::raw(u)),
            _ => Action::Reconnect,
        }
    }

    fn write(&self, s: &mut Seed) {
        match self {
            Action::Login { user, right } => s.byte(0).byte(*user).flag(*right),
            Action::AuthPlain { user, right } => s.byte(1).byte(*user).flag(*right),
            Action::Ntlm { user, right } => s.byte(2).byte(*user).flag(*right),
            Action::Select => s.byte(3),
            Action::Read(n) => s.byte(4).byte(*n),
            Action::Append => s.byte(5),
            Action::Capability => s.byte(6),
            Action::Logout => s.byte(7),
            Action::Garbage(g) => s.byte(8).raw(g),
            Action::Reconnect => s.byte(9),
        };
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    pub authenticated: bool,
    pub ntlm_authenticated: bool,
    pub read_mail: bool,
    /// Two sessions of different users authenticated at the same time.
    pub two_users: bool,
    /// A back-end connection served more than one request.
    pub reused: bool,
    /// A connection went back to the pool from a client session, to be reset with
    /// UNAUTHENTICATE.
    pub recycled: bool,
}

const CAPS: StoreCaps = StoreCaps {
    max_messages: 64,
    max_bytes: 64 * 1024,
    max_mailboxes: 16,
};

struct Lane {
    /// The user the session authenticated as (kept after LOGOUT/QUIT).
    user: Option<String>,
    session: InProcessSession,
    out: Vec<u8>,
    sent: Vec<u8>,
    /// Users an NTLM exchange with the right password was run for.
    ntlm_proved: Vec<&'static str>,
    tags: u32,
    appended: u32,
}

struct Run {
    fe: InProcessFrontend,
    protocol: Protocol,
    now: Duration,
    done: Vec<(Option<String>, Vec<u8>)>,
    all_input: Vec<u8>,
    reached: Reached,
}

impl Run {
    fn lane(&mut self) -> Lane {
        let mut lane = Lane {
            user: None,
            session: self.fe.client(),
            out: Vec::new(),
            sent: Vec::new(),
            ntlm_proved: Vec::new(),
            tags: 0,
            appended: 0,
        };
        drain(&mut lane, self.now);
        lane
    }

    fn send(&mut self, lane: &mut Lane, bytes: &[u8]) -> Vec<u8> {
        self.now += Duration::from_millis(10);
        lane.sent.extend_from_slice(bytes);
        self.all_input.extend_from_slice(bytes);
        lane.session.handle_input(self.now, bytes);
        let start = drain(lane, self.now);
        lane.out.get(start..).unwrap_or_default().to_vec()
    }
}

fn drain(lane: &mut Lane, now: Duration) -> usize {
    let start = lane.out.len();
    while let Some(o) = lane.session.poll_output() {
        match o {
            Output::Write(w) => lane.out.extend_from_slice(&w),
            Output::StartTls => lane.session.handle_tls_established(now),
            Output::Close => {}
        }
    }
    start
}

/// Fuzz target `frontend_pool_ops`.
pub fn frontend_pool_ops(data: &[u8]) {
    run(data);
}

pub fn run(data: &[u8]) -> Reached {
    let mut u = Unstructured::new(data);
    let setup = byte(&mut u);
    let Some(world) = crate::fuzzing::ops::default_world() else {
        return Reached::default();
    };
    let world = Arc::new(world);
    let protocol = if setup & 1 == 0 {
        Protocol::Imap
    } else {
        Protocol::Pop3
    };
    let recycling = (setup >> 3) & 3 == 3;
    let name = if recycling {
        "pool-unauthenticate"
    } else {
        ops::at(FRONTEND_PROFILE_NAMES, (setup >> 1) & 3)
    };
    let Some(mut profile) = FrontendProfile::by_name(name) else {
        return Reached::default();
    };
    let pool_size = 1 + usize::from((setup >> 3) & 3) % 3;
    profile.pool.size = pool_size;
    let per_session = profile.pool.per_session;
    let limits = Limits {
        max_line: 1024,
        max_literal: 4096,
        ..Limits::default()
    };
    let factory = ops::fuzz_backends_offering(&world, &limits, CAPS, protocol, recycling);
    let fe = InProcessFrontend::new(protocol, profile, factory);
    fe.set_limits(limits);
    // The front-end's trace (text for the lab's log, nothing depends on it) is formatted
    // for a quarter of the inputs only: it was a large part of an execution's cost.
    fe.set_tracing(setup & TRACED == TRACED);
    let mut run = Run {
        fe,
        protocol,
        now: Duration::ZERO,
        done: Vec::new(),
        all_input: Vec::new(),
        reached: Reached::default(),
    };
    let sessions = if setup & 0x20 == 0 { 2 } else { 3 };
    let mut lanes: Vec<Lane> = (0..sessions).map(|_| run.lane()).collect();
    for op in ops::read_ops::<Action>(&mut u) {
        let k = usize::from(op.session) % sessions;
        if let Action::Reconnect = op.action {
            let fresh = run.lane();
            let old = std::mem::replace(&mut lanes[k], fresh);
            finish(&mut run, k, old);
        } else {
            play(&mut run, &mut lanes[k], k, &op.action);
        }
        check_lane(&lanes[k], k);
        note_user(&mut lanes[k]);
        let users: Vec<&str> = lanes
            .iter()
            .filter_map(|l| l.session.core().authenticated_user())
            .collect();
        run.reached.two_users |= users
            .iter()
            .any(|a| users.iter().any(|b| !a.eq_ignore_ascii_case(b)));
        // Shared: the idle list is capped at the pool size. Per session: each client
        // session uses its own idle connection before it opens another.
        let cap = if per_session { sessions } else { pool_size };
        assert!(
            run.fe.idle_connections() <= cap,
            "{} idle connections, at most {cap} allowed",
            run.fe.idle_connections()
        );
    }
    for (k, lane) in lanes.into_iter().enumerate() {
        finish(&mut run, k, lane);
    }
    let stats = run.fe.stats();
    assert!(stats.closed <= stats.opened, "{stats:?}");
    run.reached.reused |= stats.reused > 0;
    run.reached.recycled |= stats.recycled > 0;
    ops::assert_isolated(&run.done, &run.all_input);
    run.reached
}

fn play(run: &mut Run, lane: &mut Lane, k: usize, action: &Action) {
    if lane.session.is_closed() {
        return;
    }
    let imap = run.protocol == Protocol::Imap;
    lane.tags += 1;
    let tag = format!("T{k}.{}", lane.tags);
    let user = lane
        .session
        .core()
        .authenticated_user()
        .unwrap_or("nobody")
        .to_ascii_lowercase();
    match action {
        Action::Login { user, right } => {
            let (name, password) = account(*user, *right);
            if imap {
                run.send(
                    lane,
                    format!("{tag} LOGIN {name} {password}\r\n").as_bytes(),
                );
            } else {
                run.send(lane, format!("USER {name}\r\n").as_bytes());
                run.send(lane, format!("PASS {password}\r\n").as_bytes());
            }
        }
        Action::AuthPlain { user, right } => {
            let (name, password) = account(*user, *right);
            let start = if imap {
                format!("{tag} AUTHENTICATE PLAIN\r\n")
            } else {
                "AUTH PLAIN\r\n".to_string()
            };
            let answer = run.send(lane, start.as_bytes());
            if continuation(&answer).is_some() {
                let response = encode_base64(format!("\0{name}\0{password}").as_bytes());
                run.send(lane, format!("{response}\r\n").as_bytes());
            }
        }
        Action::Ntlm { user, right } => {
            let (name, password) = account(*user, *right);
            let mut client = NtlmInitiator::new(
                Credentials::example(name, password),
                InitiatorOptions::fixed(0xC1, 0x5A, ResponseKind::V2, true),
            );
            let start = if imap {
                format!("{tag} AUTHENTICATE NTLM\r\n")
            } else {
                "AUTH NTLM\r\n".to_string()
            };
            let answer = run.send(lane, start.as_bytes());
            if continuation(&answer).is_none() {
                return;
            }
            let negotiate = encode_base64(&client.negotiate());
            let answer = run.send(lane, format!("{negotiate}\r\n").as_bytes());
            let Some(challenge) = continuation(&answer) else {
                return;
            };
            let reply = decode_base64(challenge)
                .ok()
                .and_then(|c| client.handle_challenge(&c).ok());
            match reply {
                Some(auth) => {
                    if *right {
                        lane.ntlm_proved.push(name);
                    }
                    run.send(lane, format!("{}\r\n", encode_base64(&auth)).as_bytes());
                    run.reached.ntlm_authenticated |=
                        lane.session.core().authenticated_user().is_some();
                }
                None => {
                    run.send(lane, b"*\r\n");
                }
            }
        }
        Action::Select => {
            let line = if imap {
                format!("{tag} SELECT INBOX\r\n")
            } else {
                "STAT\r\n".into()
            };
            run.send(lane, line.as_bytes());
        }
        Action::Read(n) => {
            let n = 1 + n % 4;
            let line = if imap {
                format!("{tag} FETCH {n} BODY[]\r\n")
            } else {
                format!("RETR {n}\r\n")
            };
            let answer = run.send(lane, line.as_bytes());
            run.reached.read_mail |= ops::contains(&answer, b"this is message");
        }
        Action::Append => {
            if imap {
                lane.appended += 1;
                let body = format!(
                    "Subject: fuzz\r\n\r\nappended by {user} #{}\r\n",
                    lane.appended
                );
                let line = format!("{tag} APPEND INBOX {{{}+}}\r\n{body}\r\n", body.len());
                run.send(lane, line.as_bytes());
            } else {
                run.send(lane, b"NOOP\r\n");
            }
        }
        Action::Capability => {
            let line = if imap {
                format!("{tag} CAPABILITY\r\n")
            } else {
                "CAPA\r\n".into()
            };
            run.send(lane, line.as_bytes());
        }
        Action::Logout => {
            let line = if imap {
                format!("{tag} LOGOUT\r\n")
            } else {
                "QUIT\r\n".into()
            };
            run.send(lane, line.as_bytes());
        }
        Action::Garbage(g) => {
            let answer = run.send(lane, &ops::garbage_line(g));
            if continuation(&answer).is_some() {
                run.send(lane, b"*\r\n");
            }
        }
        Action::Reconnect => {}
    }
    run.reached.authenticated |= lane.session.core().authenticated_user().is_some();
}

fn check_lane(lane: &Lane, k: usize) {
    let core = lane.session.core();
    assert!(
        core.buffered_input() <= 4 * 1024 + 4096 + 64,
        "front-end session {k} holds {} octets",
        core.buffered_input()
    );
    // Checked when the session becomes authenticated (its user never changes after).
    if let Some(user) = core.authenticated_user().filter(|_| lane.user.is_none()) {
        let (name, password) = USERS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(user))
            .copied()
            .unwrap_or(("", ""));
        assert!(
            lane.ntlm_proved.contains(&name) || ops::reveals(&lane.sent, password),
            "front-end session {k} authenticated as {user} without its password"
        );
    }
    assert!(
        lane.out.len() <= 8192 + lane.sent.len() * (4096 + CAPS.max_bytes),
        "session {k}: output {} for input {}",
        lane.out.len(),
        lane.sent.len()
    );
}

fn finish(run: &mut Run, k: usize, mut lane: Lane) {
    if !lane.session.is_closed() {
        check_lane(&lane, k);
        run.now += Duration::from_millis(10);
        lane.session.handle_eof(run.now);
        drain(&mut lane, run.now);
    }
    note_user(&mut lane);
    if !ops::sent_unauthenticate(&lane.sent) {
        run.done.push((lane.user, lane.out));
    }
}

/// Remembers the authenticated user, which a session may forget once it logs out.
fn note_user(lane: &mut Lane) {
    if let Some(u) = lane.session.core().authenticated_user() {
        lane.user = Some(u.to_ascii_lowercase());
    }
}
