//! Structured target `imap_server_ops`: `arbitrary` builds a sequence of IMAP client
//! operations (LOGIN and AUTHENTICATE PLAIN with the right or a wrong password,
//! SELECT/EXAMINE, FETCH, STORE, SEARCH, EXPUNGE, APPEND with a literal, COPY, CREATE,
//! IDLE/DONE, LOGOUT, garbage lines, clock ticks, reconnects) played on one to three
//! interleaved sessions of one world.
//!
//! Input: a setup octet (sessions = 1 + setup % 3; bit 2: the `exchange` profile), then
//! operations, each a session octet, a kind octet and the kind's argument octets (see
//! [`Op::arbitrary`]). Checked after every operation and when each session ends: no panic;
//! every tag sent gets exactly one tagged completion; a session is never authenticated as
//! a user whose password its input did not carry; no session shows another user's mail
//! (the lab's messages and the targets' APPENDs are marked with their owner); input
//! buffering and output are bounded.

use std::sync::Arc;
use std::time::Duration;

use arbitrary::Unstructured;

use super::ops::{self, account, at, byte, choice, flag, Seed, USERS};
use crate::imap::{tagged_lines, ImapServer, StoreCaps};
use crate::profile::Profile;
use crate::sasl::encode_base64;
use crate::session::{Output, ServerSession, SessionContext};
use crate::world::World;

const MAILBOXES: [&str; 4] = ["INBOX", "Archive", "inbox", "Nope"];
const SEQS: [&str; 6] = ["1", "1:*", "2,3", "*", "4:2", "1:4294967295"];
const ITEMS: [&str; 8] = [
    "FLAGS",
    "BODY[]",
    "BODY.PEEK[HEADER]",
    "RFC822.SIZE",
    "(UID FLAGS ENVELOPE)",
    "BODYSTRUCTURE",
    "BODY[TEXT]<0.10>",
    "(INTERNALDATE RFC822)",
];
const STORE_MODES: [&str; 4] = ["+FLAGS", "-FLAGS", "FLAGS", "+FLAGS.SILENT"];
const FLAGS: [&str; 4] = ["\\Deleted", "\\Seen", "\\Flagged", "$Fuzz"];
const SEARCHES: [&str; 7] = [
    "ALL",
    "TEXT Hello",
    "DELETED",
    "FROM sender",
    "BODY appended",
    "NOT SEEN",
    "OR SEEN UNSEEN",
];

/// What one operation does (indices point into the tables above and [`USERS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Login {
        user: u8,
        right: bool,
    },
    AuthPlain {
        user: u8,
        right: bool,
        cancel: bool,
    },
    Select {
        mailbox: u8,
        examine: bool,
    },
    Fetch {
        seq: u8,
        item: u8,
        uid: bool,
    },
    Store {
        seq: u8,
        mode: u8,
        flag: u8,
    },
    Search {
        key: u8,
    },
    Expunge,
    Close,
    Append {
        mailbox: u8,
        size: u8,
        non_sync: bool,
    },
    Copy {
        seq: u8,
        mailbox: u8,
    },
    Create {
        mailbox: u8,
    },
    Idle {
        done: bool,
    },
    Noop,
    Logout,
    Garbage(Vec<u8>),
    /// Advance the clock by this many seconds and run due timers.
    Tick(u8),
    /// Drop the session's connection and open a new one in its place.
    Reconnect,
}

