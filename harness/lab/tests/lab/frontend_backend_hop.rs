//! The hop from a front-end to its back-end over sockets: TLS to the lab's IMAPS / POP3S
//! listeners (the certificate verified), an emulated round-trip time, and both from a lab
//! file. Timing checks are lower bounds where the delay is the point (a delay cannot make
//! a round trip shorter) and generous upper bounds elsewhere.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use harness::frontend::{BackendTarget, BackendTls, FrontendSpec};
use harness::serve::hop::{self, HopStage};
use harness::tools::load::{play_session, UserSpec};
use harness::{Lab, LabConfig, LabError, ListenerSpec, Protocol, Security};
use harness_core::frontend::FrontendProfile;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const LO: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

fn alice() -> UserSpec {
    UserSpec {
        user: "alice".into(),
        password: "secret".into(),
    }
}

fn frontend(protocol: Protocol, profile: &str, backend: BackendTarget) -> FrontendSpec {
    FrontendSpec {
        protocol,
        addr: LO.into(),
        profile: FrontendProfile::by_name(profile).expect("profile"),
        backend: Some(backend),
    }
}

/// A lab with every listener (plain and implicit TLS) and the front-ends given.
async fn lab_with(frontends: Vec<FrontendSpec>) -> Result<Lab, LabError> {
    let lo: SocketAddr = LO.into();
    Lab::start(LabConfig {
        listeners: vec![
            ListenerSpec::new(Protocol::Imap, Security::Plain, lo),
            ListenerSpec::new(Protocol::Pop3, Security::Plain, lo),
            ListenerSpec::new(Protocol::Imap, Security::ImplicitTls, lo),
            ListenerSpec::new(Protocol::Pop3, Security::ImplicitTls, lo),
        ],
        frontends,
        ..LabConfig::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_ends_reach_the_labs_tls_listeners_pooled_and_per_session() {
    let tls = || BackendTarget::own(Some(BackendTls::default()), Duration::ZERO);
    let mut frontends = Vec::new();
    for protocol in [Protocol::Imap, Protocol::Pop3] {
        for profile in ["exchange2000-sp1", "per-session", "session-cache"] {
            frontends.push(frontend(protocol, profile, tls()));
        }
    }
    let lab = lab_with(frontends).await.expect("lab");
    for f in lab.frontends() {
        let tls_listener = lab.addr(f.spec.protocol, Security::ImplicitTls);
        assert_eq!(Some(f.backend), tls_listener, "{}", f.spec.profile.name);
        for round in 0..3 {
            play_session(f.addr, f.spec.protocol, &alice(), Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{} {} round {round}: {e}",
                        f.spec.protocol, f.spec.profile.name
                    )
                });
        }
        // The probe at start is the first, full handshake; later ones resume.
        let handshakes = f.shared.tls_handshakes();
        assert!(
            handshakes.full >= 1 && handshakes.resumed >= 1,
            "{} {}: {handshakes:?}",
            f.spec.protocol,
            f.spec.profile.name
        );
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_hop_verifies_the_certificate() {
    // Another lab's certificate is not this lab's: the front-end must refuse the
    // back-end, so the lab does not start.
    let other = lab_with(Vec::new()).await.expect("other lab");
    let dir = std::env::temp_dir().join(format!("harness-hop-trust-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pem = dir.join("other.pem");
    std::fs::write(&pem, other.certificate_pem()).expect("pem");
    let wrong = BackendTarget {
        tls: Some(BackendTls {
            trusted: Some(pem.clone()),
            resumption: true,
        }),
        ..BackendTarget::default()
    };
    let refused = lab_with(vec![frontend(Protocol::Imap, "per-session", wrong)]).await;
    match refused {
        Err(LabError::Backend { source, .. }) => {
            assert!(source.to_string().contains("certificate"), "{source}")
        }
        other => panic!("{:?}", other.err()),
    }
    // Trusting the other lab's certificate reaches the other lab's IMAPS listener.
    let right = BackendTarget {
        addr: other.addr(Protocol::Imap, Security::ImplicitTls),
        tls: Some(BackendTls {
            trusted: Some(pem),
            resumption: false,
        }),
        stages: Vec::new(),
    };
    let lab = lab_with(vec![frontend(Protocol::Imap, "per-session", right)])
        .await
        .expect("lab trusting the other lab");
    let fe = lab.frontend_addr(Protocol::Imap).expect("front-end");
    play_session(fe, Protocol::Imap, &alice(), Duration::from_secs(10))
        .await
        .expect("session through the front-end to the other lab");
    lab.shutdown().await;
    other.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn bob() -> UserSpec {
    UserSpec {
        user: "bob".into(),
        password: "hunter2".into(),
    }
}

/// pool-unauthenticate over the TLS hop to a lab whose IMAP offers UNAUTHENTICATE: many
/// client sessions of two users, sequential and concurrent, on a few back-end connections
/// (each one handshake), against one handshake per session for the SP1 pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_unauthenticate_reuses_tls_connections_across_client_sessions() {
    let tls = || BackendTarget::own(Some(BackendTls::default()), Duration::ZERO);
    let mut recycling = frontend(Protocol::Imap, "pool-unauthenticate", tls());
    recycling.profile.pool.size = 2;
    let mut pooled = frontend(Protocol::Imap, "exchange2000-sp1", tls());
    pooled.profile.pool.size = 2;
    let lo: SocketAddr = LO.into();
    let mut config = LabConfig {
        listeners: vec![ListenerSpec::new(Protocol::Imap, Security::ImplicitTls, lo)],
        frontends: vec![recycling, pooled],
        ..LabConfig::default()
    };
    config.profile.imap.unauthenticate = true;
    let lab = Lab::start(config).await.expect("lab");
    const SEQUENTIAL: usize = 12;
    const CLIENTS: usize = 4;
    const ROUNDS: usize = 3;
    let mut counts = Vec::new();
    for f in lab.frontends() {
        let name = f.spec.profile.name.clone();
        for i in 0..SEQUENTIAL {
            let user = if i % 2 == 0 { alice() } else { bob() };
            play_session(f.addr, Protocol::Imap, &user, Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| panic!("{name} session {i}: {e}"));
        }
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let addr = f.addr;
            tasks.push(tokio::spawn(async move {
                for round in 0..ROUNDS {
                    let user = if (c + round) % 2 == 0 { alice() } else { bob() };
                    play_session(addr, Protocol::Imap, &user, Duration::from_secs(10))
                        .await
                        .map_err(|e| format!("client {c} round {round}: {e}"))?;
                }
                Ok::<(), String>(())
            }));
        }
        for t in tasks {
            t.await
                .expect("task")
                .unwrap_or_else(|e| panic!("{name} {e}"));
        }
        // (The session gives its connection back before it writes the LOGOUT answer.)
        let stats = f.shared.stats();
        let handshakes = f.shared.tls_handshakes();
        counts.push((name, stats, handshakes.full + handshakes.resumed));
    }
    let sessions = (SEQUENTIAL + CLIENTS * ROUNDS) as u64;
    let (_, recycled, recycled_handshakes) = &counts[0];
    assert_eq!(recycled.leased, sessions, "{counts:#?}");
    // A pool of 2, plus what the concurrent clients opened on demand: each session
    // after the first ones got a recycled connection.
    assert!(recycled.opened <= 2 + CLIENTS as u64, "{counts:#?}");
    // Every session's connection went back to the pool, or was closed because the idle
    // list (2) was full when a concurrent client gave its one back.
    assert_eq!(recycled.recycled + recycled.closed, sessions, "{counts:#?}");
    assert!(recycled.closed <= CLIENTS as u64, "{counts:#?}");
    // One handshake per connection opened, and one for the probe at start.
    assert_eq!(*recycled_handshakes, recycled.opened + 1, "{counts:#?}");
    // The SP1 pool: every session cost a connection and its handshake.
    let (_, pooled, pooled_handshakes) = &counts[1];
    assert_eq!(pooled.leased, sessions, "{counts:#?}");
    assert!(pooled.opened >= sessions, "{counts:#?}");
    assert!(*pooled_handshakes > sessions, "{counts:#?}");
    lab.shutdown().await;
}

/// Reads one line; the time it took to come.
async fn line(reader: &mut BufReader<TcpStream>) -> String {
    let mut text = String::new();
    let read = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut text));
    assert!(matches!(read.await, Ok(Ok(n)) if n > 0), "no line");
    text
}

/// The shortest of a few LOGIN round trips through a warm pooled front-end (pool of 1:
/// each login finds a greeted back-end connection, so the round trip is LOGIN's own).
async fn shortest_login(rtt: Duration) -> Duration {
    let target = BackendTarget {
        stages: vec![HopStage::round_trip(rtt)],
        ..BackendTarget::default()
    };
    let mut spec = frontend(Protocol::Imap, "exchange2000-sp1", target);
    spec.profile.pool.size = 1;
    let lab = lab_with(vec![spec]).await.expect("lab");
    let fe = lab.frontend_addr(Protocol::Imap).expect("front-end");
    let mut shortest = Duration::MAX;
    for _ in 0..5 {
        // Let the pool open and greet its connection.
        tokio::time::sleep(rtt * 3 + Duration::from_millis(20)).await;
        let mut client = BufReader::new(TcpStream::connect(fe).await.expect("connect"));
        assert!(line(&mut client).await.starts_with("* OK"));
        let sent = Instant::now();
        client
            .get_mut()
            .write_all(b"a LOGIN alice secret\r\n")
            .await
            .expect("write");
        let mut reply = line(&mut client).await;
        while !reply.starts_with("a ") {
            reply = line(&mut client).await;
        }
        let took = sent.elapsed();
        assert!(reply.starts_with("a OK"), "{reply}");
        shortest = shortest.min(took);
        client
            .get_mut()
            .write_all(b"b LOGOUT\r\n")
            .await
            .expect("write");
    }
    lab.shutdown().await;
    shortest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_crosses_the_hops_round_trip() {
    let rtt = Duration::from_millis(20);
    let delayed = shortest_login(rtt).await;
    assert!(delayed >= rtt, "{delayed:?} through a {rtt:?} hop");
    assert!(delayed < Duration::from_secs(2), "{delayed:?}");
    let undelayed = shortest_login(Duration::ZERO).await;
    assert!(undelayed < rtt, "{undelayed:?} through a plain hop");
}

/// An echo server on loopback: what it reads, it writes back.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind(SocketAddr::from(LO)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delay_keeps_order_and_lets_chunks_overlap() {
    const CHUNKS: usize = 20;
    let rtt = Duration::from_millis(20);
    let addr = echo_server().await;
    let started = Instant::now();
    let stream = hop::connect(addr, &[HopStage::round_trip(rtt)])
        .await
        .expect("connect");
    assert!(started.elapsed() >= rtt, "connecting crosses the hop once");
    let (mut reader, mut writer) = tokio::io::split(stream);
    let sent = Instant::now();
    let write = async {
        for i in 0..CHUNKS {
            writer
                .write_all(format!("chunk {i:02}\n").as_bytes())
                .await
                .expect("write");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let read = async {
        let mut echoed = vec![0u8; CHUNKS * 9];
        reader.read_exact(&mut echoed).await.expect("echo");
        echoed
    };
    let ((), echoed) = tokio::join!(write, read);
    let took = sent.elapsed();
    let expected: String = (0..CHUNKS).map(|i| format!("chunk {i:02}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&echoed), expected);
    assert!(took >= rtt, "{took:?}");
    // In series the chunks would take CHUNKS round trips (400 ms).
    assert!(
        took < rtt * CHUNKS as u32 / 2,
        "{took:?}: chunks waited for each other"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_ends_from_a_lab_file_with_tls_and_a_round_trip() {
    let dir = std::env::temp_dir().join(format!("harness-hop-labfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("lab.toml");
    std::fs::write(
        &path,
        "domain = \"example.test\"\n\
         [[user]]\nname = \"alice\"\npassword = \"secret\"\n\
         [[frontend]]\nprotocol = \"imap\"\nlisten = \"127.0.0.1:0\"\n\
         profile = \"exchange2000-sp1\"\npool_size = 2\n\
         [frontend.backend]\ntls = true\nresumption = false\nrtt_ms = 2\n\
         [[frontend]]\nprotocol = \"pop3\"\nlisten = \"127.0.0.1:0\"\n",
    )
    .expect("lab file");
    let (lab_file, frontends) =
        harness::serve::labfile::load_with_frontends(&path).expect("lab file loads");
    assert_eq!(frontends.len(), 2);
    let imap = &frontends[0];
    assert_eq!(imap.profile.name, "exchange2000-sp1");
    assert_eq!(imap.profile.pool.size, 2);
    let hop = imap.backend.clone().expect("imap hop");
    assert_eq!(hop.tls.map(|t| t.resumption), Some(false));
    assert_eq!(hop::one_way_delay(&hop.stages), Duration::from_millis(1));
    assert_eq!(
        frontends[1].backend, None,
        "no [frontend.backend]: the plain hop"
    );
    let lo: SocketAddr = LO.into();
    let lab = Lab::start(LabConfig {
        lab: lab_file,
        listeners: vec![
            ListenerSpec::new(Protocol::Imap, Security::ImplicitTls, lo),
            ListenerSpec::new(Protocol::Pop3, Security::Plain, lo),
        ],
        frontends,
        ..LabConfig::default()
    })
    .await
    .expect("lab");
    for protocol in [Protocol::Imap, Protocol::Pop3] {
        let fe = lab.frontend_addr(protocol).expect("front-end");
        play_session(fe, protocol, &alice(), Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{protocol}: {e}"));
    }
    lab.shutdown().await;
    std::fs::write(
        &path,
        "[[frontend]]\nprotocol = \"imap\"\nlisten = \"127.0.0.1:0\"\n\
         [frontend.backend]\nresumption = false\n",
    )
    .expect("lab file");
    let refused = harness::serve::labfile::load_with_frontends(&path);
    assert!(
        matches!(
            refused,
            Err(harness::serve::labfile::LoadError::BadFrontend { .. })
        ),
        "{:?}",
        refused.err()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_hop_resumes_sessions_unless_told_not_to() {
    use rustls::pki_types::ServerName;
    use rustls::HandshakeKind;
    let lab = lab_with(Vec::new()).await.expect("lab");
    let imaps = lab
        .addr(Protocol::Imap, Security::ImplicitTls)
        .expect("imaps");
    let trusted = [lab.certificate_der().clone()];
    for (resumption, second) in [(true, HandshakeKind::Resumed), (false, HandshakeKind::Full)] {
        let config =
            harness::serve::tls::verifying_client_config(&trusted, resumption).expect("TLS config");
        let connector = tokio_rustls::TlsConnector::from(config);
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let tcp = TcpStream::connect(imaps).await.expect("connect");
            let name = ServerName::IpAddress(imaps.ip().into());
            let tls = connector.connect(name, tcp).await.expect("handshake");
            let mut tls = BufReader::new(tls);
            // The greeting comes after the server's session tickets.
            let mut greeting = String::new();
            tls.read_line(&mut greeting).await.expect("greeting");
            assert!(greeting.starts_with("* OK"), "{greeting}");
            kinds.push(tls.get_ref().get_ref().1.handshake_kind());
        }
        assert_eq!(
            kinds,
            [Some(HandshakeKind::Full), Some(second)],
            "resumption {resumption}"
        );
    }
    lab.shutdown().await;
}
