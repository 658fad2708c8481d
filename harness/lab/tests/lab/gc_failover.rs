//! GC failover over sockets (issue 19): the global catalogs' listeners really stop and
//! start, and every case of `corpus/scenarios/gc-failover.toml` gives over sockets what it
//! gives in process, call by call.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use harness::serve::gc::GcSpec;
use harness::{Lab, LabConfig};
use harness_core::gc::GcState;
use harness_core::scenario::{frontend_topology, run_case, ScenarioFile};

fn scenario() -> ScenarioFile {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../corpus/scenarios/gc-failover.toml"
    );
    ScenarioFile::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_over_sockets_equals_its_run_in_process() {
    let scenario = scenario();
    let mut compared = 0;
    for case in scenario.cases() {
        let here = run_case(&scenario, &case, &frontend_topology).unwrap();
        let there = harness::tools::scenario::run_case(&scenario, &case)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.id()));
        assert!(there.passed(), "{}", there.render(&scenario));
        assert_eq!(there.calls, here.calls, "{}", case.id());
        let steps = |o: &harness_core::scenario::CaseOutcome| {
            o.session.as_ref().map(|s| s.render()).unwrap_or_default()
        };
        pretty_assertions::assert_eq!(steps(&there), steps(&here), "{}", case.id());
        assert_eq!(there.trace, here.trace, "{}", case.id());
        compared += 1;
    }
    assert_eq!(compared, 32);
}

fn refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_catalog_stops_and_starts_again_on_its_port() {
    let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
    let lab = Lab::start(LabConfig {
        listeners: Vec::new(),
        gcs: vec![
            GcSpec {
                name: "gc1".into(),
                addr: lo,
            },
            GcSpec {
                name: "gc2".into(),
                addr: lo,
            },
        ],
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let gcs = lab.gcs().unwrap().clone();
    let addrs = gcs.addrs().await;
    assert_eq!(
        addrs
            .iter()
            .map(|(n, f, _)| (n.as_str(), f.as_str()))
            .collect::<Vec<_>>(),
        [("gc1", "gc1.example.test"), ("gc2", "gc2.example.test")]
    );
    let gc1 = addrs[0].2;
    let gc2 = addrs[1].2;
    // A connection open when the catalog stops is ended by the server.
    let mut open = TcpStream::connect(gc1).unwrap();
    gcs.set_state("gc1", GcState::Down).await.unwrap();
    assert_eq!(gcs.state("gc1").await, Some(GcState::Down));
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The association says goodbye with a shutdown PDU ([C706] 12.6.4.8, PTYPE 17), then
    // the connection ends.
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut open, &mut got).unwrap();
    assert_eq!(got.len(), 16, "{got:?}");
    assert_eq!((got[0], got[2]), (5, 17), "{got:?}");
    let check = tokio::task::spawn_blocking(move || (refused(gc1), refused(gc2)));
    assert_eq!(check.await.unwrap(), (true, false));
    // Shutting down brings the listener back (its address book is gone), on the same port.
    gcs.set_state("gc1", GcState::ShuttingDown).await.unwrap();
    let check = tokio::task::spawn_blocking(move || refused(gc1));
    assert!(!check.await.unwrap());
    gcs.set_state("gc1", GcState::Up).await.unwrap();
    assert!(gcs.set_state("gc9", GcState::Up).await.is_err());
    lab.shutdown().await;
    let check = tokio::task::spawn_blocking(move || (refused(gc1), refused(gc2)));
    assert_eq!(check.await.unwrap(), (true, true));
}
