//! Client sessions against the real POP3 server and a scripted fake IMAP server, the
//! policy matrix of KB 306874, and hostile server input.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use pretty_assertions::assert_eq;

use super::*;
use crate::codes::known;
use crate::pop3::Pop3Server;
use crate::profile::Profile;
use crate::rng::SeededRng;
use crate::sasl::{decode_base64, Mechanism, SaslServer, SaslStep};
use crate::session::{Output, ServerSession, SessionContext};
use crate::world::{LabFile, World};
use crate::Protocol;

const USER_CANCEL: &str = "IXP_E_USER_CANCEL (0x800CCC17)";

/// The default lab plus carol, whose password needs IMAP quoting.
fn lab() -> Arc<World> {
    let mut lab = LabFile::default_lab();
    lab.add_user("carol", CAROL_PASSWORD);
    Arc::new(lab.build().unwrap())
}

const CAROL_PASSWORD: &str = "a \"quoted\" pass\\word";

fn profile_without_ntlm() -> Profile {
    let mut p = Profile::default_profile();
    p.pop3.auth_mechanisms.retain(|m| *m != Mechanism::Ntlm);
    p.imap.auth_mechanisms.retain(|m| *m != Mechanism::Ntlm);
    p
}

fn ctx(world: &Arc<World>, profile: &Profile, n: usize) -> SessionContext {
    let mut ctx = SessionContext::new(world.clone(), Arc::new(profile.clone()));
    ctx.transport.starttls_available = true;
    ctx.seed = 42 + n as u64;
    ctx.epoch_secs = 1_700_000_000;
    ctx
}

fn cfg(password: &str, policy: Policy) -> ClientConfig {
    let mut c = ClientConfig::new("alice", password, policy);
    c.seed = 7;
    c
}

const OE_SPA: Policy = Policy::OutlookExpress { use_spa: true };
const OE_BASIC: Policy = Policy::OutlookExpress { use_spa: false };

/// A POP3 client against real `Pop3Server`s (a fresh one per connection).
fn pop3_run(cfg: ClientConfig, profile: &Profile) -> (SessionOutcome, RunReport) {
    pop3_run_wrapped(cfg, profile, false)
}

fn pop3_run_wrapped(
    cfg: ClientConfig,
    profile: &Profile,
    close_on_err: bool,
) -> (SessionOutcome, RunReport) {
    let world = lab();
    let mut client = Pop3Client::new(cfg);
    let report = run_with_reconnect(
        &mut client,
        &mut |n| {
            let server = Pop3Server::new(ctx(&world, profile, n));
            if close_on_err {
                Box::new(CloseOnErr::new(server))
            } else {
                Box::new(server)
            }
        },
        10_000,
    );
    assert!(client.is_done(), "client not done: {report:?}");
    assert_eq!(report.end, RunEnd::ClientDone);
    (client.outcome(), report)
}

fn has_step(o: &SessionOutcome, line: &str) -> bool {
    o.steps.iter().any(|s| s.as_str() == line)
}

fn count_steps(o: &SessionOutcome, line: &str) -> usize {
    o.steps.iter().filter(|s| s.as_str() == line).count()
}

fn code_names(o: &SessionOutcome) -> Vec<String> {
    o.codes.iter().map(|c| c.to_string()).collect()
}

/// Wraps a server and closes the connection after every `-ERR` / tagged `NO` it writes,
/// as a front-end that drops a client after a failed logon would.
struct CloseOnErr<S: ServerSession> {
    inner: S,
    queued_close: bool,
    closed: bool,
}

impl<S: ServerSession> CloseOnErr<S> {
    fn new(inner: S) -> Self {
        CloseOnErr {
            inner,
            queued_close: false,
            closed: false,
        }
    }
}

impl<S: ServerSession> ServerSession for CloseOnErr<S> {
    fn handle_input(&mut self, now: Duration, input: &[u8]) {
        if !self.queued_close {
            self.inner.handle_input(now, input);
        }
    }
    fn handle_eof(&mut self, now: Duration) {
        self.inner.handle_eof(now)
    }
    fn handle_timeout(&mut self, now: Duration) {
        self.inner.handle_timeout(now)
    }
    fn handle_tls_established(&mut self, now: Duration) {
        self.inner.handle_tls_established(now)
    }
    fn poll_output(&mut self) -> Option<Output> {
        if self.queued_close {
            if self.closed {
                return None;
            }
            self.closed = true;
            return Some(Output::Close);
        }
        let out = self.inner.poll_output();
        if let Some(Output::Write(b)) = &out {
            if b.starts_with(b"-ERR") || b.windows(4).any(|w| w == b" NO ") {
                self.queued_close = true;
            }
        }
        out
    }
    fn poll_timeout(&self) -> Option<Duration> {
        self.inner.poll_timeout()
    }
    fn is_closed(&self) -> bool {
        self.closed || self.inner.is_closed()
    }
}

// ----- POP3 against the real server -----

#[test]
fn pop3_oe_spa_succeeds_when_ntlm_is_offered() {
    let (o, report) = pop3_run(cfg("secret", OE_SPA), &Profile::default_profile());
    assert_eq!(report.connections, 1);
    assert_eq!(o.status, Status::Authenticated);
    assert!(o.codes.is_empty());
    assert!(o.findings.is_empty(), "{:?}", o.findings);
    assert_eq!(o.prompts, 0);
    assert_eq!(
        o.render(),
        "actor: alice
protocol: POP3
policy: outlook-express spa
S: +OK mail.example.test POP3 harness ready <apop-timestamp>
C: CAPA
S: +OK Capability list follows
S: TOP
S: UIDL
S: RESP-CODES
S: PIPELINING
S: AUTH-RESP-CODE
S: USER
S: SASL PLAIN LOGIN NTLM
S: STLS
S: .
C: AUTH
S: +OK
S: PLAIN
S: LOGIN
S: NTLM
S: .
C: AUTH NTLM
S: +
C: <NTLM NEGOTIATE>
S: + <NTLM CHALLENGE>
C: <NTLM AUTHENTICATE user=alice v2>
S: +OK alice's maildrop has 3 messages (OCTETS octets)
C: STAT
S: +OK 3 OCTETS
C: QUIT
S: +OK mail.example.test POP3 server signing off (3 messages left)
status: authenticated
prompts: 0
codes: none
findings: none
"
        .replace("OCTETS", &octets(&o))
    );
}

/// The maildrop size as the server reported it (it depends on the default lab's text).
fn octets(o: &SessionOutcome) -> String {
    o.steps
        .iter()
        .find_map(|s| s.as_str().strip_prefix("S: +OK 3 "))
        .unwrap_or("?")
        .to_string()
}

#[test]
fn pop3_oe_spa_succeeds_against_the_exchange_profile() {
    let (o, _) = pop3_run(cfg("secret", OE_SPA), &Profile::exchange());
    assert_eq!(o.status, Status::Authenticated);
    assert_eq!(
        o.steps.first().map(|s| s.as_str()),
        Some("S: +OK The Microsoft Exchange POP3 service is ready.")
    );
    assert!(has_step(&o, "C: <NTLM AUTHENTICATE user=alice v2>"));
}

