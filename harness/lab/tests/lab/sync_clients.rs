//! Real sync and retrieval clients against the mock: mbsync (isync) keeps a Maildir in
//! step with the lab both ways, and fetchmail retrieves over IMAP and POP3 with `auth
//! password` and `auth ntlm`, and fails with a wrong password.

use crate::common;

use std::path::{Path, PathBuf};

use common::{require_tool, run, start_lab};
use harness::{Lab, Protocol, Security};
use harness_core::Profile;

fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("harness-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            out.extend(entries.map(|e| e.unwrap().path()));
        }
    }
    out
}

fn mbsync_config(dir: &Path, port: u16) -> PathBuf {
    let mail = dir.join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    let rc = dir.join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount lab\nHost 127.0.0.1\nPort {port}\nUser alice\nPass secret\nSSLType None\nAuthMechs LOGIN PLAIN\n\n\
             IMAPStore lab-remote\nAccount lab\n\n\
             MaildirStore lab-local\nPath {m}/\nInbox {m}/INBOX\nSubFolders Verbatim\n\n\
             Channel lab\nFar :lab-remote:\nNear :lab-local:\nPatterns *\nCreate Both\nExpunge Both\nSyncState *\n",
            m = mail.display()
        ),
    )
    .unwrap();
    rc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbsync_syncs_both_ways() {
    let Some(mbsync) = require_tool("mbsync", "apt-get install isync") else {
        return;
    };
    let lab = start_lab(Profile::default_profile()).await;
    let port = lab.addr(Protocol::Imap, Security::Plain).unwrap().port();
    let dir = workdir("mbsync");
    let rc = mbsync_config(&dir, port);
    let rc = rc.to_str().unwrap();
    let inbox = dir.join("mail/INBOX");

    let first = run(&mbsync, &["-c", rc, "-a"]).await;
    assert!(first.ok(), "{first:?}");
    assert!(!first.stderr.contains("error"), "{first:?}");
    let synced = files_under(&inbox);
    assert_eq!(
        synced.len(),
        3,
        "the lab's three messages arrive: {synced:?}"
    );

    // Locally: flag the message with UID 2 and write a new one.
    let two = synced
        .iter()
        .find(|p| p.to_string_lossy().contains(",U=2:"))
        .expect("UID 2 in the maildir");
    let name = two.file_name().unwrap().to_string_lossy().to_string();
    let base = name.split(":2,").next().unwrap();
    std::fs::rename(two, inbox.join("cur").join(format!("{base}:2,F"))).unwrap();
    std::fs::write(
        inbox.join("new").join("1700000000.local_1.vm"),
        "From: me@example.test\r\nSubject: written offline\r\n\r\nhello from the maildir\r\n",
    )
    .unwrap();
    // Maildir mtimes have one-second resolution; mbsync waits for a quiet directory.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = run(&mbsync, &["-c", rc, "-a"]).await;
    assert!(second.ok(), "{second:?}");
    assert!(!second.stderr.contains("error"), "{second:?}");

    lab.world().store.with_account("alice", |a| {
        let inbox = a.mailbox("INBOX").unwrap();
        assert_eq!(inbox.messages.len(), 4, "the offline message was appended");
        let new = inbox.messages.last().unwrap();
        assert!(String::from_utf8_lossy(&new.data).contains("Subject: written offline"));
        let flagged = inbox.messages.iter().find(|m| m.uid == 2).unwrap();
        assert!(flagged.flags.contains("\\Flagged"), "{:?}", flagged.flags);
    });
    let _ = std::fs::remove_dir_all(&dir);
    lab.shutdown().await;
}

/// One fetchmail run against a fresh lab; returns (exit code, verbose log, delivered mail).
async fn fetchmail(
    fetchmail: &Path,
    protocol: Protocol,
    auth: &str,
    password: &str,
) -> (Option<i32>, String, String) {
    let lab: Lab = start_lab(Profile::default_profile()).await;
    let port = lab.addr(protocol, Security::Plain).unwrap().port();
    let dir = workdir(&format!("fetchmail-{protocol}-{auth}-{password}"));
    let mbox = dir.join("delivered");
    let rc = dir.join("fetchmailrc");
    // sslproto "": plain ports, no STARTTLS insistence; mda: deliver to a file.
    std::fs::write(
        &rc,
        format!(
            "poll 127.0.0.1 service {port} protocol {protocol} auth {auth} user \"alice\" password \"{password}\" is \"root\" here keep sslproto \"\" mda \"cat >> {}\"\n",
            mbox.display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&rc).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&rc, perms).unwrap();
    let rc_s = rc.to_str().unwrap().to_string();
    let ids = dir.join("ids");
    let ids_s = ids.to_str().unwrap().to_string();
    let r = run(
        fetchmail,
        &["-f", &rc_s, "--idfile", &ids_s, "--nosyslog", "-v"],
    )
    .await;
    let delivered = std::fs::read_to_string(&mbox).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    lab.shutdown().await;
    (r.code, format!("{}{}", r.stdout, r.stderr), delivered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetchmail_retrieves_with_password_and_ntlm_and_refuses_a_wrong_password() {
    let Some(bin) = require_tool("fetchmail", "apt-get install fetchmail") else {
        return;
    };
    for protocol in [Protocol::Imap, Protocol::Pop3] {
        for auth in ["password", "ntlm"] {
            let (code, log, delivered) = fetchmail(&bin, protocol, auth, "secret").await;
            assert_eq!(code, Some(0), "{protocol} {auth}: {log}");
            for i in 1..=3 {
                assert!(
                    delivered.contains(&format!("Subject: Test message {i}")),
                    "{protocol} {auth}: {delivered}"
                );
            }
            if auth == "ntlm" {
                let used = match protocol {
                    Protocol::Imap => "AUTHENTICATE NTLM",
                    Protocol::Pop3 => "AUTH NTLM",
                };
                assert!(log.contains(used), "{protocol}: NTLM was not used: {log}");
            }
            let (code, log, delivered) = fetchmail(&bin, protocol, auth, "wrong").await;
            // fetchmail exit status 3: authentication failed.
            assert_eq!(
                code,
                Some(3),
                "{protocol} {auth} with a wrong password: {log}"
            );
            assert!(delivered.is_empty());
        }
    }
}
