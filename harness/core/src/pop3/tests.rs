//! Session tests for the POP3 server: bytes in, outputs out, byte-exact where RFC 1939
//! fixes the shape.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use pretty_assertions::assert_eq;

use super::response::{decode_multiline, ResponseLimits};
use super::{apop_digest, Pop3Server};
use crate::profile::Profile;
use crate::session::{Output, ServerSession, SessionContext};
use crate::world::{LabFile, World};

const HOST: &str = "mail.example.test";

fn lab() -> Arc<World> {
    Arc::new(LabFile::default_lab().build().unwrap())
}

fn ctx(world: &Arc<World>, profile: Profile) -> SessionContext {
    let mut ctx = SessionContext::new(world.clone(), Arc::new(profile));
    ctx.transport.starttls_available = true;
    ctx.seed = 42;
    ctx.epoch_secs = 1_700_000_000;
    ctx.limits.idle_timeout = Duration::from_secs(600);
    ctx
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A server plus the test's clock.
struct Conn {
    server: Pop3Server,
    now: Duration,
}

impl Conn {
    fn new(world: &Arc<World>, profile: Profile) -> (Conn, String) {
        Conn::with_ctx(ctx(world, profile))
    }

    fn with_ctx(ctx: SessionContext) -> (Conn, String) {
        let mut c = Conn {
            server: Pop3Server::new(ctx),
            now: Duration::ZERO,
        };
        let greeting = String::from_utf8(c.written()).unwrap();
        (c, greeting)
    }

    fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.server.poll_output()).collect()
    }

    /// Everything written, asserting that nothing but writes came out.
    fn written(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        for o in self.outputs() {
            match o {
                Output::Write(b) => all.extend(b),
                other => panic!("unexpected {other:?}"),
            }
        }
        all
    }

    fn send(&mut self, input: &[u8]) -> Vec<u8> {
        self.now += Duration::from_secs(1);
        self.server.handle_input(self.now, input);
        self.written()
    }

    fn send_str(&mut self, input: &str) -> String {
        String::from_utf8(self.send(input.as_bytes())).unwrap()
    }

    fn login(&mut self, user: &str, pass: &str) {
        assert_eq!(
            self.send_str(&format!("USER {user}\r\n")),
            "+OK send PASS\r\n"
        );
        let r = self.send_str(&format!("PASS {pass}\r\n"));
        assert!(r.starts_with("+OK "), "{r}");
    }
}

/// UIDVALIDITY and (UID, bytes) of each message.
type Inbox = (u32, Vec<(u32, Arc<[u8]>)>);

fn inbox(world: &World, user: &str) -> Inbox {
    world.store.with_account(user, |a| {
        let mb = a.mailbox("INBOX").unwrap();
        (
            mb.uid_validity,
            mb.messages
                .iter()
                .map(|m| (m.uid, m.data.clone()))
                .collect(),
        )
    })
}

/// The msg-id in a greeting.
fn timestamp_of(greeting: &str) -> &str {
    let start = greeting.find('<').unwrap();
    let end = greeting.rfind('>').unwrap();
    &greeting[start..=end]
}

#[test]
fn apop_digest_matches_rfc_1939_example() {
    // RFC 1939 section 7.
    assert_eq!(
        apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf"),
        "c4c9334bac560ecc979e58001b3e22fb"
    );
}

