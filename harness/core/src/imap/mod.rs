//! INTERFACE SKELETON: the Imap server lands in the imap branch.

use std::time::Duration;

use crate::session::{Output, ServerSession, SessionContext};

/// One server session.
pub struct ImapServer {
    _ctx: SessionContext,
}

impl ImapServer {
    pub fn new(ctx: SessionContext) -> Self {
        ImapServer { _ctx: ctx }
    }
}

impl ServerSession for ImapServer {
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