#[test]
fn pop3_oe_spa_without_ntlm_fails_at_once() {
    let (o, _) = pop3_run(cfg("secret", OE_SPA), &profile_without_ntlm());
    assert_eq!(o.status, Status::Failed);
    assert_eq!(o.prompts, 0);
    assert_eq!(code_names(&o), ["IXP_E_SICILY_LOGON_FAILED (0x800CCC18)"]);
    assert!(!o
        .steps
        .iter()
        .any(|s| s.as_str().starts_with("C: AUTH NTLM")));
    let text = o.render();
    let tail: Vec<&str> = text.lines().skip_while(|l| *l != "C: AUTH").collect();
    assert_eq!(
        tail.join("\n"),
        "C: AUTH
S: +OK
S: PLAIN
S: LOGIN
S: .
client: no usable authentication method (wants NTLM; SASL offered: PLAIN LOGIN)
C: QUIT
S: +OK mail.example.test POP3 server signing off
status: failed
prompts: 0
codes: IXP_E_SICILY_LOGON_FAILED (0x800CCC18)
findings:
  - mechanism not offered: wanted NTLM"
    );
}

#[test]
fn pop3_oe_spa_wrong_password_loops_until_the_user_cancels() {
    let (o, report) = pop3_run(cfg("wrong", OE_SPA), &Profile::default_profile());
    assert_eq!(report.connections, 1);
    assert_eq!(o.status, Status::Looping);
    assert_eq!(o.prompts, 5);
    assert_eq!(
        code_names(&o),
        ["IXP_E_SICILY_LOGON_FAILED (0x800CCC18)", USER_CANCEL]
    );
    assert_eq!(o.findings, [Finding::CredentialLoop { prompts: 5 }]);
    // The first try and four re-entries; the fifth prompt is cancelled.
    assert_eq!(count_steps(&o, "C: AUTH NTLM"), 5);
    assert_eq!(count_steps(&o, "C: <NTLM AUTHENTICATE user=alice v2>"), 5);
    assert!(has_step(
        &o,
        "prompt 3: user re-enters the same credentials"
    ));
    assert!(has_step(&o, "prompt 5: user cancels"));
    assert_eq!(
        o.steps.last().unwrap().as_str(),
        "S: +OK mail.example.test POP3 server signing off"
    );

    // Below the loop threshold it is a plain failure.
    let mut c = cfg("wrong", OE_SPA);
    c.max_prompts = 2;
    let (o, _) = pop3_run(c, &Profile::default_profile());
    assert_eq!(o.status, Status::Failed);
    assert_eq!(o.prompts, 2);
    assert!(o.findings.is_empty());
    assert_eq!(
        code_names(&o),
        ["IXP_E_SICILY_LOGON_FAILED (0x800CCC18)", USER_CANCEL]
    );
}

#[test]
fn pop3_oe_reconnects_when_the_server_drops_it_after_a_failure() {
    let mut c = cfg("wrong", OE_SPA);
    c.max_prompts = 3;
    let (o, report) = pop3_run_wrapped(c, &Profile::default_profile(), true);
    assert_eq!(report.connections, 3);
    assert_eq!(count_steps(&o, "client: reconnects"), 2);
    assert_eq!(o.status, Status::Looping);
    assert_eq!(o.findings, [Finding::CredentialLoop { prompts: 3 }]);
    // The user cancels the third prompt; by then that connection is closed, so there is
    // no QUIT.
    let tail: Vec<&str> = o.steps.iter().rev().take(2).map(|s| s.as_str()).collect();
    assert_eq!(tail, ["S: <connection closed>", "prompt 3: user cancels"]);
    assert!(!has_step(&o, "C: QUIT"));
}

#[test]
fn pop3_basic_succeeds_with_a_cleartext_finding() {
    let (o, _) = pop3_run(cfg("secret", Policy::Basic), &Profile::exchange());
    assert_eq!(o.status, Status::Authenticated);
    assert_eq!(
        o.findings,
        [Finding::CleartextCredentials {
            mechanism: "USER/PASS".into()
        }]
    );
    assert!(has_step(&o, "C: USER alice"));
    assert!(has_step(&o, "C: PASS ****"));
    assert!(!o.render().contains("secret"));
    // Basic does not probe the AUTH listing.
    assert!(!has_step(&o, "C: AUTH"));
}

#[test]
fn pop3_oe_basic_wrong_password_prompts() {
    let (o, _) = pop3_run(cfg("nope", OE_BASIC), &Profile::default_profile());
    assert_eq!(o.status, Status::Looping);
    assert_eq!(
        code_names(&o),
        ["IXP_E_POP3_INVALID_PASSWORD (0x800CCC92)", USER_CANCEL]
    );
    assert_eq!(count_steps(&o, "C: PASS ****"), 5);
}

#[test]
fn pop3_curl_picks_the_strongest_mechanism() {
    let (o, _) = pop3_run(cfg("secret", Policy::CurlLike), &Profile::default_profile());
    assert_eq!(o.status, Status::Authenticated);
    assert!(has_step(&o, "C: AUTH NTLM"));
    assert!(o.findings.is_empty());
    let (o, _) = pop3_run(cfg("secret", Policy::CurlLike), &profile_without_ntlm());
    assert_eq!(o.status, Status::Authenticated);
    assert!(has_step(&o, "C: AUTH PLAIN"));
    assert!(has_step(&o, "C: <PLAIN alice ****>"));
    assert_eq!(
        o.findings,
        [Finding::CleartextCredentials {
            mechanism: "PLAIN".into()
        }]
    );
    // curl reports no Outlook Express codes.
    let (o, _) = pop3_run(cfg("bad", Policy::CurlLike), &Profile::default_profile());
    assert_eq!((o.status, o.codes.len(), o.prompts), (Status::Failed, 0, 0));
}

#[test]
fn pop3_curl_with_nothing_usable() {
    let mut p = Profile::default_profile();
    p.pop3.auth_mechanisms.clear();
    p.pop3.user_pass = false;
    let (o, _) = pop3_run(cfg("secret", Policy::CurlLike), &p);
    assert_eq!(o.status, Status::Failed);
    assert_eq!(
        o.findings,
        [Finding::MechanismNotOffered {
            wanted: "NTLM or PLAIN or LOGIN or USER/PASS".into()
        }]
    );
}

#[test]
fn pop3_stls_then_basic_has_no_cleartext_finding() {
    let mut c = cfg("secret", Policy::Basic);
    c.starttls = true;
    let (o, _) = pop3_run(c, &Profile::default_profile());
    assert_eq!(o.status, Status::Authenticated);
    assert!(o.findings.is_empty(), "{:?}", o.findings);
    assert!(has_step(&o, "C: STLS"));
    assert!(has_step(&o, "client: TLS handshake"));
    assert_eq!(count_steps(&o, "C: CAPA"), 2);

    // Wanted but not offered.
    let mut p = Profile::default_profile();
    p.pop3.stls = false;
    let mut c = cfg("secret", Policy::Basic);
    c.starttls = true;
    let (o, _) = pop3_run(c, &p);
    assert_eq!(o.status, Status::Failed);
    assert_eq!(code_names(&o), ["IXP_E_SECURE_CONNECT_FAILED (0x800CCC1A)"]);
}

