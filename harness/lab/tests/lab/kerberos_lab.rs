//! The lab's KDC (`harness serve --kdc`) under MIT's own client tools: the standard flows
//! of [`krb5::standard_flows`] (kinit with pre-authentication over UDP and TCP, a wrong
//! password, an unknown client, kvno of each kind of service and of an unknown one, klist
//! flags with and without forwardable), and their outcomes compared with MIT's KDC's
//! (`kerberos_mit::mit_outcomes`) flow by flow. Every difference is a `[[kdc_deviation]]`
//! with its reason in `corpus/known-deviations.toml`.

use crate::common;
use crate::kerberos_mit::mit_outcomes;

use common::krb5;
use harness::{Lab, LabConfig};
use pretty_assertions::assert_eq;

const REALM: &str = "EXAMPLE.TEST";

#[derive(Debug, serde::Deserialize)]
struct Deviations {
    #[serde(default)]
    kdc_deviation: Vec<KdcDeviation>,
}

#[derive(Debug, serde::Deserialize)]
struct KdcDeviation {
    mit: String,
    lab: String,
    reason: String,
}

pub(crate) async fn kdc_lab() -> Lab {
    Lab::start(LabConfig {
        listeners: Vec::new(),
        kdc: Some(([127, 0, 0, 1], 0).into()),
        seed: Some(1),
        ..LabConfig::default()
    })
    .await
    .expect("lab with a KDC")
}

#[tokio::test]
async fn the_lab_kdc_answers_mits_tools_as_mits_kdc_does() {
    let lab = kdc_lab().await;
    let addr = lab.kdc_addr().expect("kdc");
    let flows = krb5::standard_flows(addr, REALM).await;
    lab.shutdown().await;
    let Some(flows) = flows else { return };

    let text =
        std::fs::read_to_string(common::peers::project_root().join("corpus/known-deviations.toml"))
            .expect("known-deviations.toml");
    let deviations: Deviations = toml::from_str(&text).expect("known-deviations.toml parses");
    let mut used = vec![false; deviations.kdc_deviation.len()];
    let expected: Vec<(String, String)> = mit_outcomes()
        .into_iter()
        .map(|(flow, mut outcome)| {
            for (i, d) in deviations.kdc_deviation.iter().enumerate() {
                assert!(!d.reason.is_empty(), "a deviation needs a reason");
                if outcome.contains(&d.mit) {
                    outcome = outcome.replace(&d.mit, &d.lab);
                    used[i] = true;
                }
            }
            (flow, outcome)
        })
        .collect();
    assert_eq!(flows, expected);
    for (d, used) in deviations.kdc_deviation.iter().zip(used) {
        assert!(used, "a listed deviation no longer applies: {d:?}");
    }
}

/// Bad input on the KDC's sockets: garbage over UDP gets a KRB-ERROR; over TCP a length
/// prefix past the bound (or with the reserved bit) gets KRB_ERR_FIELD_TOOLONG and a close
/// before anything is buffered; a half-sent record does not stop other clients; and
/// kinit still works afterwards.
#[tokio::test]
async fn bad_input_gets_krb_errors_and_holds_nothing() {
    use harness_core::kerberos::{client, err, frame};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let lab = kdc_lab().await;
    let addr = lab.kdc_addr().expect("kdc");
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    udp.send_to(b"GET / HTTP/1.1\r\n\r\n", addr)
        .await
        .expect("send");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), udp.recv(&mut buf))
        .await
        .expect("an answer within 5 s")
        .expect("recv");
    assert_eq!(
        client::read_error(&buf[..n]).map(|e| e.0),
        Some(err::MSG_TYPE)
    );

    // A record that claims 16 MiB, and one with the reserved bit.
    for prefix in [0x0100_0000u32.to_be_bytes(), 0x8000_0010u32.to_be_bytes()] {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        tcp.write_all(&prefix).await.expect("write");
        let mut reply = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tcp.read_to_end(&mut reply),
        )
        .await
        .expect("closed within 5 s")
        .expect("read");
        let frame::Record::Message(message) = frame::take_record(&mut reply) else {
            panic!("no record in {reply:?}");
        };
        assert_eq!(
            client::read_error(&message).map(|e| e.0),
            Some(err::FIELD_TOOLONG)
        );
    }

    // A client that sends half a record and waits does not hold up the others.
    let mut stalled = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    stalled.write_all(&[0, 0, 1, 0, 0x6a]).await.expect("write");
    if let Some(env) =
        common::krb5::KrbClientEnv::new(REALM, addr, common::krb5::KdcTransport::TcpOnly)
    {
        let ok = env.kinit("alice", "secret", true).await;
        assert!(ok.ok(), "{ok:?}");
    }
    drop(stalled);
    lab.shutdown().await;
}
