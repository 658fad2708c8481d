//! The cross-protocol case, sans-IO on one world: alice's MAPI session (our
//! DCE/RPC client, NTLM at packet privacy, through the lab's Exchange endpoint) logs on,
//! registers for new mail and parks an EcDoAsyncWaitEx; an IMAP session APPENDs to her
//! INBOX; the association's waker fires, `handle_wake` answers the wait with
//! NotificationPending, and the next EcDoRpcExt2 carries RopNotify for the new message.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness_wire::dcerpc::{AuthLevel, ContextElement, SyntaxId};
use harness_wire::ndr::NdrWriter;
use harness_wire::Reader;

use super::rops::{self, message_id};
use super::tests::{
    connect_stub, legacy_connect_stub, legacy_rpc_stub, logon_rop, parse_connect, parse_rpc,
    parse_wait, register_rop, rop_request, rpc_stub, wait_stub,
};
use super::*;
use crate::dcerpc::client::{BindSecurity, ClientAssociation, ClientConfig, ClientEvent};
use crate::dcerpc::endpoints::{RpcEndpoints, RpcLabConfig};
use crate::dcerpc::ntlm::NtlmClientSecurity;
use crate::dcerpc::server::{Association, EndpointConfig};
use crate::imap::ImapServer;
use crate::ntlm::{Credentials, InitiatorOptions, ResponseKind};
use crate::profile::Profile;
use crate::session::{Output, ServerSession, SessionContext};

#[derive(Debug, Default)]
struct Woken(AtomicUsize);

