//! Session tests: bytes in, exact bytes out where RFC 3501 fixes them.

use super::*;
use crate::profile::{Continuation, ImapStatus};
use crate::sasl::encode_base64;
use crate::world::{LabFile, World};
use pretty_assertions::assert_eq;
use std::collections::BTreeSet;

const ALICE_VALIDITY: u32 = 1_700_000_000;

/// The default lab as an earlier session left it: its seeded mail already reported, so
/// `\Recent` shows only what a test delivers (see `fresh_world` for the first session).
fn world() -> Arc<World> {
    let w = fresh_world();
    for user in ["user", "alice", "bob"] {
        w.store.with_account(user, |acct| {
            for mb in acct.mailboxes.values_mut() {
                mb.claim_recent();
            }
        });
    }
    w
}

/// The default lab before any session: every seeded message is still `\Recent`.
fn fresh_world() -> Arc<World> {
    Arc::new(LabFile::default_lab().build().unwrap())
}

fn ctx_with(world: Arc<World>, profile: Profile) -> SessionContext {
    let mut ctx = SessionContext::new(world, Arc::new(profile));
    ctx.transport.starttls_available = true;
    ctx.limits.max_line = 1024;
    ctx.limits.max_literal = 4096;
    ctx.limits.idle_timeout = Duration::from_secs(600);
    ctx
}

/// A session plus a clock.
struct T {
    s: ImapServer,
    now: Duration,
}

impl T {
    fn new(world: Arc<World>, profile: Profile) -> (T, String) {
        let mut t = T {
            s: ImapServer::new(ctx_with(world, profile)),
            now: Duration::ZERO,
        };
        let greeting = t.text();
        (t, greeting)
    }

    fn default() -> T {
        T::new(world(), Profile::default_profile()).0
    }

    fn on(world: &Arc<World>) -> T {
        T::new(Arc::clone(world), Profile::default_profile()).0
    }

    fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.s.poll_output()).collect()
    }

    /// Everything written since the last call, as text.
    fn text(&mut self) -> String {
        let mut out = Vec::new();
        for o in self.outputs() {
            match o {
                Output::Write(w) => out.extend_from_slice(&w),
                // Checked through `is_closed` where it matters.
                Output::Close => {}
                Output::StartTls => panic!("unexpected StartTls"),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn send(&mut self, bytes: &[u8]) -> String {
        self.now += Duration::from_millis(5);
        self.s.handle_input(self.now, bytes);
        self.text()
    }

    fn login(&mut self) {
        assert_eq!(
            self.send(b"L LOGIN alice secret\r\n"),
            "L OK LOGIN completed\r\n"
        );
    }

    fn select(&mut self) {
        self.login();
        let out = self.send(b"S SELECT INBOX\r\n");
        assert!(
            out.ends_with("S OK [READ-WRITE] SELECT completed\r\n"),
            "{out}"
        );
    }
}

/// alice's message `i` of the default lab.
fn alice_msg(i: u32) -> String {
    format!(
        "Return-Path: <sender@example.test>\r\nFrom: Sender <sender@example.test>\r\nTo: alice@example.test\r\nSubject: Test message {i}\r\nDate: Mon, 1 Jan 2024 00:00:0{i} +0000\r\nMessage-ID: <msg{i}.alice@example.test>\r\n\r\nHello alice, this is message number {i}.\r\nSecond line.\r\n"
    )
}

fn set_flags(world: &World, user: &str, uid: u32, flags: &[&str]) {
    world.store.with_account(user, |a| {
        let mb = a.mailbox_mut("INBOX").unwrap();
        let m = mb.messages.iter_mut().find(|m| m.uid == uid).unwrap();
        m.flags = flags.iter().map(|s| s.to_string()).collect();
        mb.generation += 1;
    });
}

// ----- greeting, capabilities, NOOP, LOGOUT -----

#[test]
fn greeting_and_capability_default() {
    let (mut t, greeting) = T::new(world(), Profile::default_profile());
    assert_eq!(
        greeting,
        "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ IDLE UIDPLUS ID NAMESPACE ENABLE MOVE CHILDREN UNSELECT STARTTLS AUTH=PLAIN AUTH=LOGIN AUTH=NTLM] mail.example.test IMAP4rev1 harness ready\r\n"
    );
    assert_eq!(
        t.send(b"a1 CAPABILITY\r\n"),
        "* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ IDLE UIDPLUS ID NAMESPACE ENABLE MOVE CHILDREN UNSELECT STARTTLS AUTH=PLAIN AUTH=LOGIN AUTH=NTLM\r\na1 OK CAPABILITY completed\r\n"
    );
    t.login();
    assert_eq!(
        t.send(b"a2 capability\r\n"),
        "* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ IDLE UIDPLUS ID NAMESPACE ENABLE MOVE CHILDREN UNSELECT\r\na2 OK CAPABILITY completed\r\n"
    );
    assert_eq!(t.send(b"a3 NOOP\r\n"), "a3 OK NOOP completed\r\n");
}

#[test]
fn greeting_and_capability_exchange() {
    let mut ctx = ctx_with(world(), Profile::exchange());
    ctx.transport.starttls_available = false;
    let mut s = ImapServer::new(ctx);
    let Some(Output::Write(g)) = s.poll_output() else {
        panic!("no greeting")
    };
    assert_eq!(
        String::from_utf8(g).unwrap(),
        "* OK [CAPABILITY IMAP4rev1 IMAP4 IDLE LITERAL+ UIDPLUS CHILDREN NAMESPACE AUTH=NTLM AUTH=PLAIN] The Microsoft Exchange IMAP4 service is ready.\r\n"
    );
    s.handle_input(Duration::ZERO, b"x CAPABILITY\r\n");
    assert_eq!(
        s.poll_output(),
        Some(Output::Write(
            b"* CAPABILITY IMAP4rev1 IMAP4 IDLE LITERAL+ UIDPLUS CHILDREN NAMESPACE AUTH=NTLM AUTH=PLAIN\r\nx OK CAPABILITY completed\r\n".to_vec()
        ))
    );
}

#[test]
fn logout_says_bye_then_ok_then_closes() {
    let mut t = T::default();
    t.s.handle_input(Duration::ZERO, b"z LOGOUT\r\nq NOOP\r\n");
    assert_eq!(
        t.outputs(),
        vec![
            Output::Write(
                b"* BYE IMAP4rev1 Server logging out\r\nz OK LOGOUT completed\r\n".to_vec()
            ),
            Output::Close
        ]
    );
    assert!(t.s.is_closed());
    t.s.handle_input(Duration::ZERO, b"r NOOP\r\n");
    assert_eq!(t.outputs(), vec![]);
}

// ----- LOGIN -----

#[test]
fn login_good_and_bad() {
    let mut t = T::default();
    assert_eq!(
        t.send(b"a LOGIN alice wrong\r\n"),
        "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    );
    assert_eq!(
        t.send(b"b LOGIN nobody secret\r\n"),
        "b NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    );
    assert_eq!(t.s.authenticated_user(), None);
    assert_eq!(
        t.send(b"c LOGIN \"ALICE\" \"secret\"\r\n"),
        "c OK LOGIN completed\r\n"
    );
    assert_eq!(t.s.authenticated_user(), Some("alice"));
    assert_eq!(
        t.send(b"d LOGIN alice secret\r\n"),
        "d BAD LOGIN is not valid in this state\r\n"
    );
}

#[test]
fn login_disabled_without_tls() {
    let mut p = Profile::default_profile();
    p.imap.login_disabled_without_tls = true;
    let (mut t, greeting) = T::new(world(), p);
    assert!(
        greeting.contains(" STARTTLS LOGINDISABLED AUTH=PLAIN"),
        "{greeting}"
    );
    assert_eq!(
        t.send(b"a LOGIN alice secret\r\n"),
        "a NO [PRIVACYREQUIRED] LOGIN is disabled until TLS is active\r\n"
    );
    assert_eq!(t.s.authenticated_user(), None);
    t.s.handle_input(t.now, b"b STARTTLS\r\n");
    assert_eq!(
        t.outputs(),
        vec![
            Output::Write(b"b OK Begin TLS negotiation now\r\n".to_vec()),
            Output::StartTls
        ]
    );
    t.s.handle_tls_established(t.now);
    assert_eq!(
        t.send(b"c CAPABILITY\r\n"),
        "* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ IDLE UIDPLUS ID NAMESPACE ENABLE MOVE CHILDREN UNSELECT AUTH=PLAIN AUTH=LOGIN AUTH=NTLM\r\nc OK CAPABILITY completed\r\n"
    );
    assert_eq!(
        t.send(b"d LOGIN alice secret\r\n"),
        "d OK LOGIN completed\r\n"
    );
}

// ----- AUTHENTICATE -----

#[test]
fn authenticate_plain_with_sasl_ir() {
    let mut t = T::default();
    let ir = encode_base64(b"\0alice\0secret");
    let out = t.send(format!("a AUTHENTICATE PLAIN {ir}\r\n").as_bytes());
    assert_eq!(out, "a OK AUTHENTICATE completed\r\n");
    assert_eq!(t.s.authenticated_user(), Some("alice"));
}

#[test]
fn authenticate_plain_wrong_password_and_empty_ir() {
    let mut t = T::default();
    let ir = encode_base64(b"\0alice\0nope");
    assert_eq!(
        t.send(format!("a AUTHENTICATE PLAIN {ir}\r\n").as_bytes()),
        "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    );
    // `=` is the empty initial response: PLAIN cannot use it.
    assert_eq!(
        t.send(b"b AUTHENTICATE PLAIN =\r\n"),
        "b NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    );
    assert_eq!(t.s.authenticated_user(), None);
}

#[test]
fn authenticate_plain_without_sasl_ir_uses_profile_continuation() {
    let mut t = T::default();
    assert_eq!(t.send(b"a AUTHENTICATE PLAIN\r\n"), "+ \r\n");
    let resp = encode_base64(b"\0user\0pass");
    assert_eq!(
        t.send(format!("{resp}\r\n").as_bytes()),
        "a OK AUTHENTICATE completed\r\n"
    );
    assert_eq!(t.s.authenticated_user(), Some("user"));

    let (mut t, _) = T::new(world(), Profile::exchange());
    assert_eq!(t.send(b"a AUTHENTICATE PLAIN\r\n"), "+\r\n");
    assert_eq!(
        t.send(format!("{resp}\r\n").as_bytes()),
        "a OK AUTHENTICATE completed.\r\n"
    );
}

#[test]
fn sasl_ir_refused_when_not_advertised() {
    let mut p = Profile::default_profile();
    p.imap.capabilities.retain(|c| c != "SASL-IR");
    let (mut t, _) = T::new(world(), p);
    let ir = encode_base64(b"\0alice\0secret");
    assert_eq!(
        t.send(format!("a AUTHENTICATE PLAIN {ir}\r\n").as_bytes()),
        "a BAD Initial response given, but SASL-IR is not advertised\r\n"
    );
    assert_eq!(t.s.authenticated_user(), None);
}

#[test]
fn authenticate_login_mechanism() {
    let mut t = T::default();
    assert_eq!(t.send(b"a AUTHENTICATE LOGIN\r\n"), "+ VXNlcm5hbWU6\r\n");
    assert_eq!(t.send(b"Ym9i\r\n"), "+ UGFzc3dvcmQ6\r\n");
    assert_eq!(
        t.send(format!("{}\r\n", encode_base64(b"hunter2")).as_bytes()),
        "a OK AUTHENTICATE completed\r\n"
    );
    assert_eq!(t.s.authenticated_user(), Some("bob"));
    assert_eq!(t.s.auth_mechanism(), Some(crate::sasl::Mechanism::Login));
}

#[test]
fn authenticate_cancel_default_is_bad() {
    let mut t = T::default();
    assert_eq!(t.send(b"a AUTHENTICATE LOGIN\r\n"), "+ VXNlcm5hbWU6\r\n");
    assert_eq!(t.send(b"*\r\n"), "a BAD Authentication cancelled\r\n");
    assert_eq!(t.send(b"b NOOP\r\n"), "b OK NOOP completed\r\n");
}

#[test]
fn authenticate_cancel_exchange_is_no_with_its_text() {
    let (mut t, _) = T::new(world(), Profile::exchange());
    assert_eq!(t.send(b"a AUTHENTICATE NTLM\r\n"), "+\r\n");
    // [MS-OXIMAP4] prints the cancel as "*" SP.
    assert_eq!(
        t.send(b"* \r\n"),
        "a NO The AUTH protocol exchange was canceled by the client.\r\n"
    );
    assert_eq!(t.send(b"b NOOP\r\n"), "b OK NOOP completed\r\n");
}

#[test]
fn authenticate_unknown_or_unoffered_mechanism() {
    let (mut t, _) = T::new(world(), Profile::exchange());
    assert_eq!(
        t.send(b"a AUTHENTICATE LOGIN\r\n"),
        "a NO Unsupported authentication mechanism\r\n"
    );
    assert_eq!(
        t.send(b"b AUTHENTICATE CRAM-MD5\r\n"),
        "b NO Unsupported authentication mechanism\r\n"
    );
}

#[test]
fn authenticate_invalid_base64_is_bad() {
    let mut t = T::default();
    assert_eq!(t.send(b"a AUTHENTICATE PLAIN\r\n"), "+ \r\n");
    assert_eq!(
        t.send(b"!!notbase64!!\r\n"),
        "a BAD client response is not valid base64\r\n"
    );
    // Inline (SASL-IR) invalid base64 fails the grammar: also a tagged BAD.
    assert_eq!(
        t.send(b"b AUTHENTICATE PLAIN !!!\r\n"),
        "b BAD Invalid arguments to AUTHENTICATE\r\n"
    );
    assert_eq!(t.s.authenticated_user(), None);
    t.login();
}

#[test]
fn hostile_ntlm_bytes_get_no_and_session_goes_on() {
    let mut t = T::default();
    assert_eq!(t.send(b"a AUTHENTICATE NTLM\r\n"), "+ \r\n");
    // A NEGOTIATE whose domain field claims 0xFFFF octets at offset 0xFFFFFFF0.
    let mut neg = b"NTLMSSP\0\x01\0\0\0\x07\x82\x08\xa2".to_vec();
    neg.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xf0, 0xff, 0xff, 0xff]);
    neg.extend_from_slice(&[0xff, 0xff, 0x00, 0x10, 0x00, 0x00, 0x00, 0x80]);
    let out = t.send(format!("{}\r\n", encode_base64(&neg)).as_bytes());
    assert!(
        out == "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n" || out.starts_with("+ "),
        "{out}"
    );
    if out.starts_with("+ ") {
        // A CHALLENGE was sent: now an AUTHENTICATE with lying offsets.
        let mut auth = b"NTLMSSP\0\x03\0\0\0".to_vec();
        for _ in 0..6 {
            auth.extend_from_slice(&[0x40, 0x00, 0x40, 0x00, 0xf0, 0xff, 0xff, 0x7f]);
        }
        auth.extend_from_slice(&[0x35, 0x82, 0x88, 0xe2]);
        let out = t.send(format!("{}\r\n", encode_base64(&auth)).as_bytes());
        assert_eq!(out, "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
    }
    // SASL-IR NTLM garbage, as curl would send it inline.
    let out = t.send(
        format!(
            "b AUTHENTICATE NTLM {}\r\n",
            encode_base64(b"NTLMSSP\0\x09")
        )
        .as_bytes(),
    );
    assert_eq!(out, "b NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
    assert_eq!(t.s.authenticated_user(), None);
    t.login();
}

// ----- STARTTLS -----

#[test]
fn starttls_order_and_injection_discard() {
    let mut t = T::default();
    // A man in the middle appends a command to the same packet (CVE-2011-0411 style).
    t.s.handle_input(Duration::ZERO, b"a STARTTLS\r\nb LOGIN alice secret\r\n");
    assert_eq!(
        t.outputs(),
        vec![
            Output::Write(b"a OK Begin TLS negotiation now\r\n".to_vec()),
            Output::StartTls
        ]
    );
    // Bytes arriving before the handshake completes are dropped too.
    t.s.handle_input(Duration::ZERO, b"c LOGIN alice secret\r\n");
    assert_eq!(t.outputs(), vec![]);
    t.s.handle_tls_established(Duration::ZERO);
    assert_eq!(t.s.authenticated_user(), None);
    assert_eq!(
        t.send(b"d CAPABILITY\r\n"),
        "* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ IDLE UIDPLUS ID NAMESPACE ENABLE MOVE CHILDREN UNSELECT AUTH=PLAIN AUTH=LOGIN AUTH=NTLM\r\nd OK CAPABILITY completed\r\n"
    );
    assert_eq!(
        t.send(b"e STARTTLS\r\n"),
        "e BAD STARTTLS is not supported\r\n"
    );
}

#[test]
fn starttls_refused_when_unavailable_or_authenticated() {
    let mut ctx = ctx_with(world(), Profile::default_profile());
    ctx.transport.starttls_available = false;
    let mut t = T {
        s: ImapServer::new(ctx),
        now: Duration::ZERO,
    };
    let g = t.text();
    assert!(!g.contains("STARTTLS"), "{g}");
    assert_eq!(
        t.send(b"a STARTTLS\r\n"),
        "a BAD STARTTLS is not supported\r\n"
    );
    let mut t = T::default();
    t.login();
    assert_eq!(
        t.send(b"b STARTTLS\r\n"),
        "b BAD STARTTLS is not valid in this state\r\n"
    );
}

// ----- SELECT / EXAMINE -----

#[test]
fn select_response_set_exact() {
    let w = world();
    set_flags(&w, "alice", 1, &["\\Seen"]);
    let mut t = T::on(&w);
    t.login();
    assert_eq!(
        t.send(b"A142 SELECT INBOX\r\n"),
        format!(
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
             * 3 EXISTS\r\n\
             * 0 RECENT\r\n\
             * OK [UNSEEN 2] Message 2 is first unseen\r\n\
             * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted\r\n\
             * OK [UIDNEXT 4] Predicted next UID\r\n\
             * OK [UIDVALIDITY {ALICE_VALIDITY}] UIDs valid\r\n\
             A142 OK [READ-WRITE] SELECT completed\r\n"
        )
    );
    assert_eq!(t.s.selected_mailbox(), Some("INBOX"));
    // A failing SELECT leaves the selected state.
    assert_eq!(
        t.send(b"b SELECT Nope\r\n"),
        "b NO Mailbox does not exist\r\n"
    );
    assert_eq!(t.s.selected_mailbox(), None);
    assert_eq!(
        t.send(b"c FETCH 1 FLAGS\r\n"),
        "c BAD FETCH is not valid in this state\r\n"
    );
}

#[test]
fn select_without_unseen_omits_it() {
    let w = world();
    for uid in 1..=3 {
        set_flags(&w, "alice", uid, &["\\Seen"]);
    }
    let mut t = T::on(&w);
    t.login();
    let out = t.send(b"s select inbox\r\n");
    assert!(!out.contains("UNSEEN"), "{out}");
}

#[test]
fn examine_is_read_only() {
    let mut t = T::default();
    t.login();
    assert_eq!(
        t.send(b"e EXAMINE INBOX\r\n"),
        format!(
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
             * 3 EXISTS\r\n\
             * 0 RECENT\r\n\
             * OK [UNSEEN 1] Message 1 is first unseen\r\n\
             * OK [PERMANENTFLAGS ()] No permanent flags permitted\r\n\
             * OK [UIDNEXT 4] Predicted next UID\r\n\
             * OK [UIDVALIDITY {ALICE_VALIDITY}] UIDs valid\r\n\
             e OK [READ-ONLY] EXAMINE completed\r\n"
        )
    );
    assert_eq!(
        t.send(b"s STORE 1 +FLAGS (\\Deleted)\r\n"),
        "s NO Mailbox is read-only\r\n"
    );
    assert_eq!(t.send(b"x EXPUNGE\r\n"), "x NO Mailbox is read-only\r\n");
    // BODY[] on a read-only mailbox does not set \Seen.
    let m = alice_msg(1);
    assert_eq!(
        t.send(b"f FETCH 1 BODY[]\r\n"),
        format!(
            "* 1 FETCH (BODY[] {{{}}}\r\n{m})\r\nf OK FETCH completed\r\n",
            m.len()
        )
    );
    assert_eq!(
        t.send(b"g FETCH 1 FLAGS\r\n"),
        "* 1 FETCH (FLAGS ())\r\ng OK FETCH completed\r\n"
    );
}

// ----- FETCH -----

#[test]
fn fetch_simple_items() {
    let mut t = T::default();
    t.select();
    let m = alice_msg(2);
    assert_eq!(
        t.send(b"f FETCH 2 (FLAGS UID RFC822.SIZE INTERNALDATE)\r\n"),
        format!(
            "* 2 FETCH (FLAGS () UID 2 RFC822.SIZE {} INTERNALDATE \" 1-Jan-2024 00:00:02 +0000\")\r\nf OK FETCH completed\r\n",
            m.len()
        )
    );
    assert_eq!(
        t.send(b"g FETCH 1 ENVELOPE\r\n"),
        "* 1 FETCH (ENVELOPE (\"Mon, 1 Jan 2024 00:00:01 +0000\" \"Test message 1\" ((\"Sender\" NIL \"sender\" \"example.test\")) ((\"Sender\" NIL \"sender\" \"example.test\")) ((\"Sender\" NIL \"sender\" \"example.test\")) ((NIL NIL \"alice\" \"example.test\")) NIL NIL NIL \"<msg1.alice@example.test>\"))\r\ng OK FETCH completed\r\n"
    );
    // UID FETCH always carries the UID; `*` is the last message.
    assert_eq!(
        t.send(b"h UID FETCH 3:* FLAGS\r\n"),
        "* 3 FETCH (UID 3 FLAGS ())\r\nh OK UID FETCH completed\r\n"
    );
    assert_eq!(
        t.send(b"i FETCH * FAST\r\n"),
        format!(
            "* 3 FETCH (FLAGS () INTERNALDATE \" 1-Jan-2024 00:00:03 +0000\" RFC822.SIZE {})\r\ni OK FETCH completed\r\n",
            alice_msg(3).len()
        )
    );
}

#[test]
fn fetch_body_sets_seen_peek_does_not() {
    let mut t = T::default();
    t.select();
    let m = alice_msg(1);
    let (header, text) = m.split_at(m.find("\r\n\r\n").unwrap() + 4);
    assert_eq!(
        t.send(b"a FETCH 1 BODY.PEEK[HEADER]\r\n"),
        format!(
            "* 1 FETCH (BODY[HEADER] {{{}}}\r\n{header})\r\na OK FETCH completed\r\n",
            header.len()
        )
    );
    assert_eq!(
        t.send(b"b FETCH 1 RFC822.HEADER\r\n"),
        format!(
            "* 1 FETCH (RFC822.HEADER {{{}}}\r\n{header})\r\nb OK FETCH completed\r\n",
            header.len()
        )
    );
    assert_eq!(
        t.send(b"c FETCH 1 FLAGS\r\n"),
        "* 1 FETCH (FLAGS ())\r\nc OK FETCH completed\r\n"
    );
    // Non-PEEK sets \Seen and reports the new FLAGS.
    assert_eq!(
        t.send(b"d FETCH 1 BODY[TEXT]\r\n"),
        format!(
            "* 1 FETCH (BODY[TEXT] {{{}}}\r\n{text} FLAGS (\\Seen))\r\nd OK FETCH completed\r\n",
            text.len()
        )
    );
    // Already seen: no FLAGS added.
    assert_eq!(
        t.send(b"e FETCH 1 BODY[]\r\n"),
        format!(
            "* 1 FETCH (BODY[] {{{}}}\r\n{m})\r\ne OK FETCH completed\r\n",
            m.len()
        )
    );
    assert_eq!(
        t.send(b"f FETCH 2 (FLAGS RFC822)\r\n"),
        format!(
            "* 2 FETCH (FLAGS (\\Seen) RFC822 {{{}}}\r\n{})\r\nf OK FETCH completed\r\n",
            alice_msg(2).len(),
            alice_msg(2)
        )
    );
    assert_eq!(
        t.send(b"g FETCH 1 (BODY.PEEK[]<0.6> BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n"),
        "* 1 FETCH (BODY[]<0> {6}\r\nReturn BODY[HEADER.FIELDS (SUBJECT)] {27}\r\nSubject: Test message 1\r\n\r\n)\r\ng OK FETCH completed\r\n"
    );
}

#[test]
fn fetch_bad_sequence_numbers() {
    let mut t = T::default();
    t.select();
    assert_eq!(
        t.send(b"a FETCH 4 FLAGS\r\n"),
        "a BAD Invalid message sequence number\r\n"
    );
    // UIDs that do not exist are simply not there.
    assert_eq!(
        t.send(b"b UID FETCH 4:9 FLAGS\r\n"),
        "b OK UID FETCH completed\r\n"
    );
    // A huge set costs nothing.
    assert_eq!(
        t.send(b"c UID FETCH 1:4294967295 UID\r\n"),
        "* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\n* 3 FETCH (UID 3)\r\nc OK UID FETCH completed\r\n"
    );
    assert_eq!(
        t.send(b"d FETCH 0 FLAGS\r\n"),
        "d BAD Invalid arguments to FETCH\r\n"
    );
}

// ----- STORE -----

#[test]
fn store_variants() {
    let mut t = T::default();
    t.select();
    assert_eq!(
        t.send(b"a STORE 1:2 +FLAGS (\\Flagged \\Seen)\r\n"),
        "* 1 FETCH (FLAGS (\\Flagged \\Seen))\r\n* 2 FETCH (FLAGS (\\Flagged \\Seen))\r\na OK STORE completed\r\n"
    );
    assert_eq!(
        t.send(b"b STORE 2 -FLAGS (\\Seen)\r\n"),
        "* 2 FETCH (FLAGS (\\Flagged))\r\nb OK STORE completed\r\n"
    );
    assert_eq!(
        t.send(b"c UID STORE 3 FLAGS ($Label1 \\Answered)\r\n"),
        "* 3 FETCH (FLAGS ($Label1 \\Answered) UID 3)\r\nc OK UID STORE completed\r\n"
    );
    assert_eq!(
        t.send(b"d STORE 1 +FLAGS.SILENT (\\Deleted)\r\n"),
        "d OK STORE completed\r\n"
    );
    assert_eq!(
        t.send(b"e FETCH 1:3 FLAGS\r\n"),
        "* 1 FETCH (FLAGS (\\Deleted \\Flagged \\Seen))\r\n* 2 FETCH (FLAGS (\\Flagged))\r\n* 3 FETCH (FLAGS ($Label1 \\Answered))\r\ne OK FETCH completed\r\n"
    );
}

// ----- SEARCH -----

#[test]
fn search_keys() {
    let w = world();
    set_flags(&w, "alice", 1, &["\\Seen"]);
    set_flags(&w, "alice", 2, &["\\Seen", "\\Deleted", "\\Flagged"]);
    set_flags(&w, "alice", 3, &["\\Answered"]);
    let mut t = T::on(&w);
    t.select();
    let cases: &[(&str, &str)] = &[
        ("ALL", "1 2 3"),
        ("SEEN", "1 2"),
        ("UNSEEN", "3"),
        ("DELETED", "2"),
        ("UNDELETED", "1 3"),
        ("FLAGGED", "2"),
        ("ANSWERED", "3"),
        ("NOT SEEN", "3"),
        ("OR DELETED ANSWERED", "2 3"),
        ("SEEN UNDELETED", "1"),
        ("2:3", "2 3"),
        ("UID 1,3", "1 3"),
        ("1:* NOT 2", "1 3"),
        ("NEW", ""),
        ("OLD", "1 2 3"),
        ("SUBJECT \"message 2\"", "2"),
        ("FROM sender", "1 2 3"),
        ("BODY \"number 3\"", "3"),
        ("LARGER 10 SMALLER 100000", "1 2 3"),
        ("SENTON 1-Jan-2024", "1 2 3"),
        ("SINCE 2-Jan-2024", ""),
        ("BEFORE 2-Jan-2024", "1 2 3"),
        ("HEADER Message-ID msg2", "2"),
        ("OR (SEEN FLAGGED) 3", "2 3"),
    ];
    for (key, expect) in cases {
        let line = format!("s SEARCH {key}\r\n");
        let hits = if expect.is_empty() {
            String::new()
        } else {
            format!(" {expect}")
        };
        assert_eq!(
            t.send(line.as_bytes()),
            format!("* SEARCH{hits}\r\ns OK SEARCH completed\r\n"),
            "{key}"
        );
    }
    assert_eq!(
        t.send(b"u UID SEARCH UNSEEN\r\n"),
        "* SEARCH 3\r\nu OK UID SEARCH completed\r\n"
    );
    assert_eq!(
        t.send(b"c SEARCH CHARSET KOI8-R ALL\r\n"),
        "c NO [BADCHARSET (US-ASCII UTF-8)] Unsupported charset\r\n"
    );
}

// ----- EXPUNGE / CLOSE -----

/// World where alice's INBOX holds 11 messages.
fn world_with_11() -> Arc<World> {
    let w = world();
    w.store.with_account("alice", |a| {
        let mb = a.mailbox_mut("INBOX").unwrap();
        for i in 4..=11 {
            mb.append(
                Arc::from(format!("Subject: m{i}\r\n\r\nbody\r\n").into_bytes()),
                BTreeSet::new(),
                1_704_067_200 + i,
            );
        }
    });
    w
}

#[test]
fn expunge_order_is_rfc3501_7_4_1() {
    let w = world_with_11();
    let mut t = T::on(&w);
    t.select();
    assert_eq!(
        t.send(b"d STORE 3:4,7,11 +FLAGS.SILENT (\\Deleted)\r\n"),
        "d OK STORE completed\r\n"
    );
    // RFC 3501 7.4.1's example: messages 3, 4, 7 and 11 expunged.
    assert_eq!(
        t.send(b"x EXPUNGE\r\n"),
        "* 3 EXPUNGE\r\n* 3 EXPUNGE\r\n* 5 EXPUNGE\r\n* 8 EXPUNGE\r\nx OK EXPUNGE completed\r\n"
    );
    assert_eq!(
        t.send(b"f FETCH 3 UID\r\n"),
        "* 3 FETCH (UID 5)\r\nf OK FETCH completed\r\n"
    );
    let n = w
        .store
        .with_account("alice", |a| a.mailbox("INBOX").unwrap().messages.len());
    assert_eq!(n, 7);
}

#[test]
fn close_expunges_silently() {
    let w = world();
    let mut t = T::on(&w);
    t.select();
    assert_eq!(
        t.send(b"d STORE 2 +FLAGS.SILENT (\\Deleted)\r\n"),
        "d OK STORE completed\r\n"
    );
    assert_eq!(t.send(b"c CLOSE\r\n"), "c OK CLOSE completed\r\n");
    assert_eq!(t.s.selected_mailbox(), None);
    let uids: Vec<u32> = w.store.with_account("alice", |a| {
        a.mailbox("INBOX")
            .unwrap()
            .messages
            .iter()
            .map(|m| m.uid)
            .collect()
    });
    assert_eq!(uids, vec![1, 3]);
    assert_eq!(
        t.send(b"e EXPUNGE\r\n"),
        "e BAD EXPUNGE is not valid in this state\r\n"
    );
}

#[test]
fn unselect_leaves_the_mailbox_without_expunging_where_advertised() {
    let w = world();
    let (mut t, greeting) = T::new(Arc::clone(&w), Profile::default_profile());
    assert!(greeting.contains(" UNSELECT "), "{greeting}");
    t.login();
    // RFC 3691 2: BAD when no mailbox is selected.
    assert_eq!(
        t.send(b"u UNSELECT\r\n"),
        "u BAD UNSELECT is not valid in this state\r\n"
    );
    let out = t.send(b"S SELECT INBOX\r\n");
    assert!(out.contains("* 3 EXISTS"), "{out}");
    assert_eq!(
        t.send(b"d STORE 2 +FLAGS.SILENT (\\Deleted)\r\n"),
        "d OK STORE completed\r\n"
    );
    assert_eq!(t.send(b"u UNSELECT\r\n"), "u OK UNSELECT completed\r\n");
    assert_eq!(t.s.selected_mailbox(), None);
    // Nothing was expunged, and the flag is still there.
    let out = t.send(b"S SELECT INBOX\r\n");
    assert!(out.contains("* 3 EXISTS"), "{out}");
    assert_eq!(
        t.send(b"f FETCH 2 FLAGS\r\n"),
        "* 2 FETCH (FLAGS (\\Deleted))\r\nf OK FETCH completed\r\n"
    );
    // Not advertised: an unknown command there.
    let mut without = Profile::default_profile();
    without.imap.capabilities.retain(|c| c != "UNSELECT");
    let (mut d, _) = T::new(Arc::clone(&w), without);
    d.select();
    assert_eq!(t.send(b"x NOOP\r\n"), "x OK NOOP completed\r\n");
    assert_eq!(d.send(b"u UNSELECT\r\n"), "u BAD Unknown command\r\n");
    assert_eq!(d.s.selected_mailbox(), Some("INBOX"));
}

#[test]
fn other_sessions_changes_reported_at_noop_not_during_fetch() {
    let w = world();
    let mut a = T::on(&w);
    a.select();
    let mut b = T::on(&w);
    b.select();
    assert_eq!(
        b.send(b"d STORE 1 +FLAGS.SILENT (\\Deleted)\r\n"),
        "d OK STORE completed\r\n"
    );
    assert_eq!(
        b.send(b"x EXPUNGE\r\n"),
        "* 1 EXPUNGE\r\nx OK EXPUNGE completed\r\n"
    );
    assert_eq!(
        b.send(b"p APPEND INBOX {21}\r\n"),
        "+ Ready for literal data\r\n"
    );
    assert_eq!(
        b.send(b"Subject: new\r\n\r\nhi\r\n\r\n"),
        "* 3 EXISTS\r\n* 1 RECENT\r\np OK [APPENDUID 1700000000 4] APPEND completed\r\n"
    );
    // During FETCH: no EXPUNGE (numbers stay), but new mail may be announced. b was told
    // of the new message first, so it is recent there and not here (RFC 3501 2.3.2).
    assert_eq!(
        a.send(b"f FETCH 1:* UID\r\n"),
        "* 2 FETCH (UID 2)\r\n* 3 FETCH (UID 3)\r\n* 4 EXISTS\r\n* 0 RECENT\r\nf OK FETCH completed\r\n"
    );
    assert_eq!(
        a.send(b"n NOOP\r\n"),
        "* 1 EXPUNGE\r\nn OK NOOP completed\r\n"
    );
    assert_eq!(
        a.send(b"g FETCH 3 (UID FLAGS)\r\n"),
        "* 3 FETCH (UID 4 FLAGS ())\r\ng OK FETCH completed\r\n"
    );
    assert_eq!(
        b.send(b"g FETCH 3 (UID FLAGS)\r\n"),
        "* 3 FETCH (UID 4 FLAGS (\\Recent))\r\ng OK FETCH completed\r\n"
    );
    // A flag change by b shows up in a at the next NOOP.
    assert_eq!(
        b.send(b"s STORE 1 FLAGS.SILENT (\\Seen)\r\n"),
        "s OK STORE completed\r\n"
    );
    assert_eq!(
        a.send(b"n NOOP\r\n"),
        "* 1 FETCH (FLAGS (\\Seen))\r\nn OK NOOP completed\r\n"
    );
}

#[test]
fn seeded_mail_is_recent_in_the_first_selecting_session_only() {
    let w = fresh_world();
    // STATUS and EXAMINE report what no session has claimed, and claim nothing.
    let mut peek = T::on(&w);
    peek.login();
    assert_eq!(
        peek.send(b"s STATUS INBOX (RECENT)\r\n"),
        "* STATUS INBOX (RECENT 3)\r\ns OK STATUS completed\r\n"
    );
    let out = peek.send(b"e EXAMINE INBOX\r\n");
    assert!(out.contains("* 3 RECENT\r\n"), "{out}");
    assert_eq!(
        peek.send(b"f FETCH 1 FLAGS\r\n"),
        "* 1 FETCH (FLAGS (\\Recent))\r\nf OK FETCH completed\r\n"
    );
    // The first SELECT gets them as recent (SEARCH RECENT/NEW agree) ...
    let mut first = T::on(&w);
    first.login();
    let out = first.send(b"a SELECT INBOX\r\n");
    assert!(out.contains("* 3 EXISTS\r\n* 3 RECENT\r\n"), "{out}");
    assert_eq!(
        first.send(b"r SEARCH RECENT\r\n"),
        "* SEARCH 1 2 3\r\nr OK SEARCH completed\r\n"
    );
    // ... and no later session does, SELECT or EXAMINE, nor STATUS elsewhere.
    let mut second = T::on(&w);
    second.login();
    let out = second.send(b"a SELECT INBOX\r\n");
    assert!(out.contains("* 3 EXISTS\r\n* 0 RECENT\r\n"), "{out}");
    assert_eq!(
        second.send(b"r SEARCH RECENT\r\n"),
        "* SEARCH\r\nr OK SEARCH completed\r\n"
    );
    assert_eq!(peek.send(b"u UNSELECT\r\n"), "u OK UNSELECT completed\r\n");
    assert_eq!(
        peek.send(b"s STATUS INBOX (RECENT)\r\n"),
        "* STATUS INBOX (RECENT 0)\r\ns OK STATUS completed\r\n"
    );
    // The first session keeps its recent messages for as long as it has them selected.
    assert_eq!(
        first.send(b"s STATUS INBOX (RECENT)\r\n"),
        "* STATUS INBOX (RECENT 3)\r\ns OK STATUS completed\r\n"
    );
}

#[test]
fn new_mail_is_recent_in_the_first_read_write_session_told_of_it() {
    let w = world();
    let mut reader = T::on(&w);
    reader.login();
    reader.send(b"e EXAMINE INBOX\r\n");
    let mut writer = T::on(&w);
    writer.select();
    let mut later = T::on(&w);
    later.select();
    // Delivered by a session with nothing selected: nobody has been told yet.
    let mut sender = T::on(&w);
    sender.login();
    assert_eq!(
        sender.send(b"p APPEND INBOX {21}\r\n"),
        "+ Ready for literal data\r\n"
    );
    assert_eq!(
        sender.send(b"Subject: new\r\n\r\nhi\r\n\r\n"),
        "p OK [APPENDUID 1700000000 4] APPEND completed\r\n"
    );
    // The read-only session sees it as recent without taking the flag (RFC 3501 6.3.2) ...
    assert_eq!(
        reader.send(b"n NOOP\r\n"),
        "* 4 EXISTS\r\n* 1 RECENT\r\nn OK NOOP completed\r\n"
    );
    // ... the first read-write session told takes it ...
    assert_eq!(
        writer.send(b"n NOOP\r\n"),
        "* 4 EXISTS\r\n* 1 RECENT\r\nn OK NOOP completed\r\n"
    );
    // ... and the next one gets the message without it.
    assert_eq!(
        later.send(b"n NOOP\r\n"),
        "* 4 EXISTS\r\n* 0 RECENT\r\nn OK NOOP completed\r\n"
    );
    assert_eq!(
        writer.send(b"r SEARCH NEW\r\n"),
        "* SEARCH 4\r\nr OK SEARCH completed\r\n"
    );
    assert_eq!(
        later.send(b"r SEARCH RECENT\r\n"),
        "* SEARCH\r\nr OK SEARCH completed\r\n"
    );
}

// ----- LIST / LSUB / STATUS / CREATE -----

#[test]
fn list_and_status() {
    let w = world();
    let mut t = T::on(&w);
    t.login();
    assert_eq!(
        t.send(b"c CREATE Archive/2024\r\n"),
        "c OK CREATE completed\r\n"
    );
    assert_eq!(
        t.send(b"d CREATE \"My Box\"\r\n"),
        "d OK CREATE completed\r\n"
    );
    assert_eq!(
        t.send(b"e CREATE inbox\r\n"),
        "e NO Mailbox already exists\r\n"
    );
    assert_eq!(
        t.send(b"l LIST \"\" \"*\"\r\n"),
        "* LIST (\\HasChildren) \"/\" Archive\r\n* LIST (\\HasNoChildren) \"/\" Archive/2024\r\n* LIST (\\HasNoChildren) \"/\" INBOX\r\n* LIST (\\HasNoChildren) \"/\" \"My Box\"\r\nl OK LIST completed\r\n"
    );
    assert_eq!(
        t.send(b"m LIST \"\" %\r\n"),
        "* LIST (\\HasChildren) \"/\" Archive\r\n* LIST (\\HasNoChildren) \"/\" INBOX\r\n* LIST (\\HasNoChildren) \"/\" \"My Box\"\r\nm OK LIST completed\r\n"
    );
    assert_eq!(
        t.send(b"n LIST Archive/ %\r\n"),
        "* LIST (\\HasNoChildren) \"/\" Archive/2024\r\nn OK LIST completed\r\n"
    );
    assert_eq!(
        t.send(b"o LIST \"\" \"\"\r\n"),
        "* LIST (\\Noselect) \"/\" \"\"\r\no OK LIST completed\r\n"
    );
    assert_eq!(
        t.send(b"p list \"\" inbox\r\n"),
        "* LIST (\\HasNoChildren) \"/\" INBOX\r\np OK LIST completed\r\n"
    );
    assert_eq!(
        t.send(b"u UNSUBSCRIBE \"My Box\"\r\n"),
        "u OK UNSUBSCRIBE completed\r\n"
    );
    assert_eq!(
        t.send(b"v SUBSCRIBE Archive/2024\r\n"),
        "v OK SUBSCRIBE completed\r\n"
    );
    assert_eq!(
        t.send(b"q LSUB \"\" *\r\n"),
        "* LSUB () \"/\" Archive/2024\r\n* LSUB () \"/\" INBOX\r\nq OK LSUB completed\r\n"
    );
    set_flags(&w, "alice", 1, &["\\Seen"]);
    assert_eq!(
        t.send(b"s STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)\r\n"),
        format!("* STATUS INBOX (MESSAGES 3 RECENT 0 UIDNEXT 4 UIDVALIDITY {ALICE_VALIDITY} UNSEEN 2)\r\ns OK STATUS completed\r\n")
    );
    assert_eq!(
        t.send(b"t STATUS nope (MESSAGES)\r\n"),
        "t NO Mailbox does not exist\r\n"
    );
    assert_eq!(
        t.send(b"v RENAME \"My Box\" Other\r\n"),
        "v OK RENAME completed\r\n"
    );
    assert_eq!(t.send(b"w DELETE Other\r\n"), "w OK DELETE completed\r\n");
    assert_eq!(
        t.send(b"x DELETE INBOX\r\n"),
        "x NO INBOX cannot be deleted\r\n"
    );
}

#[test]
fn copy_to_other_mailbox() {
    let w = world();
    let mut t = T::on(&w);
    t.select();
    assert_eq!(t.send(b"c CREATE Saved\r\n"), "c OK CREATE completed\r\n");
    assert_eq!(
        t.send(b"d COPY 2:3 Saved\r\n"),
        "d OK [COPYUID 1700000001 2:3 1:2] COPY completed\r\n"
    );
    assert_eq!(
        t.send(b"e COPY 1 Missing\r\n"),
        "e NO [TRYCREATE] Mailbox does not exist\r\n"
    );
    assert_eq!(
        t.send(b"s STATUS Saved (MESSAGES UIDNEXT)\r\n"),
        "* STATUS Saved (MESSAGES 2 UIDNEXT 3)\r\ns OK STATUS completed\r\n"
    );
}

// ----- IDLE -----

#[test]
fn idle_sees_append_from_another_session() {
    let w = world();
    let mut a = T::on(&w);
    a.select();
    assert_eq!(a.send(b"i IDLE\r\n"), "+ idling\r\n");
    // While idling the session wants frequent polls.
    assert_eq!(a.s.poll_timeout(), Some(a.now + IDLE_POLL));
    let mut b = T::on(&w);
    b.login();
    assert_eq!(
        b.send(b"p APPEND INBOX (\\Seen) {12+}\r\nSubject: x\r\n\r\n"),
        "p OK [APPENDUID 1700000000 4] APPEND completed\r\n"
    );
    a.now += IDLE_POLL;
    a.s.handle_timeout(a.now);
    assert_eq!(a.text(), "* 4 EXISTS\r\n* 1 RECENT\r\n");
    a.s.handle_timeout(a.now + IDLE_POLL);
    assert_eq!(a.text(), "");
    assert_eq!(a.send(b"DONE\r\n"), "i OK IDLE terminated\r\n");
    assert_eq!(
        a.send(b"f FETCH 4 (FLAGS RFC822.SIZE)\r\n"),
        "* 4 FETCH (FLAGS (\\Seen \\Recent) RFC822.SIZE 12)\r\nf OK FETCH completed\r\n"
    );
}

#[test]
fn idle_ended_by_anything_else_is_bad() {
    let mut t = T::default();
    assert_eq!(
        t.send(b"i IDLE\r\n"),
        "i BAD IDLE is not valid in this state\r\n"
    );
    t.login();
    assert_eq!(t.send(b"j IDLE\r\n"), "+ idling\r\n");
    assert_eq!(t.send(b"k NOOP\r\n"), "j BAD Expected DONE to end IDLE\r\n");
    assert_eq!(t.send(b"k NOOP\r\n"), "k OK NOOP completed\r\n");
    let mut p = Profile::default_profile();
    p.imap.capabilities.retain(|c| c != "IDLE");
    let (mut t, _) = T::new(world(), p);
    t.login();
    assert_eq!(t.send(b"l IDLE\r\n"), "l BAD Unknown command\r\n");
}

// ----- literals -----

#[test]
fn synchronising_literals() {
    let mut t = T::default();
    assert_eq!(t.send(b"a LOGIN {5}\r\n"), "+ Ready for literal data\r\n");
    assert_eq!(t.send(b"alice {6}\r\n"), "+ Ready for literal data\r\n");
    assert_eq!(t.send(b"secret\r\n"), "a OK LOGIN completed\r\n");
}

#[test]
fn non_synchronising_literals() {
    let mut t = T::default();
    assert_eq!(
        t.send(b"a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\nb NOOP\r\n"),
        "a OK LOGIN completed\r\nb OK NOOP completed\r\n"
    );
    // Not advertised: refused, and the literal's octets are not run as a command.
    let mut p = Profile::default_profile();
    p.imap.capabilities.retain(|c| c != "LITERAL+");
    let (mut t, _) = T::new(world(), p);
    assert_eq!(
        t.send(b"a LOGIN {13+}\r\nb LOGOUT\r\nxx y\r\nc NOOP\r\n"),
        "a BAD Non-synchronizing literal used, but LITERAL+ is not advertised\r\nc OK NOOP completed\r\n"
    );
}

#[test]
fn append_with_literal_and_date() {
    let w = world();
    let mut t = T::on(&w);
    t.login();
    assert_eq!(
        t.send(b"a APPEND INBOX (\\Flagged) \"15-Mar-2024 10:00:00 +0100\" {18}\r\n"),
        "+ Ready for literal data\r\n"
    );
    assert_eq!(
        t.send(b"Subject: s\r\n\r\nbody\r\n"),
        "a OK [APPENDUID 1700000000 4] APPEND completed\r\n"
    );
    let m = w
        .store
        .with_account("alice", |a| a.mailbox("INBOX").unwrap().messages[3].clone());
    assert_eq!(&*m.data, b"Subject: s\r\n\r\nbody");
    assert_eq!(m.internal_date, 1_710_493_200);
    assert!(m.flags.contains("\\Flagged"));
    assert_eq!(
        t.send(b"b APPEND Nope {1+}\r\nx\r\n"),
        "b NO [TRYCREATE] Mailbox does not exist\r\n"
    );
}

// ----- bad input -----

#[test]
fn unknown_command_and_untagged_garbage() {
    let mut t = T::default();
    assert_eq!(t.send(b"a FROBNICATE\r\n"), "a BAD Unknown command\r\n");
    assert_eq!(t.send(b"garbage\r\n"), "* BAD Missing or invalid tag\r\n");
    assert_eq!(t.send(b"* NOOP\r\n"), "* BAD Missing or invalid tag\r\n");
    assert_eq!(t.send(b"\r\n"), "* BAD Missing or invalid tag\r\n");
    assert_eq!(
        t.send(b"b LOGIN alice\r\n"),
        "b BAD Invalid arguments to LOGIN\r\n"
    );
    assert_eq!(t.send(b"c NOOP\n"), "c OK NOOP completed\r\n");
}

#[test]
fn commands_in_wrong_state() {
    let mut t = T::default();
    assert_eq!(
        t.send(b"a SELECT INBOX\r\n"),
        "a BAD SELECT is not valid in this state\r\n"
    );
    assert_eq!(
        t.send(b"b FETCH 1 FLAGS\r\n"),
        "b BAD FETCH is not valid in this state\r\n"
    );
    assert_eq!(
        t.send(b"c LIST \"\" *\r\n"),
        "c BAD LIST is not valid in this state\r\n"
    );
    t.login();
    assert_eq!(
        t.send(b"d STORE 1 FLAGS ()\r\n"),
        "d BAD STORE is not valid in this state\r\n"
    );
    assert_eq!(
        t.send(b"e AUTHENTICATE PLAIN\r\n"),
        "e BAD AUTHENTICATE is not valid in this state\r\n"
    );
}

#[test]
fn line_over_limit_is_refused_and_session_goes_on() {
    let mut t = T::default();
    let mut line = b"a LOGIN alice ".to_vec();
    line.extend(std::iter::repeat_n(b'x', 5000));
    assert_eq!(t.send(&line), "a BAD Line too long (limit 1024 octets)\r\n");
    assert!(t.s.buffered_input() <= 1024);
    assert_eq!(t.send(b"yyyy\r\nb NOOP\r\n"), "b OK NOOP completed\r\n");
    // Without a usable tag the refusal is untagged.
    assert_eq!(
        t.send(&[b'z'; 3000]),
        "* BAD Line too long (limit 1024 octets)\r\n"
    );
    assert_eq!(t.send(b"\r\nc NOOP\r\n"), "c OK NOOP completed\r\n");
}

#[test]
fn literal_over_limit_is_refused_before_continuation() {
    let mut t = T::default();
    t.login();
    // A synchronising literal too large: BAD and no "+" continuation.
    let out = t.send(b"a APPEND INBOX {4097}\r\n");
    assert_eq!(
        out,
        "a BAD Literal of 4097 octets is over the limit of 4096\r\n"
    );
    assert!(!out.contains('+'));
    assert_eq!(t.s.buffered_input(), 0);
    let out = t.send(b"b APPEND INBOX {99999999999999999999999}\r\n");
    assert_eq!(
        out,
        "b BAD Literal of 18446744073709551615 octets is over the limit of 4096\r\n"
    );
    // A non-synchronising one: refused, its octets counted away, then life goes on.
    assert_eq!(
        t.send(b"c APPEND INBOX {5000+}\r\n"),
        "c BAD Literal of 5000 octets is over the limit of 4096\r\n"
    );
    assert_eq!(t.send(&[b'q'; 4000]), "");
    assert_eq!(t.s.buffered_input(), 0);
    assert_eq!(t.send(&[b'q'; 1000]), "");
    assert_eq!(t.send(b"\r\nd NOOP\r\n"), "d OK NOOP completed\r\n");
    let n =
        t.s.ctx
            .world
            .store
            .with_account("alice", |a| a.mailbox("INBOX").unwrap().messages.len());
    assert_eq!(n, 3);
}

#[test]
fn non_utf8_and_nul_are_bad() {
    let mut t = T::default();
    assert_eq!(
        t.send(b"a LOGIN \"al\xffce\" secret\r\n"),
        "a BAD 8-bit octets outside a literal\r\n"
    );
    assert_eq!(
        t.send(b"b LOGIN al\x00ce secret\r\n"),
        "b BAD Invalid arguments to LOGIN\r\n"
    );
    // 8-bit data inside a literal is allowed by the grammar; not a valid user, though.
    assert_eq!(
        t.send(b"c LOGIN {2+}\r\n\xc3\xa9 x\r\n"),
        "c NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    );
    assert_eq!(t.send(b"\xff\xfe\r\n"), "* BAD Missing or invalid tag\r\n");
    t.login();
}

#[test]
fn idle_timeout_says_bye() {
    let mut t = T::default();
    t.login();
    crate::session::assert_idle_autologout(
        &mut t.s,
        t.now,
        b"* BYE Autologout; idle for too long\r\n",
    );
}

#[test]
fn client_vanishing_mid_literal_leaves_store_consistent() {
    let w = world();
    let mut t = T::on(&w);
    t.login();
    assert_eq!(
        t.send(b"a APPEND INBOX {100}\r\n"),
        "+ Ready for literal data\r\n"
    );
    assert_eq!(t.send(b"Subject: half"), "");
    t.s.handle_eof(t.now);
    assert_eq!(t.outputs(), vec![Output::Close]);
    assert!(t.s.is_closed());
    let n = w
        .store
        .with_account("alice", |a| a.mailbox("INBOX").unwrap().messages.len());
    assert_eq!(n, 3);
    // Mid-command (no literal) as well.
    let mut t = T::on(&w);
    t.send(b"a LOGIN alice sec");
    t.s.handle_eof(t.now);
    assert_eq!(t.outputs(), vec![Output::Close]);
    assert_eq!(t.s.authenticated_user(), None);
}

#[test]
fn another_session_is_unaffected_by_bad_input() {
    let w = world();
    let mut good = T::on(&w);
    good.select();
    let mut bad = T::on(&w);
    bad.send(b"x LOGIN alice secret\r\nx SELECT INBOX\r\n");
    bad.send(&[0xff; 5000]);
    bad.send(b"\r\n{5+}\r\nabcde\r\ny FETCH 1:* (BODY[] BODY[] \r\n* * *\r\n");
    bad.send(b"z STORE 99 +FLAGS (\\Deleted)\r\nq APPEND INBOX {999999}\r\n");
    bad.s.handle_eof(bad.now);
    assert!(bad.outputs().contains(&Output::Close));
    assert_eq!(good.send(b"n NOOP\r\n"), "n OK NOOP completed\r\n");
    assert_eq!(
        good.send(b"f FETCH 1:* FLAGS\r\n"),
        "* 1 FETCH (FLAGS ())\r\n* 2 FETCH (FLAGS ())\r\n* 3 FETCH (FLAGS ())\r\nf OK FETCH completed\r\n"
    );
}

#[test]
fn profile_cancel_status_is_data() {
    let mut p = Profile::default_profile();
    p.imap.auth_cancel_status = ImapStatus::No;
    p.imap.auth_cancel_text = "stopped".into();
    p.imap.auth_continuation = Continuation::Bare;
    let (mut t, _) = T::new(world(), p);
    assert_eq!(t.send(b"a AUTHENTICATE PLAIN\r\n"), "+\r\n");
    assert_eq!(t.send(b"*\r\n"), "a NO stopped\r\n");
}

// ----- fuzz entry points -----

#[test]
fn fuzz_command_decode_samples() {
    for s in [
        &b"a1 LOGIN alice secret\r\n"[..],
        b"a FETCH * (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.10>)\r\n",
        b"a UID SEARCH OR SEEN NOT 1:4294967295\r\n",
        b"a APPEND INBOX {3+}\r\nabc\r\n",
        b"a AUTHENTICATE PLAIN =\r\n",
        b"garbage",
        b"",
        b"\xff\xff",
    ] {
        fuzz_command_decode(s);
    }
}

#[test]
fn fuzz_server_session_samples() {
    let login = format!(
        "\x07a LOGIN alice secret\r\nb SELECT INBOX\r\nc FETCH 1:* (BODY[] ENVELOPE)\r\nd STORE 1 +FLAGS (\\Deleted)\r\ne EXPUNGE\r\nf IDLE\r\nDONE\r\ng AUTHENTICATE PLAIN {}\r\nh LOGOUT\r\n",
        encode_base64(b"\0bob\0hunter2")
    );
    let samples: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\x00".to_vec(),
        login.into_bytes(),
        b"\x01x AUTHENTICATE PLAIN\r\nAGJvYgBodW50ZXIy\r\n".to_vec(),
        b"\x3fa LOGIN {5}\r\nalice {3+}\r\nbad\r\nb NOOP\r\nc STARTTLS\r\nd NOOP\r\n".to_vec(),
        b"\x02a AUTHENTICATE LOGIN\r\n*\r\nb APPEND INBOX {99999+}\r\n".to_vec(),
        [&b"\x10"[..], &[b'x'; 2000], b"\r\n{4+}\r\n"].concat(),
    ];
    for s in &samples {
        fuzz_server_session(s);
    }
}

#[test]
fn fuzz_password_detector() {
    assert!(contains_a_password(b"x LOGIN a secret"));
    assert!(contains_a_password(
        b"x AUTHENTICATE PLAIN AGJvYgBodW50ZXIy\r\n"
    ));
    assert!(!contains_a_password(b"x LOGIN alice wrong\r\n"));
    assert_eq!(
        tagged_lines(
            b"* OK hi\r\na OK x\r\n+ go\r\n* 1 FETCH (BODY[] {9}\r\nb OK fake)\r\nc NO y\r\n"
        ),
        vec![&b"a"[..], b"c"]
    );
}

/// Seeded token soup: command fragments, literals, CRLFs and junk, fed through the
/// session fuzz entry. Deterministic, so a failure reproduces.
#[test]
fn fuzz_server_session_token_soup() {
    const TOKENS: &[&[u8]] = &[
        b"a ",
        b"b1 ",
        b"* ",
        b"+ ",
        b"LOGIN ",
        b"alice ",
        b"secret",
        b"wrong",
        b"SELECT ",
        b"EXAMINE ",
        b"INBOX",
        b"FETCH ",
        b"UID ",
        b"STORE ",
        b"SEARCH ",
        b"EXPUNGE",
        b"CLOSE",
        b"NOOP",
        b"IDLE",
        b"DONE",
        b"LOGOUT",
        b"STARTTLS",
        b"CAPABILITY",
        b"AUTHENTICATE ",
        b"PLAIN",
        b"LOGIN",
        b"NTLM",
        b" =",
        b"AGFsaWNlAHNlY3JldA==",
        b"YWxpY2U=",
        b"c2VjcmV0",
        b"TlRMTVNTUAABAAAAB4IIog==",
        b"1:*",
        b"*",
        b"1,3:2",
        b"4294967295",
        b"0",
        b" (",
        b")",
        b"FLAGS",
        b"+FLAGS.SILENT",
        b"-FLAGS",
        b"(\\Deleted \\Seen)",
        b"BODY[]",
        b"BODY.PEEK[HEADER]",
        b"BODY[TEXT]<0.5>",
        b"RFC822",
        b"ENVELOPE",
        b"ALL",
        b"FULL",
        b"INTERNALDATE",
        b"NOT ",
        b"OR ",
        b"SEEN ",
        b"UNSEEN",
        b"LIST \"\" *",
        b"STATUS INBOX (MESSAGES UNSEEN)",
        b"APPEND INBOX ",
        b"{3}",
        b"{3+}",
        b"{0}",
        b"{99999}",
        b"{5000+}",
        b"abc",
        b"\r\n",
        b"\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b" ",
        b"\"",
        b"\\",
        b"\x00",
        b"\xff",
        b"{",
        b"}",
        b"CREATE X",
        b"COPY 1 X",
        b"DELETE X",
    ];
    let mut rng = crate::rng::SeededRng::new(2024);
    for _ in 0..400 {
        let mut data = vec![(rng.next_u64() & 0xff) as u8];
        let n = (rng.next_u64() % 60) as usize;
        for _ in 0..n {
            let r = rng.next_u64();
            if r % 17 == 0 {
                let k = (r >> 8) % 300;
                data.extend((0..k).map(|i| (i as u8).wrapping_mul(31)));
            } else {
                let t = TOKENS[(r >> 8) as usize % TOKENS.len()];
                data.extend_from_slice(t);
            }
        }
        fuzz_server_session(&data);
    }
}

#[test]
fn fuzz_command_decode_token_soup() {
    const TOKENS: &[&[u8]] = &[
        b"a ",
        b"FETCH ",
        b"UID ",
        b"SEARCH ",
        b"STORE ",
        b"1:*",
        b"*",
        b"2,4:3",
        b"4294967295",
        b" (",
        b")",
        b"FLAGS",
        b"BODY[HEADER.FIELDS (A B)]",
        b"<0.1>",
        b"NOT ",
        b"OR ",
        b"ALL",
        b"{3}\r\nabc",
        b"{2+}\r\nxy",
        b"\"q\\\"\"",
        b"LOGIN ",
        b"AUTHENTICATE PLAIN ",
        b"=",
        b"AGFsaWNlAHNlY3JldA==",
        b"APPEND INBOX ",
        b"(\\Seen)",
        b" \"01-Jan-2024 00:00:00 +0000\" ",
        b"SELECT ",
        b"LIST ",
        b"\"\" ",
        b"%",
        b"STATUS INBOX (MESSAGES)",
        b"\r\n",
        b" ",
    ];
    let mut rng = crate::rng::SeededRng::new(7);
    for _ in 0..2000 {
        let mut data = Vec::new();
        for _ in 0..(rng.next_u64() % 12) {
            data.extend_from_slice(TOKENS[rng.next_u64() as usize % TOKENS.len()]);
        }
        data.extend_from_slice(b"\r\n");
        fuzz_command_decode(&data);
    }
}

#[test]
fn client_idioms_imaplib_and_curl() {
    let w = world();
    let mut t = T::on(&w);
    // curl with SASL-IR; then what curl sends for imap://host/INBOX;UID=2.
    let ir = encode_base64(b"\0alice\0secret");
    assert_eq!(
        t.send(format!("A001 CAPABILITY\r\nA002 AUTHENTICATE PLAIN {ir}\r\n").as_bytes()),
        "* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ IDLE UIDPLUS ID NAMESPACE ENABLE MOVE CHILDREN UNSELECT STARTTLS AUTH=PLAIN AUTH=LOGIN AUTH=NTLM\r\nA001 OK CAPABILITY completed\r\nA002 OK AUTHENTICATE completed\r\n"
    );
    let out = t.send(b"A003 SELECT INBOX\r\nA004 UID FETCH 2 BODY[]\r\n");
    let m = alice_msg(2);
    assert!(
        out.ends_with(&format!(
            "A003 OK [READ-WRITE] SELECT completed\r\n* 2 FETCH (UID 2 BODY[] {{{}}}\r\n{m} FLAGS (\\Seen))\r\nA004 OK UID FETCH completed\r\n",
            m.len()
        )),
        "{out}"
    );
    // imaplib writes STORE flags without parentheses.
    assert_eq!(
        t.send(b"ABCD5 STORE 1 +FLAGS \\Deleted\r\n"),
        "* 1 FETCH (FLAGS (\\Deleted))\r\nABCD5 OK STORE completed\r\n"
    );
    assert_eq!(
        t.send(b"ABCD6 EXPUNGE\r\nABCD7 LOGOUT\r\n"),
        "* 1 EXPUNGE\r\nABCD6 OK EXPUNGE completed\r\n* BYE IMAP4rev1 Server logging out\r\nABCD7 OK LOGOUT completed\r\n"
    );
    assert!(t.s.is_closed());
}

#[test]
fn store_change_without_generation_bump_is_still_seen() {
    let w = world();
    let mut t = T::on(&w);
    t.select();
    w.store.with_account("alice", |a| {
        let mb = a.mailbox_mut("INBOX").unwrap();
        mb.messages.remove(0);
    });
    assert_eq!(
        t.send(b"n NOOP\r\n"),
        "* 1 EXPUNGE\r\nn OK NOOP completed\r\n"
    );
}

/// Pins the imap-codec behaviour the round-trip fuzz entry allows for (see module docs):
/// the default `quirk_always_normalize_sequence_sets` rewrites sets when encoding.
#[test]
fn imap_codec_normalizes_sequence_sets_when_encoding() {
    let codec = CommandCodec::default();
    let (_, cmd) = codec.decode(b"a FETCH 3,1:2,* FLAGS\r\n").unwrap();
    let enc = String::from_utf8(codec.encode(&cmd).dump()).unwrap();
    assert_eq!(enc, "a FETCH 1:3,* FLAGS\r\n");
    fuzz_command_decode(b"a FETCH 3,1:2,* FLAGS\r\n");
}

#[test]
fn store_caps_stop_copy_doubling_and_big_appends() {
    let w = world();
    let mut t = T::on(&w);
    t.s.set_store_caps(StoreCaps {
        max_messages: 10,
        max_bytes: 2000,
        max_mailboxes: 2,
    });
    t.select();
    assert_eq!(
        t.send(b"c COPY 1:* INBOX\r\n"),
        "* 6 EXISTS\r\n* 3 RECENT\r\nc OK [COPYUID 1700000000 1:3 4:6] COPY completed\r\n"
    );
    assert_eq!(
        t.send(b"d COPY 1:* INBOX\r\n"),
        "d NO [LIMIT] Mailbox is full\r\n"
    );
    assert_eq!(t.send(b"e APPEND INBOX {600+}\r\n"), "");
    assert_eq!(t.send(&[b'x'; 600]), "");
    assert_eq!(t.send(b"\r\n"), "e NO [LIMIT] Mailbox is full\r\n");
    assert_eq!(t.send(b"f CREATE A\r\n"), "f OK CREATE completed\r\n");
    assert_eq!(
        t.send(b"g CREATE B\r\n"),
        "g NO [LIMIT] Too many mailboxes\r\n"
    );
}

#[test]
fn absurd_dates_in_headers_do_not_overflow() {
    let w = world();
    w.store.with_account("alice", |a| {
        let mb = a.mailbox_mut("INBOX").unwrap();
        mb.append(
            Arc::from(&b"Date: Mon, 99 Jan 9223372036854775807 00:00 +0000\r\n\r\nx\r\n"[..]),
            BTreeSet::new(),
            i64::MAX,
        );
    });
    let mut t = T::on(&w);
    t.select();
    assert_eq!(
        t.send(b"s SEARCH SENTBEFORE 1-Jan-2100 BEFORE 1-Jan-2100\r\n"),
        "* SEARCH 1 2 3\r\ns OK SEARCH completed\r\n"
    );
    assert_eq!(
        t.send(b"f FETCH 4 INTERNALDATE\r\n"),
        "* 4 FETCH (INTERNALDATE \"31-Dec-9999 23:59:59 +0000\")\r\nf OK FETCH completed\r\n"
    );
}

#[test]
fn literal_before_login_is_capped_at_line_limit() {
    let mut t = T::default();
    assert_eq!(
        t.send(b"a LOGIN {1025}\r\n"),
        "a BAD Literal of 1025 octets is over the limit of 1024\r\n"
    );
    assert_eq!(
        t.send(b"b LOGIN {1000}\r\n"),
        "+ Ready for literal data\r\n"
    );
}

#[test]
fn empty_mailbox_and_recent_flag() {
    let w = world();
    let mut t = T::on(&w);
    t.login();
    assert_eq!(t.send(b"c CREATE Empty\r\n"), "c OK CREATE completed\r\n");
    let out = t.send(b"s SELECT Empty\r\n");
    assert!(out.contains("* 0 EXISTS\r\n"), "{out}");
    assert_eq!(t.send(b"f FETCH 1:* FLAGS\r\n"), "f OK FETCH completed\r\n");
    assert_eq!(
        t.send(b"g FETCH 1 FLAGS\r\n"),
        "g BAD Invalid message sequence number\r\n"
    );
    assert_eq!(
        t.send(b"s SEARCH ALL\r\n"),
        "* SEARCH\r\ns OK SEARCH completed\r\n"
    );
    t.send(b"x SELECT INBOX\r\n");
    assert_eq!(
        t.send(b"r STORE 1 FLAGS (\\Recent \\Seen)\r\n"),
        "* 1 FETCH (FLAGS (\\Seen))\r\nr OK STORE completed\r\n"
    );
}

#[test]
fn fetch_full_macro_and_bodystructure() {
    let mut t = T::default();
    t.select();
    let m = alice_msg(1);
    let body_len = m.len() - (m.find("\r\n\r\n").unwrap() + 4);
    let structure =
        format!("(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" {body_len} 2)");
    let out = t.send(b"f FETCH 1 FULL\r\n");
    assert!(
        out.starts_with(&format!(
            "* 1 FETCH (FLAGS () INTERNALDATE \" 1-Jan-2024 00:00:01 +0000\" RFC822.SIZE {} ENVELOPE (\"Mon, 1 Jan 2024 00:00:01 +0000\" \"Test message 1\" ",
            m.len()
        )),
        "{out}"
    );
    assert!(
        out.ends_with(&format!(" BODY {structure})\r\nf OK FETCH completed\r\n")),
        "{out}"
    );
    // BODYSTRUCTURE adds the extension data (MD5, disposition, language, location); a
    // part that does not exist is NIL; part 1's MIME header is the message header.
    let header = &m[..m.len() - body_len];
    let extended = format!(
        "{}{})",
        &structure[..structure.len() - 1],
        " NIL NIL NIL NIL"
    );
    assert_eq!(
        t.send(b"g FETCH 1 (BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[2] BODY.PEEK[1.MIME])\r\n"),
        format!(
            "* 1 FETCH (BODYSTRUCTURE {extended} BODY[1] {{{body_len}}}\r\n{} BODY[2] NIL BODY[1.MIME] {{{}}}\r\n{header})\r\ng OK FETCH completed\r\n",
            &m[m.len() - body_len..],
            header.len()
        )
    );
}

// ----- UIDPLUS (RFC 4315) -----

#[test]
fn uid_expunge_removes_only_the_named_deleted_messages() {
    let w = world();
    let mut t = T::on(&w);
    t.select();
    assert_eq!(
        t.send(b"a STORE 1:2 +FLAGS.SILENT (\\Deleted)\r\n"),
        "a OK STORE completed\r\n"
    );
    // UID 2 and 3 are named; only 2 is \Deleted, so only message 2 goes.
    assert_eq!(
        t.send(b"b UID EXPUNGE 2:3\r\n"),
        "* 2 EXPUNGE\r\nb OK UID EXPUNGE completed\r\n"
    );
    assert_eq!(
        t.send(b"c UID FETCH 1:* (FLAGS)\r\n"),
        "* 1 FETCH (UID 1 FLAGS (\\Deleted))\r\n* 2 FETCH (UID 3 FLAGS ())\r\nc OK UID FETCH completed\r\n"
    );
}

#[test]
fn uidplus_is_only_spoken_where_advertised() {
    let mut profile = Profile::default_profile();
    profile.imap.capabilities.retain(|c| c != "UIDPLUS");
    let (mut t, greeting) = T::new(world(), profile);
    assert!(!greeting.contains("UIDPLUS"), "{greeting}");
    t.login();
    t.send(b"S SELECT INBOX\r\n");
    assert_eq!(
        t.send(b"a UID EXPUNGE 1\r\n"),
        "a BAD UID EXPUNGE needs UIDPLUS, which is not advertised\r\n"
    );
    let out = t.send(b"b APPEND INBOX {4+}\r\nhi\r\n\r\n");
    assert!(out.ends_with("b OK APPEND completed\r\n"), "{out}");
}

// ----- ID, NAMESPACE, ENABLE, MOVE, CHILDREN, names (issue 7) -----

#[test]
fn id_namespace_and_enable() {
    let w = world();
    let mut t = T::on(&w);
    // RFC 2971 3.1: ID is valid in any state.
    assert_eq!(
        t.send(b"i ID (\"name\" \"test\")\r\n"),
        format!(
            "* ID (\"name\" \"harness\" \"version\" \"{}\" \"vendor\" \"harness mock (default)\")\r\ni OK ID completed\r\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    t.login();
    assert_eq!(
        t.send(b"n NAMESPACE\r\n"),
        "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\nn OK NAMESPACE completed\r\n"
    );
    assert_eq!(
        t.send(b"e ENABLE CONDSTORE\r\n"),
        "* ENABLED\r\ne OK ENABLE completed\r\n"
    );
}

#[test]
fn move_copies_then_expunges_with_copyuid_untagged() {
    let w = world();
    let mut t = T::on(&w);
    t.select();
    assert_eq!(t.send(b"c CREATE Done\r\n"), "c OK CREATE completed\r\n");
    // RFC 6851 4.3 example shape: untagged OK [COPYUID], EXPUNGEs, tagged OK.
    assert_eq!(
        t.send(b"m UID MOVE 2:3 Done\r\n"),
        "* OK [COPYUID 1700000001 2:3 1:2] Moved\r\n* 2 EXPUNGE\r\n* 2 EXPUNGE\r\nm OK UID MOVE completed\r\n"
    );
    assert_eq!(
        t.send(b"s STATUS Done (MESSAGES)\r\n"),
        "* STATUS Done (MESSAGES 2)\r\ns OK STATUS completed\r\n"
    );
    assert_eq!(
        t.send(b"x MOVE 5 Done\r\n"),
        "x BAD Invalid message sequence number\r\n"
    );
}

#[test]
fn list_says_which_mailboxes_have_children() {
    let w = world();
    let mut t = T::on(&w);
    t.login();
    assert_eq!(
        t.send(b"a CREATE Work/2024\r\n"),
        "a OK CREATE completed\r\n"
    );
    assert_eq!(
        t.send(b"l LIST \"\" *\r\n"),
        "* LIST (\\HasNoChildren) \"/\" INBOX\r\n* LIST (\\HasChildren) \"/\" Work\r\n* LIST (\\HasNoChildren) \"/\" Work/2024\r\nl OK LIST completed\r\n"
    );
}

#[test]
fn mailbox_names_must_be_modified_utf7() {
    assert!(crate::imap::valid_modified_utf7("Entw&APw-rfe")); // "Entwürfe"
    assert!(crate::imap::valid_modified_utf7("&-amp"));
    assert!(crate::imap::valid_modified_utf7("&ZeVnLIqe-")); // 日本語
    assert!(!crate::imap::valid_modified_utf7("&AGE-")); // encodes printable "a"
    assert!(!crate::imap::valid_modified_utf7("&ZeVnLIqe")); // no closing "-"
    assert!(!crate::imap::valid_modified_utf7("&Ze/nLIqe-")); // "/" is not modified BASE64
    assert!(!crate::imap::valid_modified_utf7("&2D0-")); // a lone surrogate
    assert!(!crate::imap::valid_modified_utf7("caf\u{e9}")); // 8-bit must be encoded
    let w = world();
    let mut t = T::on(&w);
    t.login();
    assert_eq!(
        t.send(b"a CREATE Entw&APw-rfe\r\n"),
        "a OK CREATE completed\r\n"
    );
    assert_eq!(
        t.send(b"b CREATE &AGE-\r\n"),
        "b NO [CANNOT] Mailbox name is not valid modified UTF-7 (RFC 3501 5.1.3)\r\n"
    );
    assert_eq!(
        t.send(b"c RENAME Entw&APw-rfe &2D0-\r\n"),
        "c NO [CANNOT] Mailbox name is not valid modified UTF-7 (RFC 3501 5.1.3)\r\n"
    );
}

#[test]
fn rename_moves_inferiors_and_inbox_is_special() {
    let w = world();
    let mut t = T::on(&w);
    t.login();
    // RFC 3501 6.3.3: creating Foo/Bar creates Foo too.
    assert_eq!(t.send(b"a CREATE Foo/Bar\r\n"), "a OK CREATE completed\r\n");
    assert_eq!(
        t.send(b"b CREATE Foo\r\n"),
        "b NO Mailbox already exists\r\n"
    );
    assert_eq!(t.send(b"c RENAME Foo Zap\r\n"), "c OK RENAME completed\r\n");
    assert_eq!(
        t.send(b"l LIST \"\" Zap*\r\n"),
        "* LIST (\\HasChildren) \"/\" Zap\r\n* LIST (\\HasNoChildren) \"/\" Zap/Bar\r\nl OK LIST completed\r\n"
    );
    // RFC 3501 6.3.5: RENAME INBOX moves its messages and leaves INBOX, empty.
    assert_eq!(
        t.send(b"d RENAME INBOX Old\r\n"),
        "d OK RENAME completed\r\n"
    );
    assert_eq!(
        t.send(b"s STATUS INBOX (MESSAGES)\r\n"),
        "* STATUS INBOX (MESSAGES 0)\r\ns OK STATUS completed\r\n"
    );
    assert_eq!(
        t.send(b"u STATUS Old (MESSAGES UIDNEXT)\r\n"),
        "* STATUS Old (MESSAGES 3 UIDNEXT 4)\r\nu OK STATUS completed\r\n"
    );
    assert_eq!(
        t.send(b"e RENAME Zap Zap/Inner\r\n"),
        "e NO [CANNOT] Cannot rename a mailbox into itself\r\n"
    );
    assert_eq!(
        t.send(b"f RENAME Old Zap\r\n"),
        "f NO [ALREADYEXISTS] Target mailbox already exists\r\n"
    );
}

// ----- MIME structure (RFC 3501 6.4.5, 7.4.2) -----

/// multipart/mixed: a text part, and a message/rfc822 whose body is multipart/alternative.
const NESTED: &str = "From: a@example.test\r\nSubject: outer\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\npreamble\r\n--outer\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n--outer\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"fwd.eml\"\r\n\r\nFrom: b@example.test\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\nplain\r\n--inner\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<b>html</b>\r\n--inner--\r\n\r\n--outer--\r\n";

#[test]
fn nested_mime_structure_and_sections() {
    let w = world();
    w.store.with_account("alice", |a| {
        let inbox = a.mailbox_mut("INBOX").unwrap();
        inbox.append(
            Arc::from(NESTED.as_bytes()),
            Default::default(),
            1_704_067_300,
        );
    });
    let mut t = T::on(&w);
    t.select();
    let out = t.send(b"a FETCH 4 (BODY)\r\n");
    assert_eq!(
        out,
        "* 4 FETCH (BODY ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 5 1)(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 244 (NIL \"inner\" ((NIL NIL \"b\" \"example.test\")) ((NIL NIL \"b\" \"example.test\")) ((NIL NIL \"b\" \"example.test\")) NIL NIL NIL NIL NIL) ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 5 1)(\"TEXT\" \"HTML\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"QUOTED-PRINTABLE\" 11 1) \"ALTERNATIVE\") 14) \"MIXED\"))\r\na OK FETCH completed\r\n"
    );
    let structure = t.send(b"b FETCH 4 (BODYSTRUCTURE)\r\n");
    assert!(
        structure.contains("(\"ATTACHMENT\" (\"FILENAME\" \"fwd.eml\"))"),
        "{structure}"
    );
    assert!(
        structure.contains("\"MIXED\" (\"BOUNDARY\" \"outer\") NIL NIL NIL)"),
        "{structure}"
    );
    assert_eq!(
        t.send(b"c FETCH 4 (BODY.PEEK[1] BODY.PEEK[2.HEADER.FIELDS (SUBJECT)] BODY.PEEK[2.1] BODY.PEEK[2.2.MIME] BODY.PEEK[2.3] BODY.PEEK[3])\r\n"),
        "* 4 FETCH (BODY[1] {5}\r\nhello BODY[2.HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: inner\r\n\r\n BODY[2.1] {5}\r\nplain BODY[2.2.MIME] {72}\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n BODY[2.3] NIL BODY[3] NIL)\r\nc OK FETCH completed\r\n"
    );
    // HEADER / TEXT of a part that is not a message/rfc822 do not exist.
    assert_eq!(
        t.send(b"d FETCH 4 (BODY.PEEK[1.HEADER])\r\n"),
        "* 4 FETCH (BODY[1.HEADER] NIL)\r\nd OK FETCH completed\r\n"
    );
}

#[test]
fn search_body_and_text_match_decoded_text() {
    let w = world();
    // "Grüße aus Köln" in quoted-printable UTF-8; the subject as an RFC 2047 encoded word.
    let msg = "From: a@example.test\r\nSubject: =?UTF-8?Q?K=C3=B6ln_news?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe aus K=C3=B6ln\r\n";
    w.store.with_account("alice", |a| {
        let inbox = a.mailbox_mut("INBOX").unwrap();
        inbox.append(Arc::from(msg.as_bytes()), Default::default(), 1_704_067_300);
    });
    let mut t = T::on(&w);
    t.select();
    assert_eq!(
        t.send("a SEARCH CHARSET UTF-8 BODY {7+}\r\ngrüße\r\n".as_bytes()),
        "* SEARCH 4\r\na OK SEARCH completed\r\n"
    );
    assert_eq!(
        t.send("b SEARCH CHARSET UTF-8 TEXT {5+}\r\nKÖLN\r\n".as_bytes()),
        "* SEARCH 4\r\nb OK SEARCH completed\r\n"
    );
    // The raw encoded form still matches too, and plain messages are not decoded.
    assert_eq!(
        t.send(b"c SEARCH BODY \"Gr=C3\"\r\n"),
        "* SEARCH 4\r\nc OK SEARCH completed\r\n"
    );
    assert_eq!(
        t.send(b"d SEARCH BODY \"number 2\"\r\n"),
        "* SEARCH 2\r\nd OK SEARCH completed\r\n"
    );
}

#[test]
fn bad_input_for_the_mailbox_commands_gets_a_reason_and_the_session_goes_on() {
    let w = world();
    let mut t = T::on(&w);
    t.select();
    let bad = |reply: &str, tag: &str| {
        assert!(
            reply.starts_with(&format!("{tag} BAD ")) || reply.starts_with(&format!("{tag} NO ")),
            "{reply}"
        );
        assert!(
            reply.trim_end().len() > tag.len() + 4,
            "a reason is given: {reply}"
        );
    };
    bad(&t.send(b"a SEARCH (SEEN\r\n"), "a");
    bad(&t.send(b"b SEARCH FROBNICATE\r\n"), "b");
    bad(&t.send(b"c FETCH 99 (FLAGS)\r\n"), "c");
    bad(&t.send(b"d FETCH 1:99999999999 (FLAGS)\r\n"), "d");
    let absurd = format!("e FETCH {} (FLAGS)\r\n", vec!["1"; 5000].join(","));
    bad(&t.send(absurd.as_bytes()), "e");
    bad(&t.send(b"f STORE 7 +FLAGS (\\Seen)\r\n"), "f");
    bad(&t.send(b"g COPY 1 \"&Jjo\"\r\n"), "g");
    // APPEND literal over the limit: refused before any continuation.
    let out = t.send(b"h APPEND INBOX {999999999}\r\n");
    assert!(out.starts_with("h BAD") || out.starts_with("h NO"), "{out}");
    assert!(
        !out.contains('+'),
        "no continuation for a refused literal: {out}"
    );
    assert_eq!(t.send(b"z NOOP\r\n"), "z OK NOOP completed\r\n");
}

// ----- RFC 3501 corrections (issue #14) -----

/// The UIDVALIDITY STATUS shows for `name`.
fn status_validity(t: &mut T, name: &str) -> u32 {
    let out = t.send(format!("v STATUS {name} (UIDVALIDITY)\r\n").as_bytes());
    let prefix = format!("* STATUS {name} (UIDVALIDITY ");
    out.strip_prefix(&prefix)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"))
}

#[test]
fn a_name_created_again_or_renamed_onto_never_shows_an_old_uidvalidity() {
    // RFC 3501 2.3.1.1: a new mailbox under a former name gets a new UIDVALIDITY.
    let mut t = T::default();
    t.login();
    assert_eq!(t.send(b"a CREATE Box\r\n"), "a OK CREATE completed\r\n");
    let first = status_validity(&mut t, "Box");
    assert_eq!(t.send(b"b DELETE Box\r\n"), "b OK DELETE completed\r\n");
    assert_eq!(t.send(b"c CREATE Box\r\n"), "c OK CREATE completed\r\n");
    assert!(t.send(b"d APPEND Box {4}\r\n").starts_with("+ "));
    assert!(t.send(b"x\r\n\r\n").starts_with("d OK [APPENDUID "));
    let second = status_validity(&mut t, "Box");
    assert_ne!(first, second);
    // The same when another mailbox is renamed onto the name.
    assert_eq!(t.send(b"e DELETE Box\r\n"), "e OK DELETE completed\r\n");
    assert_eq!(t.send(b"f CREATE Other\r\n"), "f OK CREATE completed\r\n");
    assert_eq!(
        t.send(b"g RENAME Other Box\r\n"),
        "g OK RENAME completed\r\n"
    );
    let third = status_validity(&mut t, "Box");
    assert!(
        third != first && third != second,
        "{first} {second} {third}"
    );
}

#[test]
fn lsub_percent_shows_the_unsubscribed_superior_as_noselect() {
    // RFC 3501 6.3.9: foo/bar subscribed, foo not: `LSUB "" %` returns foo, \Noselect.
    // Only `%` stops at a level: `*` reaches foo/bar itself, a literal name asks for foo.
    let mut t = T::default();
    t.login();
    for (command, reply) in [
        ("CREATE foo/bar", "a OK CREATE completed\r\n"),
        ("SUBSCRIBE foo/bar", "a OK SUBSCRIBE completed\r\n"),
        (
            "LSUB \"\" %",
            "* LSUB () \"/\" INBOX\r\n* LSUB (\\Noselect) \"/\" foo\r\na OK LSUB completed\r\n",
        ),
        (
            "LSUB \"\" f%",
            "* LSUB (\\Noselect) \"/\" foo\r\na OK LSUB completed\r\n",
        ),
        (
            "LSUB \"\" f*",
            "* LSUB () \"/\" foo/bar\r\na OK LSUB completed\r\n",
        ),
        ("LSUB \"\" foo", "a OK LSUB completed\r\n"),
        ("SUBSCRIBE foo", "a OK SUBSCRIBE completed\r\n"),
        (
            "LSUB \"\" f%",
            "* LSUB () \"/\" foo\r\na OK LSUB completed\r\n",
        ),
    ] {
        assert_eq!(t.send(format!("a {command}\r\n").as_bytes()), reply);
    }
}

#[test]
fn a_subscription_outlives_its_mailbox() {
    // RFC 3501 6.3.6: the server MUST NOT unilaterally remove a name from the subscription
    // list even if no mailbox of that name exists; LSUB (6.3.9) still returns it, LIST
    // does not. CREATE again leaves it as before; UNSUBSCRIBE of it works (6.3.7).
    let mut t = T::default();
    t.login();
    let listed = "* LSUB () \"/\" foo\r\na OK LSUB completed\r\n";
    for (command, reply) in [
        ("CREATE foo", "a OK CREATE completed\r\n"),
        ("SUBSCRIBE foo", "a OK SUBSCRIBE completed\r\n"),
        ("DELETE foo", "a OK DELETE completed\r\n"),
        (
            "LSUB \"\" *",
            "* LSUB () \"/\" INBOX\r\n* LSUB () \"/\" foo\r\na OK LSUB completed\r\n",
        ),
        ("LIST \"\" foo", "a OK LIST completed\r\n"),
        ("CREATE foo", "a OK CREATE completed\r\n"),
        ("LSUB \"\" foo", listed),
        ("DELETE foo", "a OK DELETE completed\r\n"),
        ("UNSUBSCRIBE foo", "a OK UNSUBSCRIBE completed\r\n"),
        ("LSUB \"\" foo", "a OK LSUB completed\r\n"),
        ("UNSUBSCRIBE foo", "a NO Mailbox does not exist\r\n"),
    ] {
        assert_eq!(
            t.send(format!("a {command}\r\n").as_bytes()),
            reply,
            "{command}"
        );
    }
}

/// A world where alice's INBOX also holds a message whose addresses carry comments.
const COMMENTED: &str = "From: user@domain.org (Real Name)\r\nTo: <user (c)@ (c) domain.org>\r\nCc: Jane (x) Doe <jane @ example . org>, a@b.test (one) (two)\r\nSubject: comments\r\n\r\nbody\r\n";

#[test]
fn addresses_with_comments_in_envelope_and_search() {
    let w = world();
    w.store.with_account("alice", |a| {
        let inbox = a.mailbox_mut("INBOX").unwrap();
        inbox.append(
            Arc::from(COMMENTED.as_bytes()),
            Default::default(),
            1_704_067_300,
        );
    });
    let mut t = T::on(&w);
    t.select();
    assert_eq!(
        t.send(b"f FETCH 4 ENVELOPE\r\n"),
        "* 4 FETCH (ENVELOPE (NIL \"comments\" ((\"Real Name\" NIL \"user\" \"domain.org\")) ((\"Real Name\" NIL \"user\" \"domain.org\")) ((\"Real Name\" NIL \"user\" \"domain.org\")) ((NIL NIL \"user\" \"domain.org\")) ((\"Jane Doe\" NIL \"jane\" \"example.org\")(\"two\" NIL \"a\" \"b.test\")) NIL NIL NIL))\r\nf OK FETCH completed\r\n"
    );
    // RFC 3501 6.4.4: the envelope's field, not the header's bytes.
    for (key, expect) in [
        ("FROM user@domain.org", " 4"),
        ("TO user@domain.org", " 4"),
        ("FROM \"Real Name\"", " 4"),
        ("CC jane@example.org", " 4"),
        ("CC \"Jane Doe\"", " 4"),
        ("TO \"(c)\"", ""),
        ("FROM sender@example.test", " 1 2 3"),
    ] {
        assert_eq!(
            t.send(format!("s SEARCH {key}\r\n").as_bytes()),
            format!("* SEARCH{expect}\r\ns OK SEARCH completed\r\n"),
            "{key}"
        );
    }
}

/// A message stored over IMAP is news for the notification hub (what EMSMDB sessions
/// subscribe to): APPEND and COPY each publish one event per new message, for the
/// destination mailbox only, after the store has it.
#[test]
fn append_and_copy_publish_new_mail() {
    use crate::notify::{MailEvent, MailEventKind, Waker};
    #[derive(Debug)]
    struct Wakes(std::sync::atomic::AtomicUsize);
    impl Waker for Wakes {
        fn wake(&self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let world = world();
    let wakes = Arc::new(Wakes(Default::default()));
    let inbox = world
        .notifications
        .subscribe("ALICE", Some("INBOX"), wakes.clone())
        .unwrap();
    let sent = world
        .notifications
        .subscribe("alice", Some("Sent"), wakes.clone())
        .unwrap();
    let mut t = T::on(&world);
    t.select();
    assert!(t.send(b"c CREATE Sent\r\n").contains("c OK"));
    let out = t.send(b"a APPEND INBOX {12+}\r\nSubject: x\r\n\r\n");
    assert!(out.contains("a OK"), "{out}");
    let (events, _) = world.notifications.take(inbox);
    let uid = events.first().map(|e| e.uid).unwrap_or(0);
    assert_eq!(
        events,
        vec![MailEvent {
            kind: MailEventKind::NewMail,
            user: "alice".into(),
            mailbox: "INBOX".into(),
            uid,
        }]
    );
    assert!(world.store.with_account("alice", |a| a
        .mailbox("INBOX")
        .unwrap()
        .messages
        .iter()
        .any(|m| m.uid == uid)));
    assert!(t.send(b"k COPY 1:2 Sent\r\n").contains("k OK"));
    let (events, _) = world.notifications.take(sent);
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.mailbox == "Sent"));
    assert_eq!(world.notifications.take(inbox).0, vec![]);
    assert_eq!(wakes.0.load(std::sync::atomic::Ordering::Relaxed), 3);
    // A failed APPEND publishes nothing.
    assert!(t.send(b"f APPEND Nowhere {1+}\r\nx\r\n").contains("f NO"));
    assert!(!world.notifications.has_pending(inbox) && !world.notifications.has_pending(sent));
}

/// The default profile with UNAUTHENTICATE (RFC 8437) on.
fn unauth_profile() -> Profile {
    let mut p = Profile::default_profile();
    p.imap.unauthenticate = true;
    p
}

#[test]
fn unauthenticate_is_offered_only_where_the_profile_says() {
    let (mut t, greeting) = T::new(world(), unauth_profile());
    assert_eq!(
        greeting,
        "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ IDLE UIDPLUS ID NAMESPACE ENABLE MOVE CHILDREN UNSELECT UNAUTHENTICATE STARTTLS AUTH=PLAIN AUTH=LOGIN AUTH=NTLM] mail.example.test IMAP4rev1 harness ready\r\n"
    );
    t.login();
    assert_eq!(
        t.send(b"c CAPABILITY\r\n"),
        "* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ IDLE UIDPLUS ID NAMESPACE ENABLE MOVE CHILDREN UNSELECT UNAUTHENTICATE\r\nc OK CAPABILITY completed\r\n"
    );
    // Off (every named profile): an unknown command, and the session stays logged in.
    let mut d = T::default();
    d.login();
    assert_eq!(d.send(b"u UNAUTHENTICATE\r\n"), "u BAD Unknown command\r\n");
    assert_eq!(d.s.authenticated_user(), Some("alice"));
}

#[test]
fn unauthenticate_in_the_not_authenticated_state_is_bad_never_no() {
    let (mut t, _) = T::new(world(), unauth_profile());
    // RFC 8437 3: BAD for the wrong state; a NO is not permitted.
    assert_eq!(
        t.send(b"u UNAUTHENTICATE\r\n"),
        "u BAD UNAUTHENTICATE is not valid in this state\r\n"
    );
    t.login();
    // No arguments (RFC 8437 6): BAD, and the session stays as it was.
    assert_eq!(
        t.send(b"u unauthenticate now\r\n"),
        "u BAD Invalid arguments to UNAUTHENTICATE\r\n"
    );
    assert_eq!(t.s.authenticated_user(), Some("alice"));
    // Any case of the command name (RFC 3501 9).
    assert_eq!(
        t.send(b"u UnAuthenticate\r\n"),
        "u OK UNAUTHENTICATE completed\r\n"
    );
    assert_eq!(t.s.authenticated_user(), None);
    assert_eq!(
        t.send(b"v UNAUTHENTICATE\r\n"),
        "v BAD UNAUTHENTICATE is not valid in this state\r\n"
    );
}

#[test]
fn unauthenticate_from_authenticated_allows_a_new_login() {
    let (mut t, _) = T::new(world(), unauth_profile());
    t.login();
    assert_eq!(
        t.send(b"u UNAUTHENTICATE\r\n"),
        "u OK UNAUTHENTICATE completed\r\n"
    );
    // Not authenticated again: mailbox commands are refused, LOGIN works again.
    assert_eq!(
        t.send(b"l LIST \"\" *\r\n"),
        "l BAD LIST is not valid in this state\r\n"
    );
    let caps = t.send(b"c CAPABILITY\r\n");
    assert!(caps.contains(" AUTH=PLAIN"), "{caps}");
    assert_eq!(
        t.send(b"L LOGIN bob hunter2\r\n"),
        "L OK LOGIN completed\r\n"
    );
    assert_eq!(t.s.authenticated_user(), Some("bob"));
}

#[test]
fn unauthenticate_while_selected_leaves_without_expunging_and_the_next_user_sees_their_own() {
    let w = fresh_world();
    let (mut t, _) = T::new(Arc::clone(&w), unauth_profile());
    t.login();
    let out = t.send(b"S SELECT INBOX\r\n");
    assert!(out.contains("* 3 EXISTS\r\n* 3 RECENT\r\n"), "{out}");
    assert_eq!(
        t.send(b"d STORE 2 +FLAGS.SILENT (\\Deleted)\r\n"),
        "d OK STORE completed\r\n"
    );
    assert_eq!(
        t.send(b"k CREATE alice-only\r\n"),
        "k OK CREATE completed\r\n"
    );
    // RFC 8437 3: the mailbox stops being selected with no expunge event.
    assert_eq!(
        t.send(b"u UNAUTHENTICATE\r\n"),
        "u OK UNAUTHENTICATE completed\r\n"
    );
    assert_eq!(t.s.selected_mailbox(), None);
    assert_eq!(
        t.send(b"f FETCH 1 FLAGS\r\n"),
        "f BAD FETCH is not valid in this state\r\n"
    );
    // bob on the same connection: only bob's mailboxes and mail.
    assert_eq!(
        t.send(b"L LOGIN bob hunter2\r\n"),
        "L OK LOGIN completed\r\n"
    );
    assert_eq!(
        t.send(b"l LIST \"\" *\r\n"),
        "* LIST (\\HasNoChildren) \"/\" INBOX\r\nl OK LIST completed\r\n"
    );
    assert_eq!(
        t.send(b"f FETCH 1 FLAGS\r\n"),
        "f BAD FETCH is not valid in this state\r\n"
    );
    let out = t.send(b"S SELECT INBOX\r\n");
    assert!(!out.contains("alice"), "{out}");
    let body = t.send(b"b FETCH 1 BODY.PEEK[TEXT]\r\n");
    assert!(body.contains("Hello bob"), "{body}");
    assert!(!body.contains("alice"), "{body}");
    // alice again: her message 2 is still there, still \Deleted; her session's \Recent
    // went with it (the messages were claimed by that selection).
    assert_eq!(
        t.send(b"v UNAUTHENTICATE\r\n"),
        "v OK UNAUTHENTICATE completed\r\n"
    );
    t.login();
    let out = t.send(b"S SELECT INBOX\r\n");
    assert!(out.contains("* 3 EXISTS\r\n* 0 RECENT\r\n"), "{out}");
    assert_eq!(
        t.send(b"f FETCH 2 FLAGS\r\n"),
        "* 2 FETCH (FLAGS (\\Deleted))\r\nf OK FETCH completed\r\n"
    );
}

#[test]
fn unauthenticate_pipelined_with_the_next_login() {
    let (mut t, _) = T::new(world(), unauth_profile());
    t.login();
    // RFC 8437 3: with no security layer the next login may follow in the same write.
    assert_eq!(
        t.send(b"u UNAUTHENTICATE\r\nL LOGIN bob hunter2\r\n"),
        "u OK UNAUTHENTICATE completed\r\nL OK LOGIN completed\r\n"
    );
    assert_eq!(t.s.authenticated_user(), Some("bob"));
    // After AUTHENTICATE too: the mechanism is forgotten with the user.
    assert_eq!(
        t.send(b"u UNAUTHENTICATE\r\n"),
        "u OK UNAUTHENTICATE completed\r\n"
    );
    let ir = encode_base64(b"\0alice\0secret");
    let out = t.send(format!("a AUTHENTICATE PLAIN {ir}\r\n").as_bytes());
    assert_eq!(out, "a OK AUTHENTICATE completed\r\n");
    assert_eq!(t.s.auth_mechanism(), Some(crate::sasl::Mechanism::Plain));
    t.send(b"u UNAUTHENTICATE\r\n");
    assert_eq!(t.s.auth_mechanism(), None);
}