const KINDS: u8 = 17;

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
                cancel: flag(u),
            },
            2 => Action::Select {
                mailbox: byte(u),
                examine: flag(u),
            },
            3 => Action::Fetch {
                seq: byte(u),
                item: byte(u),
                uid: flag(u),
            },
            4 => Action::Store {
                seq: byte(u),
                mode: byte(u),
                flag: byte(u),
            },
            5 => Action::Search { key: byte(u) },
            6 => Action::Expunge,
            7 => Action::Close,
            8 => Action::Append {
                mailbox: byte(u),
                size: byte(u),
                non_sync: flag(u),
            },
            9 => Action::Copy {
                seq: byte(u),
                mailbox: byte(u),
            },
            10 => Action::Create { mailbox: byte(u) },
            11 => Action::Idle { done: flag(u) },
            12 => Action::Noop,
            13 => Action::Logout,
            14 => Action::Garbage(ops::raw(u)),
            15 => Action::Tick(byte(u)),
            _ => Action::Reconnect,
        }
    }

    fn write(&self, s: &mut Seed) {
        match self {
            Action::Login { user, right } => s.byte(0).byte(*user).flag(*right),
            Action::AuthPlain {
                user,
                right,
                cancel,
            } => s.byte(1).byte(*user).flag(*right).flag(*cancel),
            Action::Select { mailbox, examine } => s.byte(2).byte(*mailbox).flag(*examine),
            Action::Fetch { seq, item, uid } => s.byte(3).byte(*seq).byte(*item).flag(*uid),
            Action::Store { seq, mode, flag } => s.byte(4).byte(*seq).byte(*mode).byte(*flag),
            Action::Search { key } => s.byte(5).byte(*key),
            Action::Expunge => s.byte(6),
            Action::Close => s.byte(7),
            Action::Append {
                mailbox,
                size,
                non_sync,
            } => s.byte(8).byte(*mailbox).byte(*size).flag(*non_sync),
            Action::Copy { seq, mailbox } => s.byte(9).byte(*seq).byte(*mailbox),
            Action::Create { mailbox } => s.byte(10).byte(*mailbox),
            Action::Idle { done } => s.byte(11).flag(*done),
            Action::Noop => s.byte(12),
            Action::Logout => s.byte(13),
            Action::Garbage(g) => s.byte(14).raw(g),
            Action::Tick(secs) => s.byte(15).byte(*secs),
            Action::Reconnect => s.byte(16),
        };
    }
}

/// What a run reached, so tests can tell that generated inputs explore something.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    pub authenticated: bool,
    pub selected: bool,
    pub fetched_body: bool,
    pub appended: bool,
    pub expunged: bool,
    pub idled: bool,
    /// Two sessions authenticated at the same time.
    pub concurrent: bool,
}

const CAPS: StoreCaps = StoreCaps {
    max_messages: 64,
    max_bytes: 64 * 1024,
    max_mailboxes: 16,
};
const MAX_LINE: usize = 1024;
const MAX_LITERAL: usize = 4096;

struct Lane {
    /// The user the session authenticated as (kept after LOGOUT/QUIT).
    user: Option<String>,
    server: ImapServer,
    out: Vec<u8>,
    sent: Vec<u8>,
    tags: Vec<String>,
    next_tag: u32,
    /// Tag of an IDLE still running.
    idle: Option<String>,
    /// A garbage line left the session inside a command we did not start (AUTHENTICATE,
    /// IDLE) and it could not be brought back: its later tags are checked loosely.
    desynced: bool,
    appended: u32,
}

struct Run {
    world: Arc<World>,
    profile: Arc<Profile>,
    lanes: Vec<Lane>,
    incarnation: u64,
    now: Duration,
    /// Finished sessions: (user, output).
    done: Vec<(Option<String>, Vec<u8>)>,
    all_input: Vec<u8>,
    reached: Reached,
}

impl Run {
    fn lane(&mut self) -> Lane {
        self.incarnation += 1;
        let mut ctx = SessionContext::new(Arc::clone(&self.world), Arc::clone(&self.profile));
        ctx.limits.max_line = MAX_LINE;
        ctx.limits.max_literal = MAX_LITERAL;
        ctx.limits.idle_timeout = Duration::from_secs(120);
        ctx.seed = self.incarnation;
        ctx.epoch_secs = 1_700_000_000;
        let mut server = ImapServer::new(ctx);
        server.set_store_caps(CAPS);
        let mut lane = Lane {
            user: None,
            server,
            out: Vec::new(),
            sent: Vec::new(),
            tags: Vec::new(),
            next_tag: 0,
            idle: None,
            desynced: false,
            appended: 0,
        };
        drain(&mut lane, self.now);
        lane
    }
}

fn drain(lane: &mut Lane, now: Duration) -> usize {
    let start = lane.out.len();
    while let Some(o) = lane.server.poll_output() {
        match o {
            Output::Write(w) => lane.out.extend_from_slice(&w),
            Output::StartTls => lane.server.handle_tls_established(now),
            Output::Close => {}
        }
    }
    start
}

