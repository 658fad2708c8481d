//! Basic-auth sessions per second through the front-end with a warm pool of back-end
//! connections, through a front-end that opens a back-end connection per client session,
//! through the `session-cache` front-end (the warm pool plus parked authenticated IMAP
//! sessions, reused by the same user's next LOGIN; POP3 sessions are never kept), through
//! the `pool-unauthenticate` front-end (IMAP only: the warm pool, whose connections serve
//! client sessions of any users in turn, reset with UNAUTHENTICATE), and straight to the
//! back-end, over loopback, at 1 and 64 concurrent clients. The back-end runs the `default`
//! profile, which offers UNSELECT (the session cache resets with it), with UNAUTHENTICATE
//! (RFC 8437) turned on.
//!
//! The front-ends' hop to the back-end is plain or TLS (implicit TLS to the lab's IMAPS and
//! POP3S listeners, the lab's certificate verified, sessions resumed as rustls does by
//! default; one row without resumption), with an emulated round-trip time of 0, 0.5 or
//! 2 ms (the hop's delay stage). Rows without a suffix are the plain hop without delay,
//! the rows of before; POP3 and `direct` only have the no-delay hops.
//!
//! Group `backend_open`: one back-end connection opened (connect, TLS handshake, greeting)
//! at a time over loopback, plain, TLS with a full handshake and TLS resumed: what a
//! handshake costs the two ends together on this machine.
//!
//! IMAP session: LOGIN, SELECT INBOX, FETCH 1:* (FLAGS BODY.PEEK[]), LOGOUT.
//! POP3 session: USER, PASS, STAT, RETR 1, QUIT.
//!
//! Run: `cargo bench -p harness --bench connection_reuse -- --warm-up-time 1 --measurement-time 3`

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use harness::serve::frontend_host::{BackendLink, BackendTarget, BackendTls, FrontendSpec};
use harness::serve::tls::verifying_client_config;
use harness::{Lab, LabConfig, ListenerSpec, Protocol, Security};
use harness_core::frontend::FrontendProfile;
use harness_core::Profile;

use common::{lab_file, run_clients, users};

const MAX_CLIENTS: usize = 64;

/// The hop from the front-ends to the back-end in one set of rows.
#[derive(Clone, Copy)]
struct Hop {
    tls: bool,
    resumption: bool,
    rtt: Duration,
}

impl Hop {
    const fn new(tls: bool, rtt_us: u64) -> Hop {
        Hop {
            tls,
            resumption: true,
            rtt: Duration::from_micros(rtt_us),
        }
    }

    /// The rows' suffix: none for the plain hop without delay (the rows of before).
    fn suffix(&self) -> String {
        let mut s = String::new();
        if self.tls {
            s.push_str("_tls");
            if !self.resumption {
                s.push_str("_full_handshakes");
            }
        }
        if !self.rtt.is_zero() {
            s.push_str(&format!("_rtt{}ms", self.rtt.as_secs_f64() * 1000.0));
        }
        s
    }

    fn target(&self) -> BackendTarget {
        let tls = self.tls.then_some(BackendTls {
            trusted: None,
            resumption: self.resumption,
        });
        BackendTarget::own(tls, self.rtt)
    }

    fn plain_without_delay(&self) -> bool {
        !self.tls && self.rtt.is_zero()
    }
}

const HOPS: [Hop; 7] = [
    Hop::new(false, 0),
    Hop::new(true, 0),
    Hop {
        resumption: false,
        ..Hop::new(true, 0)
    },
    Hop::new(false, 500),
    Hop::new(true, 500),
    Hop::new(false, 2000),
    Hop::new(true, 2000),
];

/// The front-end routes: the row's name and the profile.
const ROUTES: [(&str, &str); 4] = [
    ("pooled_frontend", "exchange2000-sp1"),
    ("per_session_frontend", "per-session"),
    ("session_cache_frontend", "session-cache"),
    ("pooled_unauthenticate_frontend", "pool-unauthenticate"),
];

/// Whether a route has rows for `protocol`: POP3 has no way back to AUTHORIZATION, so
/// through pool-unauthenticate it is the SP1 pool again.
fn route_serves(name: &str, protocol: Protocol) -> bool {
    name != "pool-unauthenticate" || protocol == Protocol::Imap
}

/// Protocols of a hop's rows: both over hops without delay, IMAP alone over the others.
fn protocols(hop: &Hop) -> &'static [Protocol] {
    if hop.rtt.is_zero() {
        &[Protocol::Imap, Protocol::Pop3]
    } else {
        &[Protocol::Imap]
    }
}

fn listeners() -> Vec<ListenerSpec> {
    let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut listeners = Vec::new();
    for protocol in [Protocol::Imap, Protocol::Pop3] {
        for security in [Security::Plain, Security::ImplicitTls] {
            listeners.push(ListenerSpec::new(protocol, security, lo));
        }
    }
    listeners
}

