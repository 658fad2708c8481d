//! Back-end connections played in-process: each [`ProxyOutput::ConnectBackend`] becomes
//! a [`ServerSession`] (the lab's Exchange endpoint's `Association`, or any other), fed
//! and drained the way a socket adapter would, so tests, fuzz targets and the scenario
//! runner put the proxy in front of the endpoint without sockets.

use std::collections::BTreeMap;
use std::time::Duration;

use super::proxy::{BackendId, ProxyOutput, RpcProxy, Target};
use crate::dcerpc::endpoints::RpcEndpoints;
use crate::dcerpc::epm::EPM_PORT;
use crate::session::{Output, ServerSession};

/// Opens a session for a target, `None` when nothing serves it (a refused connect).
pub type Connector = Box<dyn FnMut(&Target, Duration) -> Option<Box<dyn ServerSession>> + Send>;

/// The RPC-over-HTTP ports of an Exchange server: EMSMDB, RFR and NSPI ([MS-OXCRPC]
/// 1.4 and the `RpcProxy=` mapping; Exchange 2003's static ports), all served by the
/// lab's one Exchange endpoint.
pub const EXCHANGE_PORTS: [u16; 3] = [6001, 6002, 6004];
/// The endpoint mapper's port for ncacn_http ([MS-RPCH] 2.1).
pub const EPM_HTTP_PORT: u16 = 593;

/// The back-end sessions of one proxy, by the id the proxy gave them.
pub struct InProcessBackends {
    connect: Connector,
    sessions: BTreeMap<BackendId, Box<dyn ServerSession>>,
}

impl InProcessBackends {
    pub fn new(connect: Connector) -> InProcessBackends {
        InProcessBackends {
            connect,
            sessions: BTreeMap::new(),
        }
    }

    /// The lab's endpoints: 6001, 6002 and 6004 to the Exchange endpoint, 593 (ncacn_http's
    /// endpoint mapper port, [MS-RPCH] 2.1) and 135 to the endpoint mapper; any server
    /// name (the lab has one server).
    pub fn for_endpoints(endpoints: &RpcEndpoints) -> InProcessBackends {
        let exchange = endpoints.exchange.clone();
        let epm = endpoints.epm.clone();
        InProcessBackends::new(Box::new(move |target: &Target, now| {
            let session: Box<dyn ServerSession> = match target.port {
                p if EXCHANGE_PORTS.contains(&p) => Box::new(exchange.accept(now)),
                EPM_PORT | EPM_HTTP_PORT => Box::new(epm.accept(now)),
                _ => return None,
            };
            Some(session)
        }))
    }

    /// Something the back-end sessions wait on happened (new mail): each is woken, as
    /// the lab's driver wakes a socket's session.
    pub fn wake(&mut self, now: Duration) {
        for session in self.sessions.values_mut() {
            session.handle_wake(now);
        }
    }

    /// Back-end sessions open now.
    pub fn open(&self) -> usize {
        self.sessions.len()
    }

    /// Plays the proxy's back-end outputs on the sessions and the sessions' writes into
    /// the proxy (as far as [`RpcProxy::backend_accepts`] lets them) until neither has
    /// anything left to do; fires the sessions' due timers. Returns the proxy's other
    /// outputs (channel responses, writes, closes, ends) in order.
    pub fn pump(&mut self, proxy: &mut RpcProxy, now: Duration) -> Vec<ProxyOutput> {
        let mut client = Vec::new();
        for session in self.sessions.values_mut() {
            if session.poll_timeout().is_some_and(|t| t <= now) {
                session.handle_timeout(now);
            }
        }
        loop {
            let mut progressed = false;
            while let Some(output) = proxy.poll_output() {
                progressed = true;
                match output {
                    ProxyOutput::ConnectBackend { backend, target } => {
                        match (self.connect)(&target, now) {
                            Some(session) => {
                                self.sessions.insert(backend, session);
                            }
                            None => proxy.backend_closed(now, backend),
                        }
                    }
                    ProxyOutput::WriteBackend { backend, bytes } => {
                        if let Some(session) = self.sessions.get_mut(&backend) {
                            session.handle_input(now, &bytes);
                        }
                    }
                    ProxyOutput::CloseBackend { backend } => {
                        if let Some(mut session) = self.sessions.remove(&backend) {
                            session.handle_eof(now);
                        }
                    }
                    other => client.push(other),
                }
            }
            let ids: Vec<BackendId> = self.sessions.keys().copied().collect();
            for id in ids {
                progressed |= self.drain_session(proxy, now, id);
            }
            if !progressed {
                return client;
            }
        }
    }

    /// Hands one session's outputs to the proxy while it accepts them; true if any.
    fn drain_session(&mut self, proxy: &mut RpcProxy, now: Duration, id: BackendId) -> bool {
        let mut progressed = false;
        while proxy.backend_accepts(id) {
            let Some(session) = self.sessions.get_mut(&id) else {
                break;
            };
            let Some(output) = session.poll_output() else {
                break;
            };
            progressed = true;
            match output {
                Output::Write(bytes) => {
                    // A refusal ends the virtual connection; its outputs say why.
                    let _ = proxy.backend_data(now, id, &bytes);
                }
                Output::Close | Output::StartTls => {
                    self.sessions.remove(&id);
                    proxy.backend_closed(now, id);
                }
            }
        }
        progressed
    }
}