/// Sends bytes and returns what the server wrote in answer.
fn send(lane: &mut Lane, all_input: &mut Vec<u8>, now: Duration, bytes: &[u8]) -> Vec<u8> {
    lane.sent.extend_from_slice(bytes);
    all_input.extend_from_slice(bytes);
    lane.server.handle_input(now, bytes);
    let start = drain(lane, now);
    lane.out.get(start..).unwrap_or_default().to_vec()
}

fn new_tag(lane: &mut Lane, k: usize) -> String {
    lane.next_tag += 1;
    let tag = format!("T{k}.{}", lane.next_tag);
    lane.tags.push(tag.clone());
    tag
}

/// The data of a continuation request (`+ data` or a bare `+`) ending the answer.
pub(super) fn continuation(answer: &[u8]) -> Option<&[u8]> {
    let last = answer
        .strip_suffix(b"\r\n")?
        .rsplit(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    if last == b"+" {
        Some(&[])
    } else {
        last.strip_prefix(b"+ ")
    }
}

/// The server waits for more of the command it just answered (an AUTHENTICATE response,
/// literal data, `DONE`). Untagged data may follow a continuation request (IDLE reports
/// pending EXPUNGEs right after `+ idling`), so the session's state is asked, not the
/// last line.
fn waiting(lane: &Lane) -> bool {
    !lane.server.is_between_commands() && !lane.server.is_closed()
}

/// Fuzz target `imap_server_ops`.
pub fn imap_server_ops(data: &[u8]) {
    run(data);
}

/// Plays one input; returns what it reached.
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
        lanes: Vec::new(),
        incarnation: 0,
        now: Duration::ZERO,
        done: Vec::new(),
        all_input: Vec::new(),
        reached: Reached::default(),
    };
    let sessions = 1 + usize::from(setup % 3);
    for _ in 0..sessions {
        let lane = run.lane();
        run.lanes.push(lane);
    }
    for op in ops::read_ops::<Action>(&mut u) {
        let k = usize::from(op.session) % sessions;
        play(&mut run, k, &op.action);
        check_lane(&run.lanes[k], k);
        note_user(&mut run.lanes[k]);
        let authed = run
            .lanes
            .iter()
            .filter(|l| l.server.authenticated_user().is_some() && !l.server.is_closed())
            .count();
        run.reached.concurrent |= authed >= 2;
    }
    let lanes = std::mem::take(&mut run.lanes);
    for (k, lane) in lanes.into_iter().enumerate() {
        finish(&mut run, k, lane);
    }
    ops::assert_isolated(&run.done, &run.all_input);
    run.reached
}

