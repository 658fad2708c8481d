//! MIT Kerberos 1.20's KDC (`scripts/peers/krb5/start.sh`) as the reference KDC: the
//! standard client flows ([`krb5::standard_flows`]) against it, with MIT's exact messages,
//! the principals of a running KDC changed by `principal.sh`, and its keys checked against
//! the string-to-key of the fixed passwords the lab's KDC derives them from.

use crate::common;

use std::time::{Duration, Instant};

use common::krb5::{self, KdcTransport, KrbClientEnv, MitKdc};
use pretty_assertions::assert_eq;

const REALM: &str = "EXAMPLE.TEST";

fn mit() -> Option<MitKdc> {
    let started = Instant::now();
    let kdc = MitKdc::start_standard(REALM)?;
    eprintln!(
        "krb5kdc pid {} on {} up in {:?}",
        kdc.pid(),
        kdc.addr(),
        started.elapsed()
    );
    Some(kdc)
}

/// What MIT's KDC answers in the standard flows; the lab's KDC is to give the same list.
/// Read from a run and checked line by line: the AS exchange takes two requests (the
/// KDC wants PA-ENC-TIMESTAMP: KRB-ERROR 25 with ETYPE-INFO2 and the normal salt, realm
/// then name), a wrong password is KRB-ERROR 24, an unknown client KRB-ERROR 6 at once
/// (before any preauth), an unknown service KRB-ERROR 7; MIT offers FAST, so the client
/// armours its TGS requests and the KDC answers in FAST; ok_as_delegate shows as O, only on
/// HTTP/web; -F gives tickets without F. R: kinit asks renewable-ok with a 24 h till, past
/// the KDC's 10 h max_life, so the tickets come back renewable.
pub(crate) fn mit_outcomes() -> Vec<(String, String)> {
    let preauth = |user: &str| {
        format!(
            "KRB-ERROR 25 Additional pre-authentication required \
             | padata PA-FX-FAST (136), PA-ETYPE-INFO2 (19), PA-ENC-TIMESTAMP (2), PA-FX-COOKIE (133) \
             | etype-info aes256-cts, salt \"EXAMPLE.TEST{user}\", params \"\""
        )
    };
    let kinit_ok = |via: &str, user: &str| {
        format!(
            "exit 0 | via {via} | {} | padata PA-ETYPE-INFO2 (19) | AS session key aes256-cts",
            preauth(user)
        )
    };
    let kvno_ok = |service: &str, via: &str| {
        format!(
            "exit 0 | {service}@EXAMPLE.TEST: kvno = 1 | via {via} | FAST reply | TGS session key aes256-cts"
        )
    };
    let tgt = "krbtgt/EXAMPLE.TEST@EXAMPLE.TEST";
    let nosuch = "HTTP/nosuch.example.test@EXAMPLE.TEST";
    let flows = [
        ("kinit -f alice", kinit_ok("udp", "alice")),
        ("klist -f alice", format!("exit 0 | default alice@EXAMPLE.TEST | {tgt} FRIA")),
        (
            "kinit alice, wrong password",
            format!(
                "exit 1 | kinit: Password incorrect while getting initial credentials | via udp | {} \
                 | KRB-ERROR 24 Preauthentication failed",
                preauth("alice")
            ),
        ),
        ("kvno HTTP/web.example.test", kvno_ok("HTTP/web.example.test", "udp")),
        ("kvno HTTP/plain.example.test", kvno_ok("HTTP/plain.example.test", "udp")),
        (
            "kvno exchangeMDB/mail.example.test",
            kvno_ok("exchangeMDB/mail.example.test", "udp"),
        ),
        (
            "kvno exchangeAB/gc1.example.test",
            kvno_ok("exchangeAB/gc1.example.test", "udp"),
        ),
        (
            "kvno HTTP/nosuch.example.test",
            format!(
                "exit 1 | kvno: Server {nosuch} not found in Kerberos database \
                 while getting credentials for {nosuch} | via udp | FAST reply \
                 | KRB-ERROR 7 Server {nosuch} not found in Kerberos database"
            ),
        ),
        (
            "klist -f alice after kvno",
            format!(
                "exit 0 | default alice@EXAMPLE.TEST | {tgt} FRIA \
                 | HTTP/web.example.test@EXAMPLE.TEST FRATO \
                 | HTTP/plain.example.test@EXAMPLE.TEST FRAT \
                 | exchangeMDB/mail.example.test@EXAMPLE.TEST FRAT \
                 | exchangeAB/gc1.example.test@EXAMPLE.TEST FRAT"
            ),
        ),
        ("kinit -F bob (not forwardable)", kinit_ok("udp", "bob")),
        ("kvno HTTP/web as bob", kvno_ok("HTTP/web.example.test", "udp")),
        (
            "klist -f bob",
            format!(
                "exit 0 | default bob@EXAMPLE.TEST | {tgt} RIA \
                 | HTTP/web.example.test@EXAMPLE.TEST RATO"
            ),
        ),
        (
            "kinit nobody",
            "exit 1 | kinit: Client 'nobody@EXAMPLE.TEST' not found in Kerberos database \
             while getting initial credentials | via udp \
             | KRB-ERROR 6 Client not found in Kerberos database"
                .to_string(),
        ),
        ("kinit -f user, TCP only", kinit_ok("tcp", "user")),
        (
            "kvno exchangeMDB/mail, TCP only",
            kvno_ok("exchangeMDB/mail.example.test", "tcp"),
        ),
        (
            "klist -f user, TCP only",
            format!(
                "exit 0 | default user@EXAMPLE.TEST | {tgt} FRIA \
                 | exchangeMDB/mail.example.test@EXAMPLE.TEST FRAT"
            ),
        ),
    ];
    flows
        .into_iter()
        .map(|(flow, outcome)| (flow.to_string(), outcome))
        .collect()
}

