//! POP3 (RFC 1939, RFC 2449, RFC 2595, RFC 5034; [MS-POP3] shapes): the command codec, a
//! client-side reply decoder, and the server endpoint. Fuzz entry points live here so that
//! `cargo test` can run them on stable and the cargo-fuzz targets stay one line each.

pub mod command;
pub mod response;
pub mod server;

#[cfg(test)]
mod tests;

pub use command::{Command, CommandError, InitialResponse};
pub use response::{
    decode_multiline, decode_reply, decode_status, InvalidResponse, MultiLine, Reply,
    ResponseError, ResponseLimits, Status, StatusLine,
};
pub use server::{apop_digest, Pop3Server};

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use crate::profile::Profile;
use crate::session::{Output, ServerSession, SessionContext};
use crate::world::World;

/// Fuzz target `pop3_command_decode`: whatever decodes must encode to a line that decodes
/// to the same command.
pub fn fuzz_command_decode(data: &[u8]) {
    if let Ok(cmd) = Command::decode(data) {
        let mut line = Vec::new();
        cmd.encode(&mut line);
        assert!(line.ends_with(b"\r\n"), "encoded command lacks CRLF");
        let body = line.get(..line.len() - 2).unwrap_or_default();
        assert_eq!(
            Command::decode(body),
            Ok(cmd),
            "round trip changed the command"
        );
    }
}

/// Fuzz target `pop3_response_decode`: the reply decoders never claim more bytes than
/// given, a prefix of a decoded reply is Incomplete, and what decodes re-encodes to the
/// same value.
pub fn fuzz_response_decode(data: &[u8]) {
    let limits = ResponseLimits {
        max_line: 1024,
        max_body: 4096,
    };
    match decode_reply(data, &limits) {
        Ok((reply, used)) => {
            assert!(used > 0 && used <= data.len());
            let prefix = data.get(..used - 1).unwrap_or_default();
            assert_eq!(
                decode_reply(prefix, &limits),
                Err(ResponseError::Incomplete)
            );
            let mut again = Vec::new();
            match &reply {
                Reply::Status(s) => s.encode(&mut again),
                Reply::Continuation(d) => response::encode_continuation(d, &mut again),
            }
            if again.len() <= response::MAX_STATUS_LINE {
                assert_eq!(decode_reply(&again, &limits), Ok((reply, again.len())));
            }
        }
        Err(ResponseError::Incomplete) => assert!(!data.contains(&b'\n')),
        Err(ResponseError::Invalid(_)) => {}
    }
    if let Ok((multi, used)) = decode_multiline(data, &limits) {
        assert!(used <= data.len());
        let mut again = Vec::new();
        multi.status.encode(&mut again);
        if let Some(body) = &multi.body {
            assert!(body.len() <= limits.max_body);
            response::encode_body(response::lines(body), &mut again);
        }
        if again.len() <= 4 * limits.max_body {
            let big = ResponseLimits {
                max_line: 2048,
                max_body: 8192,
            };
            let status_len = again.iter().position(|&b| b == b'\n').unwrap_or(0) + 1;
            if status_len <= response::MAX_STATUS_LINE {
                assert_eq!(decode_multiline(&again, &big), Ok((multi, again.len())));
            }
        }
    }
}

/// Largest write that is not a RETR or TOP body (the lab's CAPA, LIST and UIDL fit easily).
const FUZZ_MAX_WRITE: usize = 4096;

/// Chunk sizes the client's byte stream is cut into, in turn, so that a corpus file is a
/// plain transcript of what a client sent.
const FUZZ_CHUNKS: [usize; 9] = [1, 7, 2, 64, 3, 13, 256, 5, 1024];

/// Fuzz target `pop3_server_session`. The first byte picks the setup (bit 0: `exchange`
/// profile instead of `default`; bit 1: the session starts inside TLS; bit 2: end with
/// the idle timeout instead of EOF); the rest is the client's byte stream.
pub fn fuzz_server_session(data: &[u8]) {
    run_server_session(data);
}

