//! The front-end over real sockets, with curl as the client: what KB 306874 says a user
//! sees through each profile, basic logins relayed through the pool, and two users at once
//! never seeing each other's mail.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;

use common::{require_tool, CURL_LOGIN_DENIED};
use harness::serve::frontend_host::FrontendSpec;
use harness::{Lab, LabConfig, Protocol};
use harness_core::frontend::FrontendProfile;

async fn lab_with_frontends(profile: &str) -> Lab {
    let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
    let profile = FrontendProfile::by_name(profile).expect("profile");
    let frontends = [Protocol::Imap, Protocol::Pop3]
        .into_iter()
        .map(|protocol| FrontendSpec {
            protocol,
            addr: lo,
            profile: profile.clone(),
            backend: None,
        })
        .collect();
    Lab::start(LabConfig {
        frontends,
        ..LabConfig::default()
    })
    .await
    .expect("lab with front-ends")
}

fn urls(lab: &Lab) -> (String, String) {
    (
        format!(
            "imap://{}/INBOX?ALL",
            lab.frontend_addr(Protocol::Imap).unwrap()
        ),
        format!("pop3://{}/", lab.frontend_addr(Protocol::Pop3).unwrap()),
    )
}

/// curl logging in as alice with NTLM, the protocol trace on stderr.
async fn alice_with_ntlm(curl: &Path, url: &str) -> common::Ran {
    let options = ["-v", "--login-options", "AUTH=NTLM"];
    common::curl(curl, url, "alice:secret", &options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sp1_front_end_offers_no_ntlm_and_basic_still_works() {
    let Some(curl) = require_tool("curl", "apt-get install curl") else {
        return;
    };
    let lab = lab_with_frontends("exchange2000-sp1").await;
    let (imap, pop3) = urls(&lab);
    for url in [&imap, &pop3] {
        let r = alice_with_ntlm(&curl, url).await;
        assert_eq!(r.code, Some(CURL_LOGIN_DENIED), "{url}: {r:?}");
        assert!(
            r.stderr
                .contains("No known authentication mechanisms supported"),
            "{url}: {r:?}"
        );
        let basic = common::curl(&curl, url, "alice:secret", &[]).await;
        assert!(basic.ok(), "{url}: {basic:?}");
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_front_end_lets_ntlm_through_and_rtm_does_not() {
    let Some(curl) = require_tool("curl", "apt-get install curl") else {
        return;
    };
    for (profile, works) in [("affinity", true), ("exchange2000-rtm", false)] {
        let lab = lab_with_frontends(profile).await;
        let (imap, pop3) = urls(&lab);
        for url in [&imap, &pop3] {
            let r = alice_with_ntlm(&curl, url).await;
            if works {
                assert!(r.ok(), "{profile} {url}: {r:?}");
            } else {
                // The back-end's NTLM acceptor refuses the split handshake: curl is told no.
                assert_eq!(r.code, Some(CURL_LOGIN_DENIED), "{profile} {url}: {r:?}");
                assert!(
                    r.stderr.contains("NTLM"),
                    "{profile} {url}: NTLM was offered and tried: {r:?}"
                );
            }
        }
        lab.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_are_reused_and_users_stay_apart() {
    let Some(curl) = require_tool("curl", "apt-get install curl") else {
        return;
    };
    // SP1: the same pool as RTM, and no NTLM on offer, so curl logs in with LOGIN (through
    // RTM curl would pick the advertised NTLM and fail, as KB 306874 says).
    let lab = lab_with_frontends("exchange2000-sp1").await;
    let fe_imap = lab.frontend_addr(Protocol::Imap).unwrap();
    // Alice and bob at the same time, several rounds, each fetching message 1.
    for _ in 0..3 {
        let a_url = format!("imap://{fe_imap}/INBOX;UID=1");
        let b_url = a_url.clone();
        let (a, b) = tokio::join!(
            common::curl(&curl, &a_url, "alice:secret", &[]),
            common::curl(&curl, &b_url, "bob:hunter2", &[])
        );
        assert!(a.ok() && b.ok(), "{a:?}\n{b:?}");
        assert!(
            a.stdout.contains("Hello alice,") && !a.stdout.contains("bob"),
            "{a:?}"
        );
        assert!(
            b.stdout.contains("Hello bob,") && !b.stdout.contains("alice"),
            "{b:?}"
        );
    }
    let stats = lab
        .frontends()
        .iter()
        .find(|f| f.spec.protocol == Protocol::Imap)
        .unwrap()
        .shared
        .stats();
    assert!(
        stats.idle_acquired >= 6,
        "logins were served from warm idle connections: {stats:?}"
    );
    assert_eq!(
        stats.fresh_acquired, 0,
        "no client waited for a fresh connection: {stats:?}"
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cache_serves_the_second_curl_from_the_parked_back_end_session() {
    let Some(curl) = require_tool("curl", "apt-get install curl") else {
        return;
    };
    let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
    let lab = Lab::start(LabConfig {
        // The back-end must offer UNSELECT for the front-end to reset a kept session.
        profile: harness_core::Profile::default_profile(),
        frontends: vec![FrontendSpec {
            protocol: Protocol::Imap,
            addr: lo,
            profile: FrontendProfile::by_name("session-cache").expect("profile"),
            backend: None,
        }],
        ..LabConfig::default()
    })
    .await
    .expect("lab");
    let fe = lab.frontends()[0].shared.clone();
    let url = format!(
        "imap://{}/INBOX;UID=1",
        lab.frontend_addr(Protocol::Imap).unwrap()
    );
    let fetch = |user: &'static str| {
        let url = url.clone();
        let curl = curl.clone();
        async move { common::curl(&curl, &url, user, &[]).await }
    };
    let first = fetch("alice:secret").await;
    assert!(
        first.ok() && first.stdout.contains("Hello alice,"),
        "{first:?}"
    );
    // curl logged out: the back-end session is parked, not closed.
    assert_eq!(fe.cached_sessions(), 1, "{:?}", fe.cache_stats());
    // A wrong password is refused by the back-end and leaves the parked session alone.
    let wrong = fetch("alice:nope").await;
    assert!(!wrong.ok() && wrong.stdout.is_empty(), "{wrong:?}");
    assert_eq!(fe.cached_sessions(), 1);
    // Bob gets a back-end login of his own.
    let bob = fetch("bob:hunter2").await;
    assert!(
        bob.ok() && bob.stdout.contains("Hello bob,") && !bob.stdout.contains("alice"),
        "{bob:?}"
    );
    let second = fetch("alice:secret").await;
    assert!(
        second.ok() && second.stdout.contains("Hello alice,"),
        "{second:?}"
    );
    let cache = fe.cache_stats();
    assert_eq!(
        (cache.hits, cache.misses),
        (1, 3),
        "the second alice came from the cache: {cache:?}"
    );
    let pool = fe.stats();
    assert_eq!(pool.leased, 3, "alice, bob, alice again: {pool:?}");
    // Three logins went to the back-end on pooled connections (alice, wrong, bob); the
    // second alice did not take one.
    assert_eq!(pool.idle_acquired + pool.fresh_acquired, 3, "{pool:?}");
    lab.shutdown().await;
    assert_eq!(fe.cached_sessions(), 0, "closed at shutdown");
}
