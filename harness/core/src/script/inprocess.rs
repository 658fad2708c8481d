use std::collections::BTreeMap;
use std::time::Duration;

use super::play::{ReadLine, ScriptTransport};
use crate::session::{Output, ServerSession};

/// Plays a script straight into server sessions, with no sockets and a virtual clock: each
/// connection gets a fresh session from `make`. TLS requests are granted at once (there is
/// no TLS in-process; the session is told the handshake finished), so STARTTLS flows play
/// the same here as over sockets.
pub struct InProcess<F: FnMut(usize) -> Box<dyn ServerSession>> {
    make: F,
    conns: BTreeMap<usize, Conn>,
    now: Duration,
}

struct Conn {
    session: Box<dyn ServerSession>,
    received: Vec<u8>,
    closed: bool,
}

/// Virtual time that passes with every step, so timers see time moving.
const TICK: Duration = Duration::from_millis(1);

impl<F: FnMut(usize) -> Box<dyn ServerSession>> InProcess<F> {
    pub fn new(make: F) -> Self {
        InProcess {
            make,
            conns: BTreeMap::new(),
            now: Duration::ZERO,
        }
    }

    fn pump(&mut self, conn: usize) {
        self.now += TICK;
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        while let Some(out) = c.session.poll_output() {
            match out {
                Output::Write(bytes) => c.received.extend_from_slice(&bytes),
                Output::StartTls => c.session.handle_tls_established(now),
                Output::Close => c.closed = true,
            }
        }
    }
}

impl<F: FnMut(usize) -> Box<dyn ServerSession>> ScriptTransport for InProcess<F> {
    fn connect(&mut self, conn: usize) -> Result<(), String> {
        let session = (self.make)(conn);
        self.conns.insert(
            conn,
            Conn {
                session,
                received: Vec::new(),
                closed: false,
            },
        );
        self.pump(conn);
        Ok(())
    }

    fn send(&mut self, conn: usize, bytes: &[u8]) -> Result<(), String> {
        self.now += TICK;
        let now = self.now;
        let c = self.conns.get_mut(&conn).ok_or("not connected")?;
        if c.closed {
            return Err("the server has closed this connection".into());
        }
        c.session.handle_input(now, bytes);
        self.pump(conn);
        Ok(())
    }

    fn read_line(&mut self, conn: usize) -> Result<ReadLine, String> {
        self.pump(conn);
        let c = self.conns.get_mut(&conn).ok_or("not connected")?;
        if let Some(i) = c.received.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = c.received.drain(..=i).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(ReadLine::Line(line));
        }
        if c.closed {
            // A last line without CRLF still counts as a line.
            if !c.received.is_empty() {
                return Ok(ReadLine::Line(std::mem::take(&mut c.received)));
            }
            return Ok(ReadLine::Closed);
        }
        Ok(ReadLine::Silent)
    }

    fn close(&mut self, conn: usize) {
        self.now += TICK;
        let now = self.now;
        if let Some(mut c) = self.conns.remove(&conn) {
            c.session.handle_eof(now);
            while c.session.poll_output().is_some() {}
        }
    }
}