#[test]
fn pop3_forced_ntlm_against_a_server_without_it() {
    let (o, _) = pop3_run(
        cfg("secret", Policy::Forced(AuthMethod::Sasl(Mechanism::Ntlm))),
        &profile_without_ntlm(),
    );
    assert_eq!(o.status, Status::Failed);
    assert!(has_step(&o, "C: AUTH NTLM"));
    assert!(has_step(&o, "S: -ERR SASL mechanism NTLM is not supported"));
}

// ----- a scripted fake IMAP server -----

#[derive(Clone)]
struct FakeImapConfig {
    caps: &'static str,
    continuation: &'static [u8],
    /// Every AUTHENTICATE leg reaches a different back-end (a pre-SP1 front-end with a
    /// connection pool): the leg carrying AUTHENTICATE has no NTLM context and fails.
    pooled_backends: bool,
}

enum FakeState {
    Ready,
    Sasl {
        tag: String,
        sasl: Box<SaslServer>,
        legs: u32,
    },
    Done,
}

struct FakeImap {
    cfg: FakeImapConfig,
    world: Arc<World>,
    rng: SeededRng,
    inbuf: Vec<u8>,
    out: VecDeque<Output>,
    state: FakeState,
    closed: bool,
    tls: bool,
    awaiting_tls: bool,
}

impl FakeImap {
    fn new(cfg: FakeImapConfig, world: Arc<World>) -> Self {
        let mut f = FakeImap {
            cfg,
            world,
            rng: SeededRng::new(9),
            inbuf: Vec::new(),
            out: VecDeque::new(),
            state: FakeState::Ready,
            closed: false,
            tls: false,
            awaiting_tls: false,
        };
        f.write("* OK fake IMAP4rev1 ready\r\n");
        f
    }

    fn write(&mut self, s: &str) {
        self.out.push_back(Output::Write(s.as_bytes().to_vec()));
    }

    fn sasl_step(&mut self, tag: String, sasl: Box<SaslServer>, step: SaslStep, legs: u32) {
        match step {
            SaslStep::Challenge(d) if d.is_empty() => {
                let c = self.cfg.continuation.to_vec();
                self.out.push_back(Output::Write(c));
                self.state = FakeState::Sasl { tag, sasl, legs };
            }
            SaslStep::Challenge(d) => {
                let b = base64::engine::general_purpose::STANDARD.encode(d);
                self.write(&format!("+ {b}\r\n"));
                self.state = FakeState::Sasl { tag, sasl, legs };
            }
            SaslStep::Success { .. } => {
                self.write(&format!("{tag} OK AUTHENTICATE completed.\r\n"))
            }
            SaslStep::Failure(_) => self.write(&format!("{tag} NO AUTHENTICATE failed.\r\n")),
        }
    }

    fn line(&mut self, line: &str) {
        match std::mem::replace(&mut self.state, FakeState::Ready) {
            FakeState::Done => self.state = FakeState::Done,
            FakeState::Sasl {
                tag,
                mut sasl,
                legs,
            } => {
                if line == "*" {
                    self.write(&format!("{tag} BAD cancelled\r\n"));
                    return;
                }
                let Ok(bytes) = decode_base64(line.as_bytes()) else {
                    self.write(&format!("{tag} BAD not base64\r\n"));
                    return;
                };
                if self.cfg.pooled_backends && sasl.mechanism() == Mechanism::Ntlm && legs >= 1 {
                    // A fresh back-end connection: a new exchange sees this leg first.
                    let (fresh, _) = SaslServer::start(
                        Mechanism::Ntlm,
                        &self.world,
                        &mut self.rng,
                        1_700_000_000,
                        None,
                    );
                    sasl = Box::new(fresh);
                }
                let world = self.world.clone();
                let step = sasl.step(&world, &bytes);
                self.sasl_step(tag, sasl, step, legs + 1);
            }
            FakeState::Ready => {
                let mut parts = line.splitn(3, ' ');
                let tag = parts.next().unwrap_or("").to_string();
                let cmd = parts.next().unwrap_or("").to_ascii_uppercase();
                let args = parts.next().unwrap_or("");
                match cmd.as_str() {
                    "CAPABILITY" => {
                        let mut caps = self.cfg.caps.to_string();
                        if self.tls {
                            caps = caps.replace(" STARTTLS", "").replace(" LOGINDISABLED", "");
                        }
                        self.write(&format!("* CAPABILITY {caps}\r\n"));
                        self.write(&format!("{tag} OK CAPABILITY completed.\r\n"));
                    }
                    "LOGIN" => {
                        // Arguments as RFC 3501 reads them (atoms, quoted strings).
                        use imap_codec::decode::Decoder;
                        use imap_codec::imap_types::command::CommandBody;
                        let wire = format!("{line}\r\n");
                        let creds =
                            match imap_codec::CommandCodec::default().decode(wire.as_bytes()) {
                                Ok((_, cmd)) => match cmd.body {
                                    CommandBody::Login { username, password } => Some((
                                        String::from_utf8_lossy(username.as_ref()).into_owned(),
                                        String::from_utf8_lossy(password.declassify().as_ref())
                                            .into_owned(),
                                    )),
                                    _ => None,
                                },
                                Err(_) => None,
                            };
                        let Some((u, p)) = creds else {
                            self.write(&format!("{tag} BAD bad LOGIN arguments\r\n"));
                            return;
                        };
                        if self.cfg.caps.contains("LOGINDISABLED") && !self.tls {
                            self.write(&format!("{tag} NO LOGIN is disabled\r\n"));
                        } else if self.world.directory.verify_password(&u, &p).is_some() {
                            self.write(&format!("{tag} OK LOGIN completed.\r\n"));
                        } else {
                            self.write(&format!("{tag} NO LOGIN failed.\r\n"));
                        }
                    }
                    "AUTHENTICATE" => {
                        let mut a = args.split(' ');
                        let mech = a.next().and_then(Mechanism::parse);
                        let ir = a.next();
                        let Some(mech) =
                            mech.filter(|m| self.cfg.caps.contains(&format!("AUTH={}", m.name())))
                        else {
                            self.write(&format!("{tag} BAD unsupported mechanism\r\n"));
                            return;
                        };
                        let initial = match ir {
                            None => None,
                            Some("=") => Some(Vec::new()),
                            Some(t) => match decode_base64(t.as_bytes()) {
                                Ok(b) => Some(b),
                                Err(_) => {
                                    self.write(&format!("{tag} BAD bad initial response\r\n"));
                                    return;
                                }
                            },
                        };
                        let legs = u32::from(initial.is_some());
                        let world = self.world.clone();
                        let (sasl, step) = SaslServer::start(
                            mech,
                            &world,
                            &mut self.rng,
                            1_700_000_000,
                            initial.as_deref(),
                        );
                        self.sasl_step(tag, Box::new(sasl), step, legs);
                    }
                    "STARTTLS" if self.cfg.caps.contains("STARTTLS") && !self.tls => {
                        self.write(&format!("{tag} OK Begin TLS negotiation now\r\n"));
                        self.out.push_back(Output::StartTls);
                        self.awaiting_tls = true;
                    }
                    "SELECT" => {
                        self.write("* 3 EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen \\Deleted)\r\n");
                        // A literal inside an untagged response the client must skip.
                        self.write("* 1 FETCH (BODY[HEADER] {20}\r\nSubject: hi\r\na1 NO x)\r\n");
                        self.write(&format!("{tag} OK [READ-WRITE] SELECT completed.\r\n"));
                    }
                    "LOGOUT" => {
                        self.write("* BYE logging out\r\n");
                        self.write(&format!("{tag} OK LOGOUT completed.\r\n"));
                        self.out.push_back(Output::Close);
                        self.state = FakeState::Done;
                    }
                    _ => self.write(&format!("{tag} BAD unknown command\r\n")),
                }
            }
        }
    }
}