#[test]
fn greeting_carries_a_seeded_apop_timestamp() {
    let world = lab();
    let (_, g) = Conn::new(&world, Profile::default_profile());
    let prefix = format!("+OK {HOST} POP3 harness ready <");
    let suffix = format!(".1700000000@{HOST}>\r\n");
    assert!(g.starts_with(&prefix) && g.ends_with(&suffix), "{g}");
    let digits = &g[prefix.len()..g.len() - suffix.len()];
    assert!(!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    let (_, again) = Conn::new(&world, Profile::default_profile());
    assert_eq!(g, again, "same seed, same greeting");
    let mut other = ctx(&world, Profile::default_profile());
    other.seed = 43;
    let (_, g3) = Conn::with_ctx(other);
    assert_ne!(g, g3);
    let (_, ex) = Conn::new(&world, Profile::exchange());
    assert_eq!(ex, "+OK The Microsoft Exchange POP3 service is ready.\r\n");
}

#[test]
fn user_pass_full_session_byte_exact() {
    let world = lab();
    let (uv, msgs) = inbox(&world, "alice");
    assert_eq!(msgs.iter().map(|m| m.1.len()).sum::<usize>(), 762);
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    assert_eq!(c.send_str("USER alice\r\n"), "+OK send PASS\r\n");
    assert_eq!(
        c.send_str("PASS secret\r\n"),
        "+OK alice's maildrop has 3 messages (762 octets)\r\n"
    );
    assert_eq!(c.server.authenticated_user(), Some("alice"));
    assert_eq!(c.send_str("STAT\r\n"), "+OK 3 762\r\n");
    assert_eq!(
        c.send_str("LIST\r\n"),
        "+OK 3 messages (762 octets)\r\n1 254\r\n2 254\r\n3 254\r\n.\r\n"
    );
    assert_eq!(c.send_str("LIST 2\r\n"), "+OK 2 254\r\n");
    assert_eq!(
        c.send_str("UIDL\r\n"),
        format!("+OK unique-id listing follows\r\n1 {uv}.1\r\n2 {uv}.2\r\n3 {uv}.3\r\n.\r\n")
    );
    assert_eq!(c.send_str("UIDL 3\r\n"), format!("+OK 3 {uv}.3\r\n"));
    assert_eq!(
        c.send_str("RETR 1\r\n"),
        "+OK 254 octets\r\n\
         Return-Path: <sender@example.test>\r\n\
         From: Sender <sender@example.test>\r\n\
         To: alice@example.test\r\n\
         Subject: Test message 1\r\n\
         Date: Mon, 1 Jan 2024 00:00:01 +0000\r\n\
         Message-ID: <msg1.alice@example.test>\r\n\
         \r\n\
         Hello alice, this is message number 1.\r\n\
         Second line.\r\n\
         .\r\n"
    );
    assert_eq!(c.send_str("NOOP\r\n"), "+OK\r\n");
    assert_eq!(
        c.send_str("LIST 4\r\n"),
        "-ERR no such message 4; the maildrop has 3 messages\r\n"
    );
    c.server.handle_input(c.now, b"QUIT\r\n");
    assert_eq!(
        c.outputs(),
        vec![
            Output::Write(
                format!("+OK {HOST} POP3 server signing off (3 messages left)\r\n").into_bytes()
            ),
            Output::Close
        ]
    );
    assert!(c.server.is_closed());
    assert_eq!(c.server.poll_timeout(), None);
    // Nothing more is read after QUIT.
    c.server.handle_input(c.now, b"NOOP\r\n");
    assert_eq!(c.outputs(), vec![]);
}

#[test]
fn apop_session_with_digest_from_the_greeting() {
    let world = lab();
    let (mut c, g) = Conn::new(&world, Profile::default_profile());
    let ts = timestamp_of(&g).to_string();
    assert_eq!(c.server.apop_timestamp(), Some(ts.as_str()));
    let wrong = apop_digest(&ts, "nope");
    assert_eq!(
        c.send_str(&format!("APOP alice {wrong}\r\n")),
        "-ERR [AUTH] authentication failed: bad user name or digest\r\n"
    );
    let right = apop_digest(&ts, "secret").to_uppercase();
    assert_eq!(
        c.send_str(&format!("apop ALICE {right}\r\n")),
        "+OK alice's maildrop has 3 messages (762 octets)\r\n"
    );
    // APOP is refused where the profile has no timestamp.
    let (mut ex, _) = Conn::new(&world, Profile::exchange());
    assert_eq!(
        ex.send_str(&format!("APOP bob {right}\r\n")),
        "-ERR APOP is not enabled here\r\n"
    );
}

#[test]
fn auth_plain_with_and_without_initial_response() {
    let world = lab();
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    assert_eq!(
        c.send_str(&format!("AUTH PLAIN {}\r\n", b64(b"\0alice\0secret"))),
        "+OK alice's maildrop has 3 messages (762 octets)\r\n"
    );
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    assert_eq!(c.send_str("AUTH plain\r\n"), "+ \r\n");
    assert_eq!(
        c.send_str(&format!("{}\r\n", b64(b"\0bob\0hunter2"))),
        "+OK bob's maildrop has 3 messages (744 octets)\r\n"
    );
    // Wrong password, then `=` (an empty initial response, malformed for PLAIN).
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    assert_eq!(
        c.send_str(&format!("AUTH PLAIN {}\r\n", b64(b"\0user\0nope"))),
        "-ERR [AUTH] authentication failed: invalid credentials\r\n"
    );
    let r = c.send_str("AUTH PLAIN =\r\n");
    assert!(
        r.starts_with("-ERR [AUTH] authentication failed: malformed PLAIN"),
        "{r}"
    );
    c.login("user", "pass");
}

#[test]
fn auth_login_two_challenges() {
    let world = lab();
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    assert_eq!(c.send_str("AUTH LOGIN\r\n"), "+ VXNlcm5hbWU6\r\n");
    assert_eq!(c.send_str("Ym9i\r\n"), "+ UGFzc3dvcmQ6\r\n");
    assert_eq!(
        c.send_str(&format!("{}\r\n", b64(b"hunter2"))),
        "+OK bob's maildrop has 3 messages (744 octets)\r\n"
    );
}

#[test]
fn auth_without_mechanism_lists_or_refuses() {
    let world = lab();
    // [MS-POP3] 2.2.1: `AUTH` SP CRLF lists the mechanisms and stays unauthenticated.
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    assert_eq!(
        c.send_str("AUTH \r\n"),
        "+OK\r\nPLAIN\r\nLOGIN\r\nNTLM\r\n.\r\n"
    );
    assert_eq!(c.server.authenticated_user(), None);
    let (mut ex, _) = Conn::new(&world, Profile::exchange());
    assert_eq!(ex.send_str("AUTH\r\n"), "+OK\r\nNTLM\r\nPLAIN\r\n.\r\n");
    assert_eq!(
        ex.send_str("AUTH LOGIN\r\n"),
        "-ERR SASL mechanism LOGIN is not supported\r\n"
    );
    let mut p = Profile::default_profile();
    p.pop3.auth_lists_mechanisms = false;
    let (mut c, _) = Conn::new(&world, p);
    assert_eq!(
        c.send_str("AUTH\r\n"),
        "-ERR AUTH needs a mechanism name\r\n"
    );
    assert_eq!(
        c.send_str("AUTH CRAM-MD5\r\n"),
        "-ERR SASL mechanism CRAM-MD5 is not supported\r\n"
    );
}

#[test]
fn capa_under_default_and_exchange() {
    let world = lab();
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    assert_eq!(
        c.send_str("CAPA\r\n"),
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n\
         AUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN NTLM\r\nSTLS\r\n.\r\n"
    );
    // RFC 2595 section 4: no STLS in the TRANSACTION state.
    c.login("alice", "secret");
    assert_eq!(
        c.send_str("CAPA\r\n"),
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n\
         AUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN NTLM\r\n.\r\n"
    );
    let (mut ex, _) = Conn::new(&world, Profile::exchange());
    assert_eq!(
        ex.send_str("CAPA\r\n"),
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL NTLM PLAIN\r\nSTLS\r\n.\r\n"
    );
    // No STLS when the transport cannot do TLS.
    let mut plain = ctx(&world, Profile::exchange());
    plain.transport.starttls_available = false;
    let (mut c, _) = Conn::with_ctx(plain);
    assert_eq!(
        c.send_str("CAPA\r\n"),
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL NTLM PLAIN\r\n.\r\n"
    );
    assert_eq!(c.send_str("STLS\r\n"), "-ERR STLS is not available\r\n");
}

#[test]
fn stls_flow_drops_pipelined_bytes() {
    let world = lab();
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    c.server
        .handle_input(c.now, b"STLS\r\nUSER alice\r\nPASS secret\r\nSTAT\r\n");
    assert_eq!(
        c.outputs(),
        vec![
            Output::Write(b"+OK Begin TLS negotiation\r\n".to_vec()),
            Output::StartTls
        ]
    );
    // Bytes before the handshake completes are cleartext too: ignored.
    c.server.handle_input(c.now, b"PASS secret\r\n");
    assert_eq!(c.outputs(), vec![]);
    c.server.handle_tls_established(c.now);
    assert_eq!(c.server.authenticated_user(), None);
    assert_eq!(c.send_str("STAT\r\n").get(..4), Some("-ERR"));
    assert_eq!(
        c.send_str("PASS secret\r\n"),
        "-ERR PASS must come right after USER\r\n"
    );
    let capa = c.send_str("CAPA\r\n");
    assert!(!capa.contains("STLS"), "{capa}");
    assert_eq!(c.send_str("STLS\r\n"), "-ERR TLS is already active\r\n");
    c.login("alice", "secret");
}

#[test]
fn retr_dot_stuffs_and_top_cuts() {
    let text = r#"
        [[user]]
        name = "dot"
        password = "pw"
        [[user.message]]
        raw = "Subject: dots\n\n.hidden\n..two\n.\nend\nmore\n"
    "#;
    let world = Arc::new(LabFile::parse(text).unwrap().build().unwrap());
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    c.login("dot", "pw");
    let retr = c.send(b"RETR 1\r\n");
    assert_eq!(
        retr,
        b"+OK 47 octets\r\nSubject: dots\r\n\r\n..hidden\r\n...two\r\n..\r\nend\r\nmore\r\n.\r\n"
    );
    let (m, used) = decode_multiline(&retr, &ResponseLimits::default()).unwrap();
    assert_eq!(used, retr.len());
    assert_eq!(m.body.unwrap(), &*inbox(&world, "dot").1[0].1);
    assert_eq!(
        c.send(b"TOP 1 2\r\n"),
        b"+OK top of message follows\r\nSubject: dots\r\n\r\n..hidden\r\n...two\r\n.\r\n"
    );
    assert_eq!(
        c.send(b"TOP 1 0\r\n"),
        b"+OK top of message follows\r\nSubject: dots\r\n\r\n.\r\n"
    );
    let all = c.send(b"TOP 1 100\r\n");
    assert!(all.ends_with(b"end\r\nmore\r\n.\r\n"));
    assert_eq!(
        c.send(b"TOP 2 1\r\n"),
        b"-ERR no such message 2; the maildrop has 1 messages\r\n"
    );
}

#[test]
fn dele_hides_and_rset_restores() {
    let world = lab();
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    c.login("alice", "secret");
    assert_eq!(c.send_str("DELE 1\r\n"), "+OK message 1 deleted\r\n");
    assert_eq!(
        c.send_str("DELE 1\r\n"),
        "-ERR message 1 already deleted\r\n"
    );
    assert_eq!(c.send_str("RETR 1\r\n"), "-ERR message 1 is deleted\r\n");
    assert_eq!(c.send_str("LIST 1\r\n"), "-ERR message 1 is deleted\r\n");
    assert_eq!(c.send_str("TOP 1 0\r\n"), "-ERR message 1 is deleted\r\n");
    assert_eq!(c.send_str("STAT\r\n"), "+OK 2 508\r\n");
    assert_eq!(
        c.send_str("LIST\r\n"),
        "+OK 2 messages (508 octets)\r\n2 254\r\n3 254\r\n.\r\n"
    );
    assert_eq!(
        c.send_str("RSET\r\n"),
        "+OK maildrop has 3 messages (762 octets)\r\n"
    );
    assert!(c.send_str("RETR 1\r\n").starts_with("+OK 254 octets\r\n"));
    assert_eq!(inbox(&world, "alice").1.len(), 3);
}

#[test]
fn dele_quit_commits_by_uid() {
    let world = lab();
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    c.login("alice", "secret");
    assert_eq!(
        c.send_str("DELE 1\r\nDELE 3\r\n"),
        "+OK message 1 deleted\r\n+OK message 3 deleted\r\n"
    );
    // Meanwhile another client (IMAP, say) delivers a message.
    let new_uid = world.store.with_account("alice", |a| {
        a.mailbox_mut("INBOX").unwrap().append(
            Arc::from(&b"Subject: new\r\n\r\nx\r\n"[..]),
            Default::default(),
            0,
        )
    });
    c.server.handle_input(c.now, b"QUIT\r\n");
    assert_eq!(
        c.outputs(),
        vec![
            Output::Write(
                format!("+OK {HOST} POP3 server signing off (2 messages left)\r\n").into_bytes()
            ),
            Output::Close
        ]
    );
    let (uv, left) = inbox(&world, "alice");
    assert_eq!(
        left.iter().map(|m| m.0).collect::<Vec<_>>(),
        vec![2, new_uid]
    );
    // A second session sees fewer messages, numbered afresh, with stable unique ids.
    let (mut c2, _) = Conn::new(&world, Profile::default_profile());
    c2.login("alice", "secret");
    assert_eq!(c2.send_str("STAT\r\n"), "+OK 2 273\r\n");
    assert_eq!(
        c2.send_str("UIDL\r\n"),
        format!("+OK unique-id listing follows\r\n1 {uv}.2\r\n2 {uv}.{new_uid}\r\n.\r\n")
    );
}

#[test]
fn dele_then_eof_or_timeout_commits_nothing() {
    let world = lab();
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    c.login("alice", "secret");
    c.send_str("DELE 1\r\nDELE 2\r\n");
    c.server.handle_eof(c.now);
    assert_eq!(c.outputs(), vec![Output::Close]);
    assert!(c.server.is_closed());
    assert_eq!(inbox(&world, "alice").1.len(), 3);

    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    c.login("alice", "secret");
    c.send_str("DELE 3\r\n");
    crate::session::assert_idle_autologout(
        &mut c.server,
        c.now,
        b"-ERR autologout; idle for too long\r\n",
    );
    assert_eq!(inbox(&world, "alice").1.len(), 3);
    // Both sessions gave the lock back.
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    c.login("alice", "secret");
}

#[test]
fn maildrop_lock_refuses_a_concurrent_session() {
    let world = lab();
    let (mut a, _) = Conn::new(&world, Profile::default_profile());
    a.login("alice", "secret");
    let (mut b, _) = Conn::new(&world, Profile::default_profile());
    b.send_str("USER alice\r\n");
    assert_eq!(
        b.send_str("PASS secret\r\n"),
        "-ERR [IN-USE] maildrop of alice is locked by another session\r\n"
    );
    assert_eq!(
        b.send_str(&format!("AUTH PLAIN {}\r\n", b64(b"\0alice\0secret"))),
        "-ERR [IN-USE] maildrop of alice is locked by another session\r\n"
    );
    // b is still in AUTHORIZATION and may try again later.
    assert_eq!(b.send_str("STAT\r\n").get(..4), Some("-ERR"));
    a.server.handle_input(a.now, b"QUIT\r\n");
    assert_eq!(a.outputs().last(), Some(&Output::Close));
    b.login("alice", "secret");
    // Dropping a session without EOF releases the lock too.
    drop(b);
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    c.login("alice", "secret");
}

#[test]
fn pipelined_commands_and_bare_lf_byte_by_byte() {
    let world = lab();
    let script = b"USER alice\r\nPASS secret\nSTAT\r\nNOOP\nQUIT\r\n";
    let (mut whole, _) = Conn::new(&world, Profile::default_profile());
    whole.server.handle_input(Duration::ZERO, script);
    let outs_whole = whole.outputs();
    let (mut bytewise, _) = Conn::new(&world, Profile::default_profile());
    let mut outs_bytes = Vec::new();
    for b in script {
        bytewise.server.handle_input(Duration::ZERO, &[*b]);
        outs_bytes.extend(bytewise.outputs());
    }
    assert_eq!(outs_whole, outs_bytes);
    assert_eq!(
        outs_whole,
        vec![
            Output::Write(b"+OK send PASS\r\n".to_vec()),
            Output::Write(b"+OK alice's maildrop has 3 messages (762 octets)\r\n".to_vec()),
            Output::Write(b"+OK 3 762\r\n".to_vec()),
            Output::Write(b"+OK\r\n".to_vec()),
            Output::Write(
                format!("+OK {HOST} POP3 server signing off (3 messages left)\r\n").into_bytes()
            ),
            Output::Close,
        ]
    );
}

#[test]
fn authorization_rules() {
    let world = lab();
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    assert_eq!(
        c.send_str("PASS secret\r\n"),
        "-ERR PASS must come right after USER\r\n"
    );
    c.send_str("USER alice\r\n");
    c.send_str("CAPA\r\n");
    assert_eq!(
        c.send_str("PASS secret\r\n"),
        "-ERR PASS must come right after USER\r\n"
    );
    c.send_str("USER alice\r\n");
    assert_eq!(
        c.send_str("PASS Secret\r\n"),
        "-ERR [AUTH] authentication failed: bad user name or password\r\n"
    );
    c.send_str("USER nobody\r\n");
    assert_eq!(
        c.send_str("PASS secret\r\n"),
        "-ERR [AUTH] authentication failed: bad user name or password\r\n"
    );
    let mut p = Profile::default_profile();
    p.pop3.user_pass = false;
    let (mut n, _) = Conn::new(&world, p);
    assert_eq!(
        n.send_str("USER alice\r\n"),
        "-ERR USER/PASS is not enabled here; use AUTH\r\n"
    );
    assert!(!n.send_str("CAPA\r\n").contains("\r\nUSER\r\n"));
    n.server.handle_input(n.now, b"QUIT\r\nNOOP\r\n");
    assert_eq!(
        n.outputs(),
        vec![
            Output::Write(format!("+OK {HOST} POP3 server signing off\r\n").into_bytes()),
            Output::Close
        ]
    );
}

#[test]
fn bad_input_unknown_command_and_wrong_state() {
    let world = lab();
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    assert_eq!(c.send_str("FOO bar\r\n"), "-ERR unknown command FOO\r\n");
    assert_eq!(
        c.send_str("STAT\r\n"),
        "-ERR STAT is not valid in the AUTHORIZATION state; authenticate first\r\n"
    );
    assert_eq!(c.send_str("\r\n"), "-ERR empty command line\r\n");
    assert_eq!(
        c.send_str("RETR x\r\n"),
        "-ERR RETR: the message number is not a decimal number\r\n"
    );
    c.login("alice", "secret");
    assert_eq!(
        c.send_str("USER bob\r\n"),
        "-ERR USER is not valid in the TRANSACTION state\r\n"
    );
    assert_eq!(
        c.send_str("STLS\r\n"),
        "-ERR STLS is not valid in the TRANSACTION state\r\n"
    );
    assert_eq!(
        c.send_str("AUTH PLAIN =\r\n"),
        "-ERR AUTH is not valid in the TRANSACTION state\r\n"
    );
    assert_eq!(
        c.send_str("RETR 0\r\n"),
        "-ERR RETR: the message number is out of range\r\n"
    );
    assert_eq!(c.send_str("STAT\r\n"), "+OK 3 762\r\n");
}

#[test]
fn bad_input_line_over_the_limit_keeps_the_session_in_sync() {
    let world = lab();
    let mut cx = ctx(&world, Profile::default_profile());
    cx.limits.max_line = 64;
    let (mut c, _) = Conn::with_ctx(cx);
    // 62 octets + CRLF fit exactly.
    let fits = format!("X{}\r\n", "a".repeat(61));
    assert_eq!(
        c.send_str(&fits),
        format!("-ERR unknown command X{}\r\n", "a".repeat(39))
    );
    // One more does not; the answer comes once, and the rest of the line is dropped
    // without being buffered, however it arrives.
    let over = format!("Y{}\r\n", "a".repeat(62));
    assert_eq!(
        c.send_str(&over),
        "-ERR line too long (limit 64 octets)\r\n"
    );
    assert_eq!(
        c.send(&[b'A'; 100]),
        b"-ERR line too long (limit 64 octets)\r\n"
    );
    assert_eq!(c.send(&[b'B'; 10_000]), b"");
    assert_eq!(c.send(b"STAT 1 2 3 USER alice"), b"");
    // The LF ends the long line; what follows is read normally.
    c.login_after(b"\r\n");
    assert_eq!(c.send_str("STAT\r\n"), "+OK 3 762\r\n");
}

impl Conn {
    fn login_after(&mut self, prefix: &[u8]) {
        let mut input = prefix.to_vec();
        input.extend_from_slice(b"USER alice\r\nPASS secret\r\n");
        assert_eq!(
            self.send(&input),
            b"+OK send PASS\r\n+OK alice's maildrop has 3 messages (762 octets)\r\n"
        );
    }
}

#[test]
fn bad_input_invalid_base64_and_cancel_in_auth() {
    let world = lab();
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    assert_eq!(c.send_str("AUTH PLAIN\r\n"), "+ \r\n");
    assert_eq!(
        c.send_str("!!not base64!!\r\n"),
        "-ERR AUTH response is not valid base64; authentication aborted\r\n"
    );
    assert_eq!(
        c.send_str("AUTH PLAIN %%%\r\n"),
        "-ERR AUTH initial response is not valid base64\r\n"
    );
    assert_eq!(c.send_str("AUTH LOGIN\r\n"), "+ VXNlcm5hbWU6\r\n");
    assert_eq!(
        c.send_str("*\r\n"),
        "-ERR authentication cancelled by the client\r\n"
    );
    // Back in AUTHORIZATION: a command is a command again.
    c.login("alice", "secret");
}

/// A NEGOTIATE whose domain and workstation fields point far outside the message.
fn hostile_negotiate() -> Vec<u8> {
    let mut m = b"NTLMSSP\0".to_vec();
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&0xb207_8237u32.to_le_bytes());
    // Domain: length 0x1000, max length 0x1000, offset 0xfffffff0.
    m.extend_from_slice(&0x1000u16.to_le_bytes());
    m.extend_from_slice(&0x1000u16.to_le_bytes());
    m.extend_from_slice(&0xffff_fff0u32.to_le_bytes());
    // Workstation: length 0xffff at offset 0x7fffffff.
    m.extend_from_slice(&0xffffu16.to_le_bytes());
    m.extend_from_slice(&0xffffu16.to_le_bytes());
    m.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
    m
}