/// What one fuzzed session reached, so tests can tell that the inputs explore something.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct SessionSummary {
    authenticated: bool,
    removed: bool,
    closed_by_server: bool,
}

fn run_server_session(data: &[u8]) -> SessionSummary {
    let mut summary = SessionSummary::default();
    let Some(world) = crate::fuzzing::ops::default_world() else {
        return summary;
    };
    let world = Arc::new(world);
    let (setup, stream) = data.split_first().map_or((0, data), |(b, r)| (*b, r));
    let profile = if setup & 1 == 0 {
        Profile::default_profile()
    } else {
        Profile::exchange()
    };
    let mut ctx = SessionContext::new(world.clone(), Arc::new(profile));
    ctx.transport.starttls_available = true;
    ctx.transport.tls_active = setup & 2 != 0;
    // Long enough for an NTLM AUTHENTICATE in base64, short enough to be hit.
    ctx.limits.max_line = 1024;
    ctx.limits.idle_timeout = Duration::from_secs(600);
    ctx.seed = 7;
    ctx.epoch_secs = 1_700_000_000;
    let before = inbox_counts(&world);

    let mut server = Pop3Server::new(ctx);
    let timestamp = server.apop_timestamp().map(str::to_string);
    let mut users: Vec<String> = Vec::new();
    let mut now = Duration::ZERO;
    let mut rest = stream;
    let mut turn = 0;
    let mut closed = drain_checked(&mut server, now);
    while !rest.is_empty() && !closed {
        let size = FUZZ_CHUNKS[turn % FUZZ_CHUNKS.len()].min(rest.len());
        turn += 1;
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        now += Duration::from_secs(1);
        server.handle_input(now, chunk);
        if let Some(u) = server.authenticated_user() {
            if !users.iter().any(|x| x == u) {
                users.push(u.to_string());
            }
        }
        closed = drain_checked(&mut server, now);
    }
    summary.closed_by_server = closed;
    if !closed {
        if setup & 4 != 0 {
            let deadline = server.poll_timeout();
            assert!(deadline.is_some(), "an open session has an idle deadline");
            server.handle_timeout(deadline.unwrap_or(now));
        } else {
            server.handle_eof(now);
        }
        drain_checked(&mut server, now);
        assert!(
            server.is_closed(),
            "session did not close after EOF or timeout"
        );
    }
    drop(server);

    for user in &users {
        let password = world.directory.password(user).unwrap_or_default();
        assert!(
            stream_reveals(stream, &password, timestamp.as_deref()),
            "authenticated as {user} without the password in the input"
        );
    }
    summary.authenticated = !users.is_empty();
    let after = inbox_counts(&world);
    summary.removed = after != before;
    if after != before {
        let lower = stream.to_ascii_lowercase();
        assert!(
            lower.windows(4).any(|w| w == b"quit"),
            "messages vanished without QUIT"
        );
    }
    for (user, _) in &after {
        assert!(
            world.store.try_lock_maildrop(user),
            "maildrop lock of {user} leaked"
        );
    }
    summary
}

fn inbox_counts(world: &World) -> Vec<(String, usize)> {
    world
        .directory
        .principals()
        .map(|p| {
            let n = world.store.with_account(&p.name, |a| {
                a.mailbox("INBOX").map_or(0, |m| m.messages.len())
            });
            (p.name.clone(), n)
        })
        .collect()
}

