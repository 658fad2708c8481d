//! INTERFACE SKELETON: the Pop3 server lands in the pop3 branch.

use std::time::Duration;

use crate::session::{Output, ServerSession, SessionContext};

/// One server session.
pub struct Pop3Server {
    _ctx: SessionContext,
}

impl Pop3Server {
    pub fn new(ctx: SessionContext) -> Self {
        Pop3Server { _ctx: ctx }
    }
}

impl ServerSession for Pop3Server {
    fn handle_input(&mut self, _now: Duration, _input: &[u8]) {}
    fn handle_eof(&mut self, _now: Duration) {}
    fn handle_timeout(&mut self, _now: Duration) {}
    fn handle_tls_established(&mut self, _now: Duration) {}
    fn poll_output(&mut self) -> Option<Output> {
        None
    }
    fn poll_timeout(&self) -> Option<Duration> {
        None
    }
    fn is_closed(&self) -> bool {
        false
    }
}