#[test]
fn bad_input_hostile_ntlm_negotiate() {
    let world = lab();
    let (mut c, _) = Conn::new(&world, Profile::exchange());
    // [MS-OXPOP3] 2.2.1: "+" SP CRLF answers AUTH NTLM.
    assert_eq!(c.send_str("AUTH NTLM\r\n"), "+ \r\n");
    let r = c.send_str(&format!("{}\r\n", b64(&hostile_negotiate())));
    assert!(r.starts_with("-ERR authentication failed: NTLM"), "{r}");
    assert!(r.ends_with("\r\n") && r.matches("\r\n").count() == 1, "{r}");
    assert_eq!(c.server.authenticated_user(), None);
    // As an initial response too; then the session goes on.
    let r = c.send_str(&format!("AUTH NTLM {}\r\n", b64(&hostile_negotiate())));
    assert!(r.starts_with("-ERR authentication failed: NTLM"), "{r}");
    assert!(c
        .send_str("CAPA\r\n")
        .starts_with("+OK Capability list follows\r\n"));
    c.login("bob", "hunter2");
}

#[test]
fn bad_input_non_utf8() {
    let world = lab();
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    assert_eq!(
        c.send(b"USER \xff\xfe\r\n"),
        b"-ERR command line is not valid UTF-8\r\n"
    );
    assert_eq!(
        c.send(b"\xc3\x28\n"),
        b"-ERR command line is not valid UTF-8\r\n"
    );
    assert_eq!(
        c.send(b"NOOP\x00\r\n"),
        b"-ERR command line contains control character 0x00\r\n"
    );
    c.login("alice", "secret");
}