/// Whether the client stream carries `password`: in clear, inside a base64 token (PLAIN,
/// LOGIN), as the APOP digest over the greeting's timestamp, or as an NTLM AUTHENTICATE.
pub(crate) fn stream_reveals(stream: &[u8], password: &str, timestamp: Option<&str>) -> bool {
    let pw = password.as_bytes();
    let contains = |hay: &[u8]| pw.is_empty() || hay.windows(pw.len()).any(|w| w == pw);
    if contains(stream) {
        return true;
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let tokens = stream.split(|&b| b == b' ' || b == b'\r' || b == b'\n');
    // An NTLM AUTHENTICATE message is a proof computed from the password (its
    // responses, [MS-NLMP] 3.3), so a stream carrying one may authenticate too.
    let ntlm_authenticate = |d: &[u8]| d.starts_with(b"NTLMSSP\0\x03\0\0\0");
    if tokens
        .filter_map(|t| b64.decode(t).ok())
        .any(|decoded| contains(&decoded) || ntlm_authenticate(&decoded))
    {
        return true;
    }
    timestamp.is_some_and(|ts| {
        let digest = apop_digest(ts, password);
        let lower = stream.to_ascii_lowercase();
        lower.windows(digest.len()).any(|w| w == digest.as_bytes())
    })
}

/// Drains the server's output, checking every write; true once it has closed.
fn drain_checked(server: &mut Pop3Server, now: Duration) -> bool {
    while let Some(out) = server.poll_output() {
        match out {
            Output::Write(bytes) => check_write(&bytes),
            Output::StartTls => server.handle_tls_established(now),
            Output::Close => return true,
        }
    }
    server.is_closed()
}

pub(crate) fn check_write(bytes: &[u8]) {
    assert!(bytes.ends_with(b"\r\n"), "write does not end with CRLF");
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            assert!(
                i > 0 && bytes.get(i - 1) == Some(&b'\r'),
                "bare LF in output"
            );
        }
    }
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let is_body = first.starts_with(b"+OK ")
        && (first.ends_with(b" octets\r") || first == b"+OK top of message follows\r");
    if !is_body {
        assert!(
            bytes.len() <= FUZZ_MAX_WRITE,
            "write of {} bytes",
            bytes.len()
        );
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            assert!(
                line.len() <= response::MAX_STATUS_LINE,
                "line over 512 octets"
            );
        }
    }
}

#[cfg(test)]
mod fuzz_tests {
    use super::*;

    #[test]
    fn command_decode_target_on_samples() {
        for s in [
            &b"USER alice"[..],
            b"PASS a b ",
            b"AUTH",
            b"AUTH PLAIN =",
            b"TOP 1 00",
            b"xyz  ",
            b"\xff\xfe",
            b"",
            b"LIST 99999999999",
            b"APOP u 0123456789abcdef0123456789ABCDEF",
        ] {
            fuzz_command_decode(s);
        }
    }

    #[test]
    fn response_decode_target_on_samples() {
        for s in [
            &b"+OK\r\n"[..],
            b"+OK [a]x\r\n",
            b"-ERR [SYS/TEMP] try later\r\n",
            b"+ dGVzdA==\r\n",
            b"+OK\r\n..x\r\n\r\n.\r\n",
            b"+OK\r\na\rb\r\n.\r\n",
            b"+OK\n",
            b"-ERR",
            b"+OK\r\nnever ends\r\n",
        ] {
            fuzz_response_decode(s);
        }
    }

    #[test]
    fn server_session_target_on_samples() {
        let plain = base64::engine::general_purpose::STANDARD.encode(b"\0alice\0secret");
        let sessions: Vec<Vec<u8>> = vec![
            b"\0USER alice\r\nPASS secret\r\nSTAT\r\nDELE 1\r\nRETR 2\r\nTOP 3 1\r\nQUIT\r\n"
                .to_vec(),
            b"\x04USER alice\r\nPASS secret\r\nDELE 1\r\n".to_vec(),
            format!("\x01CAPA\r\nAUTH\r\nAUTH PLAIN {plain}\r\nLIST\r\nUIDL\r\nQUIT\r\n")
                .into_bytes(),
            b"\0STLS\r\nUSER alice\r\nPASS secret\r\nCAPA\r\n".to_vec(),
            b"\x02USER alice\r\nPASS wrong\r\nAUTH NTLM\r\nTlRMTVNTUAABAAAA\r\nNOOP\r\n".to_vec(),
            [b"\0".as_slice(), &[b'A'; 2000], b"\r\nNOOP\r\n\xff\xff\r\n"].concat(),
            Vec::new(),
        ];
        for s in &sessions {
            fuzz_server_session(s);
        }
    }

