//! Issue #14: a flood of large literals against `harness serve` with a small memory
//! budget. The literals past the budget are refused with `NO [LIMIT]` before any octet is
//! sent, a normal session alongside logs in, APPENDs and FETCHes, the server's resident
//! memory stays within the budget plus a margin, and comes back down once the flood's
//! connections close.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_tool, rss, spawn_serve_imap};

const MIB: u64 = 1024 * 1024;
const BUDGET: u64 = 64 * MIB;
const CONNECTIONS: usize = 40;
const LITERAL: u64 = 16_000_000;
/// Literals of LITERAL octets that fit in BUDGET at once.
const FITTING: usize = (BUDGET / LITERAL) as usize;
/// Resident memory beyond the baseline allowed on top of the budget: the debug build's
/// read buffers, the client sessions, allocator slack.
const MARGIN: u64 = 48 * MIB;

/// Stops a child process by its PID when dropped, so a failing assertion does not leave
/// the server or the flood client running.
struct StopOnDrop(std::process::Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A blocking IMAP client for the normal session.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut c = Client {
            reader: BufReader::new(tcp.try_clone().unwrap()),
            writer: tcp,
        };
        assert!(c.line().starts_with("* OK"));
        c
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read");
        line
    }

    /// Sends `text` and reads up to the tagged completion of `tag`; every line read.
    fn command(&mut self, tag: &str, text: &[u8]) -> Vec<String> {
        self.writer.write_all(text).unwrap();
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            assert!(!line.is_empty(), "connection closed; read so far {lines:?}");
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

/// While the flood is held: logs in, sees APPENDLIMIT, APPENDs a small message with a
/// synchronising literal and FETCHes it back.
fn normal_session(addr: &str) {
    let mut c = Client::connect(addr);
    let login = c.command("a", b"a LOGIN bob hunter2\r\n");
    assert!(login.last().unwrap().starts_with("a OK"), "{login:?}");
    let caps = c.command("b", b"b CAPABILITY\r\n");
    assert!(
        caps[0].contains(&format!("APPENDLIMIT={}", 16 * MIB)),
        "{caps:?}"
    );
    let body = b"Subject: flood survivor\r\n\r\nstill here\r\n";
    c.writer
        .write_all(format!("c APPEND INBOX {{{}}}\r\n", body.len()).as_bytes())
        .unwrap();
    let go = c.line();
    assert!(
        go.starts_with('+'),
        "no continuation for a small APPEND: {go}"
    );
    let mut rest = body.to_vec();
    rest.extend_from_slice(b"\r\n");
    let append = c.command("c", &rest);
    assert!(append.last().unwrap().starts_with("c OK"), "{append:?}");
    let select = c.command("d", b"d SELECT INBOX\r\n");
    assert!(select.last().unwrap().starts_with("d OK"), "{select:?}");
    let fetch = c.command("e", b"e FETCH * BODY[HEADER.FIELDS (SUBJECT)]\r\n");
    assert!(
        fetch.iter().any(|l| l.contains("Subject: flood survivor")),
        "{fetch:?}"
    );
    c.command("f", b"f LOGOUT\r\n");
}

#[test]
fn a_literal_flood_is_refused_past_the_budget_and_memory_comes_back() {
    let Some(python) = require_tool("python3", "apt-get install python3") else {
        return;
    };
    let started = Instant::now();
    let (server, addr) = spawn_serve_imap(Command::new(env!("CARGO_BIN_EXE_harness")).args([
        "serve",
        "--imap",
        "127.0.0.1:0",
        "--memory-budget",
        &BUDGET.to_string(),
        "--append-limit",
    ]));
    let pid = server.id();
    let mut server = StopOnDrop(server);
    let (host, port) = addr.rsplit_once(':').expect("imap listener address");
    let before = rss(pid);

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/literal_flood.py"
    );
    let mut flood = Command::new(&python)
        .args([
            script,
            host,
            port,
            &CONNECTIONS.to_string(),
            &LITERAL.to_string(),
            "25",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("flood client");
    let mut said = BufReader::new(flood.stdout.take().unwrap());
    let mut flood = StopOnDrop(flood);
    let mut flooded = String::new();
    said.read_line(&mut flooded).unwrap();
    let refused = CONNECTIONS - FITTING;
    assert_eq!(
        flooded.trim(),
        format!("FLOODED accepted={FITTING} refused={refused} codes=NO_[LIMIT]:{refused}"),
        "the literals past the budget are refused before their octets are sent"
    );
    let during = rss(pid);
    normal_session(&addr);
    assert!(
        during < before + BUDGET + MARGIN,
        "resident memory {} MiB while the flood is held (baseline {} MiB, budget {} MiB)",
        during / MIB,
        before / MIB,
        BUDGET / MIB
    );

    // The flood's connections close; the held literals' memory goes back to the system.
    drop(flood.0.stdin.take());
    let mut closed = String::new();
    said.read_line(&mut closed).unwrap();
    assert_eq!(closed.trim(), format!("CLOSED {CONNECTIONS}"));
    let _ = flood.0.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = rss(pid);
    while after > before + 16 * MIB && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        after = rss(pid);
    }
    eprintln!(
        "literal flood: {CONNECTIONS} x {LITERAL} octets, budget {} MiB: resident {:.1} MiB before, {:.1} MiB held, {:.1} MiB after close; {:?} in all",
        BUDGET / MIB,
        before as f64 / MIB as f64,
        during as f64 / MIB as f64,
        after as f64 / MIB as f64,
        started.elapsed()
    );
    assert!(
        after <= before + 16 * MIB,
        "resident memory stays at {} MiB after the flood closed (baseline {} MiB)",
        after / MIB,
        before / MIB
    );

    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the flood test took {:?}",
        started.elapsed()
    );
}
