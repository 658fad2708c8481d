//! New mail delivered over IMAP while a case runs, as another party would deliver it:
//! [`MailDrop`] wraps a topology so that, once a connection's clock passes the drop's
//! time, a message is APPENDed to the user's INBOX through an in-process IMAP session of
//! the same world (the hub publishes it; parked EcDoAsyncWaitEx calls are woken), and the
//! session that crossed the time is woken to answer them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::run::Topology;
use crate::imap::ImapServer;
use crate::profile::Profile;
use crate::session::{Output, ServerSession, SessionContext};
use crate::world::World;

/// IMAP exchanges the delivery may take.
const MAX_EXCHANGES: usize = 16;

/// What the drop did, shared by the connections of a case.
#[derive(Debug, Default)]
struct Dropped {
    done: bool,
    trace: Vec<String>,
}

/// Whose INBOX gets the message, when, and what happened: shared by the connections.
struct Spec {
    world: Arc<World>,
    user: String,
    password: String,
    at: Duration,
    dropped: Mutex<Dropped>,
}

/// A topology whose connections deliver one message at `at` (connection time).
pub struct MailDrop {
    inner: Box<dyn Topology>,
    spec: Arc<Spec>,
}

impl MailDrop {
    pub fn new(
        inner: Box<dyn Topology>,
        world: Arc<World>,
        user: &str,
        password: &str,
        at: Duration,
    ) -> MailDrop {
        MailDrop {
            inner,
            spec: Arc::new(Spec {
                world,
                user: user.into(),
                password: password.into(),
                at,
                dropped: Mutex::default(),
            }),
        }
    }
}

impl Topology for MailDrop {
    fn connect(&mut self, n: usize) -> Box<dyn ServerSession> {
        Box::new(Delivering {
            inner: self.inner.connect(n),
            spec: Arc::clone(&self.spec),
        })
    }

    fn trace(&self) -> Vec<String> {
        let mut lines = self
            .spec
            .dropped
            .lock()
            .map(|d| d.trace.clone())
            .unwrap_or_default();
        lines.extend(self.inner.trace());
        lines
    }

    fn findings(&self) -> Vec<String> {
        self.inner.findings()
    }
}

struct Delivering {
    inner: Box<dyn ServerSession>,
    spec: Arc<Spec>,
}

impl Delivering {
    fn due(&self) -> bool {
        self.spec.dropped.lock().map(|d| !d.done).unwrap_or(false)
    }

    /// Delivers once the clock has passed the drop's time, then wakes the session.
    fn maybe_deliver(&mut self, now: Duration) {
        let spec = &self.spec;
        if now < spec.at || !self.due() {
            return;
        }
        let reply = imap_append(&spec.world, &spec.user, &spec.password, now);
        if let Ok(mut d) = spec.dropped.lock() {
            d.done = true;
            d.trace.push(format!(
                "mail: at {} ms an IMAP APPEND to {}'s INBOX: {reply}",
                now.as_millis(),
                spec.user
            ));
        }
        self.inner.handle_wake(now);
    }
}

/// LOGIN and APPEND through an in-process IMAP session; the tagged reply to APPEND.
fn imap_append(world: &Arc<World>, user: &str, password: &str, now: Duration) -> String {
    let mut ctx = SessionContext::new(Arc::clone(world), Arc::new(Profile::default_profile()));
    // The other party's client speaks over TLS: LOGIN is allowed.
    ctx.transport.tls_active = true;
    let mut imap: Box<dyn ServerSession> = Box::new(ImapServer::new(ctx));
    let message = "From: bob@example.test\r\nSubject: while you were connected\r\n\r\nhello\r\n";
    let lines = [
        format!("M1 LOGIN {user} {password}\r\n"),
        format!("M2 APPEND INBOX {{{}}}\r\n", message.len()),
        format!("{message}\r\n"),
        "M3 LOGOUT\r\n".to_string(),
    ];
    let mut reply = String::from("no reply");
    let read = |imap: &mut Box<dyn ServerSession>| {
        let mut text = Vec::new();
        for _ in 0..MAX_EXCHANGES {
            match imap.poll_output() {
                Some(Output::Write(b)) => text.extend_from_slice(&b),
                Some(_) => {}
                None => break,
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    };
    read(&mut imap);
    for line in lines {
        imap.handle_input(now, line.as_bytes());
        let text = read(&mut imap);
        if let Some(tagged) = text.lines().find(|l| l.starts_with("M2 ")) {
            reply = tagged.to_string();
        }
    }
    reply
}

impl ServerSession for Delivering {
    fn handle_input(&mut self, now: Duration, input: &[u8]) {
        self.maybe_deliver(now);
        self.inner.handle_input(now, input);
    }

    fn handle_eof(&mut self, now: Duration) {
        self.inner.handle_eof(now);
    }

    fn handle_timeout(&mut self, now: Duration) {
        self.maybe_deliver(now);
        if self.inner.poll_timeout().is_some_and(|t| t <= now) {
            self.inner.handle_timeout(now);
        }
    }

    fn handle_shutdown(&mut self, now: Duration) {
        self.inner.handle_shutdown(now);
    }

    fn handle_wake(&mut self, now: Duration) {
        self.inner.handle_wake(now);
    }

    fn handle_tls_established(&mut self, now: Duration) {
        self.inner.handle_tls_established(now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.inner.poll_output()
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let drop = self.due().then_some(self.spec.at);
        [self.inner.poll_timeout(), drop]
            .into_iter()
            .flatten()
            .min()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}
