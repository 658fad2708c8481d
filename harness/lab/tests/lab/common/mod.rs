//! Shared by the integration tests: finding real client tools, running them bounded in
//! time, and starting a lab.
#![allow(dead_code)]

pub mod krb5;
pub mod peers;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use harness::{Lab, LabConfig, ListenerSpec, Protocol, Security};
use harness_core::Profile;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The tool on PATH, or `None` with a message saying it was skipped. Under `CI=true` a
/// missing tool is a failure, not a skip: CI installs every client the tests use.
pub fn require_tool(name: &str, install_hint: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let msg = format!("{name} is not installed (install: {install_hint})");
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg}; CI must provide it");
        }
        eprintln!("SKIPPED: {msg}");
    }
    found
}

pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs a command with a 30 s bound; a command that overruns is killed and the test fails.
pub async fn run(program: &Path, args: &[&str]) -> Ran {
    let mut command = tokio::process::Command::new(program);
    command.args(args);
    run_bounded(command, None, Duration::from_secs(30))
        .await
        .unwrap_or_else(|| {
            panic!(
                "{} {:?} did not finish within 30 s",
                program.display(),
                args
            )
        })
}

/// Runs `command` with `input` written to its stdin (then closed; no input: /dev/null) and
/// its stdout and stderr taken. A child still running after `limit` is killed by its PID
/// (SIGKILL) and reaped, and the answer is `None`.
pub async fn run_bounded(
    mut command: tokio::process::Command,
    input: Option<&[u8]>,
    limit: Duration,
) -> Option<Ran> {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap_or_else(|e| {
        panic!(
            "spawning {}: {e}",
            command.as_std().get_program().to_string_lossy()
        )
    });
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let write = async move {
        if let (Some(mut pipe), Some(bytes)) = (stdin, input) {
            // A child that exits without reading its input is not an error here.
            let _ = pipe.write_all(bytes).await;
        }
    };
    let all = async {
        let ((), out, err, status) =
            tokio::join!(write, read_all(stdout), read_all(stderr), child.wait());
        (out, err, status)
    };
    let finished = tokio::time::timeout(limit, all).await;
    match finished {
        Ok((stdout, stderr, status)) => Some(Ran {
            code: status.ok().and_then(|s| s.code()),
            stdout,
            stderr,
        }),
        Err(_) => {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            None
        }
    }
}

/// Everything a pipe gives until EOF, lossily as UTF-8 (nothing when there is no pipe).
async fn read_all(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
    let mut bytes = Vec::new();
    if let Some(mut p) = pipe {
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut p, &mut bytes).await;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// curl's exit status when the server refuses the login (CURLE_LOGIN_DENIED).
pub const CURL_LOGIN_DENIED: i32 = 67;

/// curl fetching `url` as `user` (`name:password`), bounded to 10 s; `options` (`-v` for
/// the protocol trace on stderr, `--login-options AUTH=...`, `--cacert FILE`) go before
/// the URL.
pub async fn curl(curl: &Path, url: &str, user: &str, options: &[&str]) -> Ran {
    let mut args = vec!["-sS", "--max-time", "10"];
    args.extend_from_slice(options);
    args.extend([url, "-u", user]);
    run(curl, &args).await
}

/// IMAP and POP3 listeners on loopback (port 0: any free one) with this security.
fn loopback_listeners(security: Security) -> [ListenerSpec; 2] {
    let lo: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    [Protocol::Imap, Protocol::Pop3].map(|protocol| ListenerSpec::new(protocol, security, lo))
}

/// A lab with plain and implicit-TLS listeners for both protocols on loopback.
pub async fn start_lab(profile: Profile) -> Lab {
    let config = LabConfig {
        profile,
        listeners: [Security::Plain, Security::ImplicitTls]
            .into_iter()
            .flat_map(loopback_listeners)
            .collect(),
        ..LabConfig::default()
    };
    Lab::start(config).await.expect("lab starts")
}

/// [`start_lab`] with the default profile, and its plain listener for `protocol`.
pub async fn start_mock(protocol: Protocol) -> (Lab, std::net::SocketAddr) {
    let lab = start_lab(Profile::default_profile()).await;
    let addr = lab
        .addr(protocol, Security::Plain)
        .expect("a plain listener");
    (lab, addr)
}

/// A lab from `config` with plain listeners for both protocols on loopback (no TLS).
pub async fn start_plain_lab(config: LabConfig) -> Lab {
    let listeners = loopback_listeners(Security::Plain).to_vec();
    Lab::start(LabConfig {
        listeners,
        ..config
    })
    .await
    .expect("lab starts")
}

/// Writes the lab's certificate to a temporary file for clients that verify it.
pub fn write_cert(lab: &Lab, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("harness-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, lab.certificate_pem()).expect("write cert");
    path
}

/// A line-oriented socket client for tests that speak the protocols by hand.
pub struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    pub async fn connect(addr: std::net::SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        Client {
            stream: BufReader::new(tcp),
        }
    }

    /// Writes, reporting whether the peer still takes bytes.
    pub async fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.get_mut().write_all(bytes).await.is_ok()
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).await.expect("write");
    }

    /// Reads up to and including LF into `buf`; panics with `waited_for` after 5 s of
    /// silence.
    async fn read_within_5s(
        &mut self,
        buf: &mut Vec<u8>,
        waited_for: &str,
    ) -> std::io::Result<usize> {
        tokio::time::timeout(Duration::from_secs(5), self.stream.read_until(b'\n', buf))
            .await
            .expect(waited_for)
    }

    /// One line, CRLF stripped; panics after 5 s of silence.
    pub async fn line(&mut self) -> String {
        let mut buf = Vec::new();
        let n = self
            .read_within_5s(&mut buf, "a reply within 5 s")
            .await
            .expect("read");
        assert!(n > 0, "connection closed while a reply was expected");
        String::from_utf8_lossy(&buf).trim_end().to_string()
    }

    /// Lines up to and including the one starting with `prefix`.
    pub async fn until(&mut self, prefix: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for _ in 0..200 {
            let l = self.line().await;
            let done = l.starts_with(prefix);
            lines.push(l);
            if done {
                return lines;
            }
        }
        panic!("no line starting with {prefix:?} in {lines:?}");
    }

    /// The server closes the connection within 5 s.
    pub async fn closed(&mut self) {
        let mut buf = Vec::new();
        let n = self
            .read_within_5s(&mut buf, "closed within 5 s")
            .await
            .unwrap_or(0);
        assert_eq!(
            n,
            0,
            "expected the server to close, got {:?}",
            String::from_utf8_lossy(&buf)
        );
    }
}

