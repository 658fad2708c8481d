//! The harness's own NTLM client against a real server that offers NTLM: Cyrus IMAP/POP3
//! with cyrus-sasl on loopback (started by `scripts/peers/cyrus/start.sh`, stopped by PID).
//! Cyrus's NTLM is NTLMv1: its challenge carries no target info, so the initiator sends an
//! NTLMv1 response rather than NTLMv2. A right password authenticates over IMAP and POP3;
//! a wrong one fails with the client's failure code.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::peers::{self, free_port, Peer};
use harness::tools::client_driver::drive_client;
use harness::tools::play::SocketTransport;
use harness_core::driver::{self, AuthMethod, ClientConfig, Policy, SessionOutcome, Status};
use harness_core::sasl::Mechanism;
use harness_core::scenario::{probe_from_report, probe_script};
use harness_core::script;
use harness_core::Protocol;

fn cyrus() -> Option<(Peer, SocketAddr, SocketAddr)> {
    common::require_tool("cyrmaster", "scripts/peers/install.sh (cyrus-common)")?;
    common::require_tool("saslpasswd2", "scripts/peers/install.sh (sasl2-bin)")?;
    let (imap, pop3) = (free_port(), free_port());
    let peer = peers::try_start("cyrus", &[imap.to_string(), pop3.to_string()])?;
    Some((
        peer,
        ([127, 0, 0, 1], imap).into(),
        ([127, 0, 0, 1], pop3).into(),
    ))
}

async fn session(
    protocol: Protocol,
    addr: SocketAddr,
    user: &str,
    password: &str,
    policy: Policy,
) -> SessionOutcome {
    let mut cfg = ClientConfig::new(user, password, policy);
    cfg.think_time = Duration::from_millis(10);
    cfg.response_timeout = Duration::from_secs(15);
    // Cancel at the first re-prompt: one wrong attempt is enough here.
    cfg.max_prompts = 1;
    let mut client = driver::new_client(protocol, cfg);
    tokio::time::timeout(Duration::from_secs(60), drive_client(client.as_mut(), addr))
        .await
        .expect("the client finishes within 60 s");
    let outcome = client.outcome();
    eprintln!("{}", outcome.render());
    outcome
}

fn used_ntlm(o: &SessionOutcome) -> bool {
    o.steps.iter().any(|s| {
        let s = s.as_str();
        s.contains("AUTHENTICATE NTLM") || s.contains("AUTH NTLM")
    })
}

fn code_names(o: &SessionOutcome) -> Vec<&'static str> {
    o.codes.iter().filter_map(|c| c.name()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_ntlm_client_authenticates_to_cyrus_and_a_wrong_password_fails() {
    let Some((_peer, imap, pop3)) = cyrus() else {
        return;
    };

    // Cyrus advertises NTLM: the telnet probe that finds none on nginx/perdition finds it
    // here (so that check can fail).
    for (protocol, addr) in [(Protocol::Imap, imap), (Protocol::Pop3, pop3)] {
        let probe = tokio::task::spawn_blocking(move || {
            let parsed = script::parse(probe_script(protocol)).expect("probe parses");
            let mut t = SocketTransport::new(addr, Duration::from_secs(3));
            probe_from_report(protocol, script::play(&parsed, &Default::default(), &mut t))
        })
        .await
        .expect("probe task");
        assert!(
            probe.advertises_ntlm,
            "{protocol:?}: {:?}",
            probe.transcript
        );
    }

    // The two protocols at once: Cyrus pauses after every failed login (failedloginpause).
    tokio::join!(
        ntlm_logins(Protocol::Imap, imap),
        ntlm_logins(Protocol::Pop3, pop3)
    );
}

/// NTLM against Cyrus: curl's choice and Outlook Express with SPA log in, a wrong password
/// is refused with the client's logon-failure code.
async fn ntlm_logins(protocol: Protocol, addr: SocketAddr) {
    // curl's choice: the strongest advertised mechanism, NTLM.
    let ok = session(protocol, addr, "alice", "secret", Policy::CurlLike).await;
    assert_eq!(
        ok.status,
        Status::Authenticated,
        "{protocol:?}\n{}",
        ok.render()
    );
    assert!(
        used_ntlm(&ok),
        "{protocol:?} did not use NTLM\n{}",
        ok.render()
    );
    assert!(ok.codes.is_empty(), "{}", ok.render());
    // No target info in Cyrus's challenge: the initiator answered with NTLMv1.
    assert!(
        ok.steps
            .iter()
            .any(|s| s.as_str().contains("<NTLM AUTHENTICATE user=alice v1>")),
        "{}",
        ok.render()
    );

    // Outlook Express with SPA, straight to a server that offers NTLM: it works.
    let oe = session(
        protocol,
        addr,
        "bob",
        "hunter2",
        Policy::OutlookExpress { use_spa: true },
    )
    .await;
    assert_eq!(oe.status, Status::Authenticated, "{}", oe.render());
    assert!(used_ntlm(&oe), "{}", oe.render());

    // NTLM forced, wrong password: refused, with the client's logon-failure code.
    let bad = session(
        protocol,
        addr,
        "alice",
        "wrong",
        Policy::Forced(AuthMethod::Sasl(Mechanism::Ntlm)),
    )
    .await;
    assert_eq!(bad.status, Status::Failed, "{}", bad.render());
    assert!(used_ntlm(&bad), "{}", bad.render());
    let expected = match protocol {
        Protocol::Imap => "IXP_E_IMAP_LOGINFAILURE",
        Protocol::Pop3 => "IXP_E_SICILY_LOGON_FAILED",
    };
    assert!(
        code_names(&bad).contains(&expected),
        "{protocol:?}: expected {expected}\n{}",
        bad.render()
    );
}
