//! Two real, conformant mail front-ends in front of Dovecot on loopback: nginx's mail
//! proxy and perdition. The spa-loop scenario's telnet check (KB 306874: IMAP CAPABILITY,
//! POP3 `AUTH ` with the Microsoft trailing space, and CAPA) must find no NTLM on offer, as
//! with an Exchange 2000 SP1 front-end, and basic login must work through each.
//!
//! Peers are started by `scripts/peers/*/start.sh` on free ports and stopped by PID.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::peers::{self, free_port, Peer};
use harness::tools::play::SocketTransport;
use harness_core::scenario::{probe_from_report, probe_script};
use harness_core::script::{self, ReadLine, ScriptTransport, Verdict};
use harness_core::Protocol;

/// Longest wait for a reply (Dovecot runs here without auth_failure_delay, so a refusal
/// is as quick as any reply).
const SILENCE: Duration = Duration::from_secs(8);

struct Frontend {
    imap: SocketAddr,
    pop3: SocketAddr,
    // Dropped in reverse order: the front-end first, then Dovecot.
    _peers: Vec<Peer>,
}

fn tools(frontend_tool: &str, hint: &str) -> bool {
    common::require_tool("dovecot", "scripts/peers/install.sh").is_some()
        && common::require_tool(frontend_tool, hint).is_some()
}

fn dovecot() -> Option<(Peer, u16, u16)> {
    let (imap, pop3) = (free_port(), free_port());
    // What these tests check is what a refusal says, not how long it takes.
    let peer = peers::try_start_with_env(
        "dovecot",
        &[imap.to_string(), pop3.to_string()],
        &[("DOVECOT_NO_AUTH_DELAY", "1")],
    )?;
    Some((peer, imap, pop3))
}

