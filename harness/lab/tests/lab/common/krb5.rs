//! Kerberos on loopback: MIT's client tools (kinit, klist, kvno, kdestroy) against any KDC,
//! each client with a krb5.conf and a credentials cache of its own, and MIT's KDC
//! (`scripts/peers/krb5/start.sh`), the reference the lab's KDC is compared with.
//! [`standard_flows`] runs the same client flows against any KDC address and sums each one
//! up in a line, so two KDCs agree when their lists are equal.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::peers::{self, project_root, Peer};
use super::{require_tool, run_bounded, Ran};

/// Bound on one client tool run. MIT's kinit gives up on a KDC that never answers UDP
/// after 18 s of retries ("Cannot contact any KDC for realm ..."); past this bound the
/// tool is killed and the run reports a timeout.
const TOOL_LIMIT: Duration = Duration::from_secs(30);

const INSTALL_HINT: &str = "scripts/peers/install.sh (Debian package krb5-user)";

/// How the client reaches the KDC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KdcTransport {
    /// MIT's default: UDP for requests up to udp_preference_limit (1465 bytes), TCP for
    /// bigger ones and after KRB_ERR_RESPONSE_TOO_BIG.
    UdpFirst,
    /// `udp_preference_limit = 1`: every request goes over TCP.
    TcpOnly,
}

struct Tools {
    kinit: PathBuf,
    klist: PathBuf,
    kvno: PathBuf,
    kdestroy: PathBuf,
}

impl Tools {
    fn find() -> Option<Tools> {
        Some(Tools {
            kinit: require_tool("kinit", INSTALL_HINT)?,
            klist: require_tool("klist", INSTALL_HINT)?,
            kvno: require_tool("kvno", INSTALL_HINT)?,
            kdestroy: require_tool("kdestroy", INSTALL_HINT)?,
        })
    }
}

/// A Kerberos client of one realm at one KDC: a temporary directory with its krb5.conf,
/// credentials cache and trace file. Nothing of /etc/krb5.conf or the caller's KRB5_*
/// environment reaches the tools. The directory goes on drop, unless the test is failing.
pub struct KrbClientEnv {
    dir: PathBuf,
    tools: Tools,
}