fn play(run: &mut Run, k: usize, action: &Action) {
    let now = run.now + Duration::from_millis(10);
    run.now = now;
    if let Action::Reconnect = action {
        let fresh = run.lane();
        let old = std::mem::replace(&mut run.lanes[k], fresh);
        finish(run, k, old);
        return;
    }
    if let Action::Tick(secs) = action {
        run.now += Duration::from_secs(u64::from(*secs));
        let now = run.now;
        for lane in &mut run.lanes {
            if lane.server.poll_timeout().is_some_and(|t| t <= now) {
                lane.server.handle_timeout(now);
                drain(lane, now);
            }
        }
        return;
    }
    let all_input = &mut run.all_input;
    let lane = &mut run.lanes[k];
    if lane.server.is_closed() {
        return;
    }
    if lane.idle.take().is_some() {
        send(lane, all_input, now, b"DONE\r\n");
    }
    let user = lane
        .server
        .authenticated_user()
        .unwrap_or("nobody")
        .to_ascii_lowercase();
    match action {
        Action::Login { user, right } => {
            let (name, password) = account(*user, *right);
            let tag = new_tag(lane, k);
            let answer = send(
                lane,
                all_input,
                now,
                format!("{tag} LOGIN {name} {password}\r\n").as_bytes(),
            );
            if *right && answer.starts_with(format!("{tag} OK").as_bytes()) {
                assert_eq!(
                    lane.server.authenticated_user(),
                    Some(name),
                    "LOGIN OK without the session knowing"
                );
            }
        }
        Action::AuthPlain {
            user,
            right,
            cancel,
        } => {
            let (name, password) = account(*user, *right);
            let tag = new_tag(lane, k);
            send(
                lane,
                all_input,
                now,
                format!("{tag} AUTHENTICATE PLAIN\r\n").as_bytes(),
            );
            if waiting(lane) {
                let response = if *cancel {
                    "*".to_string()
                } else {
                    encode_base64(format!("\0{name}\0{password}").as_bytes())
                };
                send(lane, all_input, now, format!("{response}\r\n").as_bytes());
            }
        }
        Action::Select { mailbox, examine } => {
            let tag = new_tag(lane, k);
            let verb = if *examine { "EXAMINE" } else { "SELECT" };
            let mailbox = at(&MAILBOXES, *mailbox);
            send(
                lane,
                all_input,
                now,
                format!("{tag} {verb} {mailbox}\r\n").as_bytes(),
            );
            run.reached.selected |= lane.server.selected_mailbox().is_some();
        }
        Action::Fetch { seq, item, uid } => {
            let tag = new_tag(lane, k);
            let uid = if *uid { "UID " } else { "" };
            let answer = send(
                lane,
                all_input,
                now,
                format!(
                    "{tag} {uid}FETCH {} {}\r\n",
                    at(&SEQS, *seq),
                    at(&ITEMS, *item)
                )
                .as_bytes(),
            );
            run.reached.fetched_body |= ops::contains(&answer, b"this is message");
        }
        Action::Store { seq, mode, flag } => {
            let tag = new_tag(lane, k);
            send(
                lane,
                all_input,
                now,
                format!(
                    "{tag} STORE {} {} ({})\r\n",
                    at(&SEQS, *seq),
                    at(&STORE_MODES, *mode),
                    at(&FLAGS, *flag)
                )
                .as_bytes(),
            );
        }
        Action::Search { key } => {
            let tag = new_tag(lane, k);
            send(
                lane,
                all_input,
                now,
                format!("{tag} SEARCH {}\r\n", at(&SEARCHES, *key)).as_bytes(),
            );
        }
        Action::Expunge | Action::Close | Action::Noop | Action::Logout => {
            let tag = new_tag(lane, k);
            let verb = match action {
                Action::Expunge => "EXPUNGE",
                Action::Close => "CLOSE",
                Action::Noop => "NOOP",
                _ => "LOGOUT",
            };
            let answer = send(lane, all_input, now, format!("{tag} {verb}\r\n").as_bytes());
            run.reached.expunged |= ops::contains(&answer, b" EXPUNGE\r\n");
        }
        Action::Append {
            mailbox,
            size,
            non_sync,
        } => {
            lane.appended += 1;
            let mut body = format!(
                "From: fuzz@example.test\r\nSubject: fuzz\r\n\r\nappended by {user} #{}\r\n",
                lane.appended
            )
            .into_bytes();
            body.extend(std::iter::repeat_n(b'x', usize::from(*size) * 8));
            body.extend_from_slice(b"\r\n");
            let tag = new_tag(lane, k);
            let mailbox = at(&MAILBOXES, *mailbox);
            let plus = if *non_sync { "+" } else { "" };
            let head = format!(
                "{tag} APPEND {mailbox} (\\Seen) {{{}{plus}}}\r\n",
                body.len()
            );
            let answer = if *non_sync {
                let mut all = head.into_bytes();
                all.extend_from_slice(&body);
                all.extend_from_slice(b"\r\n");
                send(lane, all_input, now, &all)
            } else {
                let answer = send(lane, all_input, now, head.as_bytes());
                if waiting(lane) {
                    body.extend_from_slice(b"\r\n");
                    send(lane, all_input, now, &body)
                } else {
                    answer
                }
            };
            run.reached.appended |= ops::contains(&answer, format!("{tag} OK").as_bytes());
        }
        Action::Copy { seq, mailbox } => {
            let tag = new_tag(lane, k);
            send(
                lane,
                all_input,
                now,
                format!(
                    "{tag} COPY {} {}\r\n",
                    at(&SEQS, *seq),
                    at(&MAILBOXES, *mailbox)
                )
                .as_bytes(),
            );
        }
        Action::Create { mailbox } => {
            let tag = new_tag(lane, k);
            send(
                lane,
                all_input,
                now,
                format!("{tag} CREATE {}\r\n", at(&MAILBOXES, *mailbox)).as_bytes(),
            );
        }
        Action::Idle { done } => {
            let tag = new_tag(lane, k);
            send(lane, all_input, now, format!("{tag} IDLE\r\n").as_bytes());
            if waiting(lane) {
                run.reached.idled = true;
                if *done {
                    send(lane, all_input, now, b"DONE\r\n");
                } else {
                    lane.idle = Some(tag);
                }
            }
        }
        Action::Garbage(bytes) => {
            let line = ops::garbage_line(bytes);
            send(lane, all_input, now, &line);
            // A garbage line may have started AUTHENTICATE or IDLE: end it the way a
            // client would, so the next operation is read as a command again.
            for fix in [&b"*\r\n"[..], b"DONE\r\n"] {
                if lane.server.is_between_commands() || lane.server.is_closed() {
                    break;
                }
                send(lane, all_input, now, fix);
            }
            lane.desynced |= !(lane.server.is_between_commands() || lane.server.is_closed());
        }
        Action::Reconnect | Action::Tick(_) => {}
    }
    run.reached.authenticated |= lane.server.authenticated_user().is_some();
}

