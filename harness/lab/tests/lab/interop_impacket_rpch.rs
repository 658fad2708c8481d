//! Outlook Anywhere (issue #16) against a client nobody here wrote: impacket 0.13.1's
//! `exchanger.py`, unchanged, reaches the lab's RPC over HTTP v2 proxy over TLS on port
//! 443 (its default: `ncacn_http:<host>[6004,RpcProxy=<target>:443]`) and over plain HTTP
//! (`scripts/peers/impacket/exchanger_url.py` points its proxy URL at the lab), with
//! NTLM and with Basic, and lists, dumps and looks up the address book through it; a
//! wrong password gets 401. tshark reads the RTS PDUs of a plain-HTTP capture as RPC over
//! HTTP.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use harness::serve::lab::RpchListenerSpec;
use harness::serve::rpc::{RpcListenerSpec, RpcRole};
use harness::{Lab, LabConfig};

/// Where the TLS listener goes: exchanger.py only speaks HTTPS to port 443, so it gets a
/// loopback address of its own.
const TLS_ADDR: ([u8; 4], u16) = ([127, 0, 43, 16], 443);

/// A lab with the Exchange RPC listener and the proxy over plain HTTP, and over TLS on
/// [`TLS_ADDR`] when `tls` (one test at a time may hold that address).
async fn proxy_lab(tls: bool) -> Lab {
    let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut rpch = vec![RpchListenerSpec {
        addr: lo,
        tls: false,
    }];
    if tls {
        rpch.push(RpchListenerSpec {
            addr: TLS_ADDR.into(),
            tls: true,
        });
    }
    Lab::start(LabConfig {
        listeners: Vec::new(),
        rpc: vec![RpcListenerSpec {
            role: RpcRole::Exchange,
            addr: lo,
        }],
        rpch,
        seed: Some(16),
        ..LabConfig::default()
    })
    .await
    .expect("lab with the RPC proxy starts (port 443 on a loopback address needs root)")
}