impl ServerSession for FakeImap {
    fn handle_input(&mut self, _now: Duration, input: &[u8]) {
        self.inbuf.extend_from_slice(input);
        while let Some(i) = self.inbuf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.inbuf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            self.line(&line);
        }
    }
    fn handle_eof(&mut self, _now: Duration) {
        if !self.closed {
            self.out.push_back(Output::Close);
        }
    }
    fn handle_timeout(&mut self, _now: Duration) {}
    fn handle_tls_established(&mut self, _now: Duration) {
        if self.awaiting_tls {
            self.awaiting_tls = false;
            self.tls = true;
        }
    }
    fn poll_output(&mut self) -> Option<Output> {
        let o = self.out.pop_front();
        if o == Some(Output::Close) {
            self.closed = true;
        }
        o
    }
    fn poll_timeout(&self) -> Option<Duration> {
        None
    }
    fn is_closed(&self) -> bool {
        self.closed
    }
}

const CAPS_NTLM: &str = "IMAP4rev1 AUTH=NTLM AUTH=PLAIN IDLE";
const CAPS_SP1: &str = "IMAP4rev1 AUTH=PLAIN IDLE";

fn fake(caps: &'static str) -> FakeImapConfig {
    FakeImapConfig {
        caps,
        continuation: b"+\r\n",
        pooled_backends: false,
    }
}

fn imap_run(cfg: ClientConfig, server: FakeImapConfig) -> (SessionOutcome, RunReport) {
    let world = lab();
    let mut client = ImapClient::new(cfg);
    let mut srv = FakeImap::new(server, world);
    let report = run_pair(&mut client, &mut srv, 10_000);
    assert!(client.is_done(), "{report:?}");
    (client.outcome(), report)
}

#[test]
fn imap_oe_spa_succeeds_with_ntlm_and_skips_the_literal() {
    let (o, report) = imap_run(cfg("secret", OE_SPA), fake(CAPS_NTLM));
    assert_eq!(report.end, RunEnd::ClientDone);
    assert_eq!(o.status, Status::Authenticated);
    assert!(o.codes.is_empty() && o.findings.is_empty());
    assert_eq!(
        o.render(),
        "actor: alice
protocol: IMAP
policy: outlook-express spa
S: * OK fake IMAP4rev1 ready
C: a1 CAPABILITY
S: * CAPABILITY IMAP4rev1 AUTH=NTLM AUTH=PLAIN IDLE
S: a1 OK CAPABILITY completed.
C: a2 AUTHENTICATE NTLM
S: +
C: <NTLM NEGOTIATE>
S: + <NTLM CHALLENGE>
C: <NTLM AUTHENTICATE user=alice v2>
S: a2 OK AUTHENTICATE completed.
C: a3 SELECT INBOX
S: * 3 EXISTS
S: * 0 RECENT
S: * FLAGS (\\Seen \\Deleted)
S: * 1 FETCH (BODY[HEADER] {20}
S: <literal, 20 octets>
S: )
S: a3 OK [READ-WRITE] SELECT completed.
C: a4 LOGOUT
S: * BYE logging out
S: a4 OK LOGOUT completed.
status: authenticated
prompts: 0
codes: none
findings: none
"
    );
}

#[test]
fn imap_oe_spa_accepts_a_continuation_with_a_space() {
    let mut f = fake(CAPS_NTLM);
    f.continuation = b"+ \r\n";
    let (o, _) = imap_run(cfg("secret", OE_SPA), f);
    assert_eq!(o.status, Status::Authenticated);
}

#[test]
fn imap_oe_spa_without_ntlm_is_auth_not_possible_at_once() {
    let (o, _) = imap_run(cfg("secret", OE_SPA), fake(CAPS_SP1));
    assert_eq!(o.status, Status::Failed);
    assert_eq!(o.prompts, 0);
    assert_eq!(
        code_names(&o),
        ["IXP_E_IMAP_AUTH_NOT_POSSIBLE (0x800CCCDF)"]
    );
    assert!(!o.steps.iter().any(|s| s.as_str().contains("AUTHENTICATE")));
    assert!(has_step(&o, "C: a2 LOGOUT"));
}

#[test]
fn imap_pre_sp1_front_end_loops_with_the_right_password() {
    // KB 306874: NTLM is advertised, but the legs reach different back-ends.
    let mut f = fake(CAPS_NTLM);
    f.pooled_backends = true;
    let (o, _) = imap_run(cfg("secret", OE_SPA), f);
    assert_eq!(o.status, Status::Looping);
    assert_eq!(o.prompts, 5);
    assert_eq!(
        code_names(&o),
        ["IXP_E_IMAP_LOGINFAILURE (0x800CCCD1)", USER_CANCEL]
    );
    assert_eq!(o.findings, [Finding::CredentialLoop { prompts: 5 }]);
    assert_eq!(count_steps(&o, "S: + <NTLM CHALLENGE>"), 5);

    // Basic through the same front-end works.
    let mut f = fake(CAPS_NTLM);
    f.pooled_backends = true;
    let (o, _) = imap_run(cfg("secret", OE_BASIC), f);
    assert_eq!(o.status, Status::Authenticated);
    assert!(has_step(&o, "C: a2 LOGIN alice ****"));
}