/// Invariants that hold after every operation.
fn check_lane(lane: &Lane, k: usize) {
    assert!(
        lane.server.buffered_input() <= MAX_LINE + 2 * MAX_LITERAL + 64,
        "session {k} buffers {} octets",
        lane.server.buffered_input()
    );
    let stats = lane.server.stats();
    assert!(stats.tagged_replies <= stats.tagged_commands, "{stats:?}");
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
            ops::reveals(&lane.sent, password),
            "session {k} authenticated as {user} without its password"
        );
    }
    assert!(
        lane.out.len() <= 8192 + lane.sent.len() * (4096 + CAPS.max_bytes),
        "session {k}: output {} for input {}",
        lane.out.len(),
        lane.sent.len()
    );
}

/// Ends a session (DONE, EOF) and checks its tags.
fn finish(run: &mut Run, k: usize, mut lane: Lane) {
    let now = run.now;
    if !lane.server.is_closed() {
        if lane.idle.take().is_some() {
            send(&mut lane, &mut run.all_input, now, b"DONE\r\n");
        }
        check_lane(&lane, k);
        lane.server.handle_eof(now);
        drain(&mut lane, now);
    }
    // An IDLE the server ended itself (autologout) may close without a tagged line.
    let cut_off = lane.idle.take();
    let stats = lane.server.stats();
    let seen = tagged_lines(&lane.out);
    assert_eq!(
        seen.len() as u64,
        stats.tagged_replies,
        "session {k}: tagged lines on the wire vs counted"
    );
    for tag in &lane.tags {
        let n = seen.iter().filter(|t| **t == tag.as_bytes()).count();
        if lane.desynced || cut_off.as_ref() == Some(tag) {
            assert!(n <= 1, "session {k}: tag {tag} completed {n} times");
        } else {
            assert_eq!(
                n,
                1,
                "session {k}: tag {tag} completed {n} times\n{}",
                String::from_utf8_lossy(&lane.out)
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_lines_skip_literal_data_and_untagged_lines() {
        let out = b"* OK ready\r\n+ idling\r\n* 1 FETCH (BODY[] {12}\r\nT9 OK fake\r\n)\r\nT0.1 OK done\r\nT0.2 NO [TRYCREATE] x\r\n";
        assert_eq!(tagged_lines(out), vec![&b"T0.1"[..], b"T0.2"]);
        // a completion's text that ends in {n} announces no literal
        let out = b"T1 BAD unknown: X {5}\r\nT2 OK done\r\n* OK [ALERT] {3}\r\nT3 OK\r\n";
        assert_eq!(tagged_lines(out), vec![&b"T1"[..], b"T2", b"T3"]);
    }

    #[test]
    fn continuation_takes_the_last_line_only() {
        assert_eq!(continuation(b"* OK x\r\n+ abc\r\n"), Some(&b"abc"[..]));
        assert_eq!(continuation(b"+\r\n"), Some(&b""[..]));
        assert_eq!(continuation(b"+OK\r\n"), None);
        assert_eq!(continuation(b"+ x\r\nT1 OK\r\n"), None);
    }
}