/// Runs exchanger.py (through exchanger_url.py when `proxy_url` is given) with `args`;
/// returns (exit code, stdout and stderr together).
async fn exchanger(python: &Path, proxy_url: Option<&str>, args: &[&str]) -> (Option<i32>, String) {
    let root = common::peers::project_root();
    let bin = python.parent().expect("venv bin");
    let mut cmd = tokio::process::Command::new(python);
    match proxy_url {
        Some(url) => {
            cmd.arg(root.join("scripts/peers/impacket/exchanger_url.py"))
                .env("EXCHANGER_PROXY_URL", url)
                .env("EXCHANGER_PATH", bin.join("exchanger.py"));
        }
        None => {
            cmd.arg(bin.join("exchanger.py"));
        }
    }
    cmd.args(args).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("exchanger.py finishes within a minute")
        .expect("exchanger.py runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The objectGUID exchanger printed for `nickname` in a dump.
fn guid_of(dump: &str, nickname: &str) -> Option<String> {
    let mut lines = dump
        .lines()
        .skip_while(|l| *l != format!("mailNickname: {nickname}"));
    lines
        .find_map(|l| l.strip_prefix("objectGUID: "))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanger_lists_dumps_and_looks_up_the_address_book_through_the_proxy() {
    let Some(python) = common::peers::impacket_python() else {
        return;
    };
    let lab = proxy_lab(true).await;
    let tls_host = std::net::Ipv4Addr::from(TLS_ADDR.0).to_string();
    let target = format!("EXAMPLE/alice:secret@{tls_host}");

    // Over TLS on port 443, exactly as exchanger.py runs against Exchange, NTLM.
    let (code, out) = exchanger(&python, None, &[&target, "nspi", "list-tables"]).await;
    assert!(
        code == Some(0) && out.contains("Default Global Address List"),
        "{out}"
    );
    let (code, dump) = exchanger(
        &python,
        None,
        &[
            &target,
            "nspi",
            "dump-tables",
            "-name",
            "Default Global Address List",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{dump}");
    for user in lab.world().directory.principals() {
        let line = format!("mailNickname: {}", user.name);
        assert!(dump.contains(&line), "{line}: {dump}");
    }
    let guid = guid_of(&dump, "alice").unwrap_or_else(|| panic!("alice's GUID in {dump}"));
    let (code, out) = exchanger(
        &python,
        None,
        &[&target, "nspi", "guid-known", "-guid", &guid],
    )
    .await;
    assert!(
        code == Some(0) && out.contains("mailNickname: alice"),
        "{out}"
    );

    // Basic over TLS (exchanger needs the RPC server's name then: NTLM told it before).
    let (code, out) = exchanger(
        &python,
        None,
        &[
            "-basic",
            "-rpc-hostname",
            "MAIL",
            &target,
            "nspi",
            "list-tables",
        ],
    )
    .await;
    assert!(
        code == Some(0) && out.contains("Default Global Address List"),
        "{out}"
    );

    // A wrong password: 401 on the channels, "Wrong credentials".
    let wrong = format!("EXAMPLE/alice:wrong@{tls_host}");
    let (_, out) = exchanger(&python, None, &[&wrong, "nspi", "list-tables"]).await;
    assert!(
        out.contains("401 Unauthorized") && out.contains("Wrong credentials"),
        "{out}"
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanger_reaches_the_proxy_over_plain_http_with_ntlm_and_basic() {
    let Some(python) = common::peers::impacket_python() else {
        return;
    };
    let lab = proxy_lab(false).await;
    let addr = lab.rpch_addr(false).expect("plain proxy listener");
    let url = format!("http://{addr}/rpc/rpcproxy.dll");
    let tshark = common::require_tool("tshark", "scripts/peers/install.sh (tshark)");
    let dir = std::env::temp_dir().join(format!("harness-rpch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("capture dir");
    let pcap = dir.join("rpch.pcap");
    let pcap_s = pcap.to_string_lossy().into_owned();
    let port = addr.port().to_string();
    let capture = tshark.as_ref().map(|_| {
        let pid = crate::interop_impacket_rpc::bash(
            "scripts/peers/tshark/capture.sh",
            &[&pcap_s, "60", &port],
        );
        pid.trim().to_string()
    });
    let target = "EXAMPLE/alice:secret@127.0.0.1";
    for extra in [&[][..], &["-basic", "-rpc-hostname", "MAIL"][..]] {
        let mut args = extra.to_vec();
        args.extend([target, "nspi", "list-tables"]);
        let (code, out) = exchanger(&python, Some(&url), &args).await;
        assert!(
            code == Some(0) && out.contains("Default Global Address List"),
            "{extra:?}: {out}"
        );
    }
    let (_, out) = exchanger(
        &python,
        Some(&url),
        &[
            "-basic",
            "-rpc-hostname",
            "MAIL",
            "EXAMPLE/alice:bad@127.0.0.1",
            "nspi",
            "list-tables",
        ],
    )
    .await;
    assert!(
        out.contains("Basic authentication failed") && out.contains("401"),
        "{out}"
    );
    lab.shutdown().await;

    // The capture: the OUT channel's CONN/A1 as Wireshark's RPC over HTTP dissector names
    // it, the NTLM legs in the HTTP headers, nothing malformed. (The PDUs inside the
    // channels' gigabyte bodies show as HTTP continuation data, or as RTS PDUs when a
    // segment happens to start with one: not checked, it depends on the segmenting.)
    let (Some(tshark), Some(pid)) = (tshark, capture) else {
        return;
    };
    crate::interop_impacket_rpc::bash("scripts/peers/tshark/stop_capture.sh", &[&pid]);
    let out = std::process::Command::new(&tshark)
        .args(["-r", &pcap_s, "-d", &format!("tcp.port=={port},http")])
        .output()
        .expect("tshark runs");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(!summary.contains("Malformed"), "{summary}");
    for shown in [
        "RPC_IN_DATA /rpc/rpcproxy.dll",
        "RPC_OUT_DATA /rpc/rpcproxy.dll",
        "401 Unauthorized , NTLMSSP_CHALLENGE",
        "NTLMSSP_AUTH, User: EXAMPLE\\alice",
        "RPCH",
        "CONN/A1",
    ] {
        assert!(summary.contains(shown), "no {shown:?} in\n{summary}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
