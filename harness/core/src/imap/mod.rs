//! IMAP4rev1 server endpoint (RFC 3501, with LITERAL+ RFC 7888, SASL-IR RFC 4959, IDLE
//! RFC 2177 and NTLM as [MS-OXIMAP4] frames it), sans-IO.
//!
//! # How commands are read
//!
//! Two layers:
//!
//! 1. [`framer`] (our own code) cuts the byte stream into command messages: CRLF lines
//!    and `{n}` / `{n+}` literals. It owns every limit. A literal's announced length is
//!    checked against `Limits::max_literal` before any octet is buffered and before the
//!    `+` continuation is sent; a line is never held past `Limits::max_line`; the octets
//!    of a refused non-synchronising literal are counted away, never stored; and the
//!    framing of a refused message continues to its end, so literal data is never read
//!    as a command. AUTHENTICATE responses and IDLE's `DONE` are framed as plain lines.
//! 2. The grammar of a complete message is **imap-codec** 2.0.0-alpha.10's server-side
//!    `CommandCodec`. It fits the server role: it reports `Incomplete` /
//!    `LiteralFound { tag, length, mode }` / `Failed` separately, decodes LITERAL+ and
//!    `AUTHENTICATE mech [initial-response | "="]` (SASL-IR), limits recursion in SEARCH
//!    keys, and keeps sequence sets as ranges (`1:4294967295` is two numbers, not four
//!    billion). Because the framer hands it whole messages, its `LiteralFound` path is not
//!    needed for flow control, and the tag for a `tag BAD` after `Failed` is taken from the
//!    message's first token by [`framer::first_tag`].
//!
//! Why not imap-codec's own `Fragmentizer`, whose approach (frame first, parse the whole
//! message second, keep framing a refused message to its end) the framer follows: it has
//! one maximum *message* size, while `Limits` has separate line and literal limits and
//! the literal limit must be applied before the `+` continuation is written; it reports an
//! over-size message only once the message ends, so a client streaming an endless line
//! would get no answer; and it does not know whether LITERAL+ was advertised. Why not
//! imap-codec for AUTHENTICATE lines and `DONE`: the server must accept `*` SP as a
//! cancel ([MS-OXIMAP4] 2.2.1 prints it so), which `AuthenticateDataCodec` rejects.
//!
//! Responses are written by hand: the exact bytes are fixed by RFC 3501 and by the
//! profile's quirks (bare `+`, cancel status and texts).
//!
//! The crate feature `starttls` of imap-codec is enabled (without it `STARTTLS` does not
//! parse). With imap-codec's default `quirk_always_normalize_sequence_sets`, encoding
//! rewrites sequence sets (`3,1:2` becomes `1:3`; pinned by a test), so a decoded command
//! does not survive encode-decode unchanged; [`fuzz_command_decode`] therefore checks that
//! the encoding is a fixed point after one round trip.
//!
//! # Model limits
//!
//! Messages are stored as bytes; their MIME structure is read on demand with mail-parser
//! (`mime.rs`) for BODY / BODYSTRUCTURE and `BODY[section]`. SEARCH BODY / TEXT match the
//! raw (still transfer-encoded) text.
//! `\Recent` (RFC 3501 2.3.2): a message is recent in the first session that has its
//! mailbox selected read-write, at SELECT or when it arrives, and in no other; EXAMINE
//! and STATUS report recent messages without claiming them.
//!
//! # Resource bounds
//!
//! Before authentication a literal may be no longer than a line (only credentials travel
//! then). APPEND, COPY and CREATE stop at [`StoreCaps`] (`NO [LIMIT]`), so COPY cannot
//! double a mailbox without end. SEARCH's substring test is linear. EXPUNGE responses are
//! withheld during FETCH, STORE and SEARCH (RFC 3501 7.4.1) and sent at the next command
//! that allows them; changes by other sessions are found by comparing the store with the
//! session's view, not by trusting `Mailbox::generation` alone.

mod cmd;
pub(crate) mod date;
mod fetch_render;
pub mod framer;
mod mailbox_name;
pub mod message;
pub mod mime;
mod mutf7;
mod search_eval;
mod server;
mod store_caps;
mod view;

pub use framer::{Frame, FrameConfig, FrameError, FrameMode, Framer};
pub use mailbox_name::DELIMITER;
pub use mutf7::valid_modified_utf7;
pub use server::{
    diagnose, CommandError, ImapServer, SessionStats, IDLE_POLL, LITERAL_CONTINUATION,
};
pub use store_caps::StoreCaps;
pub use view::{Ranges, View, ViewMsg};

use std::sync::Arc;
use std::time::Duration;

use imap_codec::decode::Decoder;
use imap_codec::encode::Encoder;
use imap_codec::CommandCodec;

use crate::profile::Profile;
use crate::session::{Output, ServerSession, SessionContext};

/// Fuzz entry: decode one command; if it decodes, encode it, decode that again and
/// check the second encoding equals the first (the codec's round trip is a fixed point).
pub fn fuzz_command_decode(data: &[u8]) {
    let codec = CommandCodec::default();
    let Ok((rest, cmd)) = codec.decode(data) else {
        return;
    };
    let first = codec.encode(&cmd).dump();
    // Decoding is a function of the octets of one command (it ends at its CRLF): an
    // encoding equal to the input is already known to decode to `cmd` with nothing left.
    if data.get(..data.len() - rest.len()) == Some(first.as_slice()) {
        return;
    }
    let again = codec.decode(&first);
    let Ok((rest, cmd2)) = again else {
        panic!(
            "re-decoding the encoding failed: {:?}",
            String::from_utf8_lossy(&first)
        );
    };
    assert!(rest.is_empty(), "encoding left trailing bytes");
    // Encoding is a function of the value: an equal command encodes to `first` again.
    if cmd2 == cmd {
        return;
    }
    let second = codec.encode(&cmd2).dump();
    assert_eq!(first, second, "encoding is not stable across a round trip");
}

