//! One IMAP session against a 100,000-message INBOX, in-process: SELECT, `UID FETCH 1:*
//! (UID FLAGS)`, `SEARCH UNSEEN`, `SEARCH TEXT word`; and the memory the store spends per
//! message beyond the message bytes (from the process's resident size).
//!
//! Run: `cargo bench -p harness --bench large_mailbox`

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use harness_core::imap::ImapServer;
use harness_core::{LabFile, Output, Profile, ServerSession, SessionContext, World};

const MESSAGES: u32 = 100_000;

/// Resident memory of this process in bytes (Linux `/proc/self/statm`, page size 4 KiB).
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn big_world() -> Arc<World> {
    let mut lab = LabFile::default_lab();
    lab.add_user("big", "secret");
    let world = lab.build().expect("lab");
    let before = rss();
    let mut bytes = 0usize;
    world.store.with_account("big", |a| {
        let inbox = a.mailbox_mut("INBOX").expect("INBOX");
        inbox.messages.clear();
        for i in 1..=MESSAGES {
            // Every 10th message mentions the word the TEXT search looks for.
            let word = if i % 10 == 0 { "quasar" } else { "nebula" };
            let data = format!(
                "From: Sender <sender@example.test>\r\nTo: big@example.test\r\nSubject: message {i}\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <m{i}@example.test>\r\n\r\nbody of message {i} about a {word}\r\n"
            );
            bytes += data.len();
            // Two thirds are seen.
            let flags: BTreeSet<String> = if i % 3 == 0 {
                BTreeSet::new()
            } else {
                BTreeSet::from(["\\Seen".to_string()])
            };
            inbox.append(Arc::from(data.into_bytes()), flags, 1_704_067_200 + i64::from(i));
        }
    });
    if let (Some(b), Some(a)) = (before, rss()) {
        let grown = a.saturating_sub(b) as f64;
        let overhead = (grown - bytes as f64) / f64::from(MESSAGES);
        eprintln!(
            "store: {MESSAGES} messages, {:.1} MiB of message bytes, resident grew {:.1} MiB: {:.0} bytes per message beyond the message bytes",
            bytes as f64 / 1048576.0,
            grown / 1048576.0,
            overhead
        );
    }
    Arc::new(world)
}

/// Sends one command and drains the reply.
fn roundtrip(s: &mut ImapServer, now: &mut Duration, cmd: &[u8]) -> Vec<u8> {
    *now += Duration::from_millis(1);
    s.handle_input(*now, cmd);
    let mut reply = Vec::new();
    while let Some(out) = s.poll_output() {
        if let Output::Write(b) = out {
            reply.extend_from_slice(&b);
        }
    }
    reply
}

/// The numbers of a `* SEARCH` reply.
fn hits(reply: &[u8]) -> usize {
    String::from_utf8_lossy(reply)
        .lines()
        .filter_map(|l| l.strip_prefix("* SEARCH"))
        .map(|l| l.split_whitespace().count())
        .sum()
}

fn large_mailbox(c: &mut Criterion) {
    let world = big_world();
    let mut ctx = SessionContext::new(world, Arc::new(Profile::default_profile()));
    ctx.limits.idle_timeout = Duration::from_secs(3600);
    let mut s = ImapServer::new(ctx);
    let mut now = Duration::ZERO;
    roundtrip(&mut s, &mut now, b"");
    roundtrip(&mut s, &mut now, b"a LOGIN big secret\r\n");
    let selected = roundtrip(&mut s, &mut now, b"b SELECT INBOX\r\n");
    assert!(String::from_utf8_lossy(&selected).contains("* 100000 EXISTS"));
    // The answers are right before they are timed.
    assert_eq!(
        hits(&roundtrip(&mut s, &mut now, b"u SEARCH UNSEEN\r\n")),
        33_333
    );
    assert_eq!(
        hits(&roundtrip(&mut s, &mut now, b"t SEARCH TEXT quasar\r\n")),
        10_000
    );
    let fetched = roundtrip(&mut s, &mut now, b"f UID FETCH 1:* (UID FLAGS)\r\n");
    assert_eq!(
        fetched.windows(8).filter(|w| w == b" FETCH (").count(),
        100_000
    );
    let mut group = c.benchmark_group("mailbox_100k");
    group.sample_size(10);
    group.bench_function("select", |b| {
        b.iter(|| roundtrip(&mut s, &mut now, b"s SELECT INBOX\r\n"))
    });
    group.bench_function("uid_fetch_all_uid_flags", |b| {
        b.iter(|| roundtrip(&mut s, &mut now, b"f UID FETCH 1:* (UID FLAGS)\r\n"))
    });
    group.bench_function("search_unseen", |b| {
        b.iter(|| roundtrip(&mut s, &mut now, b"u SEARCH UNSEEN\r\n"))
    });
    group.bench_function("search_text_word", |b| {
        b.iter(|| roundtrip(&mut s, &mut now, b"t SEARCH TEXT quasar\r\n"))
    });
    group.finish();
}

criterion_group!(benches, large_mailbox);
criterion_main!(benches);
