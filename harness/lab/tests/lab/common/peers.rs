//! Real peers started by the project's own `scripts/peers/NAME/start.sh` on loopback and
//! stopped by PID (`stop.sh`, which reads the PID files) when the guard drops, even on a
//! panic. A peer that cannot start fails the test with the script's output.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn project_root() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).to_path_buf()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A running peer; dropping it stops it.
pub struct Peer {
    pub name: String,
    pub rundir: PathBuf,
    /// What start.sh printed: the PID(s) it started.
    pub pids: String,
}

impl Drop for Peer {
    /// Stops the peer in the background: a stop script waits seconds for the server's
    /// processes to exit, which nothing in a test needs (every peer has ports and a state
    /// directory of its own). Logs stay for a failed test to be read; otherwise the state
    /// goes once the peer is down.
    fn drop(&mut self) {
        let stop = project_root().join(format!("scripts/peers/{}/stop.sh", self.name));
        let keep = if std::thread::panicking() { "keep" } else { "" };
        let _ = Command::new("bash")
            .arg("-c")
            .arg(r#"bash "$0" "$1" >/dev/null 2>&1; [ -n "$2" ] || rm -rf "$1""#)
            .arg(stop)
            .arg(&self.rundir)
            .arg(keep)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
}

/// Runs `scripts/peers/NAME/start.sh ARGS... RUNDIR` (every start script takes its state
/// directory last) and panics with its output if it fails. Exit status 3 is the scripts'
/// "not installed" (or not root): like `require_tool`, that is a failure under `CI=true`
/// and `None` with a SKIPPED message otherwise.
pub fn try_start(name: &str, args: &[String]) -> Option<Peer> {
    try_start_with_env(name, args, &[])
}

/// [`try_start`] with environment variables for the start script (e.g.
/// `DOVECOT_NO_AUTH_DELAY`).
pub fn try_start_with_env(name: &str, args: &[String], env: &[(&str, &str)]) -> Option<Peer> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let rundir = std::env::temp_dir().join(format!(
        "harness-peer-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let script = project_root().join(format!("scripts/peers/{name}/start.sh"));
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .arg(&rundir)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    // The guard exists before the check, so a half-started peer is stopped too.
    let peer = Peer {
        name: name.to_string(),
        rundir,
        pids: String::from_utf8_lossy(&out.stdout).trim().to_string(),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) && std::env::var("CI").as_deref() != Ok("true") {
        eprintln!("SKIPPED: peer {name} is not available: {}", stderr.trim());
        return None;
    }
    assert!(
        out.status.success(),
        "peer {name} did not start (exit {:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        stderr
    );
    Some(peer)
}

/// The python of the impacket venv (scripts/peers/install.sh makes it), or None with a
/// SKIPPED message (a failure under CI=true).
pub fn impacket_python() -> Option<PathBuf> {
    let locate = project_root().join("scripts/peers/impacket/python");
    let out = std::process::Command::new("bash")
        .arg(&locate)
        .output()
        .ok()?;
    if out.status.success() {
        return Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    let msg = format!(
        "impacket venv missing ({}): run scripts/peers/install.sh",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}; CI must provide it");
    }
    eprintln!("SKIPPED: {msg}");
    None
}