#[test]
fn bad_input_idle_timeout_before_login() {
    let world = lab();
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    assert_eq!(c.server.poll_timeout(), Some(Duration::from_secs(600)));
    c.send_str("CAPA\r\n");
    assert_eq!(c.server.poll_timeout(), Some(Duration::from_secs(601)));
    c.server.handle_timeout(Duration::from_secs(700));
    assert_eq!(
        c.outputs(),
        vec![
            Output::Write(b"-ERR autologout; idle for too long\r\n".to_vec()),
            Output::Close
        ]
    );
    assert_eq!(c.server.poll_timeout(), None);
}

#[test]
fn bad_input_client_vanishes_mid_command() {
    let world = lab();
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    c.login("alice", "secret");
    c.send_str("DELE 1\r\n");
    assert_eq!(c.send(b"QU"), b"");
    c.server.handle_eof(c.now);
    assert_eq!(c.outputs(), vec![Output::Close]);
    assert_eq!(inbox(&world, "alice").1.len(), 3);
    // Mid-AUTH as well.
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    c.send_str("AUTH LOGIN\r\n");
    c.send(b"YWxp");
    c.server.handle_eof(c.now);
    assert_eq!(c.outputs(), vec![Output::Close]);
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    c.login("alice", "secret");
}

#[test]
fn one_sessions_bad_input_leaves_another_unaffected() {
    let fresh = lab();
    let shared = lab();
    let script: &[&str] = &[
        "USER bob\r\n",
        "PASS hunter2\r\n",
        "LIST\r\n",
        "RETR 2\r\n",
        "TOP 3 1\r\n",
    ];
    let run = |world: &Arc<World>, hostile: Option<&mut Conn>| -> Vec<u8> {
        let (mut good, _) = Conn::new(world, Profile::default_profile());
        let mut out = Vec::new();
        let mut hostile = hostile;
        for line in script {
            if let Some(h) = hostile.as_deref_mut() {
                h.send(&[0xff; 5000]);
                h.send(b"\r\nAUTH NTLM\r\n");
                h.send(format!("{}\r\n", b64(&hostile_negotiate())).as_bytes());
                h.send(b"USER alice\r\nPASS secret\r\nDELE 1\r\nDELE 2\r\nRETR 1\r\n");
            }
            out.extend(good.send(line.as_bytes()));
        }
        out
    };
    let clean = run(&fresh, None);
    let mut cx = ctx(&shared, Profile::default_profile());
    cx.limits.max_line = 128;
    let (mut hostile, _) = Conn::with_ctx(cx);
    let beside = run(&shared, Some(&mut hostile));
    assert_eq!(
        String::from_utf8(beside).unwrap(),
        String::from_utf8(clean).unwrap()
    );
    hostile.server.handle_eof(hostile.now);
    assert_eq!(inbox(&shared, "bob").1.len(), 3);
    assert_eq!(inbox(&shared, "alice").1.len(), 3);
}