#[tokio::test]
async fn mit_kdc_standard_flows() {
    let Some(kdc) = mit() else { return };
    let started = Instant::now();
    let Some(flows) = krb5::standard_flows(kdc.addr(), REALM).await else {
        return;
    };
    eprintln!("standard flows in {:?}", started.elapsed());
    assert_eq!(flows, mit_outcomes());
}

/// The client side on its own: kdestroy empties the cache, and klist then says so; over
/// TCP only, the trace shows TCP and no UDP.
#[tokio::test]
async fn client_env_kinit_klist_kdestroy() {
    let Some(kdc) = mit() else { return };
    let Some(env) = KrbClientEnv::new(REALM, kdc.addr(), KdcTransport::TcpOnly) else {
        return;
    };
    let ran = env.kinit("alice", "secret", true).await;
    assert!(ran.ok(), "{ran:?}");
    let trace = env.trace();
    assert!(trace.contains("Sending TCP request"), "{trace}");
    assert!(!trace.contains("UDP"), "{trace}");
    let ran = env.klist_f().await;
    assert_eq!(
        krb5::default_principal(&ran.stdout),
        Some("alice@EXAMPLE.TEST")
    );
    assert_eq!(
        krb5::parse_klist_f(&ran.stdout),
        [(
            "krbtgt/EXAMPLE.TEST@EXAMPLE.TEST".to_string(),
            "FRIA".to_string()
        )]
    );
    let ran = env.kdestroy().await;
    assert!(ran.ok(), "{ran:?}");
    let ran = env.klist_f().await;
    assert_eq!(ran.code, Some(1));
    let cache = env.dir().join("ccache");
    assert_eq!(
        ran.stderr.trim(),
        format!(
            "klist: No credentials cache found (filename: {})",
            cache.display()
        )
    );
}

