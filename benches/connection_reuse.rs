//! Basic-auth sessions per second through the front-end with a warm pool of back-end
//! connections, through a front-end that opens a back-end connection per client session,
//! through the `session-cache` front-end (the warm pool plus parked authenticated IMAP
//! sessions, reused by the same user's next LOGIN; POP3 sessions are never kept), and
//! straight to the back-end, over loopback, at 1 and 64 concurrent clients. The back-end
//! runs the `default` profile, which offers UNSELECT (the session cache resets with it).
//!
//! IMAP session: LOGIN, SELECT INBOX, FETCH 1:* (FLAGS BODY.PEEK[]), LOGOUT.
//! POP3 session: USER, PASS, STAT, RETR 1, QUIT.
//!
//! Run: `cargo bench -p harness --bench connection_reuse`

mod common;

use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use harness::serve::frontend_host::FrontendSpec;
use harness::{Lab, LabConfig, ListenerSpec, Protocol, Security};
use harness_core::frontend::FrontendProfile;
use harness_core::Profile;

use common::{lab_file, run_clients, users};

const MAX_CLIENTS: usize = 64;

/// A lab with plain back-end listeners and three front-ends per protocol: one pooled (the
/// SP1 profile, pool sized to the client count), one per-session, and one with the session
/// cache (pool and cache sized to the client count).
async fn start_lab(pool_size: usize) -> Lab {
    let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut pooled = FrontendProfile::by_name("exchange2000-sp1").expect("profile");
    pooled.pool.size = pool_size;
    let per_session = FrontendProfile::by_name("per-session").expect("profile");
    let mut cached = FrontendProfile::by_name("session-cache").expect("profile");
    cached.pool.size = pool_size;
    cached.pool.cache_size = pool_size;
    let mut frontends = Vec::new();
    for protocol in [Protocol::Imap, Protocol::Pop3] {
        for profile in [&pooled, &per_session, &cached] {
            frontends.push(FrontendSpec {
                protocol,
                addr: lo,
                profile: profile.clone(),
                backend: None,
            });
        }
    }
    Lab::start(LabConfig {
        lab: lab_file(MAX_CLIENTS),
        profile: Profile::default_profile(),
        listeners: vec![
            ListenerSpec::new(Protocol::Imap, Security::Plain, lo),
            ListenerSpec::new(Protocol::Pop3, Security::Plain, lo),
        ],
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
        let lab = rt.block_on(start_lab(clients));
        let mut group = c.benchmark_group(format!("connection_reuse_{clients}_clients"));
        group.throughput(Throughput::Elements(clients as u64));
        group.sample_size(10);
        let per_client = users(clients);
        for protocol in [Protocol::Imap, Protocol::Pop3] {
            let fe = |name: &str| {
                lab.frontends()
                    .iter()
                    .find(|f| f.spec.protocol == protocol && f.spec.profile.name == name)
                    .map(|f| f.addr)
                    .expect("front-end")
            };
            let targets = [
                ("pooled_frontend", fe("exchange2000-sp1")),
                ("per_session_frontend", fe("per-session")),
                ("session_cache_frontend", fe("session-cache")),
                (
                    "direct",
                    lab.addr(protocol, Security::Plain).expect("back-end"),
                ),
            ];
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
        group.finish();
        rt.block_on(lab.shutdown());
    }
}

criterion_group!(benches, connection_reuse);
criterion_main!(benches);