/// A lab whose one user has one message of about 100 KiB.
fn big_lab() -> Arc<World> {
    let body: String = (0..2000)
        .map(|i| format!("line {i:04} {}\n", "x".repeat(40)))
        .collect();
    let text = format!(
        "[[user]]\nname = \"big\"\npassword = \"pw\"\n[[user.message]]\nraw = \"\"\"\nSubject: big\n\n{body}\"\"\"\n"
    );
    Arc::new(LabFile::parse(&text).unwrap().build().unwrap())
}

#[test]
fn pipelined_retrs_are_read_as_the_replies_drain() {
    let world = big_lab();
    let size = inbox(&world, "big").1[0].1.len();
    assert!(size > 100_000);
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    let mut script = b"USER big\r\nPASS pw\r\n".to_vec();
    for _ in 0..20 {
        script.extend_from_slice(b"RETR 1\r\n");
    }
    script.extend_from_slice(b"DELE 1\r\nQUIT\r\n");
    c.server.handle_input(c.now, &script);
    // Reading stopped once the queue passed the high-water mark (256 KiB).
    let queued = c.server.queued_bytes();
    assert!(queued < 256 * 1024 + size + 1024, "{queued}");
    // The peer half-closes; what it sent before still runs, in order.
    c.server.handle_eof(c.now);
    let outs = c.outputs();
    let retrs = outs
        .iter()
        .filter(|o| matches!(o, Output::Write(b) if b.starts_with(format!("+OK {size} octets").as_bytes())))
        .count();
    assert_eq!(retrs, 20);
    assert_eq!(
        outs[outs.len() - 3],
        Output::Write(b"+OK message 1 deleted\r\n".to_vec())
    );
    assert_eq!(
        outs[outs.len() - 2],
        Output::Write(
            format!("+OK {HOST} POP3 server signing off (0 messages left)\r\n").into_bytes()
        )
    );
    assert_eq!(outs[outs.len() - 1], Output::Close);
    assert_eq!(inbox(&world, "big").1.len(), 0);
}

#[test]
fn pipelining_without_reading_replies_is_bounded() {
    let world = big_lab();
    let (mut c, _) = Conn::new(&world, Profile::default_profile());
    c.login("big", "pw");
    let retrs = b"RETR 1\r\n".repeat(100);
    c.server.handle_input(c.now, &retrs);
    // The client never reads; it keeps sending.
    for _ in 0..(1024 * 1024 / retrs.len()) {
        c.server.handle_input(c.now, &retrs);
    }
    let outs = c.outputs();
    assert_eq!(
        &outs[outs.len() - 2..],
        &[
            Output::Write(b"-ERR too much pipelined input; closing\r\n".to_vec()),
            Output::Close
        ]
    );
    assert!(outs.len() < 20, "{} outputs", outs.len());
    // The lock went with the session.
    let (mut again, _) = Conn::new(&world, Profile::default_profile());
    again.login("big", "pw");
}
