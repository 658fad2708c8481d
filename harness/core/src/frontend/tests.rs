use std::sync::Arc;
use std::time::Duration;

use pretty_assertions::assert_eq;

use super::inprocess::InProcessSession;
use super::*;
use crate::imap::ImapServer;
use crate::ntlm::{self, NtlmInitiator};
use crate::pop3::Pop3Server;
use crate::profile::Profile;
use crate::sasl::encode_base64;
use crate::session::{Output, ServerSession, SessionContext};
use crate::world::{LabFile, World};
use crate::Protocol;

const IMAP_GREETING: &[u8] =
    b"* OK Microsoft Exchange 2000 IMAP4rev1 server version 6.0.6249.0 (fe.example.test) ready.\r\n";
const POP3_GREETING: &[u8] =
    b"+OK Microsoft Exchange 2000 POP3 server version 6.0.6249.0 (fe.example.test) ready.\r\n";

fn world() -> Arc<World> {
    Arc::new(LabFile::default_lab().build().expect("default lab"))
}

/// A front-end over real back-ends on `world` with the back-end profile `backend`.
fn frontend_with(
    protocol: Protocol,
    name: &str,
    world: &Arc<World>,
    backend: Profile,
) -> InProcessFrontend {
    frontend_of(
        protocol,
        FrontendProfile::by_name(name).expect(name),
        world,
        backend,
    )
}

/// A front-end of `profile` over real back-ends on `world` with the back-end profile
/// `backend`.
fn frontend_of(
    protocol: Protocol,
    profile: FrontendProfile,
    world: &Arc<World>,
    backend: Profile,
) -> InProcessFrontend {
    let world = Arc::clone(world);
    let backend = Arc::new(backend);
    InProcessFrontend::new(protocol, profile, move |conn| -> Box<dyn ServerSession> {
        let mut ctx = SessionContext::new(Arc::clone(&world), Arc::clone(&backend));
        ctx.seed = conn;
        ctx.epoch_secs = 1_700_000_000;
        match protocol {
            Protocol::Imap => Box::new(ImapServer::new(ctx)),
            Protocol::Pop3 => Box::new(Pop3Server::new(ctx)),
        }
    })
}

fn frontend(protocol: Protocol, name: &str, world: &Arc<World>) -> InProcessFrontend {
    frontend_with(protocol, name, world, Profile::default_profile())
}

/// A test client: sends bytes and returns what the front-end wrote back.
struct Client {
    s: InProcessSession,
    now: Duration,
    closed: bool,
}

impl Client {
    fn new(fe: &InProcessFrontend) -> (Client, Vec<u8>) {
        let mut c = Client {
            s: fe.client(),
            now: Duration::ZERO,
            closed: false,
        };
        let greeting = c.read();
        (c, greeting)
    }

    fn read(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(o) = self.s.poll_output() {
            match o {
                Output::Write(w) => out.extend_from_slice(&w),
                Output::Close => self.closed = true,
                Output::StartTls => panic!("the front-end offers no TLS"),
            }
        }
        out
    }

    fn send(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.now += Duration::from_millis(5);
        self.s.handle_input(self.now, bytes);
        self.read()
    }

    fn text(&mut self, line: &str) -> String {
        String::from_utf8_lossy(&self.send(line.as_bytes())).into_owned()
    }

    fn eof(&mut self) -> Vec<u8> {
        self.now += Duration::from_millis(5);
        self.s.handle_eof(self.now);
        self.read()
    }
}

fn ntlm_client(user: &str, password: &str) -> NtlmInitiator {
    NtlmInitiator::new(
        ntlm::Credentials::example(user, password),
        ntlm::InitiatorOptions::fixed(7, 9, ntlm::ResponseKind::V2, true),
    )
}

/// The base64 of a `+ <base64>` continuation line.
fn challenge_of(line: &str) -> Vec<u8> {
    let b64 = line
        .strip_prefix("+ ")
        .and_then(|l| l.strip_suffix("\r\n"))
        .unwrap_or_else(|| panic!("not a challenge: {line:?}"));
    crate::sasl::decode_base64(b64.as_bytes()).expect("challenge base64")
}

/// Runs an IMAP NTLM exchange as alice; returns the final reply.
fn imap_ntlm(c: &mut Client, tag: &str, user: &str, password: &str) -> String {
    let mut init = ntlm_client(user, password);
    assert_eq!(c.text(&format!("{tag} AUTHENTICATE NTLM\r\n")), "+\r\n");
    let reply = c.text(&format!("{}\r\n", encode_base64(&init.negotiate())));
    let auth = init
        .handle_challenge(&challenge_of(&reply))
        .expect("CHALLENGE");
    c.text(&format!("{}\r\n", encode_base64(&auth)))
}

fn pop3_ntlm(c: &mut Client, user: &str, password: &str) -> String {
    let mut init = ntlm_client(user, password);
    assert_eq!(c.text("AUTH NTLM\r\n"), "+ \r\n");
    let reply = c.text(&format!("{}\r\n", encode_base64(&init.negotiate())));
    let auth = init
        .handle_challenge(&challenge_of(&reply))
        .expect("CHALLENGE");
    c.text(&format!("{}\r\n", encode_base64(&auth)))
}

fn has(hay: &str, needle: &str) -> bool {
    hay.contains(needle)
}

const ALL: [&str; 4] = [
    "exchange2000-rtm",
    "exchange2000-sp1",
    "affinity",
    "per-session",
];