/// The transcripts of `corpus/sessions/<proto>/`, sorted.
pub fn transcripts(proto: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../corpus/sessions")
        .join(proto);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    files
}

/// Resident memory of a process in bytes, from /proc/PID/status (VmRSS; 0 if unreadable).
/// Starts `harness serve` as `command` says (stdout is taken), waits for it to be ready,
/// and returns it with its plain IMAP listener's address; the rest of its output is
/// drained on a thread.
pub fn spawn_serve_imap(command: &mut std::process::Command) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut server = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("harness serve");
    let stdout = server.stdout.take().expect("stdout is piped");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut addr = String::new();
    for line in lines.by_ref() {
        let line = line.expect("harness serve output");
        if let Some(rest) = line.strip_prefix("listening imap  ") {
            addr = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
        if line.starts_with("press Ctrl-C") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    assert!(!addr.is_empty(), "harness serve printed no imap listener");
    (server, addr)
}

pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// A lab serving only DCE/RPC: the Exchange endpoint and the endpoint mapper, both on
/// ephemeral loopback ports.
pub async fn rpc_lab(seed: Option<u64>) -> Lab {
    rpc_lab_as(seed, Default::default()).await
}

/// [`rpc_lab`] with EMSMDB playing the given Exchange.
pub async fn rpc_lab_as(
    seed: Option<u64>,
    rpc_profile: harness_core::dcerpc::emsmdb::EmsmdbProfile,
) -> Lab {
    Lab::start(LabConfig {
        rpc_profile,
        ..rpc_lab_config(seed)
    })
    .await
    .expect("lab starts")
}

/// What [`rpc_lab`] starts: the Exchange RPC listener and the endpoint mapper on
/// ephemeral loopback ports, nothing else.
pub fn rpc_lab_config(seed: Option<u64>) -> LabConfig {
    use harness::serve::rpc::{RpcListenerSpec, RpcRole};
    let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    LabConfig {
        listeners: Vec::new(),
        rpc: vec![
            RpcListenerSpec {
                role: RpcRole::Exchange,
                addr: loopback,
            },
            RpcListenerSpec {
                role: RpcRole::EndpointMapper,
                addr: loopback,
            },
        ],
        seed,
        ..LabConfig::default()
    }
}

/// A lab with the Exchange RPC listener and the Outlook Anywhere proxy in front of it
/// over plain HTTP (NTLM and Basic), seeded.
pub async fn rpch_lab() -> Lab {
    Lab::start(rpch_lab_config())
        .await
        .expect("lab with the RPC proxy starts")
}

/// The configuration of [`rpch_lab`], for tests that change a limit first.
pub fn rpch_lab_config() -> LabConfig {
    use harness::serve::lab::RpchListenerSpec;
    use harness::serve::rpc::{RpcListenerSpec, RpcRole};
    let lo: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    LabConfig {
        listeners: Vec::new(),
        rpc: vec![RpcListenerSpec {
            role: RpcRole::Exchange,
            addr: lo,
        }],
        rpch: vec![RpchListenerSpec {
            addr: lo,
            tls: false,
        }],
        seed: Some(16),
        ..LabConfig::default()
    }
}