/// principal.sh on a running KDC, as the global-catalog failover needs it: a service
/// added is served at once, one deleted is unknown to the next TGS request, while a
/// ticket for it already in a cache still works.
#[tokio::test]
async fn principals_change_on_a_running_kdc() {
    let Some(kdc) = mit() else { return };
    // A third global catalog: not among the standard services until added.
    let gc2 = "exchangeAB/gc3.example.test";
    let Some(alice) = KrbClientEnv::new(REALM, kdc.addr(), KdcTransport::UdpFirst) else {
        return;
    };
    assert!(alice.kinit("alice", "secret", true).await.ok());
    let unknown = format!(
        "kvno: Server {gc2}@EXAMPLE.TEST not found in Kerberos database while getting credentials for {gc2}@EXAMPLE.TEST"
    );
    let ran = alice.kvno(gc2).await;
    assert_eq!((ran.code, ran.stderr.trim()), (Some(1), unknown.as_str()));

    kdc.add_service(gc2, false);
    assert!(kdc.principals().contains(&format!("{gc2}@EXAMPLE.TEST")));
    let ran = alice.kvno(gc2).await;
    assert_eq!(
        (ran.code, ran.stdout.trim()),
        (Some(0), format!("{gc2}@EXAMPLE.TEST: kvno = 1").as_str())
    );

    kdc.remove_service(gc2);
    assert!(!kdc.principals().contains(&format!("{gc2}@EXAMPLE.TEST")));
    let keytab = read_keytab(&kdc.keytab()).await;
    assert!(
        keytab.iter().all(|k| !k.principal.starts_with(gc2)),
        "{keytab:?}"
    );
    // alice's cached ticket is used without asking the KDC
    let ran = alice.kvno(gc2).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(!alice.trace().contains("Sending"), "{}", alice.trace());
    let Some(bob) = KrbClientEnv::new(REALM, kdc.addr(), KdcTransport::UdpFirst) else {
        return;
    };
    assert!(bob.kinit("bob", "hunter2", true).await.ok());
    let ran = bob.kvno(gc2).await;
    assert_eq!((ran.code, ran.stderr.trim()), (Some(1), unknown.as_str()));
}

/// One `klist -k -e -K` line.
#[derive(Debug, PartialEq)]
struct KeytabEntry {
    kvno: u32,
    principal: String,
    enctype: String,
    key: Vec<u8>,
}

/// The entries of a keytab, as MIT's klist lists them:
/// `   1 HTTP/web.example.test@EXAMPLE.TEST (aes256-cts-hmac-sha1-96)  (0xb700...)`.
async fn read_keytab(path: &std::path::Path) -> Vec<KeytabEntry> {
    let klist = common::require_tool("klist", "scripts/peers/install.sh (krb5-user)")
        .expect("klist, as kinit ran");
    let keytab = path.to_str().expect("UTF-8 path");
    let ran = common::run(&klist, &["-k", "-e", "-K", keytab]).await;
    assert!(ran.ok(), "{ran:?}");
    ran.stdout
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let kvno = f.next()?.parse().ok()?;
            let principal = f.next()?.to_string();
            let enctype = f.next()?.trim_matches(|c| c == '(' || c == ')').to_string();
            let hex = f.next()?.strip_prefix("(0x")?.strip_suffix(')')?;
            Some(KeytabEntry {
                kvno,
                principal,
                enctype,
                key: hex_decode(hex),
            })
        })
        .collect()
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex key"))
        .collect()
}