fn lo(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

fn nginx() -> Option<Frontend> {
    let (back, b_imap, b_pop3) = dovecot()?;
    let (imap, pop3, auth) = (free_port(), free_port(), free_port());
    let fe = peers::try_start(
        "nginx-mail",
        &[imap, pop3, b_imap, b_pop3, auth].map(|p| p.to_string()),
    )?;
    Some(Frontend {
        imap: lo(imap),
        pop3: lo(pop3),
        _peers: vec![fe, back],
    })
}

fn perdition() -> Option<Frontend> {
    let (back, b_imap, b_pop3) = dovecot()?;
    let (imap, pop3) = (free_port(), free_port());
    let fe = peers::try_start(
        "perdition",
        &[imap, pop3, b_imap, b_pop3].map(|p| p.to_string()),
    )?;
    Some(Frontend {
        imap: lo(imap),
        pop3: lo(pop3),
        _peers: vec![fe, back],
    })
}

/// The scenario runner's telnet probe, played over a socket.
fn probe(protocol: Protocol, addr: SocketAddr) -> harness_core::scenario::Probe {
    let parsed = script::parse(probe_script(protocol)).expect("probe script parses");
    let mut transport = SocketTransport::new(addr, Duration::from_secs(3));
    probe_from_report(
        protocol,
        script::play(&parsed, &Default::default(), &mut transport),
    )
}

/// Sends one POP3 command and returns the reply lines (a multi-line reply up to `.`).
fn pop3_exchange(t: &mut SocketTransport, cmd: &str, multi: bool) -> Vec<String> {
    t.send(0, format!("{cmd}\r\n").as_bytes()).expect("send");
    let mut lines = Vec::new();
    for _ in 0..200 {
        match t.read_line(0).expect("read") {
            ReadLine::Line(l) => {
                let l = String::from_utf8_lossy(&l).into_owned();
                let end = l == "." || (lines.is_empty() && (!multi || l.starts_with("-ERR")));
                lines.push(l);
                if end {
                    return lines;
                }
            }
            other => panic!("{cmd:?}: {other:?} after {lines:?}"),
        }
    }
    panic!("{cmd:?}: no end in {lines:?}");
}

/// CAPA and `AUTH ` by hand: every line of both replies.
fn pop3_capa_and_auth(addr: SocketAddr) -> (Vec<String>, Vec<String>) {
    let mut t = SocketTransport::new(addr, SILENCE);
    t.connect(0).expect("connect");
    match t.read_line(0).expect("greeting") {
        ReadLine::Line(l) => assert!(l.starts_with(b"+OK"), "{l:?}"),
        other => panic!("no greeting: {other:?}"),
    }
    let capa = pop3_exchange(&mut t, "CAPA", true);
    let auth = pop3_exchange(&mut t, "AUTH ", true);
    let quit = pop3_exchange(&mut t, "QUIT", false);
    assert!(quit[0].starts_with("+OK"), "{quit:?}");
    t.close(0);
    (capa, auth)
}

fn play(addr: SocketAddr, text: &str) -> Verdict {
    let parsed = script::parse(text).expect("script parses");
    let mut transport = SocketTransport::new(addr, SILENCE);
    let report = script::play(&parsed, &Default::default(), &mut transport).expect("script plays");
    if !report.passed() {
        eprintln!("{}", report.transcript());
    }
    report.verdict
}

const IMAP_LOGIN_SELECT: &str = "\
S: * OK $*
C: a1 LOGIN bob hunter2
S: ...
S: a1 OK $*
C: a2 SELECT INBOX
S: ...
S: * 3 EXISTS
S: ...
S: a2 OK $*
C: a3 LOGOUT
S: ...
S: a3 OK $*
";

/// Ends at the refusal: seen here, nginx (auth_http answering `Auth-Wait: 0`) closes the
/// connection after it, while perdition keeps it open.
const IMAP_WRONG_PASSWORD: &str = "\
S: * OK $*
C: a1 LOGIN bob wrong
S: ...
S: a1 NO $*
";

const POP3_USER_PASS_STAT: &str = "\
S: +OK$*
C: USER alice
S: +OK$*
C: PASS secret
S: +OK$*
C: STAT
S: +OK 3 $*
C: QUIT
S: +OK$*
";

/// What both front-ends must show: no NTLM anywhere, basic login works, a wrong password
/// is refused.
fn check_frontend(name: &str, fe: &Frontend, pop3_auth_listing: bool) {
    let imap = probe(Protocol::Imap, fe.imap);
    eprintln!("{name} IMAP probe:\n{}", imap.transcript.join("\n"));
    assert!(
        imap.transcript
            .iter()
            .any(|l| l.starts_with("S: * CAPABILITY")),
        "{name}: no CAPABILITY reply: {:?}",
        imap.transcript
    );
    assert!(
        !imap
            .transcript
            .iter()
            .any(|l| l.contains("did not complete")),
        "{name}: {:?}",
        imap.transcript
    );
    assert!(!imap.advertises_ntlm, "{name} IMAP offers NTLM");

    let pop3 = probe(Protocol::Pop3, fe.pop3);
    eprintln!("{name} POP3 probe:\n{}", pop3.transcript.join("\n"));
    assert!(!pop3.advertises_ntlm, "{name} POP3 lists NTLM");

    let (capa, auth) = pop3_capa_and_auth(fe.pop3);
    eprintln!("{name} CAPA: {capa:?}\n{name} AUTH: {auth:?}");
    assert!(capa[0].starts_with("+OK") && capa.len() > 2, "{capa:?}");
    assert!(
        capa.iter().any(|l| l.eq_ignore_ascii_case("USER")),
        "{name}: CAPA without USER: {capa:?}"
    );
    for l in capa.iter().chain(&auth) {
        assert!(!l.to_ascii_uppercase().contains("NTLM"), "{name}: {l:?}");
    }
    if pop3_auth_listing {
        // The Microsoft-style listing: +OK, the mechanisms one a line, then "."
        assert!(auth[0].starts_with("+OK"), "{name}: {auth:?}");
        assert!(auth.iter().any(|l| l == "PLAIN"), "{name}: {auth:?}");
        assert!(pop3.transcript.iter().any(|l| l == "S: PLAIN"), "{pop3:?}");
    } else {
        assert!(auth[0].starts_with("-ERR"), "{name}: {auth:?}");
    }

    assert_eq!(play(fe.imap, IMAP_LOGIN_SELECT), Verdict::Passed, "{name}");
    assert_eq!(
        play(fe.pop3, POP3_USER_PASS_STAT),
        Verdict::Passed,
        "{name}"
    );
    assert_eq!(
        play(fe.imap, IMAP_WRONG_PASSWORD),
        Verdict::Passed,
        "{name}"
    );
}

#[test]
fn nginx_mail_proxy_offers_no_ntlm_and_relays_basic_login() {
    if !tools(
        "nginx",
        "scripts/peers/install.sh (nginx libnginx-mod-mail)",
    ) {
        return;
    }
    let Some(fe) = nginx() else {
        return;
    };
    check_frontend("nginx", &fe, true);
}

#[test]
fn perdition_offers_no_ntlm_and_relays_basic_login() {
    if !tools("perdition.imap4", "scripts/peers/install.sh (perdition)") {
        return;
    }
    let Some(fe) = perdition() else {
        return;
    };
    check_frontend("perdition", &fe, false);
}
