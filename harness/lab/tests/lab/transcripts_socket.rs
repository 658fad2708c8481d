//! The same transcripts that play in-process (`corpus/sessions/`) play over real sockets
//! against a fresh lab each, through `harness::tools::play::SocketTransport`.

use crate::common;

use std::time::Duration;

use harness::tools::play::SocketTransport;
use harness::{Lab, LabConfig, Protocol, Security};
use harness_core::script;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transcript_passes_over_sockets_against_the_lab() {
    let mut played = 0;
    for (proto, protocol) in [("imap", Protocol::Imap), ("pop3", Protocol::Pop3)] {
        for file in common::transcripts(proto) {
            let text = std::fs::read_to_string(&file).unwrap();
            let parsed = script::parse(&text).unwrap();
            let mut config = LabConfig::default();
            for name in &parsed.offers {
                assert!(config.profile.offer(name), "{}: @offer", file.display());
            }
            let lab = Lab::start(config).await.unwrap();
            let addr = lab.addr(protocol, Security::Plain).unwrap();
            let report = tokio::task::spawn_blocking(move || {
                let mut transport = SocketTransport::new(addr, Duration::from_secs(3));
                script::play(&parsed, &Default::default(), &mut transport)
            })
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(
                report.passed(),
                "{}:\n{}",
                file.display(),
                report.transcript()
            );
            played += 1;
            lab.shutdown().await;
        }
    }
    assert!(played >= 7, "played {played}");
}