#[test]
fn imap_reconnects_after_a_drop_or_reports_the_failed_reconnect() {
    let world = lab();
    // Through run_pair a reconnect cannot be granted: the client reports it.
    let mut client = ImapClient::new(cfg("wrong", OE_SPA));
    let mut srv = CloseOnErr::new(FakeImap::new(fake(CAPS_NTLM), world.clone()));
    let report = run_pair(&mut client, &mut srv, 10_000);
    assert_eq!((report.end, report.connections), (RunEnd::ClientDone, 1));
    let o = client.outcome();
    assert_eq!(o.status, Status::Disconnected);
    assert_eq!(
        code_names(&o),
        [
            "IXP_E_IMAP_LOGINFAILURE (0x800CCCD1)",
            "IXP_E_FAILED_TO_CONNECT (0x800CCC0E)"
        ]
    );
    let tail: Vec<&str> = o.steps.iter().rev().take(4).map(|s| s.as_str()).collect();
    assert_eq!(
        tail,
        [
            "client: reconnect failed",
            "client: reconnects",
            "S: <connection closed>",
            "prompt 1: user re-enters the same credentials",
        ]
    );

    // With a fresh server per connection the user goes round the loop.
    let mut client = ImapClient::new(cfg("wrong", OE_SPA));
    let report = run_with_reconnect(
        &mut client,
        &mut |_| {
            Box::new(CloseOnErr::new(FakeImap::new(
                fake(CAPS_NTLM),
                world.clone(),
            )))
        },
        10_000,
    );
    assert_eq!(report.connections, 5);
    let o = client.outcome();
    assert_eq!(o.status, Status::Looping);
    assert_eq!(count_steps(&o, "S: * OK fake IMAP4rev1 ready"), 5);
    assert_eq!(count_steps(&o, "C: a2 AUTHENTICATE NTLM"), 1);
    assert_eq!(count_steps(&o, "C: a4 AUTHENTICATE NTLM"), 1);
}

#[test]
fn imap_oe_wrong_password_loop_threshold() {
    let mut c = cfg("wrong", OE_SPA);
    c.loop_threshold = 2;
    c.max_prompts = 4;
    let (o, _) = imap_run(c, fake(CAPS_NTLM));
    assert_eq!(o.status, Status::Looping);
    assert_eq!(o.findings, [Finding::CredentialLoop { prompts: 4 }]);
    assert!(has_step(&o, "prompt 4: user cancels"));
    assert_eq!(count_steps(&o, "S: a2 NO AUTHENTICATE failed."), 1);
    assert!(has_step(&o, "S: a5 NO AUTHENTICATE failed."));
}

#[test]
fn imap_basic_login_and_logindisabled() {
    let (o, _) = imap_run(cfg("secret", Policy::Basic), fake(CAPS_NTLM));
    assert_eq!(o.status, Status::Authenticated);
    assert_eq!(
        o.findings,
        [Finding::CleartextCredentials {
            mechanism: "LOGIN command".into()
        }]
    );
    assert!(!o.render().contains("secret"));
    let (o, _) = imap_run(
        cfg("secret", Policy::Basic),
        fake("IMAP4rev1 AUTH=NTLM LOGINDISABLED"),
    );
    assert_eq!(o.status, Status::Failed);
    assert!(!o.steps.iter().any(|s| s.as_str().contains("LOGIN alice")));
    assert_eq!(
        o.findings,
        [Finding::MechanismNotOffered {
            wanted: "LOGIN command".into()
        }]
    );
}

#[test]
fn imap_curl_uses_sasl_ir_and_the_strongest_mechanism() {
    let (o, _) = imap_run(
        cfg("secret", Policy::CurlLike),
        fake("IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=NTLM"),
    );
    assert_eq!(o.status, Status::Authenticated);
    assert!(has_step(&o, "C: a2 AUTHENTICATE NTLM <NTLM NEGOTIATE>"));
    assert!(has_step(&o, "S: + <NTLM CHALLENGE>"));
    let (o, _) = imap_run(
        cfg("secret", Policy::CurlLike),
        fake("IMAP4rev1 SASL-IR AUTH=PLAIN"),
    );
    assert_eq!(o.status, Status::Authenticated);
    assert!(has_step(&o, "C: a2 AUTHENTICATE PLAIN <PLAIN alice ****>"));
    let (o, _) = imap_run(
        cfg("secret", Policy::CurlLike),
        fake("IMAP4rev1 LOGINDISABLED"),
    );
    assert_eq!(o.status, Status::Failed);
    assert!(matches!(
        o.findings.as_slice(),
        [Finding::MechanismNotOffered { .. }]
    ));
    assert!(o.codes.is_empty());
}

// ----- hostile servers -----

fn feed_imap(policy: Policy, wire: &[u8]) -> SessionOutcome {
    let mut c = ImapClient::new(cfg("secret", policy));
    c.handle_input(Duration::from_millis(1), wire);
    while c.poll_output().is_some() {}
    if !c.is_done() {
        c.handle_eof(Duration::from_millis(2));
    }
    assert!(c.is_done());
    c.outcome()
}