impl Waker for Woken {
    fn wake(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

const NOW: Duration = Duration::from_secs(1);

/// Our client and the server association, octets passed by hand.
struct Mapi {
    server: Association,
    client: ClientAssociation,
}

impl Mapi {
    /// A new association on the Exchange endpoint, EMSMDB (context 0) and AsyncEMSMDB
    /// (context 1) bound as alice with NTLM at packet privacy.
    fn bound_as_alice(endpoints: &RpcEndpoints, waker: Arc<Woken>) -> Mapi {
        Mapi::bound_as_alice_with(endpoints, waker, ClientConfig::default())
    }

    fn bound_as_alice_with(
        endpoints: &RpcEndpoints,
        waker: Arc<Woken>,
        config: ClientConfig,
    ) -> Mapi {
        let mut mapi = Mapi {
            server: endpoints.exchange.accept_with_waker(NOW, waker),
            client: ClientAssociation::new(config),
        };
        let contexts =
            [(0, EMSMDB_SYNTAX), (1, ASYNC_EMSMDB_SYNTAX)].map(|(id, syntax)| ContextElement {
                context_id: id,
                abstract_syntax: syntax,
                transfer_syntaxes: vec![SyntaxId::NDR20],
            });
        let bind = mapi
            .client
            .bind(&contexts, Some(ntlm("alice", "secret")))
            .unwrap();
        mapi.exchange(&bind, NOW);
        assert!(mapi.client.is_ready());
        mapi
    }

    /// Feeds `bytes` to the server and whatever it writes back to the client, legs and
    /// all, until neither side has more; the client's events other than legs.
    fn exchange(&mut self, bytes: &[u8], now: Duration) -> Vec<ClientEvent> {
        self.server.handle_input(now, bytes);
        self.drain()
    }

    fn drain(&mut self) -> Vec<ClientEvent> {
        let mut written = Vec::new();
        while let Some(out) = self.server.poll_output() {
            if let Output::Write(b) = out {
                written.extend_from_slice(&b);
            }
        }
        let mut events = Vec::new();
        self.client.receive(&written, &mut events).unwrap();
        let mut rest = Vec::new();
        for event in events {
            match event {
                ClientEvent::Send(leg) => rest.extend(self.exchange(&leg, NOW)),
                other => rest.push(other),
            }
        }
        rest
    }

    fn call(&mut self, context_id: u16, opnum: u16, stub: &[u8]) -> Vec<ClientEvent> {
        self.call_as(context_id, 1, opnum, stub)
    }

    /// A call under the security context `auth_context_id`.
    fn call_as(
        &mut self,
        context_id: u16,
        auth_context_id: u32,
        opnum: u16,
        stub: &[u8],
    ) -> Vec<ClientEvent> {
        let call = self
            .client
            .call_as(context_id, Some(auth_context_id), opnum, None, stub)
            .unwrap();
        let mut events = Vec::new();
        for fragment in call.fragments {
            events.extend(self.exchange(&fragment, NOW));
        }
        events
    }

    fn response(&mut self, context_id: u16, opnum: u16, stub: &[u8]) -> Vec<u8> {
        match self.call(context_id, opnum, stub).as_slice() {
            [ClientEvent::Response { stub, .. }] => stub.clone(),
            other => panic!("not one response: {other:?}"),
        }
    }
}

fn ntlm(user: &str, password: &str) -> BindSecurity {
    ntlm_as(user, password, 1)
}

fn ntlm_as(user: &str, password: &str, auth_context_id: u32) -> BindSecurity {
    let credentials = Credentials {
        user: user.into(),
        password: password.into(),
        domain: String::new(),
        workstation: "HARNESS".into(),
    };
    let options = InitiatorOptions::fixed(3, 4, ResponseKind::V2, true);
    BindSecurity {
        provider: Box::new(NtlmClientSecurity::new(credentials, options)),
        level: AuthLevel::PKT_PRIVACY,
        auth_context_id,
    }
}

fn imap_append(world: &Arc<World>, message: &str) -> String {
    let mut ctx = SessionContext::new(Arc::clone(world), Arc::new(Profile::default_profile()));
    ctx.transport.tls_active = true;
    let mut imap = ImapServer::new(ctx);
    let mut now = Duration::ZERO;
    let mut send = |bytes: &[u8]| {
        now += Duration::from_millis(5);
        imap.handle_input(now, bytes);
        let mut text = Vec::new();
        while let Some(out) = imap.poll_output() {
            if let Output::Write(b) = out {
                text.extend_from_slice(&b);
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    };
    send(b"");
    assert!(send(b"L LOGIN alice secret\r\n").contains("L OK"));
    let head = format!("A APPEND INBOX {{{}}}\r\n", message.len());
    assert!(send(head.as_bytes()).starts_with('+'));
    send(format!("{message}\r\n").as_bytes())
}

/// The default lab's world and its RPC endpoints, EMSMDB configured as given; the
/// world also has APPSRV$, the machine account a process running as Local System
/// authenticates as.
fn lab(emsmdb_config: EmsmdbConfig) -> (Arc<World>, RpcEndpoints) {
    let mut lab = crate::world::LabFile::default_lab();
    lab.add_user("APPSRV$", "machine-secret");
    let world = Arc::new(lab.build().unwrap());
    let config = RpcLabConfig {
        exchange_port: 6001,
        exchange_ip: [127, 0, 0, 1],
        endpoint: EndpointConfig::default(),
        seed: 7,
        unix_now: 1_700_000_000,
        kerberos_clock: None,
    };
    let endpoints = RpcEndpoints::for_world_with(&world, &config, emsmdb_config);
    (world, endpoints)
}

#[test]
fn imap_append_wakes_a_parked_async_wait_and_the_next_rpc_carries_rop_notify() {
    let emsmdb_config = EmsmdbConfig {
        async_wait_timeout: Duration::from_secs(60),
        ..EmsmdbConfig::default()
    };
    let (world, endpoints) = lab(emsmdb_config);
    let woken = Arc::new(Woken::default());
    let mut mapi = Mapi::bound_as_alice(&endpoints, woken.clone());

    let dn = legacy_dn::user_dn(&world.domain, "alice");
    let connected = parse_connect(&mapi.response(0, OP_CONNECT_EX, &connect_stub(&dn, &[], 0)));
    assert_eq!(connected.status, 0);
    let cxh = connected.cxh;
    let mut logon = logon_rop(0, &dn);
    logon.extend(register_rop(0, 1));
    let rgb_in = rop_request(&logon, &[u32::MAX; 2], true);
    let stub = rpc_stub(&cxh, 0, &rgb_in, rgb_in.len() as u32);
    let logged_on = parse_rpc(&mapi.response(0, OP_RPC_EXT2, &stub));
    assert_eq!(logged_on.status, 0);
    let (_, handles) = logged_on.split();
    let notification_handle = handles[1];

    let mut w = NdrWriter::new();
    w.put_context_handle(&cxh);
    let out = mapi.response(0, OP_ASYNC_CONNECT_EX, w.as_bytes());
    let acxh = harness_wire::ndr::NdrReader::new(&out)
        .context_handle()
        .unwrap();
    assert_eq!(
        mapi.call(1, OP_ASYNC_WAIT_EX, &wait_stub(&acxh)),
        [],
        "the wait parks"
    );
    assert_eq!(mapi.server.parked_calls(), 1);
    assert_eq!(woken.0.load(Ordering::Relaxed), 0);

    let appended = imap_append(&world, "Subject: hi\r\n\r\nnew mail\r\n");
    assert!(appended.contains("A OK"), "{appended}");
    assert!(
        woken.0.load(Ordering::Relaxed) >= 1,
        "the association's waker was woken"
    );
    mapi.server.handle_wake(NOW + Duration::from_secs(2));
    match mapi.drain().as_slice() {
        [ClientEvent::Response { stub, .. }] => {
            assert_eq!(parse_wait(stub), (NOTIFICATION_PENDING, 0));
        }
        other => panic!("the wait did not complete: {other:?}"),
    }
    assert_eq!(mapi.server.parked_calls(), 0);

    let uid = world.store.with_account("alice", |a| {
        a.mailbox("INBOX")
            .and_then(|m| m.messages.last())
            .map(|m| m.uid)
    });
    let rgb_in = rop_request(&[], &handles, true);
    let stub = rpc_stub(&cxh, 0, &rgb_in, rgb_in.len() as u32);
    let (responses, _) = parse_rpc(&mapi.response(0, OP_RPC_EXT2, &stub)).split();
    let mut r = Reader::new(&responses);
    assert_eq!(r.u8().unwrap(), rops::ROP_NOTIFY);
    assert_eq!(r.u32_le().unwrap(), notification_handle);
    r.u8().unwrap();
    assert_eq!(r.u16_le().unwrap(), 0x0002, "NewMail");
    r.u64_le().unwrap();
    assert_eq!(Some(r.u64_le().unwrap()), uid.map(message_id));
}

#[test]
fn exchange2003_ec_do_connect_and_ec_do_rpc_over_a_sealed_association() {
    let (world, endpoints) = lab(EmsmdbConfig::exchange2003());
    let mut mapi = Mapi::bound_as_alice(&endpoints, Arc::new(Woken::default()));

    let dn = legacy_dn::user_dn(&world.domain, "alice");
    let stub = mapi.response(0, OP_CONNECT, &legacy_connect_stub(&dn));
    let connected = client::parse_legacy_connect(&stub).unwrap();
    assert_eq!(connected.status, 0);
    let stub = legacy_rpc_stub(&connected.cxh, &logon_rop(0, &dn), &[u32::MAX], 0x8000);
    let logged_on = client::parse_legacy_rpc(&mapi.response(0, OP_RPC, &stub)).unwrap();
    assert_eq!(logged_on.status, 0);
    let (responses, handles) = logged_on.split();
    assert_eq!(responses[..2], [rops::ROP_LOGON, 0]);
    assert_ne!(handles, [u32::MAX]);
    assert_eq!(endpoints.emsmdb.sessions(), 1);
}

/// What the registration-clash case puts on the wire: alice's worker and the process's
/// async-notification thread share one association, each under its own security context
/// (security context multiplexing, auth_context_id 1 and 2). Returns the association
/// after EcDoConnectEx, RopLogon and RopRegisterNotification as alice, with the second
/// context (APPSRV$) established on it, and the CXH.
fn worker_and_notification_thread(
    endpoints: &RpcEndpoints,
    world: &World,
    woken: Arc<Woken>,
) -> (Mapi, harness_wire::ndr::ContextHandle) {
    let config = ClientConfig {
        // Security context multiplexing ([MS-RPCE] 2.2.2.14) and keep-connection.
        bind_time_features: Some(0x3),
        ..ClientConfig::default()
    };
    let mut mapi = Mapi::bound_as_alice_with(endpoints, woken, config);
    let dn = legacy_dn::user_dn(&world.domain, "alice");
    let connected = parse_connect(&mapi.response(0, OP_CONNECT_EX, &connect_stub(&dn, &[], 0)));
    assert_eq!(connected.status, 0);
    let mut logon = logon_rop(0, &dn);
    logon.extend(register_rop(0, 1));
    let rgb_in = rop_request(&logon, &[u32::MAX; 2], true);
    let stub = rpc_stub(&connected.cxh, 0, &rgb_in, rgb_in.len() as u32);
    assert_eq!(parse_rpc(&mapi.response(0, OP_RPC_EXT2, &stub)).status, 0);
    let async_context = ContextElement {
        context_id: 1,
        abstract_syntax: ASYNC_EMSMDB_SYNTAX,
        transfer_syntaxes: vec![SyntaxId::NDR20],
    };
    let alter = mapi
        .client
        .add_security(&[async_context], ntlm_as("APPSRV$", "machine-secret", 2))
        .unwrap();
    let events = mapi.exchange(&alter, NOW);
    assert!(
        matches!(events.as_slice(), [ClientEvent::AlterContextAcked(_)]),
        "{events:?}"
    );
    assert!(mapi.client.is_ready());
    (mapi, connected.cxh)
}

fn async_connect_stub(cxh: &harness_wire::ndr::ContextHandle) -> Vec<u8> {
    let mut w = NdrWriter::new();
    w.put_context_handle(cxh);
    w.into_bytes()
}

#[test]
fn exchange2013_fails_the_notification_thread_then_the_worker_on_one_association() {
    let (world, endpoints) = lab(EmsmdbProfile::Exchange2013.config());
    let (mut mapi, cxh) =
        worker_and_notification_thread(&endpoints, &world, Arc::new(Woken::default()));
    // The notification thread, as the process, starts the async connection.
    let out = mapi.call_as(0, 2, OP_ASYNC_CONNECT_EX, &async_connect_stub(&cxh));
    let [ClientEvent::Response { stub, .. }] = out.as_slice() else {
        panic!("{out:?}");
    };
    let (acxh, status) = client::parse_handle_response(stub).unwrap();
    assert_eq!((status, acxh.is_nil()), (EC_RPC_FAILED, true));
    let log = endpoints.emsmdb.event_log();
    assert_eq!(log.len(), 1);
    assert!(
        log[0].starts_with("Registration of the Association GUID failed")
            && log[0].contains("registered for example\\alice")
            && log[0].contains("EcDoAsyncConnectEx came under example\\appsrv$"),
        "{log:?}"
    );
    // Then the worker's next call, under alice's own context, fails too.
    let rgb_in = rop_request(&[], &[u32::MAX; 2], true);
    let stub = rpc_stub(&cxh, 0, &rgb_in, rgb_in.len() as u32);
    let out = mapi.call_as(0, 1, OP_RPC_EXT2, &stub);
    let [ClientEvent::Response { stub, .. }] = out.as_slice() else {
        panic!("{out:?}");
    };
    assert_eq!(parse_rpc(stub).status, EC_RPC_FAILED);
    assert_eq!(endpoints.emsmdb.sessions(), 0);
}

#[test]
fn exchange2010_delivers_notifications_to_the_process_thread_of_an_impersonating_worker() {
    let (world, endpoints) = lab(EmsmdbConfig {
        async_wait_timeout: Duration::from_secs(60),
        ..EmsmdbProfile::Exchange2010.config()
    });
    let woken = Arc::new(Woken::default());
    let (mut mapi, cxh) = worker_and_notification_thread(&endpoints, &world, woken.clone());
    let out = mapi.call_as(0, 2, OP_ASYNC_CONNECT_EX, &async_connect_stub(&cxh));
    let [ClientEvent::Response { stub, .. }] = out.as_slice() else {
        panic!("{out:?}");
    };
    let (acxh, status) = client::parse_handle_response(stub).unwrap();
    assert_eq!((status, acxh.is_nil()), (0, false));
    assert_eq!(
        mapi.call_as(1, 2, OP_ASYNC_WAIT_EX, &wait_stub(&acxh)),
        [],
        "the wait parks under the process's context"
    );
    let appended = imap_append(&world, "Subject: hi\r\n\r\nnew mail\r\n");
    assert!(appended.contains("A OK"), "{appended}");
    mapi.server.handle_wake(NOW + Duration::from_secs(2));
    match mapi.drain().as_slice() {
        [ClientEvent::Response { stub, .. }] => {
            assert_eq!(parse_wait(stub), (NOTIFICATION_PENDING, 0));
        }
        other => panic!("the wait did not complete: {other:?}"),
    }
    assert!(endpoints.emsmdb.event_log().is_empty());
}
