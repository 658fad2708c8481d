//! Sessions per second of the mock endpoints, in-process (the sans-IO cores alone) and
//! over loopback TCP through the lab (16 concurrent clients).
//!
//! IMAP session: LOGIN, SELECT INBOX, FETCH 1:* (FLAGS BODY.PEEK[]), LOGOUT.
//! POP3 session: USER, PASS, STAT, RETR 1, QUIT.
//!
//! Run: `cargo bench -p harness --bench sessions`

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use harness::{Lab, LabConfig, ListenerSpec, Protocol, Security};
use harness_core::imap::ImapServer;
use harness_core::pop3::Pop3Server;
use harness_core::{Output, Profile, ServerSession, SessionContext, World};

use common::{lab_file, run_clients, steps, users, IMAP_STEPS, POP3_STEPS};

const CLIENTS: usize = 16;

/// One whole session in-process: feed each step, drain what the server says.
fn in_process_session(session: &mut dyn ServerSession, steps: &[Vec<u8>]) -> usize {
    let mut written = 0;
    let mut drain = |s: &mut dyn ServerSession| {
        while let Some(out) = s.poll_output() {
            if let Output::Write(b) = out {
                written += b.len();
            }
        }
    };
    drain(session);
    for step in steps {
        session.handle_input(Duration::ZERO, step);
        drain(session);
    }
    assert!(session.is_closed(), "session did not end");
    written
}

fn in_process(c: &mut Criterion) {
    let world: Arc<World> = Arc::new(lab_file(CLIENTS).build().expect("lab"));
    let ctx = SessionContext::new(world, Arc::new(Profile::default_profile()));
    let mut group = c.benchmark_group("in_process");
    group.throughput(Throughput::Elements(1));
    let imap = steps(IMAP_STEPS, "u0");
    group.bench_function("imap_login_select_fetch_logout", |b| {
        b.iter(|| in_process_session(&mut ImapServer::new(ctx.clone()), &imap))
    });
    let pop3 = steps(POP3_STEPS, "u0");
    group.bench_function("pop3_user_pass_stat_retr_quit", |b| {
        b.iter(|| in_process_session(&mut Pop3Server::new(ctx.clone()), &pop3))
    });
    group.finish();
}

fn loopback(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
    let lab = rt
        .block_on(Lab::start(LabConfig {
            lab: lab_file(CLIENTS),
            listeners: vec![
                ListenerSpec::new(Protocol::Imap, Security::Plain, lo),
                ListenerSpec::new(Protocol::Pop3, Security::Plain, lo),
            ],
            ..LabConfig::default()
        }))
        .expect("lab");
    let mut group = c.benchmark_group("loopback_16_clients");
    group.throughput(Throughput::Elements(CLIENTS as u64));
    group.sample_size(20);
    let per_client = users(CLIENTS);
    for (protocol, name) in [
        (Protocol::Imap, "imap_login_select_fetch_logout"),
        (Protocol::Pop3, "pop3_user_pass_stat_retr_quit"),
    ] {
        let addr = lab.addr(protocol, Security::Plain).expect("listener");
        // One iteration = every client runs one session, concurrently.
        group.bench_function(name, |b| {
            b.iter_custom(|iters| rt.block_on(run_clients(addr, protocol, &per_client, iters)))
        });
    }
    group.finish();
    rt.block_on(lab.shutdown());
}

criterion_group!(benches, in_process, loopback);
criterion_main!(benches);