impl KrbClientEnv {
    /// `None` (with a SKIPPED message; a failure under `CI=true`) when the MIT client tools
    /// are not installed.
    pub fn new(realm: &str, kdc: SocketAddr, transport: KdcTransport) -> Option<KrbClientEnv> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let tools = Tools::find()?;
        let dir = std::env::temp_dir().join(format!(
            "harness-krb5-client-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("client directory");
        std::fs::write(dir.join("krb5.conf"), client_conf(realm, kdc, transport))
            .expect("write krb5.conf");
        Some(KrbClientEnv { dir, tools })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `kinit [-f|-F] PRINCIPAL`, the password on stdin.
    pub async fn kinit(&self, principal: &str, password: &str, forwardable: bool) -> Ran {
        let flag = if forwardable { "-f" } else { "-F" };
        let input = format!("{password}\n");
        self.tool(
            &self.tools.kinit,
            &[flag, principal],
            Some(input.as_bytes()),
        )
        .await
    }

    /// `klist -f`: the cache's tickets with their flags; [`parse_klist_f`] reads it.
    pub async fn klist_f(&self) -> Ran {
        self.tool(&self.tools.klist, &["-f"], None).await
    }

    /// `kvno SERVICE`: a service ticket from the KDC (or the cache) with the TGT in the cache.
    pub async fn kvno(&self, service: &str) -> Ran {
        self.tool(&self.tools.kvno, &[service], None).await
    }

    pub async fn kdestroy(&self) -> Ran {
        self.tool(&self.tools.kdestroy, &[], None).await
    }

    /// Any program (curl with `--negotiate`) in this client's environment: its krb5.conf
    /// and credentials cache, bounded like the Kerberos tools.
    pub async fn run(&self, program: &Path, args: &[&str]) -> Ran {
        self.tool(program, args, None).await
    }

    /// The KRB5_TRACE output of the last tool run (empty if it wrote none).
    pub fn trace(&self) -> String {
        std::fs::read_to_string(self.dir.join("trace.log")).unwrap_or_default()
    }

    /// Runs one tool in this client's environment, C locale (MIT's messages are
    /// translated otherwise). A run that overruns [`TOOL_LIMIT`] is killed and comes back
    /// with no exit code and "timed out" on stderr.
    async fn tool(&self, program: &Path, args: &[&str], input: Option<&[u8]>) -> Ran {
        let trace = self.dir.join("trace.log");
        // MIT appends to the trace file; each run gets its own.
        let _ = std::fs::remove_file(&trace);
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .env("KRB5_CONFIG", self.dir.join("krb5.conf"))
            .env(
                "KRB5CCNAME",
                format!("FILE:{}", self.dir.join("ccache").display()),
            )
            .env("KRB5_TRACE", &trace)
            // a client keytab, if one existed, could be used instead of the password
            .env("KRB5_CLIENT_KTNAME", self.dir.join("no-client.keytab"))
            .env_remove("KRB5_KTNAME")
            .env("LC_ALL", "C")
            .env_remove("LANGUAGE");
        run_bounded(command, input, TOOL_LIMIT)
            .await
            .unwrap_or_else(|| Ran {
                code: None,
                stdout: String::new(),
                stderr: format!(
                    "{} {args:?} timed out after {TOOL_LIMIT:?}",
                    program.display()
                ),
            })
    }
}

impl Drop for KrbClientEnv {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The client configuration: this realm at this KDC only, no DNS (service names are
/// used as written), forwardable TGTs unless kinit says -F.
fn client_conf(realm: &str, kdc: SocketAddr, transport: KdcTransport) -> String {
    let domain = realm.to_ascii_lowercase();
    let tcp = match transport {
        KdcTransport::UdpFirst => "",
        KdcTransport::TcpOnly => "    udp_preference_limit = 1\n",
    };
    format!(
        "[libdefaults]
    default_realm = {realm}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    forwardable = true
{tcp}
[realms]
    {realm} = {{
        kdc = {kdc}
    }}

[domain_realm]
    .{domain} = {realm}
    {domain} = {realm}
"
    )
}

/// `klist -f` output as (ticket's service principal, flags) pairs, in the cache's order:
/// a ticket line starts with its start date, the principal is its last field, and the
/// indented line under it carries `Flags: ...`.
pub fn parse_klist_f(stdout: &str) -> Vec<(String, String)> {
    let mut tickets: Vec<(String, String)> = Vec::new();
    for line in stdout.lines() {
        if line.starts_with(|c: char| c.is_ascii_digit()) {
            if let Some(principal) = line.split_whitespace().last() {
                tickets.push((principal.to_string(), String::new()));
            }
        } else if line.starts_with(char::is_whitespace) {
            let flags = line.split_once("Flags: ").map(|(_, rest)| rest);
            if let (Some(flags), Some(last)) = (flags, tickets.last_mut()) {
                last.1 = flags
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
        }
    }
    tickets
}

/// `Default principal: ...` of `klist` output.
pub fn default_principal(stdout: &str) -> Option<&str> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Default principal: "))
        .map(str::trim)
}

/// MIT's com_err codes for KDC errors are this base plus the protocol's error code
/// ([RFC 4120] 7.5.9).
const KRB5_ERROR_TABLE_BASE: i64 = -1_765_328_384;

/// What the KDC did in one client run, as MIT's trace shows it: the transports in the
/// order used ("via udp", "via tcp"), each KRB-ERROR (protocol code, [RFC 4120] 7.5.9, and
/// MIT's text), the padata types the KDC offered or sent, the etype and salt the client
/// took from ETYPE-INFO2, the session key types, and whether the KDC answered in FAST
/// ([RFC 6113]). Each item once, in order of first appearance.
fn trace_summary(trace: &str) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    let mut transports: Vec<&str> = Vec::new();
    for line in trace.lines() {
        // "[pid] seconds.micros: message"
        let Some((_, msg)) = line.split_once(": ") else {
            continue;
        };
        let item = if msg.starts_with("Sending initial UDP request") {
            transports.push("udp");
            None
        } else if msg.starts_with("Sending TCP request") {
            transports.push("tcp");
            None
        } else if let Some(err) = msg
            .strip_prefix("Received error from KDC: ")
            .or_else(|| msg.strip_prefix("TGS request result: "))
        {
            krb_error(err)
        } else if let Some(types) = msg.strip_prefix("Processing preauth types: ") {
            Some(format!("padata {types}"))
        } else if let Some(info) = msg.strip_prefix("Selected etype info: etype ") {
            Some(format!("etype-info {info}"))
        } else if let Some(key) = msg.strip_prefix("Decrypted AS reply; session key is: ") {
            Some(format!("AS session key {}", key_type(key)))
        } else if let Some((_, key)) = msg.split_once(" with session key ") {
            Some(format!("TGS session key {}", key_type(key)))
        } else if msg == "Decoding FAST response" {
            Some("FAST reply".to_string())
        } else {
            None
        };
        if let Some(item) = item {
            if !items.contains(&item) {
                items.push(item);
            }
        }
    }
    transports.dedup();
    if !transports.is_empty() {
        items.insert(0, format!("via {}", transports.join("+")));
    }
    items
}

/// "CODE/TEXT" of MIT's trace as "KRB-ERROR n TEXT"; success (0) is none.
fn krb_error(err: &str) -> Option<String> {
    let (code, text) = err.split_once('/').unwrap_or((err, ""));
    match code.parse::<i64>() {
        Ok(0) => None,
        Ok(c) => Some(format!("KRB-ERROR {} {text}", c - KRB5_ERROR_TABLE_BASE)),
        Err(_) => Some(format!("KRB-ERROR {err}")),
    }
}

/// "aes256-cts/F8B1" (a key's type and a fingerprint that differs each run) as its type.
fn key_type(key: &str) -> &str {
    key.split('/').next().unwrap_or(key).trim()
}

/// One line for a tool run: exit status, what the tool printed (kinit's password prompt
/// left out), and [`trace_summary`].
pub fn outcome(ran: &Ran, trace: &str) -> String {
    let mut parts = vec![match ran.code {
        Some(c) => format!("exit {c}"),
        None => "no exit status".to_string(),
    }];
    for line in ran.stdout.lines().chain(ran.stderr.lines()) {
        let line = line.trim();
        if !line.is_empty() && !line.starts_with("Password for ") {
            parts.push(line.to_string());
        }
    }
    parts.extend(trace_summary(trace));
    parts.join(" | ")
}

/// The principals [`standard_flows`] expect in `realm` (users with their passwords): the
/// default lab's users, as the lab's KDC has them.
pub const STANDARD_USERS: [(&str, &str); 3] =
    [("alice", "secret"), ("bob", "hunter2"), ("user", "pass")];

/// The service principals of the default lab's realm (`realm` is its DNS domain in
/// capitals) with their ok_as_delegate flag: exactly those the lab's KDC serves
/// (`harness_core::kerberos::realm::default_services`), so MIT's KDC started with them is
/// the same realm.
pub fn standard_services(realm: &str) -> Vec<(String, bool)> {
    let world = harness_core::LabFile::default_lab()
        .build()
        .expect("the default lab builds");
    assert_eq!(
        harness_core::kerberos::realm::realm_of(&world),
        realm,
        "the standard realm is the default lab's"
    );
    harness_core::kerberos::realm::default_services(&world)
        .into_iter()
        .map(|s| (s.name, s.ok_as_delegate))
        .collect()
}

/// Runs the client flows every KDC of the standard realm ([`STANDARD_USERS`],
/// [`standard_services`]) is checked with, against the KDC at `kdc`, and returns
/// (flow, outcome) pairs: the tool's exit status and messages, what the KDC sent as the
/// client's trace shows it ([`outcome`]), and the tickets with their flags where a flow
/// ends with `klist -f`. `None` when the client tools are missing (SKIPPED).
pub async fn standard_flows(kdc: SocketAddr, realm: &str) -> Option<Vec<(String, String)>> {
    let d = realm.to_ascii_lowercase();
    let mut flows = Vec::new();
    let mut record = |flow: &str, outcome: String| flows.push((flow.to_string(), outcome));

    let alice = KrbClientEnv::new(realm, kdc, KdcTransport::UdpFirst)?;
    let ran = alice.kinit("alice", "secret", true).await;
    record("kinit -f alice", outcome(&ran, &alice.trace()));
    record("klist -f alice", tickets(&alice).await);
    let ran = alice.kinit("alice", "wrong", true).await;
    record("kinit alice, wrong password", outcome(&ran, &alice.trace()));
    // The failed kinit leaves the cache as it was: alice's TGT is still there.
    for service in [
        format!("HTTP/web.{d}"),
        format!("HTTP/plain.{d}"),
        format!("exchangeMDB/mail.{d}"),
        format!("exchangeAB/gc1.{d}"),
        format!("HTTP/nosuch.{d}"),
    ] {
        let ran = alice.kvno(&service).await;
        record(&format!("kvno {service}"), outcome(&ran, &alice.trace()));
    }
    record("klist -f alice after kvno", tickets(&alice).await);

    let bob = KrbClientEnv::new(realm, kdc, KdcTransport::UdpFirst)?;
    let ran = bob.kinit("bob", "hunter2", false).await;
    record(
        "kinit -F bob (not forwardable)",
        outcome(&ran, &bob.trace()),
    );
    let ran = bob.kvno(&format!("HTTP/web.{d}")).await;
    record("kvno HTTP/web as bob", outcome(&ran, &bob.trace()));
    record("klist -f bob", tickets(&bob).await);

    let nobody = KrbClientEnv::new(realm, kdc, KdcTransport::UdpFirst)?;
    let ran = nobody.kinit("nobody", "secret", true).await;
    record("kinit nobody", outcome(&ran, &nobody.trace()));

    let user = KrbClientEnv::new(realm, kdc, KdcTransport::TcpOnly)?;
    let ran = user.kinit("user", "pass", true).await;
    record("kinit -f user, TCP only", outcome(&ran, &user.trace()));
    let ran = user.kvno(&format!("exchangeMDB/mail.{d}")).await;
    record(
        "kvno exchangeMDB/mail, TCP only",
        outcome(&ran, &user.trace()),
    );
    record("klist -f user, TCP only", tickets(&user).await);
    Some(flows)
}

/// `klist -f` summed up: exit status, default principal and each ticket with its flags.
async fn tickets(env: &KrbClientEnv) -> String {
    let ran = env.klist_f().await;
    let mut parts = vec![
        format!("exit {}", ran.code.map_or("none".into(), |c| c.to_string())),
        format!(
            "default {}",
            default_principal(&ran.stdout).unwrap_or("none")
        ),
    ];
    parts.extend(
        parse_klist_f(&ran.stdout)
            .into_iter()
            .map(|(principal, flags)| format!("{principal} {flags}")),
    );
    parts.join(" | ")
}

/// A loopback port free a moment ago for both UDP and TCP (a KDC takes both).
fn free_kdc_port() -> u16 {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = tcp.local_addr().expect("local addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for both UDP and TCP in 50 tries");
}

/// MIT's krb5kdc on loopback (UDP and TCP), its realm made by
/// `scripts/peers/krb5/start.sh` with every key derived from a fixed password, so the
/// lab's KDC can serve the same realm. Dropping it stops the KDC by its PID.
pub struct MitKdc {
    peer: Peer,
    realm: String,
    addr: SocketAddr,
}

impl MitKdc {
    /// `None` (SKIPPED; a failure under `CI=true`) when MIT's KDC is not installed. Users
    /// get +requires_preauth; services with `true` get ok_as_delegate.
    pub fn start(realm: &str, users: &[(&str, &str)], services: &[(&str, bool)]) -> Option<MitKdc> {
        let port = free_kdc_port();
        let mut args = vec![port.to_string(), "--realm".to_string(), realm.to_string()];
        for (name, password) in users {
            args.extend(["--user".to_string(), format!("{name}:{password}")]);
        }
        for (service, ok_as_delegate) in services {
            args.extend([
                "--service".to_string(),
                service_spec(service, *ok_as_delegate),
            ]);
        }
        let peer = peers::try_start("krb5", &args)?;
        Some(MitKdc {
            peer,
            realm: realm.to_string(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    /// [`MitKdc::start`] with [`STANDARD_USERS`] and [`standard_services`].
    pub fn start_standard(realm: &str) -> Option<MitKdc> {
        let services = standard_services(realm);
        let services: Vec<(&str, bool)> = services.iter().map(|(s, d)| (s.as_str(), *d)).collect();
        MitKdc::start(realm, &STANDARD_USERS, &services)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    pub fn pid(&self) -> &str {
        &self.peer.pids
    }

    pub fn rundir(&self) -> &Path {
        &self.peer.rundir
    }

    /// Every service key of the realm (kvno 1).
    pub fn keytab(&self) -> PathBuf {
        self.peer.rundir.join("all.keytab")
    }

    /// A service principal added while the KDC runs (key from password `k-PRINC`); the
    /// next request sees it.
    pub fn add_service(&self, service: &str, ok_as_delegate: bool) {
        self.principal(&["add", &service_spec(service, ok_as_delegate)]);
    }

    /// A service principal deleted while the KDC runs; a new TGS request for it gets
    /// KDC_ERR_S_PRINCIPAL_UNKNOWN (a ticket already in a client's cache still works).
    pub fn remove_service(&self, service: &str) {
        self.principal(&["del", service]);
    }

    /// Writes the current keys of `principal` (users and krbtgt too) to `keytab`.
    pub fn export_keys(&self, principal: &str, keytab: &Path) {
        let file = keytab.to_str().expect("keytab path is UTF-8");
        self.principal(&["keytab", principal, file]);
    }

    /// The principals of the realm, `name@REALM` each, sorted.
    pub fn principals(&self) -> Vec<String> {
        let mut list: Vec<String> = self
            .principal(&["list"])
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        list.sort();
        list
    }

    /// Runs `principal.sh RUNDIR ARGS...`, panicking with its output when it fails;
    /// returns its stdout.
    fn principal(&self, args: &[&str]) -> String {
        let script = project_root().join("scripts/peers/krb5/principal.sh");
        // kadmin.local waits on the database lock: bounded, killed by coreutils' timeout
        let out = Command::new("timeout")
            .args(["30", "bash"])
            .arg(&script)
            .arg(&self.peer.rundir)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "principal.sh {args:?} failed (exit {:?}):\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// start.sh's and principal.sh's `PRINC[:ok_as_delegate]`.
fn service_spec(service: &str, ok_as_delegate: bool) -> String {
    if ok_as_delegate {
        format!("{service}:ok_as_delegate")
    } else {
        service.to_string()
    }
}