#[test]
fn profiles_exist_and_round_trip() {
    for name in FRONTEND_PROFILE_NAMES {
        let p = FrontendProfile::by_name(name).expect(name);
        assert_eq!(&p.name, name);
        let back: FrontendProfile = toml::from_str(&toml::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
    assert_eq!(FRONTEND_PROFILE_NAMES.get(..4), Some(&ALL[..]));
    assert_eq!(FRONTEND_PROFILE_NAMES.get(4), Some(&"session-cache"));
    let cache = FrontendProfile::by_name("session-cache").unwrap();
    let sp1 = FrontendProfile::by_name("exchange2000-sp1").unwrap();
    assert!(cache.pool.keep_sessions && !sp1.pool.keep_sessions);
    assert_eq!(
        (cache.advertise_ntlm, cache.sasl_routing),
        (false, SaslRouting::PerStep)
    );
    // Profiles written before the session cache existed still load.
    let old = "size = 4\nreuse = \"round-robin\"\nper_session = false\n";
    let old: PoolPolicy = toml::from_str(old).unwrap();
    assert!(!old.keep_sessions);
    assert!(FrontendProfile::by_name("exchange2003").is_none());
    let rtm = FrontendProfile::by_name("exchange2000-rtm").unwrap();
    assert_eq!(
        (
            rtm.advertise_ntlm,
            rtm.sasl_routing,
            rtm.pool.size,
            rtm.pool.reuse
        ),
        (true, SaslRouting::PerStep, 4, Reuse::RoundRobin)
    );
    assert_eq!((sp1.advertise_ntlm, sp1.pool), (false, rtm.pool));
}

#[test]
fn imap_capability_shows_ntlm_exactly_where_advertised() {
    let w = world();
    for name in ALL {
        let fe = frontend(Protocol::Imap, name, &w);
        let (mut c, greeting) = Client::new(&fe);
        assert_eq!(greeting, IMAP_GREETING);
        let ntlm = if name == "exchange2000-sp1" {
            ""
        } else {
            " AUTH=NTLM"
        };
        assert_eq!(
            c.text("a1 CAPABILITY\r\n"),
            format!(
                "* CAPABILITY IMAP4rev1 IMAP4 IDLE LITERAL+{ntlm}\r\na1 OK CAPABILITY completed.\r\n"
            ),
            "{name}"
        );
        assert_eq!(c.text("a2 NOOP\r\n"), "a2 OK NOOP completed.\r\n");
        assert_eq!(
            c.text("a3 LOGOUT\r\n"),
            "* BYE Microsoft Exchange 2000 IMAP4rev1 server signing off.\r\na3 OK LOGOUT completed.\r\n"
        );
        assert!(c.closed);
        // None of it reached a back-end.
        assert!(fe.trace().iter().all(|l| !l.contains("<-")), "{name}");
    }
}

#[test]
fn pop3_capa_and_auth_listing_show_ntlm_exactly_where_advertised() {
    let w = world();
    for name in ALL {
        let fe = frontend(Protocol::Pop3, name, &w);
        let (mut c, greeting) = Client::new(&fe);
        assert_eq!(greeting, POP3_GREETING);
        let advertised = name != "exchange2000-sp1";
        let (capa_sasl, listing) = if advertised {
            ("SASL NTLM\r\n", "NTLM\r\n")
        } else {
            ("", "")
        };
        assert_eq!(
            c.text("CAPA\r\n"),
            format!("+OK Capability list follows\r\nUSER\r\nTOP\r\nUIDL\r\n{capa_sasl}.\r\n"),
            "{name}"
        );
        assert_eq!(
            c.text("AUTH\r\n"),
            format!("+OK\r\n{listing}.\r\n"),
            "{name}"
        );
        assert_eq!(
            c.text("QUIT\r\n"),
            "+OK Microsoft Exchange 2000 POP3 server signing off.\r\n"
        );
        assert!(c.closed);
        assert!(fe.trace().iter().all(|l| !l.contains("<-")), "{name}");
    }
}

#[test]
fn imap_login_then_select_and_fetch_relays_alices_mail() {
    let w = world();
    for name in ALL {
        let fe = frontend(Protocol::Imap, name, &w);
        let (mut c, _) = Client::new(&fe);
        assert_eq!(
            c.text("a1 LOGIN alice secret\r\n"),
            "a1 OK LOGIN completed\r\n",
            "{name}"
        );
        let select = c.text("a2 SELECT INBOX\r\n");
        assert!(has(&select, "* 3 EXISTS\r\n"), "{select}");
        assert!(has(&select, "a2 OK [READ-WRITE]"), "{select}");
        let fetch = c.text("a3 FETCH 2 BODY[TEXT]\r\n");
        assert!(
            has(
                &fetch,
                "Hello alice, this is message number 2.\r\nSecond line.\r\n"
            ),
            "{fetch}"
        );
        assert!(has(&fetch, "a3 OK"), "{fetch}");
        assert!(!has(&fetch, "bob"), "{fetch}");
        let bye = c.text("a4 LOGOUT\r\n");
        assert!(has(&bye, "a4 OK"), "{bye}");
        assert!(
            c.closed,
            "{name}: the back-end closed, so the client is closed"
        );
        let trace = fe.trace();
        assert!(
            trace
                .iter()
                .any(|l| l.ends_with("<- a1 LOGIN alice <password>")),
            "{trace:#?}"
        );
        assert!(trace.iter().all(|l| !l.contains("secret")), "{trace:#?}");
        let stats = fe.stats();
        assert_eq!(stats.leased, 1, "{name}");
        if name != "per-session" {
            // The leased connection was closed and replaced.
            assert_eq!(fe.idle_connections(), 4, "{name}");
            assert_eq!((stats.opened, stats.closed), (5, 1), "{name}");
        } else {
            assert_eq!((stats.opened, stats.closed), (1, 1), "{name}");
        }
    }
}

#[test]
fn imap_login_literal_and_pipelined_commands_are_relayed() {
    let w = world();
    let fe = frontend(Protocol::Imap, "exchange2000-rtm", &w);
    let (mut c, _) = Client::new(&fe);
    // A synchronising literal before login is framed by the front-end itself.
    assert_eq!(c.text("a1 LOGIN {5}\r\n"), "+ Ready for literal data\r\n");
    let out = c.text("alice secret\r\na2 SELECT INBOX\r\na3 FETCH 1 (FLAGS)\r\n");
    assert!(out.starts_with("a1 OK LOGIN completed\r\n"), "{out}");
    assert!(has(&out, "a2 OK [READ-WRITE]"), "{out}");
    assert!(has(&out, "* 1 FETCH (FLAGS ("), "{out}");
    assert!(out.ends_with("a3 OK FETCH completed\r\n"), "{out}");
}

#[test]
fn imap_bad_login_goes_back_to_the_pool_with_the_backends_refusal() {
    let w = world();
    let fe = frontend(Protocol::Imap, "exchange2000-rtm", &w);
    let (mut c, _) = Client::new(&fe);
    assert_eq!(
        c.text("a1 LOGIN alice wrong\r\n"),
        "a1 NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    );
    assert_eq!(fe.idle_connections(), 4);
    assert_eq!(
        c.text("a2 LOGIN \"al\\\"ice\" x\r\n"),
        "a2 NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    );
    // 8-bit credentials cannot be relayed as a quoted string: refused by the front-end.
    assert_eq!(c.text("a3 LOGIN {2}\r\n"), "+ Ready for literal data\r\n");
    assert_eq!(c.send(b"\xc3\xa9 x\r\n"), b"a3 NO LOGIN failed.\r\n");
    assert_eq!(
        c.text("a4 LOGIN alice secret\r\n"),
        "a4 OK LOGIN completed\r\n"
    );
    let trace = fe.trace();
    assert!(
        trace
            .iter()
            .any(|l| l == "be#2 <- a2 LOGIN al\"ice <password>"),
        "{trace:#?}"
    );
}

#[test]
fn imap_authenticate_plain_is_relayed() {
    let w = world();
    for name in ALL {
        let fe = frontend(Protocol::Imap, name, &w);
        let (mut c, _) = Client::new(&fe);
        let ir = encode_base64(b"\0bob\0hunter2");
        assert_eq!(
            c.text(&format!("p1 AUTHENTICATE PLAIN {ir}\r\n")),
            "p1 OK AUTHENTICATE completed\r\n"
        );
        let out = c.text("p2 SELECT INBOX\r\np3 FETCH 3 BODY[TEXT]\r\n");
        assert!(has(&out, "Hello bob, this is message number 3."), "{out}");
        // Without an initial response the front-end asks for it first.
        let (mut c, _) = Client::new(&fe);
        assert_eq!(c.text("p1 AUTHENTICATE PLAIN\r\n"), "+\r\n");
        let pw = encode_base64(b"\0alice\0secret");
        assert_eq!(
            c.text(&format!("{pw}\r\n")),
            "p1 OK AUTHENTICATE completed\r\n"
        );
        assert!(fe
            .trace()
            .iter()
            .any(|l| l.ends_with("<- p1 AUTHENTICATE PLAIN <PLAIN user=alice>")));
    }
}

#[test]
fn pop3_user_pass_then_stat_and_retr_relays_alices_mail() {
    let w = world();
    for name in ALL {
        let fe = frontend(Protocol::Pop3, name, &w);
        let (mut c, _) = Client::new(&fe);
        assert_eq!(c.text("USER alice\r\n"), "+OK\r\n");
        // Nothing went to a back-end for USER.
        assert!(fe.trace().iter().all(|l| !l.contains("<-")));
        let pass = c.text("PASS secret\r\n");
        assert!(pass.starts_with("+OK "), "{name}: {pass}");
        let stat = c.text("STAT\r\n");
        assert!(stat.starts_with("+OK 3 "), "{stat}");
        let retr = c.text("RETR 1\r\n");
        assert!(
            has(&retr, "Hello alice, this is message number 1.\r\n"),
            "{retr}"
        );
        assert!(retr.ends_with("\r\n.\r\n"), "{retr}");
        let quit = c.text("QUIT\r\n");
        assert!(quit.starts_with("+OK"), "{quit}");
        assert!(c.closed);
        let trace = fe.trace();
        let sent: Vec<&String> = trace.iter().filter(|l| l.contains(" <- ")).collect();
        assert!(sent[0].ends_with("<- USER alice"), "{trace:#?}");
        assert!(sent[1].ends_with("<- PASS <password>"), "{trace:#?}");
        assert!(trace.iter().all(|l| !l.contains("secret")), "{trace:#?}");
        // The maildrop lock went with the back-end session: alice can log in again.
        let (mut c, _) = Client::new(&fe);
        c.text("USER alice\r\n");
        assert!(c.text("PASS secret\r\n").starts_with("+OK "), "{name}");
    }
}

#[test]
fn pop3_wrong_password_is_the_backends_refusal() {
    let w = world();
    let fe = frontend(Protocol::Pop3, "exchange2000-rtm", &w);
    let (mut c, _) = Client::new(&fe);
    assert_eq!(
        c.text("PASS secret\r\n"),
        "-ERR Command is not valid in this state.\r\n"
    );
    c.text("USER alice\r\n");
    assert_eq!(
        c.text("PASS nope\r\n"),
        "-ERR [AUTH] authentication failed: bad user name or password\r\n"
    );
    assert_eq!(fe.idle_connections(), 4);
    let auth = encode_base64(b"\0alice\0secret");
    let ok = c.text(&format!("AUTH PLAIN {auth}\r\n"));
    assert!(ok.starts_with("+OK"), "{ok}");
}

/// The KB 306874 failure, with the trace a snapshot would hold.
#[test]
fn imap_ntlm_through_rtm_fails_at_the_backend_on_a_second_connection() {
    let w = world();
    let fe = frontend(Protocol::Imap, "exchange2000-rtm", &w);
    let (mut c, _) = Client::new(&fe);
    let reply = imap_ntlm(&mut c, "a2", "alice", "secret");
    // The default back-end profile's failure text: the refusal comes from a back-end.
    assert_eq!(
        reply,
        "a2 NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    );
    assert_eq!(
        fe.findings(),
        vec![Finding::ContextSplit { first: 1, then: 2 }]
    );
    assert_eq!(
        fe.trace(),
        [
            "be#1 opened",
            "be#2 opened",
            "be#3 opened",
            "be#4 opened",
            "be#1 <- a2 AUTHENTICATE NTLM <NTLM NEGOTIATE>",
            "be#1 -> + <NTLM CHALLENGE>",
            "be#1 <- * (reset before returning to the pool)",
            "be#1 -> a2 BAD Authentication cancelled (swallowed)",
            "be#1 .. back to the pool",
            "!! context split: this NTLM step went to be#2, the previous one to be#1",
            "be#2 <- a2 AUTHENTICATE NTLM <NTLM AUTHENTICATE user=alice>",
            "be#2 -> a2 NO [AUTHENTICATIONFAILED] Authentication failed",
            "be#2 .. back to the pool",
        ]
    );
    // The session is usable afterwards, and basic login still works.
    assert_eq!(
        c.text("a3 LOGIN alice secret\r\n"),
        "a3 OK LOGIN completed\r\n"
    );
}

#[test]
fn ntlm_fails_through_both_per_step_profiles_and_with_either_backend_profile() {
    let w = world();
    for backend in [Profile::default_profile(), Profile::exchange()] {
        for name in ["exchange2000-rtm", "exchange2000-sp1"] {
            let fe = frontend_with(Protocol::Imap, name, &w, backend.clone());
            let (mut c, _) = Client::new(&fe);
            let reply = imap_ntlm(&mut c, "n1", "alice", "secret");
            let expected = format!("n1 NO {}\r\n", backend.imap.auth_failed_text);
            assert_eq!(reply, expected, "{name} / {}", backend.name);
            assert_eq!(
                fe.findings(),
                vec![Finding::ContextSplit { first: 1, then: 2 }]
            );
            let fe = frontend_with(Protocol::Pop3, name, &w, backend.clone());
            let (mut c, _) = Client::new(&fe);
            let reply = pop3_ntlm(&mut c, "alice", "secret");
            assert!(
                reply.starts_with("-ERR ") && reply.contains("authentication failed: NTLM"),
                "{name}: {reply}"
            );
            assert_eq!(
                fe.findings(),
                vec![Finding::ContextSplit { first: 1, then: 2 }]
            );
        }
    }
    // The Exchange back-end has no SASL-IR: the front-end waits for its `+` first.
    let fe = frontend_with(Protocol::Imap, "exchange2000-rtm", &w, Profile::exchange());
    let (mut c, _) = Client::new(&fe);
    imap_ntlm(&mut c, "n1", "alice", "secret");
    let trace = fe.trace();
    assert!(
        trace.contains(&"be#2 <- n1 AUTHENTICATE NTLM".to_string())
            && trace.contains(&"be#2 <- <NTLM AUTHENTICATE user=alice>".to_string()),
        "{trace:#?}"
    );
}

#[test]
fn pop3_ntlm_through_rtm_trace() {
    let w = world();
    let fe = frontend(Protocol::Pop3, "exchange2000-rtm", &w);
    let (mut c, _) = Client::new(&fe);
    let reply = pop3_ntlm(&mut c, "alice", "secret");
    assert_eq!(
        reply,
        "-ERR [AUTH] authentication failed: NTLM: expected message type 1, found 3\r\n"
    );
    let trace = fe.trace();
    assert_eq!(
        trace.get(4..).unwrap(),
        [
            "be#1 <- AUTH NTLM <NTLM NEGOTIATE>",
            "be#1 -> + <NTLM CHALLENGE>",
            "be#1 <- * (reset before returning to the pool)",
            "be#1 -> -ERR authentication cancelled by the client (swallowed)",
            "be#1 .. back to the pool",
            "!! context split: this NTLM step went to be#2, the previous one to be#1",
            "be#2 <- AUTH NTLM <NTLM AUTHENTICATE user=alice>",
            "be#2 -> -ERR [AUTH] authentication failed: NTLM: expected message type 1, found 3",
            "be#2 .. back to the pool",
        ]
    );
}

#[test]
fn ntlm_succeeds_through_affinity_and_per_session() {
    let w = world();
    for name in ["affinity", "per-session"] {
        let fe = frontend(Protocol::Imap, name, &w);
        let (mut c, _) = Client::new(&fe);
        assert_eq!(
            imap_ntlm(&mut c, "a1", "alice", "secret"),
            "a1 OK AUTHENTICATE completed\r\n",
            "{name}"
        );
        let out = c.text("a2 SELECT INBOX\r\na3 FETCH 1 BODY[TEXT]\r\n");
        assert!(has(&out, "Hello alice, this is message number 1."), "{out}");
        assert!(fe.findings().is_empty(), "{name}");
        let trace = fe.trace();
        assert!(
            trace
                .iter()
                .any(|l| l.ends_with("<- <NTLM AUTHENTICATE user=alice>")),
            "{trace:#?}"
        );
        // A wrong password fails at the back-end too.
        let (mut c, _) = Client::new(&fe);
        assert_eq!(
            imap_ntlm(&mut c, "b1", "alice", "wrong"),
            "b1 NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
        );

        let fe = frontend(Protocol::Pop3, name, &w);
        let (mut c, _) = Client::new(&fe);
        let reply = pop3_ntlm(&mut c, "bob", "hunter2");
        assert!(reply.starts_with("+OK"), "{name}: {reply}");
        let retr = c.text("RETR 2\r\n");
        assert!(has(&retr, "Hello bob, this is message number 2."), "{retr}");
        assert!(fe.findings().is_empty());
    }
}

#[test]
fn client_cancel_and_bad_base64_during_ntlm() {
    let w = world();
    for name in ["affinity", "exchange2000-rtm"] {
        let fe = frontend(Protocol::Imap, name, &w);
        let (mut c, _) = Client::new(&fe);
        let mut init = ntlm_client("alice", "secret");
        c.text("a1 AUTHENTICATE NTLM\r\n");
        let chal = c.text(&format!("{}\r\n", encode_base64(&init.negotiate())));
        assert!(chal.starts_with("+ "), "{chal}");
        assert_eq!(
            c.text("*\r\n"),
            "a1 NO The AUTH protocol exchange was canceled by the client.\r\n"
        );
        // Pinned: the back-end exchange was reset and its connection went back.
        assert_eq!(fe.idle_connections(), 4, "{name}");
        c.text("a2 AUTHENTICATE NTLM\r\n");
        assert_eq!(
            c.text("!!notbase64\r\n"),
            "a2 BAD client response is not valid base64\r\n"
        );
        assert_eq!(c.text("a3 NOOP\r\n"), "a3 OK NOOP completed.\r\n");
    }
    let fe = frontend(Protocol::Pop3, "affinity", &w);
    let (mut c, _) = Client::new(&fe);
    let mut init = ntlm_client("alice", "secret");
    c.text("AUTH NTLM\r\n");
    c.text(&format!("{}\r\n", encode_base64(&init.negotiate())));
    assert_eq!(
        c.text("*\r\n"),
        "-ERR The AUTH protocol exchange was canceled by the client.\r\n"
    );
    assert_eq!(fe.idle_connections(), 4);
}

#[test]
fn interleaved_alice_and_bob_never_see_each_others_mail() {
    let w = world();
    for name in ["exchange2000-rtm", "per-session", "affinity"] {
        let fe = frontend(Protocol::Imap, name, &w);
        let (mut a, _) = Client::new(&fe);
        let (mut b, _) = Client::new(&fe);
        assert!(a.text("a1 LOGIN alice secret\r\n").contains("a1 OK"));
        assert!(b.text("b1 LOGIN bob hunter2\r\n").contains("b1 OK"));
        let mut out_a = a.text("a2 SELECT INBOX\r\n");
        let mut out_b = b.text("b2 SELECT INBOX\r\n");
        for i in 1..=3 {
            out_b += &b.text(&format!("b{i}x FETCH {i} BODY[]\r\n"));
            out_a += &a.text(&format!("a{i}x FETCH {i} BODY[]\r\n"));
        }
        for i in 1..=3 {
            assert!(has(
                &out_a,
                &format!("Hello alice, this is message number {i}.")
            ));
            assert!(has(
                &out_b,
                &format!("Hello bob, this is message number {i}.")
            ));
        }
        assert!(!has(&out_a, "bob"), "{name}: {out_a}");
        assert!(!has(&out_b, "alice"), "{name}: {out_b}");
        assert_ne!(
            a.s.core().leased_connection(),
            b.s.core().leased_connection()
        );

        let fe = frontend(Protocol::Pop3, name, &w);
        let (mut a, _) = Client::new(&fe);
        let (mut b, _) = Client::new(&fe);
        a.text("USER alice\r\n");
        b.text("USER bob\r\n");
        assert!(b.text("PASS hunter2\r\n").starts_with("+OK"));
        assert!(a.text("PASS secret\r\n").starts_with("+OK"));
        let mut out_a = String::new();
        let mut out_b = String::new();
        for i in 1..=3 {
            out_a += &a.text(&format!("RETR {i}\r\n"));
            out_b += &b.text(&format!("RETR {i}\r\n"));
        }
        assert!(has(&out_a, "Hello alice, this is message number 3."));
        assert!(has(&out_b, "Hello bob, this is message number 3."));
        assert!(!has(&out_a, "bob") && !has(&out_b, "alice"), "{name}");
    }
}

#[test]
fn pool_counters_show_reuse() {
    let w = world();
    // rtm: every basic login is served by an idle, greeted connection; each leased one
    // is closed at the end and replaced.
    let fe = frontend(Protocol::Imap, "exchange2000-rtm", &w);
    for i in 0..6 {
        let (mut c, _) = Client::new(&fe);
        assert!(c
            .text(&format!("t{i} LOGIN alice secret\r\n"))
            .contains("OK"));
        c.text("t LOGOUT\r\n");
    }
    let s = fe.stats();
    assert_eq!(
        (
            s.opened,
            s.idle_acquired,
            s.fresh_acquired,
            s.leased,
            s.closed
        ),
        (4 + 6, 6, 0, 6, 6)
    );
    // Requests that do not lease (NTLM steps, refused logins) reuse the same few.
    let fe = frontend(Protocol::Imap, "exchange2000-rtm", &w);
    for i in 0..5 {
        let (mut c, _) = Client::new(&fe);
        imap_ntlm(&mut c, &format!("n{i}"), "alice", "secret");
        c.text("x LOGIN alice nope\r\n");
        c.eof();
    }
    let s = fe.stats();
    assert_eq!((s.opened, s.idle_acquired, s.fresh_acquired), (4, 15, 0));
    assert_eq!(s.reused, 15 - 4);
    // per-session: nothing is shared; every client session opens its own.
    let fe = frontend(Protocol::Imap, "per-session", &w);
    for i in 0..6 {
        let (mut c, _) = Client::new(&fe);
        imap_ntlm(&mut c, &format!("n{i}"), "alice", "wrong");
        c.text("y LOGIN alice secret\r\n");
        c.text("z LOGOUT\r\n");
    }
    let s = fe.stats();
    assert_eq!(
        (s.opened, s.fresh_acquired, s.idle_acquired, s.reused),
        (6, 6, 6, 6)
    );
    assert_eq!(fe.idle_connections(), 0);
}

#[test]
fn bad_client_input_is_answered_by_the_frontend_alone() {
    let w = world();
    let fe = frontend(Protocol::Imap, "exchange2000-rtm", &w);
    let (mut c, _) = Client::new(&fe);
    assert_eq!(
        c.text("a1 SELECT INBOX\r\n"),
        "a1 BAD Command received in Invalid state.\r\n"
    );
    assert_eq!(c.text("a2 FROB\r\n"), "a2 BAD Unknown command\r\n");
    assert_eq!(c.text("garbage\r\n"), "* BAD Missing or invalid tag\r\n");
    assert_eq!(
        c.text("a3 STARTTLS\r\n"),
        "a3 BAD STARTTLS is not offered by this front-end.\r\n"
    );
    assert_eq!(
        c.text("a4 AUTHENTICATE CRAM-MD5\r\n"),
        "a4 NO Unsupported authentication mechanism.\r\n"
    );
    let mut long = b"a5 NOOP ".to_vec();
    long.extend_from_slice(&[b'x'; 9000]);
    long.extend_from_slice(b"\r\na6 NOOP\r\n");
    assert_eq!(
        c.send(&long),
        b"a5 BAD Line too long (limit 8192 octets)\r\na6 OK NOOP completed.\r\n"
    );
    assert_eq!(
        c.text("a7 LOGIN {99999}\r\n"),
        "a7 BAD Literal of 99999 octets is over the limit of 8192\r\n"
    );
    assert!(c.send(b"\xff\xfe\x00\r\n").starts_with(b"* BAD"));

    let fe2 = frontend(Protocol::Pop3, "exchange2000-rtm", &w);
    let (mut p, _) = Client::new(&fe2);
    assert_eq!(
        p.text("STAT\r\n"),
        "-ERR Command is not valid in this state.\r\n"
    );
    assert_eq!(p.text("FROB\r\n"), "-ERR Protocol error.\r\n");
    assert_eq!(
        p.text("AUTH CRAM-MD5\r\n"),
        "-ERR Unrecognized authentication type.\r\n"
    );
    assert_eq!(
        p.text("RETR x\r\n"),
        "-ERR Protocol error: RETR: the message number is not a decimal number\r\n"
    );
    let mut long = vec![b'A'; 9000];
    long.extend_from_slice(b"\r\nNOOP\r\n");
    assert_eq!(
        p.send(&long),
        b"-ERR Line too long (limit 8192 octets)\r\n-ERR Command is not valid in this state.\r\n"
    );
    for fe in [&fe, &fe2] {
        let trace = fe.trace();
        assert!(trace.iter().all(|l| l.ends_with("opened")), "{trace:#?}");
    }
}

#[test]
fn leased_session_end_discards_and_replaces_the_connection() {
    let w = world();
    let fe = frontend(Protocol::Pop3, "exchange2000-rtm", &w);
    let (mut c, _) = Client::new(&fe);
    c.text("USER alice\r\n");
    c.text("PASS secret\r\n");
    let leased = c.s.core().leased_connection().expect("leased");
    assert_eq!(fe.idle_connections(), 3);
    // The client vanishes without QUIT: the back-end session is closed (and its maildrop
    // lock released), the pool opens a replacement.
    c.eof();
    assert_eq!(fe.idle_connections(), 4);
    let trace = fe.trace();
    assert!(
        trace.contains(&format!("be#{leased} xx closed (discarded)")),
        "{trace:#?}"
    );
    assert_eq!(trace.last().map(String::as_str), Some("be#5 opened"));
    assert!(w.store.try_lock_maildrop("alice"));
    w.store.unlock_maildrop("alice");
}

#[test]
fn idle_timeout_and_shutdown() {
    let w = world();
    let fe = frontend(Protocol::Imap, "exchange2000-rtm", &w);
    let (mut c, _) = Client::new(&fe);
    let deadline = c.s.poll_timeout().expect("deadline");
    c.s.handle_timeout(deadline);
    assert_eq!(c.read(), b"* BYE Connection timed out.\r\n");
    assert!(c.closed);
    let fe = frontend(Protocol::Pop3, "exchange2000-rtm", &w);
    let (mut c, _) = Client::new(&fe);
    c.s.handle_shutdown(Duration::from_secs(1));
    assert_eq!(c.read(), b"-ERR Server shutting down.\r\n");
}

#[test]
fn fuzz_entry_on_samples() {
    let plain = encode_base64(b"\0alice\0secret");
    let samples: Vec<Vec<u8>> = vec![
        b"\x00a1 LOGIN alice secret\r\na2 SELECT INBOX\r\na3 FETCH 1:* BODY[]\r\n\x00b1 LOGIN bob hunter2\r\nb2 SELECT INBOX\r\nb3 FETCH 1:* BODY[]\r\n".to_vec(),
        b"\x01USER alice\r\nPASS secret\r\nRETR 1\r\nRETR 2\r\n\x00USER bob\r\nPASS hunter2\r\nRETR 1\r\nQUIT\r\n".to_vec(),
        format!("\x0eb AUTHENTICATE PLAIN {plain}\r\nb SELECT INBOX\r\nb FETCH 1 BODY[]\r\n\x00x AUTHENTICATE NTLM\r\nTlRMTVNTUAABAAAAB4IIog==\r\n*\r\n").into_bytes(),
        b"\x03AUTH NTLM\r\nTlRMTVNTUAABAAAAB4IIog==\r\nTlRMTVNTUAADAAAA\r\n\x00CAPA\r\nAUTH\r\n".to_vec(),
        [b"\x02".as_slice(), &[b'A'; 5000], b"\r\nx NOOP\r\n"].concat(),
        b"\x06a LOGIN alice secret\r\na APPEND INBOX {30}\r\nHello bob, this is message 1\r\n\x00".to_vec(),
        Vec::new(),
        vec![0xff],
    ];
    for s in &samples {
        fuzz_frontend_session(s);
    }
    // Bit 4: the session-cache front-end. A parks alice's session; B's LOGIN as alice
    // reuses it, and B as bob must not (the entry checks mail never crosses users). Bit 5:
    // pool-unauthenticate with a pool of one: A's recycled connection serves B's login
    // after its reset; B as bob must not see alice's mail either.
    let cases = [
        ("\x1e", "a LOGOUT\r\n"),
        ("\x2e", "a FETCH 1 BODY[]\r\na LOGOUT\r\n"),
    ];
    for (setup, rest) in cases {
        for b in ["alice secret", "bob hunter2", "alice wrong"] {
            let input = format!(
                "{setup}a LOGIN alice secret\r\na SELECT INBOX\r\n{rest}\x00b LOGIN {b}\r\nb SELECT INBOX\r\nb FETCH 1:* BODY[]\r\n"
            );
            let authenticated = inprocess::fuzz_two_sessions(input.as_bytes());
            assert_eq!(
                authenticated,
                if b.ends_with("wrong") { 1 } else { 2 },
                "{setup:?} {b}"
            );
        }
    }
    // A client's own UNAUTHENTICATE and a second LOGIN through the lease is left out of
    // the check.
    let own = b"\x2ea LOGIN alice secret\r\na unauthenticate\r\na LOGIN bob hunter2\r\na SELECT INBOX\r\na FETCH 1 BODY[]\r\na LOGOUT\r\n\x00b LOGIN alice secret\r\nb SELECT INBOX\r\nb FETCH 1 BODY[]\r\n";
    assert_eq!(inprocess::fuzz_two_sessions(own), 2);
}

/// Seeded mutations of a dictionary of client lines through the fuzz entry.
#[test]
fn seeded_mutation_smoke_run() {
    use crate::rng::SeededRng;
    let mut init = ntlm_client("alice", "secret");
    let neg = format!("{}\r\n", encode_base64(&init.negotiate()));
    let dict = crate::fuzzing::ops::dictionary(
        &[
            "a LOGIN alice secret\r\n",
            "b LOGIN bob hunter2\r\n",
            "c SELECT INBOX\r\n",
            "d FETCH 1:* BODY[]\r\n",
            "e LOGOUT\r\n",
            "f AUTHENTICATE NTLM\r\n",
            "g CAPABILITY\r\n",
            "*\r\n",
            "USER alice\r\n",
            "PASS secret\r\n",
            "USER bob\r\nPASS hunter2\r\n",
            "RETR 1\r\n",
            "AUTH NTLM\r\n",
            "AUTH\r\n",
            "QUIT\r\n",
            "h LOGIN {5}\r\nalice secret\r\n",
            "\r\n",
            "\x00",
        ],
        [neg.into_bytes(), vec![0xff, b'\n'], vec![b'Z'; 300]],
    );
    let mut rng = SeededRng::new(306_874);
    let mut authenticated = [0usize; 2];
    for _ in 0..300 {
        let setup = (rng.next_u64() % 16) as u8;
        let data = crate::fuzzing::ops::dictionary_input(&mut rng, setup, &dict, 10, 6);
        let protocol = usize::from(data[0] & 1);
        authenticated[protocol] += inprocess::fuzz_two_sessions(&data);
    }
    // Both protocols must reach authenticated sessions, or the run proves little.
    assert!(authenticated.iter().all(|&n| n >= 10), "{authenticated:?}");
}

/// The sans-IO contract without the in-process adapter: the grant comes late, client
/// input pipelined meanwhile waits and follows the login to the leased connection, and a
/// reply split over reads is put together.
#[test]
fn sans_io_contract_with_a_delayed_grant() {
    let profile = Arc::new(FrontendProfile::by_name("exchange2000-rtm").unwrap());
    let mut s = FrontendSession::new(
        Protocol::Imap,
        profile,
        crate::session::Limits::default(),
        BackendFeatures {
            imap_sasl_ir: true,
            imap_unselect: false,
            imap_unauthenticate: false,
        },
    );
    let drain = |s: &mut FrontendSession| {
        let mut out = Vec::new();
        while let Some(o) = s.poll_output() {
            match o {
                Output::Write(w) => out.extend_from_slice(&w),
                other => out.extend_from_slice(format!("<{other:?}>").as_bytes()),
            }
        }
        out
    };
    assert_eq!(drain(&mut s), IMAP_GREETING);
    s.handle_input(Duration::ZERO, b"a1 LOGIN alice secret\r\na2 NOOP\r\n");
    assert_eq!(s.poll_backend(), Some(BackendIo::Acquire));
    assert_eq!(s.poll_backend(), None);
    s.handle_input(Duration::ZERO, b"a3 SELECT INBOX\r\n");
    assert_eq!(drain(&mut s), b"");
    s.handle_backend_granted(7);
    assert_eq!(
        s.poll_backend(),
        Some(BackendIo::Send {
            conn: 7,
            bytes: b"a1 LOGIN \"alice\" \"secret\"\r\n".to_vec()
        })
    );
    s.handle_backend_input(7, b"a1 OK LO");
    assert_eq!(drain(&mut s), b"");
    assert_eq!(s.poll_backend(), None);
    s.handle_backend_input(7, b"GIN completed\r\n");
    assert_eq!(drain(&mut s), b"a1 OK LOGIN completed\r\n");
    assert_eq!(s.poll_backend(), Some(BackendIo::Lease { conn: 7 }));
    assert_eq!(
        s.poll_backend(),
        Some(BackendIo::Send {
            conn: 7,
            bytes: b"a2 NOOP\r\na3 SELECT INBOX\r\n".to_vec()
        })
    );
    assert_eq!(s.authenticated_user(), Some("alice"));
    s.handle_backend_input(7, b"a2 OK NOOP\r\n* 0 EXISTS\r\n");
    assert_eq!(drain(&mut s), b"a2 OK NOOP\r\n* 0 EXISTS\r\n");
    // Input for a connection the session does not hold is not relayed.
    s.handle_backend_input(3, b"* BYE\r\n");
    assert_eq!(drain(&mut s), b"");
    s.handle_backend_closed(7);
    assert_eq!(drain(&mut s), b"<Close>");
    assert!(s.is_closed());
    assert_eq!(s.poll_backend(), Some(BackendIo::Discard { conn: 7 }));
    assert_eq!(
        s.take_trace(),
        [
            "be#7 <- a1 LOGIN alice <password>",
            "be#7 -> a1 OK LOGIN completed",
            "be#7 .. leased to the client session (user alice)",
            "be#7 <- relay a2 NOOP (26 bytes)",
            "be#7 -> relay 24 bytes",
            "be#3 -> 7 bytes ignored (nothing asked)",
            "be#7 -> closed; ending the client session",
            "be#7 xx closed (discarded)",
        ]
    );
}

#[test]
fn a_broken_backend_reply_fails_the_request_not_the_frontend() {
    let profile = Arc::new(FrontendProfile::by_name("exchange2000-rtm").unwrap());
    for (protocol, input, reply, expected) in [
        (
            Protocol::Imap,
            &b"a1 LOGIN alice secret\r\n"[..],
            &b"zz OK whatever\r\n"[..],
            &b"a1 NO [UNAVAILABLE] Back-end connection failed.\r\n"[..],
        ),
        (
            Protocol::Pop3,
            b"USER alice\r\nPASS secret\r\n",
            b"hello\r\n",
            b"+OK\r\n-ERR [SYS/TEMP] Back-end connection failed.\r\n",
        ),
    ] {
        let mut s = FrontendSession::new(
            protocol,
            Arc::clone(&profile),
            crate::session::Limits::default(),
            BackendFeatures::default(),
        );
        while s.poll_output().is_some() {}
        s.handle_input(Duration::ZERO, input);
        assert_eq!(s.poll_backend(), Some(BackendIo::Acquire));
        s.handle_backend_granted(1);
        assert!(matches!(s.poll_backend(), Some(BackendIo::Send { .. })));
        s.handle_backend_input(1, reply);
        assert_eq!(s.poll_backend(), Some(BackendIo::Discard { conn: 1 }));
        let mut out = Vec::new();
        while let Some(Output::Write(w)) = s.poll_output() {
            out.extend_from_slice(&w);
        }
        assert_eq!(out, expected, "{protocol:?}");
        assert!(!s.is_closed());
    }
}

#[test]
fn more_concurrent_logins_than_the_pool_holds_open_on_demand() {
    let w = world();
    let fe = frontend(Protocol::Pop3, "exchange2000-rtm", &w);
    let users = [
        ("alice", "secret"),
        ("bob", "hunter2"),
        ("user", "pass"),
        ("alice", "secret"),
        ("bob", "hunter2"),
    ];
    let mut clients = Vec::new();
    for (user, pass) in users {
        let (mut c, _) = Client::new(&fe);
        c.text(&format!("USER {user}\r\n"));
        let reply = c.text(&format!("PASS {pass}\r\n"));
        clients.push((c, reply));
    }
    // The maildrop is locked by the first alice and bob: the back-end says so.
    let replies: Vec<bool> = clients.iter().map(|(_, r)| r.starts_with("+OK")).collect();
    assert_eq!(replies, [true, true, true, false, false]);
    assert!(
        clients[3].1.starts_with("-ERR [IN-USE]"),
        "{}",
        clients[3].1
    );
    // The refused ones went back to the pool, so the fifth found one idle.
    let s = fe.stats();
    assert_eq!((s.idle_acquired, s.fresh_acquired, s.leased), (5, 0, 3));

    // IMAP has no maildrop lock: five leases at once, one more than the pool holds.
    let fe = frontend(Protocol::Imap, "exchange2000-rtm", &w);
    let mut clients = Vec::new();
    for (i, (user, pass)) in users.iter().enumerate() {
        let (mut c, _) = Client::new(&fe);
        let reply = c.text(&format!("t{i} LOGIN {user} {pass}\r\n"));
        assert_eq!(reply, format!("t{i} OK LOGIN completed\r\n"));
        clients.push(c);
    }
    let s = fe.stats();
    assert_eq!((s.idle_acquired, s.fresh_acquired, s.leased), (4, 1, 5));
    assert_eq!(fe.idle_connections(), 0);
    drop(clients);
    // Each ended session's connection was closed and replaced up to the pool size.
    assert_eq!(fe.idle_connections(), 4);
    assert_eq!(fe.stats().closed, 5);
}

/// With LIFO reuse the second NTLM step lands on the very connection of the first, yet
/// it still fails: the per-step front-end reset that exchange before returning it.
#[test]
fn per_step_ntlm_fails_even_on_the_same_connection() {
    let w = world();
    let mut profile = FrontendProfile::by_name("exchange2000-rtm").unwrap();
    profile.pool.reuse = Reuse::Lifo;
    let world = Arc::clone(&w);
    let fe = InProcessFrontend::new(Protocol::Imap, profile, move |conn| {
        let mut ctx = SessionContext::new(Arc::clone(&world), Arc::new(Profile::default_profile()));
        ctx.seed = conn;
        Box::new(ImapServer::new(ctx)) as Box<dyn ServerSession>
    });
    let (mut c, _) = Client::new(&fe);
    assert_eq!(
        imap_ntlm(&mut c, "a1", "alice", "secret"),
        "a1 NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    );
    assert!(fe.findings().is_empty());
    let trace = fe.trace();
    assert!(
        trace.contains(&"be#4 <- a1 AUTHENTICATE NTLM <NTLM NEGOTIATE>".to_string())
            && trace.contains(
                &"be#4 <- a1 AUTHENTICATE NTLM <NTLM AUTHENTICATE user=alice>".to_string()
            ),
        "{trace:#?}"
    );
}

#[test]
fn relayed_traffic_is_traced_without_arguments() {
    let w = world();
    let fe = frontend(Protocol::Imap, "exchange2000-rtm", &w);
    let (mut c, _) = Client::new(&fe);
    c.text("a1 LOGIN alice secret\r\n");
    let again = c.text("a2 LOGIN alice secret\r\n");
    assert!(again.starts_with("a2 BAD"), "{again}");
    let trace = fe.trace();
    assert!(
        trace.contains(&"be#1 <- relay a2 LOGIN (23 bytes)".to_string()),
        "{trace:#?}"
    );
    assert!(trace.iter().all(|l| !l.contains("secret")), "{trace:#?}");
}

// ---- the session cache (profile session-cache) ----

/// A session-cache front-end over back-ends that advertise UNSELECT.
fn cache_frontend(w: &Arc<World>) -> InProcessFrontend {
    frontend_with(
        Protocol::Imap,
        "session-cache",
        w,
        Profile::default_profile(),
    )
}

/// Logs in, optionally runs `body`, logs out; returns the LOGOUT reply.
fn imap_visit(fe: &InProcessFrontend, user: &str, pass: &str, body: &[&str]) -> String {
    let (mut c, _) = Client::new(fe);
    let login = c.text(&format!("a1 LOGIN {user} {pass}\r\n"));
    assert_eq!(login, "a1 OK LOGIN completed\r\n");
    for line in body {
        let out = c.text(line);
        assert!(out.contains(" OK "), "{line}: {out}");
    }
    let bye = c.text("z LOGOUT\r\n");
    assert!(c.closed, "{bye}");
    bye
}

fn backend_logins(trace: &[String]) -> usize {
    trace
        .iter()
        .filter(|l| l.contains(" LOGIN ") && l.contains("<-"))
        .count()
}

#[test]
fn session_cache_serves_the_same_users_next_login_without_a_backend_login() {
    let w = world();
    let fe = cache_frontend(&w);
    let bye = imap_visit(&fe, "alice", "secret", &["a2 SELECT INBOX\r\n"]);
    assert_eq!(
        bye,
        "* BYE Microsoft Exchange 2000 IMAP4rev1 server signing off.\r\nz OK LOGOUT completed.\r\n"
    );
    let first = fe.trace();
    // Nothing was outstanding: the front-end answered the LOGOUT at once, without asking
    // the back-end anything; the reset waits for the next client.
    assert!(
        first
            .iter()
            .all(|l| !l.contains("UNSELECT") && !l.contains("LOGOUT")),
        "{first:#?}"
    );
    assert!(
        first
            .iter()
            .any(|l| l.ends_with(".. session cache: parked (user alice)")),
        "{first:#?}"
    );
    assert_eq!(backend_logins(&first), 1);
    assert_eq!(fe.cached_sessions(), 1);
    // The parked connection is neither closed nor back in the pool.
    assert_eq!((fe.stats().closed, fe.idle_connections()), (0, 3));

    let (mut c, _) = Client::new(&fe);
    assert_eq!(
        c.text("b1 LOGIN alice secret\r\n"),
        "b1 OK LOGIN completed\r\n"
    );
    let trace = fe.trace();
    let new: Vec<&String> = trace.iter().skip(first.len()).collect();
    assert!(
        new.iter()
            .any(|l| l.starts_with("session cache: hit (user alice): be#")),
        "{new:#?}"
    );
    assert_eq!(
        backend_logins(&trace),
        1,
        "no second back-end LOGIN: {new:#?}"
    );
    let select = c.text("b2 SELECT INBOX\r\n");
    assert!(
        select.starts_with("* FLAGS")
            && has(&select, "* 3 EXISTS\r\n")
            && has(&select, "b2 OK [READ-WRITE]"),
        "the reset's reply is not shown: {select}"
    );
    let trace = fe.trace();
    let new: Vec<&String> = trace.iter().skip(first.len()).collect();
    let reset = new
        .iter()
        .position(|l| {
            l.ends_with("<- FE.RESET UNSELECT (reset of the cached session, ahead of the client)")
        })
        .expect("reset");
    assert!(
        new.get(reset + 1)
            .is_some_and(|l| l.ends_with("<- relay b2 SELECT (17 bytes)")),
        "{new:#?}"
    );
    assert!(
        new.iter()
            .any(|l| l.contains("bytes swallowed (the reset and what came before it)")),
        "{new:#?}"
    );
    let fetch = c.text("b3 FETCH 1 BODY[TEXT]\r\n");
    assert!(
        has(&fetch, "Hello alice, this is message number 1."),
        "{fetch}"
    );
    // The first LOGIN found nothing parked; the second was a hit.
    let s = fe.cache_stats();
    assert_eq!((s.parked, s.hits, s.misses), (1, 1, 1));
    assert_eq!(fe.stats().leased, 2);
    assert!(trace.iter().all(|l| !l.contains("secret")), "{trace:#?}");
}

#[test]
fn session_cache_never_hands_a_session_to_another_user() {
    let w = world();
    let fe = cache_frontend(&w);
    imap_visit(&fe, "alice", "secret", &[]);
    let (mut c, _) = Client::new(&fe);
    // Same password, other user: a miss, and bob logs in on the back-end.
    assert_eq!(
        c.text("b1 LOGIN bob hunter2\r\n"),
        "b1 OK LOGIN completed\r\n"
    );
    let trace = fe.trace();
    assert!(
        trace.contains(&"session cache: miss (user bob)".to_string()),
        "{trace:#?}"
    );
    assert!(
        trace
            .iter()
            .any(|l| l.ends_with("<- b1 LOGIN bob <password>")),
        "{trace:#?}"
    );
    c.text("b2 SELECT INBOX\r\n");
    let fetch = c.text("b3 FETCH 1:* BODY[TEXT]\r\n");
    assert!(has(&fetch, "Hello bob") && !has(&fetch, "alice"), "{fetch}");
    // The user name must match exactly: "Alice" is not the key "alice" was parked under.
    let (mut d, _) = Client::new(&fe);
    d.text("c1 LOGIN Alice secret\r\n");
    assert!(fe
        .trace()
        .contains(&"session cache: miss (user Alice)".to_string()));
    assert_eq!(fe.cached_sessions(), 1);
}

#[test]
fn session_cache_wrong_password_is_refused_and_the_entry_stays() {
    let w = world();
    let fe = cache_frontend(&w);
    imap_visit(&fe, "alice", "secret", &[]);
    let parked = fe
        .trace()
        .iter()
        .find(|l| l.ends_with("session cache: parked (user alice)"))
        .and_then(|l| l.split(' ').next().map(str::to_string))
        .expect("parked");
    let (mut c, _) = Client::new(&fe);
    // The back-end's refusal, exactly as without a cache.
    assert_eq!(
        c.text("b1 LOGIN alice wrong\r\n"),
        "b1 NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    );
    assert!(c.s.core().authenticated_user().is_none());
    assert_eq!(fe.cached_sessions(), 1);
    assert_eq!(
        c.text("b2 SELECT INBOX\r\n"),
        "b2 BAD Command received in Invalid state.\r\n"
    );
    // The right password still finds the same parked session.
    assert_eq!(
        c.text("b3 LOGIN alice secret\r\n"),
        "b3 OK LOGIN completed\r\n"
    );
    let trace = fe.trace();
    assert!(
        trace
            .iter()
            .any(|l| l.starts_with(&format!("session cache: hit (user alice): {parked},"))),
        "{trace:#?}"
    );
    assert_eq!(
        c.s.core().leased_connection().map(|c| format!("be#{c}")),
        Some(parked)
    );
    // Misses: the first LOGIN (nothing parked) and the wrong password.
    let s = fe.cache_stats();
    assert_eq!((s.hits, s.misses), (1, 2));
}

#[test]
fn session_cache_reset_keeps_deleted_messages_and_the_next_select_is_fresh() {
    let w = world();
    let fe = cache_frontend(&w);
    imap_visit(
        &fe,
        "alice",
        "secret",
        &[
            "a2 SELECT INBOX\r\n",
            "a3 STORE 2 +FLAGS.SILENT (\\Deleted)\r\n",
        ],
    );
    // Meanwhile another session appends to alice's INBOX.
    let mut other = ImapServer::new(SessionContext::new(
        Arc::clone(&w),
        Arc::new(Profile::default_profile()),
    ));
    let mut drive = |bytes: &[u8]| {
        other.handle_input(Duration::from_millis(1), bytes);
        let mut out = Vec::new();
        while let Some(Output::Write(b)) = other.poll_output() {
            out.extend_from_slice(&b);
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    drive(b"");
    assert!(drive(b"x LOGIN alice secret\r\n").contains("x OK"));
    assert!(drive(b"y APPEND INBOX {19}\r\nSubject: late\r\n\r\nhi\r\n").contains("y OK"));
    let (mut c, _) = Client::new(&fe);
    assert_eq!(
        c.text("b1 LOGIN alice secret\r\n"),
        "b1 OK LOGIN completed\r\n"
    );
    assert_eq!(fe.cache_stats().hits, 1);
    // Not selected any more (the reset deselected), so a FETCH is refused...
    let fetch = c.text("b2 FETCH 1 FLAGS\r\n");
    assert!(fetch.starts_with("b2 BAD"), "{fetch}");
    // ...and SELECT shows the appended message and the \Deleted one, not expunged.
    let select = c.text("b3 SELECT INBOX\r\n");
    assert!(has(&select, "* 4 EXISTS\r\n"), "{select}");
    assert_eq!(
        c.text("b4 FETCH 2 FLAGS\r\n"),
        "* 2 FETCH (FLAGS (\\Deleted))\r\nb4 OK FETCH completed\r\n"
    );
}

#[test]
fn session_cache_logout_waits_for_pipelined_replies_and_skips_literals() {
    let w = world();
    let fe = cache_frontend(&w);
    let (mut c, _) = Client::new(&fe);
    c.text("a1 LOGIN alice secret\r\n");
    // "x LOGOUT\r\n" is the literal's data here, not a command.
    assert_eq!(
        c.text("a2 APPEND INBOX {10}\r\n"),
        "+ Ready for literal data\r\n"
    );
    assert!(c.text("x LOGOUT\r\n\r\n").contains("a2 OK"));
    assert!(!c.closed);
    let out = c.text("a3 SELECT INBOX\r\na4 FETCH 4 (FLAGS)\r\na5 LOGOUT\r\n");
    let select = out.find("a3 OK").expect("select");
    let fetch = out.find("a4 OK").expect("fetch");
    let bye = out.find("* BYE").expect("bye");
    assert!(select < fetch && fetch < bye, "{out}");
    assert!(out.ends_with("a5 OK LOGOUT completed.\r\n"), "{out}");
    assert!(!out.contains("FE.RESET"), "{out}");
    assert_eq!(fe.cached_sessions(), 1);
}

#[test]
fn session_cache_is_bounded_in_size_and_idle_time_and_closed_at_shutdown() {
    let w = world();
    let mut profile = FrontendProfile::by_name("session-cache").unwrap();
    profile.pool.cache_size = 2;
    profile.pool.cache_idle_secs = 10;
    let world2 = Arc::clone(&w);
    let backend = Arc::new(Profile::default_profile());
    let fe = InProcessFrontend::new(
        Protocol::Imap,
        profile,
        move |conn| -> Box<dyn ServerSession> {
            let mut ctx = SessionContext::new(Arc::clone(&world2), Arc::clone(&backend));
            ctx.seed = conn;
            Box::new(ImapServer::new(ctx))
        },
    );
    imap_visit(&fe, "alice", "secret", &[]);
    imap_visit(&fe, "bob", "hunter2", &[]);
    imap_visit(&fe, "user", "pass", &[]);
    assert_eq!(fe.cached_sessions(), 2);
    assert_eq!(fe.cache_stats().evicted, 1);
    let trace = fe.trace();
    assert!(
        trace
            .iter()
            .any(|l| l.ends_with("closed (session cache: full or idle too long)")),
        "{trace:#?}"
    );
    // alice's session (the oldest) went: her next login is a miss.
    let (mut c, _) = Client::new(&fe);
    // (Three misses so far: each of the three first logins.)
    assert_eq!(fe.cache_stats().misses, 3);
    c.text("b1 LOGIN alice secret\r\n");
    assert_eq!(fe.cache_stats().misses, 4);
    // Much later (on this client's clock), bob's and user's entries have expired.
    let (mut late, _) = Client::new(&fe);
    late.now = Duration::from_secs(60);
    late.text("c1 LOGIN bob hunter2\r\n");
    let s = fe.cache_stats();
    assert_eq!((s.expired, s.hits, s.misses), (2, 0, 5));
    assert_eq!(fe.cached_sessions(), 0);
    drop((c, late));
    imap_visit(&fe, "user", "pass", &[]);
    assert_eq!(fe.cached_sessions(), 1);
    fe.shutdown(Duration::from_secs(61));
    assert_eq!(fe.cached_sessions(), 0);
    assert!(fe
        .trace()
        .last()
        .is_some_and(|l| l.ends_with("opened") || l.contains("shutdown")));
    assert!(fe
        .trace()
        .iter()
        .any(|l| l.ends_with("closed (session cache: shutdown)")));
}

#[test]
fn session_cache_needs_unselect_and_leaves_pop3_alone() {
    let w = world();
    // A back-end that does not advertise UNSELECT: LOGOUT is relayed.
    let mut without = Profile::default_profile();
    without.imap.capabilities.retain(|c| c != "UNSELECT");
    let fe = frontend_with(Protocol::Imap, "session-cache", &w, without);
    let (mut c, _) = Client::new(&fe);
    c.text("a1 LOGIN alice secret\r\n");
    let bye = c.text("a2 LOGOUT\r\n");
    assert!(bye.contains("a2 OK LOGOUT completed\r\n"), "{bye}");
    let trace = fe.trace();
    assert!(
        trace
            .iter()
            .any(|l| l.ends_with("session cache: not kept (the back-end does not offer UNSELECT)")),
        "{trace:#?}"
    );
    assert!(
        trace
            .iter()
            .any(|l| l.ends_with("<- relay a2 LOGOUT (11 bytes)")),
        "{trace:#?}"
    );
    assert_eq!(fe.cached_sessions(), 0);
    // POP3: QUIT commits deletions and ends the session; nothing is kept.
    let fe = frontend_with(
        Protocol::Pop3,
        "session-cache",
        &w,
        Profile::default_profile(),
    );
    let (mut c, _) = Client::new(&fe);
    c.text("USER alice\r\n");
    assert!(c.text("PASS secret\r\n").starts_with("+OK"));
    assert!(c.text("QUIT\r\n").starts_with("+OK"));
    assert!(c.closed);
    assert_eq!(fe.cache_stats(), CacheStats::default());
    assert!(fe
        .trace()
        .iter()
        .any(|l| l.ends_with("<- relay QUIT (6 bytes)")));
}

#[test]
fn session_cache_logout_during_idle_gives_the_session_up_after_a_bounded_wait() {
    let w = world();
    let fe = cache_frontend(&w);
    // IDLE ended with DONE, then LOGOUT: DONE is no command, so nothing is outstanding.
    let (mut c, _) = Client::new(&fe);
    c.text("a1 LOGIN alice secret\r\n");
    assert_eq!(c.text("a2 IDLE\r\n"), "+ idling\r\n");
    assert_eq!(c.text("DONE\r\n"), "a2 OK IDLE terminated\r\n");
    assert!(c
        .text("a3 LOGOUT\r\n")
        .ends_with("a3 OK LOGOUT completed.\r\n"));
    assert_eq!(fe.cached_sessions(), 1);
    // LOGOUT while still idling: the IDLE never completes, so the LOGOUT waits...
    let (mut c, _) = Client::new(&fe);
    c.text("b1 LOGIN bob hunter2\r\n");
    assert_eq!(c.text("b2 IDLE\r\n"), "+ idling\r\n");
    assert_eq!(c.text("b3 LOGOUT\r\n"), "");
    assert!(!c.closed);
    let deadline = c.s.poll_timeout().expect("timer");
    assert!(deadline <= c.now + Duration::from_secs(5), "{deadline:?}");
    // ...up to its bound; then the client is answered and the session closed, not parked.
    c.s.handle_timeout(deadline);
    assert_eq!(
        String::from_utf8_lossy(&c.read()),
        "* BYE Microsoft Exchange 2000 IMAP4rev1 server signing off.\r\nb3 OK LOGOUT completed.\r\n"
    );
    assert!(c.closed);
    assert_eq!(fe.cached_sessions(), 1);
    let trace = fe.trace();
    assert!(
        trace
            .iter()
            .any(|l| l.ends_with("session cache: not kept (replies before LOGOUT never came)")),
        "{trace:#?}"
    );
}

// ---- pool reuse across client sessions (profile pool-unauthenticate) ----

/// Back-ends offering UNAUTHENTICATE (RFC 8437).
fn unauth_backend() -> Profile {
    let mut p = Profile::default_profile();
    p.imap.unauthenticate = true;
    p
}

/// A pool-unauthenticate front-end keeping `size` idle connections, over `backend`.
fn unauth_frontend(
    protocol: Protocol,
    w: &Arc<World>,
    size: usize,
    backend: Profile,
) -> InProcessFrontend {
    let mut profile = FrontendProfile::by_name("pool-unauthenticate").expect("profile");
    profile.pool.size = size;
    frontend_of(protocol, profile, w, backend)
}

/// Logs in and out; the login completion may carry a capability code.
fn imap_visit_ok(fe: &InProcessFrontend, user: &str, pass: &str) {
    let (mut c, _) = Client::new(fe);
    let login = c.text(&format!("a1 LOGIN {user} {pass}\r\n"));
    assert!(login.starts_with("a1 OK "), "{login}");
    assert!(c
        .text("z LOGOUT\r\n")
        .ends_with("z OK LOGOUT completed.\r\n"));
}

/// A session just logged in as bob: nothing is selected (whatever the connection's earlier
/// session had), and his INBOX holds his mail and no one else's.
fn bob_has_nothing_selected_and_his_own_mail(b: &mut Client) {
    assert_eq!(
        b.text("b3 FETCH 1 FLAGS\r\n"),
        "b3 BAD FETCH is not valid in this state\r\n"
    );
    assert!(b.text("b4 SELECT INBOX\r\n").contains("b4 OK [READ-WRITE]"));
    let body = b.text("b5 FETCH 1:* BODY.PEEK[TEXT]\r\n");
    assert!(has(&body, "Hello bob, this is message number 1."), "{body}");
    assert!(!has(&body, "alice"), "{body}");
}

/// The trace lines since `from`.
fn trace_since(fe: &InProcessFrontend, from: usize) -> Vec<String> {
    fe.trace().into_iter().skip(from).collect()
}

#[test]
fn pool_unauthenticate_two_users_in_sequence_share_one_connection() {
    let w = world();
    let fe = unauth_frontend(Protocol::Imap, &w, 1, unauth_backend());
    // alice leaves message 2 \Deleted and a mailbox selected.
    let bye = imap_visit(
        &fe,
        "alice",
        "secret",
        &[
            "a2 SELECT INBOX\r\n",
            "a3 STORE 2 +FLAGS.SILENT (\\Deleted)\r\n",
        ],
    );
    assert_eq!(
        bye,
        "* BYE Microsoft Exchange 2000 IMAP4rev1 server signing off.\r\nz OK LOGOUT completed.\r\n"
    );
    let first = fe.trace();
    assert!(
        first.iter().all(|l| !l.contains("LOGOUT")),
        "the LOGOUT is answered by the front-end: {first:#?}"
    );
    assert_eq!(
        first.last().map(String::as_str),
        Some("be#1 recycled: idle, UNAUTHENTICATE ahead of its next request")
    );
    assert!(first.contains(&"be#1 .. pool: recycled (user alice)".to_string()));
    assert_eq!((fe.stats().closed, fe.idle_connections()), (0, 1));

    // bob gets the same connection; the reset rides ahead of his LOGIN, and its reply
    // never reaches him.
    let (mut b, _) = Client::new(&fe);
    assert_eq!(
        b.text("b1 LOGIN bob hunter2\r\n"),
        "b1 OK LOGIN completed\r\n"
    );
    let new = trace_since(&fe, first.len());
    assert_eq!(
        new[..4],
        [
            "be#1 <- FE.RESET UNAUTHENTICATE (reset of the recycled connection, ahead of the request)",
            "be#1 <- b1 LOGIN bob <password>",
            "be#1 -> FE.RESET OK UNAUTHENTICATE completed (swallowed)",
            "be#1 -> b1 OK LOGIN completed",
        ],
        "{new:#?}"
    );
    assert_eq!(
        b.text("b2 LIST \"\" *\r\n"),
        "* LIST (\\HasNoChildren) \"/\" INBOX\r\nb2 OK LIST completed\r\n"
    );
    bob_has_nothing_selected_and_his_own_mail(&mut b);
    b.text("b6 LOGOUT\r\n");
    assert!(b.closed);

    // alice again, on the same connection: message 2 was not expunged.
    let (mut a, _) = Client::new(&fe);
    assert_eq!(
        a.text("c1 LOGIN alice secret\r\n"),
        "c1 OK LOGIN completed\r\n"
    );
    assert!(a.text("c2 SELECT INBOX\r\n").contains("* 3 EXISTS\r\n"));
    assert_eq!(
        a.text("c3 FETCH 2 FLAGS\r\n"),
        "* 2 FETCH (FLAGS (\\Deleted))\r\nc3 OK FETCH completed\r\n"
    );
    a.text("c4 LOGOUT\r\n");
    // One back-end connection, three client sessions; never a back-end LOGOUT.
    let s = fe.stats();
    assert_eq!(
        (s.opened, s.closed, s.leased, s.recycled, s.reset_grants),
        (1, 0, 3, 3, 2)
    );
    let trace = fe.trace();
    assert!(trace
        .iter()
        .all(|l| !l.contains("secret") && !l.contains("hunter2")));
}

#[test]
fn pool_unauthenticate_needs_the_capability_and_leaves_pop3_alone() {
    let w = world();
    // The mock without UNAUTHENTICATE: the LOGOUT is relayed and the connection closes.
    let fe = unauth_frontend(Protocol::Imap, &w, 1, Profile::default_profile());
    let (mut c, _) = Client::new(&fe);
    c.text("a1 LOGIN alice secret\r\n");
    let bye = c.text("a2 LOGOUT\r\n");
    assert_eq!(
        bye,
        "* BYE IMAP4rev1 Server logging out\r\na2 OK LOGOUT completed\r\n"
    );
    let trace = fe.trace();
    assert!(
        trace.contains(
            &"be#1 .. pool: not kept (the back-end does not offer UNAUTHENTICATE)".to_string()
        ),
        "{trace:#?}"
    );
    assert!(trace.contains(&"be#1 <- relay a2 LOGOUT (11 bytes)".to_string()));
    let s = fe.stats();
    assert_eq!((s.opened, s.closed, s.recycled), (2, 1, 0));
    // A back-end that says so only in its LOGIN completion (RFC 8437 3 allows offering it
    // after login only): the probe's greeting (connection 0) does not name it.
    let world = Arc::clone(&w);
    let mut profile = FrontendProfile::by_name("pool-unauthenticate").unwrap();
    profile.pool.size = 1;
    let fe = InProcessFrontend::new(Protocol::Imap, profile, move |conn| {
        let mut p = Profile::default_profile();
        p.imap.unauthenticate = conn > 0;
        p.imap.login_ok_text = "[CAPABILITY IMAP4rev1 UNAUTHENTICATE] LOGIN completed".into();
        let mut ctx = SessionContext::new(Arc::clone(&world), Arc::new(p));
        ctx.seed = conn;
        Box::new(ImapServer::new(ctx)) as Box<dyn ServerSession>
    });
    imap_visit_ok(&fe, "alice", "secret");
    imap_visit_ok(&fe, "bob", "hunter2");
    let s = fe.stats();
    assert_eq!((s.opened, s.recycled, s.reset_grants), (1, 2, 1));
    // POP3: QUIT commits the deletions and ends the session; nothing is recycled.
    let fe = unauth_frontend(Protocol::Pop3, &w, 1, unauth_backend());
    let (mut c, _) = Client::new(&fe);
    c.text("USER alice\r\n");
    assert!(c.text("PASS secret\r\n").starts_with("+OK"));
    assert!(c.text("QUIT\r\n").starts_with("+OK"));
    assert!(c.closed);
    let s = fe.stats();
    assert_eq!((s.closed, s.recycled), (1, 0));
}

#[test]
fn pool_unauthenticate_refused_reset_closes_and_the_login_goes_elsewhere() {
    let w = world();
    // Advertised but not implemented: the reset gets `BAD Unknown command`.
    let mut liar = Profile::default_profile();
    liar.imap.capabilities.push("UNAUTHENTICATE".into());
    let fe = unauth_frontend(Protocol::Imap, &w, 1, liar);
    imap_visit(&fe, "alice", "secret", &["a2 SELECT INBOX\r\n"]);
    let before = fe.trace().len();
    let (mut b, _) = Client::new(&fe);
    assert_eq!(
        b.text("b1 LOGIN bob hunter2\r\n"),
        "b1 OK LOGIN completed\r\n"
    );
    let new = trace_since(&fe, before);
    assert_eq!(
        new[..6],
        [
            "be#1 <- FE.RESET UNAUTHENTICATE (reset of the recycled connection, ahead of the request)",
            "be#1 <- b1 LOGIN bob <password>",
            "be#1 !! reset refused: FE.RESET BAD Unknown command",
            "be#1 xx closed (discarded)",
            "be#2 opened",
            "be#2 <- b1 LOGIN bob <password>",
        ],
        "{new:#?}"
    );
    // bob is on the fresh connection, as bob, with nothing selected.
    bob_has_nothing_selected_and_his_own_mail(&mut b);
    let s = fe.stats();
    assert_eq!(
        (s.opened, s.closed, s.recycled, s.reset_grants),
        (2, 1, 1, 1)
    );
}

#[test]
fn pool_unauthenticate_pipelined_logout_waits_for_the_replies_before_it() {
    let w = world();
    let fe = unauth_frontend(Protocol::Imap, &w, 1, unauth_backend());
    let (mut c, _) = Client::new(&fe);
    // Login and commands in one write with the LOGOUT; "x LOGOUT" inside a literal is data.
    let out = c.text(
        "a1 LOGIN alice secret\r\na2 APPEND INBOX {10+}\r\nx LOGOUT\r\n\r\na3 SELECT INBOX\r\na4 FETCH 4 (FLAGS)\r\na5 LOGOUT\r\n",
    );
    let login = out.find("a1 OK").expect("login");
    let append = out.find("a2 OK").expect("append");
    let select = out.find("a3 OK").expect("select");
    let fetch = out.find("a4 OK").expect("fetch");
    let bye = out.find("* BYE").expect("bye");
    assert!(
        login < append && append < select && select < fetch && fetch < bye,
        "{out}"
    );
    assert!(out.ends_with("a5 OK LOGOUT completed.\r\n"), "{out}");
    assert!(c.closed);
    assert_eq!(fe.stats().recycled, 1);
    // A client's own UNAUTHENTICATE is relayed, but that connection is not reused.
    let (mut c, _) = Client::new(&fe);
    c.text("b1 LOGIN alice secret\r\n");
    assert_eq!(
        c.text("b2 UNAUTHENTICATE\r\n"),
        "b2 OK UNAUTHENTICATE completed\r\n"
    );
    assert_eq!(
        c.text("b3 LOGIN bob hunter2\r\n"),
        "b3 OK LOGIN completed\r\n"
    );
    let bye = c.text("b4 LOGOUT\r\n");
    assert!(bye.ends_with("b4 OK LOGOUT completed\r\n"), "{bye}");
    let trace = fe.trace();
    assert!(
        trace.contains(
            &"be#1 .. pool: not kept (the client used the front-end's reset tag or UNAUTHENTICATE)"
                .to_string()
        ),
        "{trace:#?}"
    );
    let s = fe.stats();
    assert_eq!((s.recycled, s.closed), (1, 1));
}

#[test]
fn pool_unauthenticate_recycles_authenticate_plain_logins_too() {
    let w = world();
    let fe = unauth_frontend(Protocol::Imap, &w, 1, unauth_backend());
    for (tag, user, pass) in [("a", "alice", "secret"), ("b", "bob", "hunter2")] {
        let (mut c, _) = Client::new(&fe);
        let ir = encode_base64(format!("\0{user}\0{pass}").as_bytes());
        assert_eq!(
            c.text(&format!("{tag}1 AUTHENTICATE PLAIN {ir}\r\n")),
            format!("{tag}1 OK AUTHENTICATE completed\r\n")
        );
        assert!(c
            .text(&format!("{tag}2 LOGOUT\r\n"))
            .ends_with("OK LOGOUT completed.\r\n"));
    }
    let s = fe.stats();
    assert_eq!(
        (s.opened, s.leased, s.recycled, s.reset_grants),
        (1, 2, 2, 1)
    );
}

#[test]
fn pool_unauthenticate_gives_up_after_repeated_refused_resets() {
    let w = world();
    let mut liar = Profile::default_profile();
    liar.imap.capabilities.push("UNAUTHENTICATE".into());
    let fe = unauth_frontend(Protocol::Imap, &w, 3, liar);
    // Three sessions at once, then all log out: three recycled connections idle.
    let mut clients: Vec<Client> = (0..3).map(|_| Client::new(&fe).0).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert!(c
            .text(&format!("a{i} LOGIN alice secret\r\n"))
            .contains(" OK "));
    }
    for c in &mut clients {
        assert!(c
            .text("z LOGOUT\r\n")
            .ends_with("z OK LOGOUT completed.\r\n"));
    }
    assert_eq!(fe.stats().recycled, 3);
    // Each reset is refused; after the third the request fails instead of going on.
    let (mut b, _) = Client::new(&fe);
    assert_eq!(
        b.text("b1 LOGIN bob hunter2\r\n"),
        "b1 NO [UNAVAILABLE] Back-end connection failed.\r\n"
    );
    let refused = fe
        .trace()
        .iter()
        .filter(|l| l.contains("!! reset refused: FE.RESET BAD Unknown command"))
        .count();
    assert_eq!(refused, 3);
    // The next login finds the fresh replacements (and could retry resets again).
    assert_eq!(
        b.text("b2 LOGIN bob hunter2\r\n"),
        "b2 OK LOGIN completed\r\n"
    );
    let s = fe.stats();
    assert_eq!((s.closed, s.reset_grants), (3, 3));
}