    #[test]
    fn stream_reveals_finds_each_form() {
        assert!(stream_reveals(b"PASS secret", "secret", None));
        assert!(stream_reveals(
            b"AUTH PLAIN AGFsaWNlAHNlY3JldA==",
            "secret",
            None
        ));
        let ts = "<1.2@h>";
        let line = format!("APOP alice {}", apop_digest(ts, "secret").to_uppercase());
        assert!(stream_reveals(line.as_bytes(), "secret", Some(ts)));
        assert!(!stream_reveals(b"PASS secreT", "secret", Some(ts)));
        assert!(stream_reveals(b"TlRMTVNTUAADAAAA\r\n", "secret", None));
        assert!(!stream_reveals(b"TlRMTVNTUAABAAAA\r\n", "secret", None));
    }

    /// A few thousand seeded mutations of a dictionary of client lines, through all three
    /// targets: a cheap stand-in for cargo-fuzz that runs under `cargo test`.
    #[test]
    fn seeded_mutation_smoke_run() {
        use crate::rng::SeededRng;
        let b64 = base64::engine::general_purpose::STANDARD;
        let plain = format!("AUTH PLAIN {}\r\n", b64.encode(b"\0alice\0secret"));
        let dict = crate::fuzzing::ops::dictionary(
            &[
                "USER alice\r\n",
                "PASS secret\r\n",
                "USER bob\r\nPASS hunter2\r\n",
                "USER bob\r\nPASS hunter2\r\n",
                "DELE 2\r\nQUIT\r\n",
                "PASS wrong\r\n",
                "STAT\r\n",
                "LIST\r\n",
                "LIST 2\r\n",
                "UIDL\r\n",
                "RETR 1\r\n",
                "TOP 2 1\r\n",
                "DELE 1\r\n",
                "DELE 9\r\n",
                "RSET\r\n",
                "NOOP\r\n",
                "QUIT\r\n",
                "CAPA\r\n",
                "STLS\r\n",
                "AUTH \r\n",
                "AUTH PLAIN\r\n",
                "AUTH LOGIN\r\n",
                "AUTH NTLM\r\n",
                "TlRMTVNTUAABAAAAB4IIog==\r\n",
                "*\r\n",
                "APOP alice 0123456789abcdef0123456789abcdef\r\n",
                "\n",
                "\r",
                ".\r\n",
                "+OK [IN-USE] x\r\n",
                "+ \r\n",
                "-ERR\r\n",
            ],
            [plain.into_bytes(), vec![0xff, 0xfe], vec![b'A'; 400]],
        );
        let mut rng = SeededRng::new(2024);
        let mut reached = [0usize; 3];
        for _ in 0..1500 {
            let setup = (rng.next_u64() % 8) as u8;
            let data = crate::fuzzing::ops::dictionary_input(&mut rng, setup, &dict, 12, 8);
            let s = run_server_session(&data);
            reached[0] += usize::from(s.authenticated);
            reached[1] += usize::from(s.removed);
            reached[2] += usize::from(s.closed_by_server);
            let body = &data[1..];
            fuzz_response_decode(body);
            for line in body.split(|&b| b == b'\n') {
                fuzz_command_decode(line.strip_suffix(b"\r").unwrap_or(line));
            }
        }
        // The dictionary must reach the interesting states, or the run proves little.
        assert!(
            reached.iter().all(|&n| n >= 10),
            "states reached: {reached:?}"
        );
    }
}