/// Every key of MIT's realm is the string-to-key of its fixed password with the normal
/// salt (realm then the name's components): krbtgt's of `krbtgt-EXAMPLE.TEST`, each
/// service's of `k-<service>`, a user's of the user's password; all kvno 1. So the lab's
/// KDC, deriving the same keys, serves the same realm.
#[tokio::test]
async fn keys_derive_from_fixed_passwords() {
    let Some(kdc) = mit() else { return };
    if common::require_tool("klist", "scripts/peers/install.sh (krb5-user)").is_none() {
        return;
    }
    // The lab's KDC's database: what its keys are, derived in harness-core.
    let world = harness_core::LabFile::default_lab().build().expect("lab");
    let lab_db = harness_core::kerberos::RealmDb::for_world(&world);
    let expect = |principal: &str| {
        let entry = lab_db.entry(principal).expect("the lab's KDC has it");
        [
            harness_core::kerberos::Etype::Aes256,
            harness_core::kerberos::Etype::Aes128,
        ]
        .iter()
        .map(|e| KeytabEntry {
            kvno: 1,
            principal: format!("{principal}@EXAMPLE.TEST"),
            enctype: e.name().into(),
            key: entry.key(*e).expect("key").bytes.clone(),
        })
        .collect::<Vec<_>>()
    };
    let mut services = Vec::new();
    for (service, _) in krb5::standard_services(REALM) {
        services.extend(expect(&service));
    }
    assert_eq!(read_keytab(&kdc.keytab()).await, services);
    // A value worked out apart from this test (Python's hashlib and cryptography), so a
    // string-to-key that agreed with MIT for a wrong reason would still be caught.
    assert_eq!(
        services[0].key,
        hex_decode("b70005f5be151150cdede72eaa7349004b9e5ef6b7d8538c995721b41d45c11b")
    );

    let dir = tempdir_for("keys");
    for principal in ["krbtgt/EXAMPLE.TEST", "alice"] {
        let keytab = dir.join(format!("{}.keytab", principal.replace('/', "-")));
        kdc.export_keys(principal, &keytab);
        assert_eq!(read_keytab(&keytab).await, expect(principal), "{principal}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir_for(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("harness-krb5-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The bound every client tool runs under: a child past it is killed by its PID and
/// reaped, and the run says so instead of hanging the test.
#[tokio::test]
async fn a_tool_past_its_bound_is_killed() {
    // an argument no other process has, to look for this sleep in /proc afterwards
    let seconds = format!("30.{}", std::process::id());
    let mut sleep = tokio::process::Command::new("sleep");
    sleep.arg(&seconds);
    let started = Instant::now();
    let ran = common::run_bounded(sleep, Some(b"ignored\n"), Duration::from_millis(300)).await;
    assert!(ran.is_none(), "{ran:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let cmdline = format!("sleep\0{seconds}\0");
    let left: Vec<_> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| c.as_slice() == cmdline.as_bytes())
        .collect();
    assert!(left.is_empty(), "sleep {seconds} still runs");
    let mut echo = tokio::process::Command::new("cat");
    echo.arg("-");
    let ran = common::run_bounded(echo, Some(b"secret\n"), Duration::from_secs(5))
        .await
        .expect("cat finishes");
    assert_eq!((ran.code, ran.stdout.as_str()), (Some(0), "secret\n"));
}

#[test]
fn klist_f_is_parsed() {
    let out = "Ticket cache: FILE:/tmp/cc\n\
               Default principal: alice@EXAMPLE.TEST\n\
               \n\
               Valid starting     Expires            Service principal\n\
               12/03/26 15:22:23  12/04/26 01:22:23  krbtgt/EXAMPLE.TEST@EXAMPLE.TEST\n\
               \trenew until 12/04/26 15:22:23, Flags: FRIA\n\
               12/03/26 15:22:23  12/04/26 01:22:23  HTTP/web.example.test@EXAMPLE.TEST\n\
               \tFlags: FATO\n";
    assert_eq!(krb5::default_principal(out), Some("alice@EXAMPLE.TEST"));
    assert_eq!(
        krb5::parse_klist_f(out),
        [
            (
                "krbtgt/EXAMPLE.TEST@EXAMPLE.TEST".to_string(),
                "FRIA".to_string()
            ),
            (
                "HTTP/web.example.test@EXAMPLE.TEST".to_string(),
                "FATO".to_string()
            ),
        ]
    );
}