fn violation(o: &SessionOutcome) -> String {
    o.findings
        .iter()
        .find_map(|f| match f {
            Finding::ProtocolViolation { detail } => Some(detail.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

#[test]
fn imap_hostile_replies_end_in_typed_outcomes() {
    let o = feed_imap(OE_SPA, b"HELLO THERE\r\n");
    assert_eq!(o.status, Status::Disconnected);
    assert_eq!(violation(&o), "malformed response: HELLO THERE");
    assert_eq!(code_names(&o), ["IXP_E_IMAP_BAD_RESPONSE (0x800CCCD3)"]);

    let mut long = b"* OK ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 20_000));
    let o = feed_imap(OE_SPA, &long);
    assert_eq!(violation(&o), "response line longer than 8192 octets");

    let o = feed_imap(
        OE_SPA,
        b"* OK hi\r\na1 OK done\r\n* 1 FETCH (BODY[] {18446744073709551615}\r\n",
    );
    assert_eq!(
        violation(&o),
        format!(
            "literal of {} octets exceeds the 16777216-octet limit",
            u64::MAX
        )
    );

    let o = feed_imap(OE_SPA, b"* OK hi\r\n");
    assert_eq!(o.status, Status::Disconnected);
    assert_eq!(
        o.findings,
        [Finding::UnexpectedDisconnect {
            during: "CAPABILITY".into()
        }]
    );
    assert_eq!(code_names(&o), ["IXP_E_CONNECTION_DROPPED (0x800CCC0F)"]);

    let o = feed_imap(OE_SPA, b"* OK hi\r\nzz OK what\r\n");
    assert_eq!(violation(&o), "tagged response for unknown tag zz");

    let o = feed_imap(OE_SPA, b"* BYE go away\r\n");
    assert_eq!(code_names(&o), ["IXP_E_IMAP_UNSOLICITED_BYE (0x800CCCDD)"]);
}

#[test]
fn imap_garbage_ntlm_challenge_is_cancelled() {
    let mut c = ImapClient::new(cfg("secret", OE_SPA));
    let t = Duration::from_millis(1);
    c.handle_input(
        t,
        b"* OK hi\r\n* CAPABILITY IMAP4rev1 AUTH=NTLM\r\na1 OK\r\n+\r\n+ Zm9vYmFy\r\n",
    );
    let out: Vec<ClientOutput> = std::iter::from_fn(|| c.poll_output()).collect();
    assert_eq!(out.last(), Some(&ClientOutput::Write(b"*\r\n".to_vec())));
    c.handle_input(t, b"a2 BAD cancelled\r\n");
    assert!(!c.is_done());
    assert_eq!(c.outcome().prompts, 1);
    assert!(violation(&c.outcome()).starts_with("cannot answer: bad NTLM CHALLENGE"));
}

#[test]
fn imap_silent_server_times_out() {
    let mut c = ImapClient::new(cfg("secret", OE_SPA));
    let deadline = c.poll_timeout().unwrap();
    c.handle_timeout(deadline - Duration::from_millis(1));
    assert!(!c.is_done());
    c.handle_timeout(deadline);
    assert!(c.is_done());
    assert_eq!(code_names(&c.outcome()), ["IXP_E_TIMEOUT (0x800CCC19)"]);
    assert_eq!(c.poll_output(), Some(ClientOutput::Close));
}

#[test]
fn imap_data_injected_after_starttls_ok_is_refused() {
    let mut c = cfg("secret", Policy::Basic);
    c.starttls = true;
    let mut client = ImapClient::new(c);
    let t = Duration::from_millis(1);
    client.handle_input(
        t,
        b"* OK hi\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\na1 OK\r\n",
    );
    while client.poll_output().is_some() {}
    client.handle_input(t, b"a2 OK go\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n");
    assert!(client.is_done());
    assert_eq!(
        violation(&client.outcome()),
        "server sent data after STARTTLS before the TLS handshake"
    );
}

fn feed_pop3(wire: &[u8]) -> SessionOutcome {
    let mut c = Pop3Client::new(cfg("secret", OE_SPA));
    c.handle_input(Duration::from_millis(1), wire);
    while c.poll_output().is_some() {}
    if !c.is_done() {
        c.handle_eof(Duration::from_millis(2));
    }
    assert!(c.is_done());
    c.outcome()
}

#[test]
fn pop3_hostile_replies_end_in_typed_outcomes() {
    let o = feed_pop3(b"* OK imap?\r\n");
    assert_eq!(o.status, Status::Disconnected);
    assert_eq!(
        violation(&o),
        "invalid reply: line starts with neither +OK, -ERR nor +"
    );
    assert_eq!(code_names(&o), ["IXP_E_POP3_RESPONSE_ERROR (0x800CCC90)"]);

    let o = feed_pop3(&[b'+'; 600]);
    assert_eq!(violation(&o), "invalid reply: line longer than 512 octets");

    let mut capa = b"+OK hi\r\n+OK caps\r\n".to_vec();
    for _ in 0..10_000 {
        capa.extend_from_slice(b"XXXXXXXXXXXXXXX\r\n");
    }
    let o = feed_pop3(&capa);
    assert_eq!(
        violation(&o),
        "invalid reply: multi-line body longer than 65536 octets"
    );

    let o = feed_pop3(b"+OK hi\r\n+OK caps\r\nSASL NTLM\r\n");
    assert_eq!(
        o.findings,
        [Finding::UnexpectedDisconnect {
            during: "CAPA".into()
        }]
    );

    let o = feed_pop3(b"-ERR [SYS/TEMP] busy\r\n");
    assert_eq!(o.status, Status::Failed);

    let o = feed_pop3(b"+OK hi\r\n+ \r\n");
    assert_eq!(
        violation(&o),
        "continuation where a status line was expected"
    );
}

// ----- fuzz entry points -----

#[test]
fn fuzz_entry_points_survive_seeded_mutations() {
    let seeds: [&[u8]; 4] = [
        b"\x00* OK hi\r\n* CAPABILITY IMAP4rev1 AUTH=NTLM SASL-IR STARTTLS\r\na1 OK\r\n+\r\n+ TlRMTVNTUAACAAAA\r\na2 NO\r\n",
        b"\x03* OK hi\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR\r\na1 OK\r\na2 OK\r\n* 1 FETCH {5}\r\nabcde)\r\na3 OK\r\n* BYE\r\na4 OK\r\n",
        b"\x00+OK hi <1.2@h>\r\n+OK\r\nSASL NTLM\r\nUSER\r\n.\r\n+OK\r\nNTLM\r\n.\r\n+ \r\n+ TlRMTVNTUAACAAAA\r\n-ERR no\r\n",
        b"\x12+OK hi\r\n+OK\r\nSTLS\r\n.\r\n+OK go\r\n+OK\r\nUSER\r\n.\r\n+OK\r\n+OK\r\n+OK 1 2\r\n+OK bye\r\n",
    ];
    let mut rng = SeededRng::new(2024);
    for seed in seeds {
        fuzz_imap_client(seed);
        fuzz_pop3_client(seed);
        for _ in 0..std::env::var("DRIVER_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300)
        {
            let mut data = seed.to_vec();
            let edits = 1 + rng.next_u64() % 6;
            for _ in 0..edits {
                let pos = (rng.next_u64() as usize) % data.len();
                match rng.next_u64() % 4 {
                    0 => data[pos] = rng.next_u64() as u8,
                    1 => {
                        data.remove(pos);
                        if data.is_empty() {
                            data.push(0);
                        }
                    }
                    2 => data.insert(pos, b"\r\n{}+*"[(rng.next_u64() % 6) as usize]),
                    _ => data.truncate(pos.max(1)),
                }
            }
            fuzz_imap_client(&data);
            fuzz_pop3_client(&data);
        }
    }
    fuzz_imap_client(b"");
    fuzz_pop3_client(b"");
}

#[test]
fn outcomes_serialize_without_secrets() {
    // Serialized (here through toml), codes carry name and value; no password appears.
    let (o, _) = pop3_run(cfg("secret", OE_SPA), &profile_without_ntlm());
    assert_eq!(o.codes, [known::IXP_E_SICILY_LOGON_FAILED]);
    let text = toml::to_string(&o).unwrap();
    assert!(
        text.contains("name = \"IXP_E_SICILY_LOGON_FAILED\""),
        "{text}"
    );
    assert!(text.contains("value = \"0x800CCC18\""));
    assert!(text.contains("kind = \"mechanism_not_offered\""));
    assert!(!text.contains("secret"));
}

#[test]
fn replies_split_at_every_byte_read_the_same() {
    let pop =
        b"+OK hi\r\n+OK caps\r\nUSER\r\nSASL PLAIN NTLM\r\n..dotted\r\n.\r\n+OK\r\nLOGIN\r\n.\r\n";
    let mut whole = Pop3Client::new(cfg("secret", OE_SPA));
    whole.handle_input(Duration::ZERO, pop);
    let mut split = Pop3Client::new(cfg("secret", OE_SPA));
    for b in pop.iter() {
        split.handle_input(Duration::ZERO, std::slice::from_ref(b));
    }
    assert_eq!(whole.offer(), split.offer());
    assert_eq!(
        split.offer().mechanisms,
        [Mechanism::Plain, Mechanism::Ntlm, Mechanism::Login]
    );
    assert!(split.offer().cleartext);
    assert_eq!(whole.outcome(), split.outcome());
    assert!(has_step(&split.outcome(), "S: .dotted"));
    assert!(has_step(&split.outcome(), "C: AUTH NTLM"));

    let imap = b"* OK hi\r\n* CAPABILITY IMAP4rev1 AUTH=NTLM SASL-IR\r\n* 1 FETCH (X {4}\r\n\r\n\r\n)\r\na1 OK done\r\n";
    let mut whole = ImapClient::new(cfg("secret", Policy::CurlLike));
    whole.handle_input(Duration::ZERO, imap);
    let mut split = ImapClient::new(cfg("secret", Policy::CurlLike));
    for b in imap.iter() {
        split.handle_input(Duration::ZERO, std::slice::from_ref(b));
    }
    assert_eq!(whole.outcome(), split.outcome());
    assert!(split.offer().sasl_ir);
    assert!(has_step(
        &split.outcome(),
        "C: a2 AUTHENTICATE NTLM <NTLM NEGOTIATE>"
    ));
}

/// Everything a client wrote, in order, split into its writes.
fn writes(c: &mut dyn ClientSession) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| c.poll_output())
        .filter_map(|o| match o {
            ClientOutput::Write(b) => Some(b),
            _ => None,
        })
        .collect()
}

#[test]
fn pop3_client_wire_bytes() {
    let t = Duration::from_millis(1);
    let mut c = Pop3Client::new(cfg("secret", OE_SPA));
    c.handle_input(t, b"+OK hi\r\n");
    assert_eq!(writes(&mut c), [b"CAPA\r\n".to_vec()]);
    c.handle_input(t, b"+OK\r\nSASL NTLM\r\n.\r\n");
    // [MS-POP3] 2.2.1: the listing probe is "AUTH" SP CRLF.
    assert_eq!(writes(&mut c), [b"AUTH \r\n".to_vec()]);
    c.handle_input(t, b"+OK\r\nNTLM\r\n.\r\n");
    assert_eq!(writes(&mut c), [b"AUTH NTLM\r\n".to_vec()]);
    c.handle_input(t, b"+ \r\n");
    let w = writes(&mut c);
    let line = std::str::from_utf8(&w[0]).unwrap();
    let neg = decode_base64(line.trim_end().as_bytes()).unwrap();
    assert!(neg.starts_with(b"NTLMSSP\0\x01\0\0\0"), "{neg:?}");
    assert!(line.ends_with("\r\n"));

    let mut c = Pop3Client::new(cfg("p\"w", Policy::Basic));
    c.handle_input(t, b"+OK hi\r\n-ERR no CAPA\r\n");
    assert_eq!(
        writes(&mut c),
        [b"CAPA\r\n".to_vec(), b"USER alice\r\n".to_vec()]
    );
    c.handle_input(t, b"+OK\r\n");
    assert_eq!(writes(&mut c), [b"PASS p\"w\r\n".to_vec()]);
    c.handle_input(t, b"+OK in\r\n");
    assert_eq!(writes(&mut c), [b"STAT\r\n".to_vec()]);
    c.handle_input(t, b"+OK 0 0\r\n");
    assert_eq!(writes(&mut c), [b"QUIT\r\n".to_vec()]);
    c.handle_input(t, b"+OK bye\r\n");
    assert_eq!(c.poll_output(), Some(ClientOutput::Close));
    assert_eq!(c.outcome().status, Status::Authenticated);
}

#[test]
fn imap_client_wire_bytes() {
    let t = Duration::from_millis(1);
    let mut c = ImapClient::new(cfg("secret", Policy::CurlLike));
    c.handle_input(t, b"* OK hi\r\n");
    assert_eq!(writes(&mut c), [b"a1 CAPABILITY\r\n".to_vec()]);
    c.handle_input(t, b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN\r\na1 OK\r\n");
    // RFC 4959 initial response; RFC 4616 message NUL alice NUL secret.
    assert_eq!(
        writes(&mut c),
        [b"a2 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n".to_vec()]
    );

    let mut c = ImapClient::new(cfg("se cret\\", Policy::Basic));
    c.handle_input(t, b"* OK hi\r\n* CAPABILITY IMAP4rev1\r\na1 OK\r\n");
    let w = writes(&mut c);
    // RFC 3501 9: a quoted string escapes '\' and '"'.
    assert_eq!(w.last().unwrap(), b"a2 LOGIN alice \"se cret\\\\\"\r\n");
    c.handle_input(t, b"a2 OK in\r\n");
    assert_eq!(writes(&mut c), [b"a3 SELECT INBOX\r\n".to_vec()]);
    c.handle_input(t, b"* 0 EXISTS\r\na3 OK [READ-WRITE] done\r\n");
    assert_eq!(writes(&mut c), [b"a4 LOGOUT\r\n".to_vec()]);
    c.handle_input(t, b"* BYE\r\na4 OK\r\n");
    assert_eq!(c.poll_output(), Some(ClientOutput::Close));
    assert!(c.is_done());
    assert!(!c.outcome().render().contains("se cret"));
}

/// A server wrapper that records what the client sent.
struct Recorder<S: ServerSession> {
    inner: S,
    seen: Vec<u8>,
}

impl<S: ServerSession> ServerSession for Recorder<S> {
    fn handle_input(&mut self, now: Duration, input: &[u8]) {
        self.seen.extend_from_slice(input);
        self.inner.handle_input(now, input)
    }
    fn handle_eof(&mut self, now: Duration) {
        self.inner.handle_eof(now)
    }
    fn handle_timeout(&mut self, now: Duration) {
        self.inner.handle_timeout(now)
    }
    fn handle_tls_established(&mut self, now: Duration) {
        self.inner.handle_tls_established(now)
    }
    fn poll_output(&mut self) -> Option<Output> {
        self.inner.poll_output()
    }
    fn poll_timeout(&self) -> Option<Duration> {
        self.inner.poll_timeout()
    }
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}

#[test]
fn the_seed_fixes_the_bytes() {
    let run = |seed: u64| {
        let mut c = cfg("secret", OE_SPA);
        c.seed = seed;
        let mut client = ImapClient::new(c);
        let mut srv = Recorder {
            inner: FakeImap::new(fake(CAPS_NTLM), lab()),
            seen: Vec::new(),
        };
        run_pair(&mut client, &mut srv, 1000);
        assert_eq!(client.outcome().status, Status::Authenticated);
        (srv.seen, client.outcome().render())
    };
    let (a, ra) = run(1);
    let (b, rb) = run(1);
    let (c, rc) = run(2);
    assert_eq!(a, b);
    assert_ne!(a, c, "the NTLM client challenge must follow the seed");
    // The rendered outcome has no random values in it.
    assert_eq!(ra, rb);
    assert_eq!(ra, rc);
}

#[test]
fn policies_read_from_toml() {
    #[derive(serde::Deserialize)]
    struct S {
        p: Vec<Policy>,
    }
    let s: S = toml::from_str(
        r#"p = [{ outlook-express = { use_spa = true } }, "basic", "curl-like", { forced = { sasl = "NTLM" } }, { forced = "cleartext" }]"#,
    )
    .unwrap();
    assert_eq!(
        s.p,
        [
            OE_SPA,
            Policy::Basic,
            Policy::CurlLike,
            Policy::Forced(AuthMethod::Sasl(Mechanism::Ntlm)),
            Policy::Forced(AuthMethod::Cleartext),
        ]
    );
}

/// What the IMAP client writes, checked by an independent parser (imap-codec): every
/// command line is an RFC 3501 command, every other line is authenticate data.
#[test]
fn imap_client_output_parses_with_imap_codec() {
    use imap_codec::decode::Decoder;
    use imap_codec::imap_types::command::CommandBody;
    use imap_codec::{AuthenticateDataCodec, CommandCodec};
    let cases: [(Policy, &'static str, &str); 4] = [
        (OE_SPA, CAPS_NTLM, "secret"),
        (Policy::CurlLike, "IMAP4rev1 SASL-IR AUTH=NTLM", "secret"),
        (Policy::CurlLike, "IMAP4rev1 SASL-IR AUTH=PLAIN", "secret"),
        (Policy::Basic, CAPS_SP1, CAROL_PASSWORD),
    ];
    for (policy, caps, password) in cases {
        let user = if password == CAROL_PASSWORD {
            "carol"
        } else {
            "alice"
        };
        let mut client = ImapClient::new(ClientConfig::new(user, password, policy));
        let mut srv = Recorder {
            inner: FakeImap::new(fake(caps), lab()),
            seen: Vec::new(),
        };
        run_pair(&mut client, &mut srv, 1000);
        let o = client.outcome();
        assert_eq!(o.status, Status::Authenticated, "{}", o.render());
        let mut kinds = Vec::new();
        for line in srv.seen.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b'a') {
                let (rest, cmd) = CommandCodec::default()
                    .decode(line)
                    .unwrap_or_else(|e| panic!("{:?}: {e:?}", String::from_utf8_lossy(line)));
                assert!(rest.is_empty());
                kinds.push(match cmd.body {
                    CommandBody::Capability => "CAPABILITY",
                    CommandBody::Authenticate { .. } => "AUTHENTICATE",
                    CommandBody::Login { .. } => "LOGIN",
                    CommandBody::Select { .. } => "SELECT",
                    CommandBody::Logout => "LOGOUT",
                    _ => "other",
                });
            } else {
                let (rest, _) = AuthenticateDataCodec::default()
                    .decode(line)
                    .unwrap_or_else(|e| panic!("{:?}: {e:?}", String::from_utf8_lossy(line)));
                assert!(rest.is_empty());
                kinds.push("data");
            }
        }
        let expected: &[&str] = match (policy, caps) {
            (Policy::Basic, _) => &["CAPABILITY", "LOGIN", "SELECT", "LOGOUT"],
            (Policy::CurlLike, c) if c.contains("NTLM") => {
                &["CAPABILITY", "AUTHENTICATE", "data", "SELECT", "LOGOUT"]
            }
            (Policy::CurlLike, _) => &["CAPABILITY", "AUTHENTICATE", "SELECT", "LOGOUT"],
            _ => &[
                "CAPABILITY",
                "AUTHENTICATE",
                "data",
                "data",
                "SELECT",
                "LOGOUT",
            ],
        };
        assert_eq!(kinds, expected, "{policy:?} {caps}");
    }
}

#[test]
fn imap_starttls_then_login_under_logindisabled() {
    let mut c = cfg("secret", Policy::Basic);
    c.starttls = true;
    let (o, _) = imap_run(c, fake("IMAP4rev1 STARTTLS LOGINDISABLED AUTH=NTLM"));
    assert_eq!(o.status, Status::Authenticated, "{}", o.render());
    assert!(o.findings.is_empty(), "{:?}", o.findings);
    let shown: Vec<&str> = o.steps.iter().map(|s| s.as_str()).take(9).collect();
    assert_eq!(
        shown,
        [
            "S: * OK fake IMAP4rev1 ready",
            "C: a1 CAPABILITY",
            "S: * CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=NTLM",
            "S: a1 OK CAPABILITY completed.",
            "C: a2 STARTTLS",
            "S: a2 OK Begin TLS negotiation now",
            "client: TLS handshake",
            "C: a3 CAPABILITY",
            "S: * CAPABILITY IMAP4rev1 AUTH=NTLM",
        ]
    );
    assert!(has_step(&o, "C: a4 LOGIN alice ****"));
}

#[test]
fn imap_preauth_skips_authentication() {
    let mut c = ImapClient::new(cfg("secret", OE_SPA));
    let t = Duration::from_millis(1);
    c.handle_input(t, b"* PREAUTH welcome back\r\n");
    assert_eq!(writes(&mut c), [b"a1 SELECT INBOX\r\n".to_vec()]);
}

/// A server that accepts the connection and never says anything.
struct Silent;

impl ServerSession for Silent {
    fn handle_input(&mut self, _now: Duration, _input: &[u8]) {}
    fn handle_eof(&mut self, _now: Duration) {}
    fn handle_timeout(&mut self, _now: Duration) {}
    fn handle_tls_established(&mut self, _now: Duration) {}
    fn poll_output(&mut self) -> Option<Output> {
        None
    }
    fn poll_timeout(&self) -> Option<Duration> {
        None
    }
    fn is_closed(&self) -> bool {
        false
    }
}

#[test]
fn a_silent_server_times_out_on_the_virtual_clock() {
    for protocol in [Protocol::Imap, Protocol::Pop3] {
        let mut client = new_client(protocol, cfg("secret", OE_SPA));
        let report = run_pair(client.as_mut(), &mut Silent, 100);
        assert_eq!(report.end, RunEnd::ClientDone);
        assert!(report.steps < 10, "{report:?}");
        assert_eq!(report.now.as_secs(), 60);
        let o = client.outcome();
        assert_eq!(o.status, Status::Disconnected);
        assert_eq!(
            o.findings,
            [Finding::ServerSilent {
                during: "greeting".into()
            }]
        );
        assert_eq!(code_names(&o), ["IXP_E_TIMEOUT (0x800CCC19)"]);
    }
}

#[test]
fn curl_says_what_curl_says() {
    let (o, _) = imap_run(
        cfg("secret", Policy::CurlLike),
        fake("IMAP4rev1 LOGINDISABLED"),
    );
    assert!(has_step(
        &o,
        "client: No known authentication mechanisms supported (wants NTLM or PLAIN or LOGIN or LOGIN command; SASL offered: none; cleartext login refused)"
    ));
}

#[test]
fn a_prompt_is_answered_by_what_the_user_chose_and_whether_the_connection_is_still_there() {
    let answer = |closed, cancel| Prompt { closed, cancel }.answer();
    assert_eq!(
        answer(false, None),
        PromptAnswer::Retry { reconnect: false }
    );
    assert_eq!(answer(true, None), PromptAnswer::Retry { reconnect: true });
    assert_eq!(
        answer(false, Some(Status::Looping)),
        PromptAnswer::Goodbye(Status::Looping)
    );
    assert_eq!(
        answer(true, Some(Status::Failed)),
        PromptAnswer::End(Status::Failed)
    );
}