/// Which responses carry literals (RFC 3501 9): the rule of the one IMAP response reader.
pub use harness_wire::imap::response_may_carry_literals;

/// The tags of the tagged lines in a server's output, literal data skipped (what a
/// client counts as completions), read by the one IMAP response reader.
pub(crate) fn tagged_lines(output: &[u8]) -> Vec<&[u8]> {
    use harness_wire::imap::{Event, Limits, ResponseReader};
    let mut reader = ResponseReader::new(Limits::UNBOUNDED);
    reader.push(output);
    let mut tags = Vec::new();
    // Unbounded limits give no error; a line's place in `output` is where the reader
    // stands after it, less its length.
    while let Ok(Some(event)) = reader.next_event() {
        let Event::Response(line) = event else {
            continue;
        };
        let end = usize::try_from(reader.position()).unwrap_or(usize::MAX);
        let line = output
            .get(end.saturating_sub(line.len())..end)
            .unwrap_or_default();
        let line = harness_wire::imap::trim_line_end(line);
        let first = line.split(|&b| b == b' ').next().unwrap_or_default();
        if first != b"*" && !first.starts_with(b"+") && !line.is_empty() {
            tags.push(first);
        }
    }
    tags
}

/// Fuzz entry: feeds `data` in chunks (the first byte picks the chunk size) to a server
/// on the default lab and checks: no panic, one tagged completion per tagged command,
/// bounded output and buffering, and no authentication unless a right password (raw or
/// inside a base64 token) is in the data.
pub fn fuzz_server_session(data: &[u8]) {
    let Some(world) = crate::fuzzing::ops::default_world() else {
        return;
    };
    let mut ctx = SessionContext::new(Arc::new(world), Arc::new(Profile::default_profile()));
    ctx.limits.max_line = 512;
    ctx.limits.max_literal = 4096;
    ctx.transport.starttls_available = true;
    let limits = ctx.limits.clone();
    let caps = StoreCaps {
        max_messages: 64,
        max_bytes: 64 * 1024,
        max_mailboxes: 16,
    };
    let mut server = ImapServer::new(ctx);
    server.set_store_caps(caps);
    let (chunk, body) = match data.split_first() {
        Some((&c, rest)) => (usize::from(c % 64) + 1, rest),
        None => (1, data),
    };
    let mut output = Vec::new();
    let mut now = Duration::ZERO;
    let drain = |server: &mut ImapServer, output: &mut Vec<u8>| {
        while let Some(o) = server.poll_output() {
            match o {
                Output::Write(w) => output.extend_from_slice(&w),
                // The fuzz transport "completes" TLS at once.
                Output::StartTls => server.handle_tls_established(Duration::ZERO),
                Output::Close => {}
            }
        }
    };
    drain(&mut server, &mut output);
    for piece in body.chunks(chunk) {
        now += Duration::from_millis(10);
        server.handle_input(now, piece);
        drain(&mut server, &mut output);
        assert!(
            server.buffered_input() <= limits.max_line + 2 * limits.max_literal + 64,
            "input buffer grew to {}",
            server.buffered_input()
        );
        let stats = server.stats();
        assert!(stats.tagged_replies <= stats.tagged_commands, "{stats:?}");
    }
    server.handle_timeout(now + Duration::from_millis(1));
    drain(&mut server, &mut output);
    let stats = server.stats();
    if server.is_between_commands() || server.is_closed() {
        assert_eq!(stats.tagged_replies, stats.tagged_commands, "{stats:?}");
    } else {
        assert!(
            stats.tagged_commands - stats.tagged_replies <= 1,
            "{stats:?}"
        );
    }
    assert_eq!(
        tagged_lines(&output).len() as u64,
        stats.tagged_replies,
        "tagged lines on the wire"
    );
    // IMAP amplifies by design (one `BODY[]` item returns a whole mailbox), so the bound
    // is per input octet and scales with the capped mailbox size; it catches loops.
    assert!(
        output.len() <= 8192 + data.len() * (4096 + caps.max_bytes),
        "output {} for input {}",
        output.len(),
        data.len()
    );
    if server.authenticated_user().is_some()
        && server.auth_mechanism() != Some(crate::sasl::Mechanism::Ntlm)
    {
        assert!(
            contains_a_password(body),
            "authenticated without a password"
        );
    }
    server.handle_eof(now);
    drain(&mut server, &mut output);
}

/// True if a default-lab password appears raw or inside a decodable base64 token.
/// (NTLM proves knowledge of the password without sending it, so the fuzz check skips it.)
fn contains_a_password(data: &[u8]) -> bool {
    const PASSWORDS: [&[u8]; 3] = [b"secret", b"pass", b"hunter2"];
    let has = |hay: &[u8]| {
        PASSWORDS
            .iter()
            .any(|p| hay.windows(p.len()).any(|w| w == *p))
    };
    if has(data) {
        return true;
    }
    data.split(|&b| !(b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='))
        .filter(|t| !t.is_empty())
        .filter_map(|t| crate::sasl::decode_base64(t).ok())
        .any(|d| has(&d))
}

#[cfg(test)]
mod tests;