/// A lab with plain and TLS back-end listeners and the front-ends per protocol over `hop`:
/// one pooled (the SP1 profile, pool sized to the client count), one per-session, one with
/// the session cache (pool and cache sized to the client count), and (IMAP) one reusing
/// pooled connections across client sessions (pool sized as the SP1 one).
async fn start_lab(pool_size: usize, hop: &Hop) -> Lab {
    let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut frontends = Vec::new();
    for &protocol in protocols(hop) {
        for (_, name) in ROUTES {
            if !route_serves(name, protocol) {
                continue;
            }
            let mut profile = FrontendProfile::by_name(name).expect("profile");
            if name != "per-session" {
                // Twice the clients: the pool replaces a connection when its client session
                // ends, so a session must find a second one already open and greeted.
                profile.pool.size = 2 * pool_size;
                profile.pool.cache_size = pool_size;
            }
            frontends.push(FrontendSpec {
                protocol,
                addr: lo,
                profile,
                backend: Some(hop.target()),
            });
        }
    }
    let mut backend = Profile::default_profile();
    backend.imap.unauthenticate = true;
    Lab::start(LabConfig {
        lab: lab_file(MAX_CLIENTS),
        profile: backend,
        listeners: listeners(),
        frontends,
        ..LabConfig::default()
    })
    .await
    .expect("lab")
}

fn connection_reuse(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for clients in [1usize, MAX_CLIENTS] {
        let mut group = c.benchmark_group(format!("connection_reuse_{clients}_clients"));
        group.throughput(Throughput::Elements(clients as u64));
        group.sample_size(10);
        let per_client = users(clients);
        for hop in &HOPS {
            let lab = rt.block_on(start_lab(clients, hop));
            for &protocol in protocols(hop) {
                let mut targets: Vec<(String, SocketAddr)> = ROUTES
                    .iter()
                    .filter(|(route, _)| hop.resumption || *route != "session_cache_frontend")
                    .filter(|(_, name)| route_serves(name, protocol))
                    .map(|(route, name)| {
                        let addr = lab
                            .frontends()
                            .iter()
                            .find(|f| f.spec.protocol == protocol && f.spec.profile.name == *name)
                            .map(|f| f.addr)
                            .expect("front-end");
                        (format!("{route}{}", hop.suffix()), addr)
                    })
                    .collect();
                if hop.plain_without_delay() {
                    let direct = lab.addr(protocol, Security::Plain).expect("back-end");
                    targets.push(("direct".into(), direct));
                }
                for (route, addr) in targets {
                    group.bench_with_input(
                        BenchmarkId::new(protocol.keyword(), route),
                        &addr,
                        |b, &addr| {
                            b.iter_custom(|iters| {
                                rt.block_on(run_clients(addr, protocol, &per_client, iters))
                            })
                        },
                    );
                }
            }
            // Connections opened against client sessions (leased), per front-end.
            for f in lab.frontends() {
                eprintln!(
                    "{clients} clients{}: {} {}: {:?}, TLS handshakes {:?}",
                    hop.suffix(),
                    f.spec.protocol.keyword(),
                    f.spec.profile.name,
                    f.shared.stats(),
                    f.shared.tls_handshakes()
                );
            }
            rt.block_on(lab.shutdown());
        }
        group.finish();
    }
}

/// One back-end connection opened and greeted at a time: plain, TLS with a full
/// handshake, TLS resumed.
fn backend_open(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let lab = rt.block_on(async {
        Lab::start(LabConfig {
            listeners: listeners(),
            ..LabConfig::default()
        })
        .await
        .expect("lab")
    });
    let trusted = [lab.certificate_der().clone()];
    let plain = lab.addr(Protocol::Imap, Security::Plain).expect("imap");
    let tls = lab
        .addr(Protocol::Imap, Security::ImplicitTls)
        .expect("imaps");
    let link = |addr, resumption: Option<bool>| {
        let config =
            resumption.map(|resume| verifying_client_config(&trusted, resume).expect("TLS config"));
        BackendLink::new(Protocol::Imap, addr, Vec::new(), config)
    };
    let links = [
        ("plain", link(plain, None)),
        ("tls_full_handshake", link(tls, Some(false))),
        ("tls_resumed", link(tls, Some(true))),
    ];
    let mut group = c.benchmark_group("backend_open");
    group.sample_size(20);
    for (name, link) in links {
        group.bench_function(BenchmarkId::new("imap", name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let (stream, _greeting) = link.open().await.expect("open");
                        drop(stream);
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
    rt.block_on(lab.shutdown());
}

criterion_group!(benches, connection_reuse, backend_open);
criterion_main!(benches);
