//! EMSMDB and AsyncEMSMDB: calls on the interfaces directly (stubs and ROP buffers built
//! here), the bad inputs each refuses, and the cross-protocol notification: an IMAP
//! APPEND wakes a parked EcDoAsyncWaitEx on a real association (NTLM, sealed) and the
//! next EcDoRpcExt2 carries RopNotify.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness_wire::dcerpc::{AuthType, FaultStatus};
use harness_wire::ndr::{ContextHandle, NdrReader, NdrWriter};
use harness_wire::oxcrpc::{encode_extended_buffer, EncodeOptions, RpcHeaderExt, FLAG_COMPRESSED};
use harness_wire::{Codec, Reader, Writer};

use super::rops::{self, folder_id, message_id, INBOX_INDEX};
use super::*;
use crate::dcerpc::security::Principal;
use crate::world::LabFile;

fn header(extended: &[u8]) -> RpcHeaderExt {
    RpcHeaderExt::decode(&mut Reader::new(extended)).unwrap()
}

pub(crate) fn world() -> Arc<World> {
    Arc::new(LabFile::default_lab().build().unwrap())
}

fn principal(user: &str) -> Principal {
    Principal {
        auth_type: AuthType::NTLMSSP,
        user: user.into(),
        domain: "EXAMPLE".into(),
        workstation: "WS".into(),
    }
}

fn ctx(principal: Option<&Principal>, connection_id: u64) -> CallContext<'_> {
    CallContext {
        principal,
        ..CallContext::unauthenticated(connection_id)
    }
}

fn alice_dn() -> String {
    legacy_dn::user_dn("EXAMPLE", "alice")
}

pub(crate) use super::client::{
    connect_stub, legacy_connect_stub, legacy_rpc_stub, logon_rop, register_rop, rop_request,
    rpc_stub, wait_stub,
};
use super::client::{Connected, RpcResult};

pub(crate) fn parse_connect(stub: &[u8]) -> Connected {
    super::client::parse_connect(stub).unwrap()
}

pub(crate) fn parse_rpc(stub: &[u8]) -> RpcResult {
    super::client::parse_rpc(stub).unwrap()
}

pub(crate) fn parse_wait(stub: &[u8]) -> (u32, u32) {
    super::client::parse_wait(stub).unwrap()
}

fn response(outcome: CallOutcome) -> Vec<u8> {
    match outcome {
        CallOutcome::Response(stub) => stub,
        other => panic!("not a response: {other:?}"),
    }
}

struct Fixture {
    world: Arc<World>,
    server: Arc<EmsmdbServer>,
    emsmdb: Arc<Emsmdb>,
    async_emsmdb: Arc<AsyncEmsmdb>,
    alice: Principal,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with(EmsmdbConfig::default())
    }

    fn with(base: EmsmdbConfig) -> Fixture {
        let world = world();
        let server = EmsmdbServer::new(
            Arc::clone(&world),
            EmsmdbConfig {
                async_wait_timeout: Duration::from_secs(30),
                max_notifications_per_response: 2,
                ..base
            },
        );
        let (emsmdb, async_emsmdb) = server.interfaces();
        Fixture {
            world,
            server,
            emsmdb,
            async_emsmdb,
            alice: principal("alice"),
        }
    }

    fn connect(&self, connection_id: u64) -> ContextHandle {
        let stub = connect_stub(&alice_dn(), &[], 0);
        let c = ctx(Some(&self.alice), connection_id);
        let got = parse_connect(&response(self.emsmdb.call(&c, OP_CONNECT_EX, &stub)));
        assert_eq!(got.status, 0);
        got.cxh
    }

    fn rpc(&self, connection_id: u64, cxh: &ContextHandle, rgb_in: &[u8]) -> RpcResult {
        let c = ctx(Some(&self.alice), connection_id);
        let stub = rpc_stub(cxh, 0, rgb_in, rgb_in.len() as u32);
        parse_rpc(&response(self.emsmdb.call(&c, OP_RPC_EXT2, &stub)))
    }

    /// Connect, RopLogon (handle index 0), RopRegisterNotification (index 1).
    fn logged_on_and_registered(&self, connection_id: u64) -> ContextHandle {
        let cxh = self.connect(connection_id);
        let mut rops = logon_rop(0, &alice_dn());
        rops.extend(register_rop(0, 1));
        let got = self.rpc(
            connection_id,
            &cxh,
            &rop_request(&rops, &[u32::MAX; 2], true),
        );
        assert_eq!(got.status, 0);
        let (responses, handles) = got.split();
        assert_eq!(responses[0], rops::ROP_LOGON);
        assert_eq!(&responses[2..6], &[0; 4], "logon succeeds");
        let register = &responses[responses.len() - 6..];
        assert_eq!(register, &[rops::ROP_REGISTER_NOTIFICATION, 1, 0, 0, 0, 0]);
        assert!(handles.iter().all(|h| *h != u32::MAX), "{handles:?}");
        cxh
    }

    fn async_connect(&self, connection_id: u64, cxh: &ContextHandle) -> ContextHandle {
        let mut w = NdrWriter::new();
        w.put_context_handle(cxh);
        let c = ctx(Some(&self.alice), connection_id);
        let out = response(self.emsmdb.call(&c, OP_ASYNC_CONNECT_EX, w.as_bytes()));
        let mut r = NdrReader::new(&out);
        let acxh = r.context_handle().unwrap();
        assert_eq!(r.u32().unwrap(), 0);
        acxh
    }

    fn publish(&self, uid: u32) {
        self.world.notifications.publish(crate::notify::MailEvent {
            kind: crate::notify::MailEventKind::NewMail,
            user: "alice".into(),
            mailbox: "INBOX".into(),
            uid,
        });
    }
}

#[test]
fn connect_ex_gives_a_session_to_the_mailbox_owner_only() {
    let f = Fixture::new();
    let stub = connect_stub(&alice_dn(), &[], 0);
    let c = ctx(Some(&f.alice), 1);
    let got = parse_connect(&response(f.emsmdb.call(&c, OP_CONNECT_EX, &stub)));
    assert_eq!(got.status, 0);
    assert!(!got.cxh.is_nil());
    assert_eq!(got.polls_max, 60_000);
    assert_eq!(got.server_version, [0x0F00, 0x834F, 32]);
    assert_eq!(
        got.dn_prefix.as_deref(),
        Some(legacy_dn::org_prefix("EXAMPLE").as_bytes())
    );
    assert_eq!(got.display_name.as_deref(), Some(&b"alice"[..]));
    assert_eq!(f.server.sessions(), 1);

    let refused = |principal: Option<&Principal>, dn: &str| {
        let c = ctx(principal, 1);
        let got = parse_connect(&response(f.emsmdb.call(
            &c,
            OP_CONNECT_EX,
            &connect_stub(dn, &[], 0),
        )));
        assert!(got.cxh.is_nil() && got.dn_prefix.is_none());
        got.status
    };
    assert_eq!(refused(None, &alice_dn()), EC_ACCESS_DENIED, "no principal");
    let bob = principal("bob");
    assert_eq!(
        refused(Some(&bob), &alice_dn()),
        EC_ACCESS_DENIED,
        "another's mailbox"
    );
    assert_eq!(
        refused(Some(&f.alice), &legacy_dn::user_dn("EXAMPLE", "nobody")),
        EC_LOGIN_FAILURE
    );
    assert_eq!(
        refused(Some(&f.alice), "/o=OTHER/cn=alice"),
        EC_LOGIN_FAILURE
    );
    let c = ctx(Some(&f.alice), 1);
    let short_aux = connect_stub(&alice_dn(), &[0; 7], 7);
    let got = parse_connect(&response(f.emsmdb.call(&c, OP_CONNECT_EX, &short_aux)));
    assert_eq!(
        (got.status, got.cxh.is_nil()),
        (EC_RPC_FAILED, true),
        "cbAuxIn 1 to 7"
    );
    assert_eq!(f.server.sessions(), 1);
}

#[test]
fn connect_ex_refuses_oversized_aux_and_lying_counts() {
    let f = Fixture::new();
    let c = ctx(Some(&f.alice), 1);
    let bad = CallOutcome::Fault(FaultStatus::BAD_STUB_DATA);
    let aux = vec![0u8; 0x1009];
    assert_eq!(
        f.emsmdb
            .call(&c, OP_CONNECT_EX, &connect_stub(&alice_dn(), &aux, 0x1009)),
        bad
    );
    // cbAuxIn says 4, size_is carried 8.
    assert_eq!(
        f.emsmdb
            .call(&c, OP_CONNECT_EX, &connect_stub(&alice_dn(), &[0; 8], 4)),
        bad
    );
    // A string conformance far beyond the stub.
    let mut lying = connect_stub(&alice_dn(), &[], 0);
    lying[0..4].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    assert_eq!(f.emsmdb.call(&c, OP_CONNECT_EX, &lying), bad);
    let mut short = connect_stub(&alice_dn(), &[], 0);
    short.truncate(short.len() - 3);
    assert_eq!(f.emsmdb.call(&c, OP_CONNECT_EX, &short), bad);
    assert_eq!(f.server.sessions(), 0);
}

#[test]
fn logon_answers_the_mailbox_folders() {
    let f = Fixture::new();
    let cxh = f.connect(1);
    for compress in [false, true] {
        let got = f.rpc(
            1,
            &cxh,
            &rop_request(&logon_rop(0, &alice_dn()), &[u32::MAX], compress),
        );
        assert_eq!(got.status, 0);
        let (responses, handles) = got.split();
        let mut r = Reader::new(&responses);
        assert_eq!(r.u8().unwrap(), rops::ROP_LOGON);
        assert_eq!(r.u8().unwrap(), 0, "OutputHandleIndex");
        assert_eq!(r.u32_le().unwrap(), 0);
        assert_eq!(r.u8().unwrap(), 0x01, "LogonFlags: Private");
        let folders: Vec<u64> = (0..13).map(|_| r.u64_le().unwrap()).collect();
        assert_eq!(folders[INBOX_INDEX], folder_id(INBOX_INDEX));
        r.skip(1 + 16 + 2 + 16 + 8 + 8 + 4).unwrap();
        assert!(r.is_empty(), "the 2.2.3.1.3 layout, nothing after");
        assert_ne!(handles[0], u32::MAX);
    }
    // Another user's mailbox, a public logon, a handle index beyond the table.
    let other = logon_rop(0, &legacy_dn::user_dn("EXAMPLE", "bob"));
    let (responses, _) = f.rpc(1, &cxh, &rop_request(&other, &[0], true)).split();
    assert_eq!(responses, [rops::ROP_LOGON, 0, 5, 0, 7, 0x80]);
    let mut public = logon_rop(0, "");
    public[3] = 0;
    let (responses, _) = f.rpc(1, &cxh, &rop_request(&public, &[0], true)).split();
    assert_eq!(responses, [rops::ROP_LOGON, 0, 2, 1, 4, 0x80]);
    let (responses, _) = f
        .rpc(1, &cxh, &rop_request(&logon_rop(3, ""), &[0], true))
        .split();
    assert_eq!(responses, [rops::ROP_LOGON, 3, 0xB9, 4, 0, 0]);
}

#[test]
fn unknown_rops_get_ec_not_supported_and_end_the_buffer() {
    let f = Fixture::new();
    let cxh = f.connect(1);
    let mut rops = vec![0x77, 0, 0, 1, 2, 3];
    rops.extend(logon_rop(0, ""));
    let got = f.rpc(1, &cxh, &rop_request(&rops, &[u32::MAX], true));
    assert_eq!(got.status, 0);
    let (responses, handles) = got.split();
    assert_eq!(responses, [0x77, 0, 0x02, 0x01, 0x04, 0x80]);
    assert_eq!(handles, [u32::MAX], "the logon after it did not run");
    // RopRelease has no response and frees the handle.
    let got = f.rpc(1, &cxh, &rop_request(&logon_rop(0, ""), &[u32::MAX], true));
    let (_, handles) = got.split();
    let got = f.rpc(
        1,
        &cxh,
        &rop_request(&[rops::ROP_RELEASE, 0, 0], &handles, true),
    );
    assert_eq!(got.split().0, b"");
}

#[test]
fn bad_buffers_are_ec_rpc_format() {
    let f = Fixture::new();
    let cxh = f.connect(1);
    let format = |rgb_in: &[u8]| f.rpc(1, &cxh, rgb_in).status;
    // RopSize beyond the buffer; RopSize 1; a handle table not of u32s; a ROP cut short.
    let mut w = Writer::new();
    w.put_u16_le(40);
    w.put_bytes(&[rops::ROP_RELEASE, 0, 0]);
    let raw = |b: &[u8]| {
        encode_extended_buffer(
            b,
            EncodeOptions {
                compress: false,
                xor: false,
                ..EncodeOptions::default()
            },
        )
    };
    assert_eq!(format(&raw(w.as_bytes())), EC_RPC_FORMAT);
    assert_eq!(format(&raw(&[1, 0])), EC_RPC_FORMAT);
    assert_eq!(format(&raw(&[2, 0, 1, 2, 3])), EC_RPC_FORMAT);
    assert_eq!(format(&raw(&[4, 0, rops::ROP_LOGON, 0])), EC_RPC_FORMAT);
    // An extended buffer that is not one, and LZ77 claiming less than it expands to.
    assert_eq!(format(&[9; 12]), EC_RPC_FORMAT);
    let payload = [b'a'; 64];
    let mut bomb = rop_request(&payload, &[], true);
    let header = header(&bomb);
    assert!(header.has(FLAG_COMPRESSED));
    bomb[6..8].copy_from_slice(&(header.size + 1).to_le_bytes()); // SizeActual too small
    assert_eq!(format(&bomb), EC_RPC_FORMAT);
    // cbIn disagreeing with the array's size: a bad stub, not a ROP error.
    let c = ctx(Some(&f.alice), 1);
    let good = rop_request(&logon_rop(0, ""), &[0], true);
    let stub = rpc_stub(&cxh, 0, &good, good.len() as u32 + 1);
    assert_eq!(
        f.emsmdb.call(&c, OP_RPC_EXT2, &stub),
        CallOutcome::Fault(FaultStatus::BAD_STUB_DATA)
    );
}

#[test]
fn response_flags_choose_compression_and_xor() {
    let f = Fixture::new();
    let cxh = f.connect(1);
    let rgb_in = rop_request(&logon_rop(0, ""), &[0], true);
    let c = ctx(Some(&f.alice), 1);
    for (flags, compressed, xored) in [
        (0, true, true),
        (FLAG_NO_COMPRESSION, false, true),
        (FLAG_NO_COMPRESSION | FLAG_NO_XOR_MAGIC, false, false),
    ] {
        let stub = rpc_stub(&cxh, flags, &rgb_in, rgb_in.len() as u32);
        let out = response(f.emsmdb.call(&c, OP_RPC_EXT2, &stub));
        let mut r = NdrReader::new(&out);
        r.context_handle().unwrap();
        r.u32().unwrap();
        let rgb_out = r.conformant_varying_bytes().unwrap();
        let header = header(rgb_out);
        assert_eq!(header.has(FLAG_COMPRESSED), compressed, "flags {flags}");
        assert_eq!(
            header.has(harness_wire::oxcrpc::FLAG_XOR_MAGIC),
            xored,
            "flags {flags}"
        );
    }
}

#[test]
fn context_handles_never_issued_or_disconnected_fault() {
    let f = Fixture::new();
    let cxh = f.connect(1);
    let mismatch = CallOutcome::Fault(FaultStatus::NCA_S_FAULT_CONTEXT_MISMATCH);
    let c = ctx(Some(&f.alice), 1);
    let rgb_in = rop_request(&logon_rop(0, ""), &[0], true);
    let forged = ContextHandle::new(Uuid::new(1, 2, 3, [4; 8]));
    assert_eq!(
        f.emsmdb.call(
            &c,
            OP_RPC_EXT2,
            &rpc_stub(&forged, 0, &rgb_in, rgb_in.len() as u32)
        ),
        mismatch
    );
    // Another connection may not use it.
    let other = ctx(Some(&f.alice), 2);
    assert_eq!(
        f.emsmdb.call(
            &other,
            OP_RPC_EXT2,
            &rpc_stub(&cxh, 0, &rgb_in, rgb_in.len() as u32)
        ),
        mismatch
    );
    let mut w = NdrWriter::new();
    w.put_context_handle(&cxh);
    let out = response(f.emsmdb.call(&c, OP_DISCONNECT, w.as_bytes()));
    assert_eq!(
        out,
        [vec![0; 20], vec![0; 4]].concat(),
        "NULL handle, success"
    );
    assert_eq!(f.emsmdb.call(&c, OP_DISCONNECT, w.as_bytes()), mismatch);
    assert_eq!(
        f.emsmdb.call(
            &c,
            OP_RPC_EXT2,
            &rpc_stub(&cxh, 0, &rgb_in, rgb_in.len() as u32)
        ),
        mismatch
    );
    assert_eq!(
        f.emsmdb.call(&c, OP_ASYNC_CONNECT_EX, w.as_bytes()),
        mismatch
    );
    assert_eq!(
        f.async_emsmdb
            .call(&c, OP_ASYNC_WAIT_EX, &wait_stub(&forged)),
        mismatch
    );
    assert_eq!(response(f.emsmdb.call(&c, OP_DUMMY_RPC, &[])), [0; 4]);
    assert_eq!(
        f.emsmdb.call(&c, 4, &[]),
        CallOutcome::Fault(FaultStatus::NCA_S_OP_RNG_ERROR)
    );
}

#[test]
fn rundown_ends_sessions_and_their_subscriptions() {
    let f = Fixture::new();
    f.logged_on_and_registered(1);
    f.connect(2);
    assert_eq!(
        (f.server.sessions(), f.world.notifications.subscriptions()),
        (2, 1)
    );
    f.emsmdb.rundown(1);
    assert_eq!(
        (f.server.sessions(), f.world.notifications.subscriptions()),
        (1, 0)
    );
}

#[derive(Debug, Default)]
struct Count(AtomicUsize);

impl Waker for Count {
    fn wake(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_wait_parks_until_new_mail_and_the_next_rpc_carries_rop_notify() {
    let f = Fixture::new();
    let cxh = f.logged_on_and_registered(1);
    let acxh = f.async_connect(1, &cxh);
    let waker: Arc<dyn Waker> = Arc::new(Count::default());
    let c = CallContext {
        waker: Some(&waker),
        ..ctx(Some(&f.alice), 5)
    };
    let CallOutcome::Parked { token, until } =
        f.async_emsmdb.call(&c, OP_ASYNC_WAIT_EX, &wait_stub(&acxh))
    else {
        panic!("the wait parks");
    };
    assert_eq!(until, Duration::from_secs(30));
    assert_eq!(f.async_emsmdb.resume(&c, token, false), None, "nothing yet");
    // Three messages: two RopNotify fit (the cap is 2), RopPending says one is left.
    for uid in [7, 8, 9] {
        f.publish(uid);
    }
    assert_eq!(
        f.async_emsmdb
            .resume(&c, token, false)
            .map(response)
            .map(|s| parse_wait(&s)),
        Some((NOTIFICATION_PENDING, 0))
    );
    let (responses, _) = f.rpc(1, &cxh, &rop_request(&[], &[], true)).split();
    let mut r = Reader::new(&responses);
    for uid in [7, 8] {
        assert_eq!(r.u8().unwrap(), rops::ROP_NOTIFY);
        let _handle = r.u32_le().unwrap();
        assert_eq!(r.u8().unwrap(), 0, "LogonId");
        assert_eq!(r.u16_le().unwrap(), 0x0002, "NewMail");
        assert_eq!(r.u64_le().unwrap(), folder_id(INBOX_INDEX));
        assert_eq!(r.u64_le().unwrap(), message_id(uid));
        r.skip(5).unwrap();
        assert_eq!(r.take(9).unwrap(), b"IPM.Note\0");
    }
    assert_eq!(r.u8().unwrap(), rops::ROP_PENDING);
    r.u16_le().unwrap();
    assert!(r.is_empty());
    // A wait with the last one pending answers at once; then one parks and times out.
    let pending = response(f.async_emsmdb.call(&c, OP_ASYNC_WAIT_EX, &wait_stub(&acxh)));
    assert_eq!(parse_wait(&pending), (NOTIFICATION_PENDING, 0));
    let (responses, _) = f.rpc(1, &cxh, &rop_request(&[], &[], true)).split();
    assert_eq!(responses[0], rops::ROP_NOTIFY);
    let CallOutcome::Parked { token, .. } =
        f.async_emsmdb.call(&c, OP_ASYNC_WAIT_EX, &wait_stub(&acxh))
    else {
        panic!("parks");
    };
    assert_eq!(
        f.async_emsmdb
            .resume(&c, token, true)
            .map(response)
            .map(|s| parse_wait(&s)),
        Some((0, 0))
    );
}

#[test]
fn a_second_wait_on_the_same_acxh_rejects_the_first() {
    let f = Fixture::new();
    let cxh = f.logged_on_and_registered(1);
    let acxh = f.async_connect(1, &cxh);
    let first_waker = Arc::new(Count::default());
    let first: Arc<dyn Waker> = first_waker.clone();
    let second: Arc<dyn Waker> = Arc::new(Count::default());
    let c1 = CallContext {
        waker: Some(&first),
        ..ctx(Some(&f.alice), 5)
    };
    let c2 = CallContext {
        waker: Some(&second),
        ..ctx(Some(&f.alice), 6)
    };
    let CallOutcome::Parked { token: older, .. } =
        f.async_emsmdb
            .call(&c1, OP_ASYNC_WAIT_EX, &wait_stub(&acxh))
    else {
        panic!("parks");
    };
    let CallOutcome::Parked { token: newer, .. } =
        f.async_emsmdb
            .call(&c2, OP_ASYNC_WAIT_EX, &wait_stub(&acxh))
    else {
        panic!("parks");
    };
    assert_eq!(
        first_waker.0.load(Ordering::Relaxed),
        1,
        "the older wait's connection is woken"
    );
    assert_eq!(
        f.async_emsmdb
            .resume(&c1, older, false)
            .map(response)
            .map(|s| parse_wait(&s)),
        Some((0, EC_REJECTED))
    );
    assert_eq!(f.async_emsmdb.resume(&c2, newer, false), None);
    // Disconnecting the session ends the wait.
    let mut w = NdrWriter::new();
    w.put_context_handle(&cxh);
    response(
        f.emsmdb
            .call(&ctx(Some(&f.alice), 1), OP_DISCONNECT, w.as_bytes()),
    );
    assert_eq!(
        f.async_emsmdb
            .resume(&c2, newer, false)
            .map(response)
            .map(|s| parse_wait(&s)),
        Some((0, EC_REJECTED))
    );
}

#[test]
fn the_inbox_contents_table_lists_the_imap_store() {
    let f = Fixture::new();
    let cxh = f.connect(1);
    let mut rop = logon_rop(0, "");
    // RopOpenFolder Inbox (0 -> 1), RopGetContentsTable (1 -> 2), RopSetColumns on 2,
    // RopQueryRows 10 on 2.
    rop.extend([rops::ROP_OPEN_FOLDER, 0, 0, 1]);
    rop.extend(folder_id(INBOX_INDEX).to_le_bytes());
    rop.push(0);
    rop.extend([rops::ROP_GET_CONTENTS_TABLE, 0, 1, 2, 0]);
    let columns = [
        rops::PID_TAG_MID,
        rops::PID_TAG_SUBJECT,
        rops::PID_TAG_MESSAGE_SIZE,
    ];
    rop.extend([rops::ROP_SET_COLUMNS, 0, 2, 0, columns.len() as u8, 0]);
    columns.iter().for_each(|c| rop.extend(c.to_le_bytes()));
    rop.extend([rops::ROP_QUERY_ROWS, 0, 2, 0, 1, 10, 0]);
    let got = f.rpc(1, &cxh, &rop_request(&rop, &[u32::MAX; 3], true));
    assert_eq!(got.status, 0);
    let (responses, _) = got.split();
    let mut r = Reader::new(&responses);
    r.skip(6 + 1 + 13 * 8 + 1 + 16 + 2 + 16 + 8 + 8 + 4)
        .unwrap();
    assert_eq!(
        r.take(8).unwrap(),
        [rops::ROP_OPEN_FOLDER, 1, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        r.take(6).unwrap(),
        [rops::ROP_GET_CONTENTS_TABLE, 2, 0, 0, 0, 0]
    );
    let messages = f.world.store.with_account("alice", |a| {
        a.mailbox("INBOX")
            .unwrap()
            .messages
            .iter()
            .map(|m| (m.uid, m.data.len()))
            .collect::<Vec<_>>()
    });
    assert_eq!(r.u32_le().unwrap() as usize, messages.len(), "RowCount");
    assert_eq!(
        r.take(7).unwrap(),
        [rops::ROP_SET_COLUMNS, 2, 0, 0, 0, 0, 0]
    );
    assert_eq!(r.take(6).unwrap(), [rops::ROP_QUERY_ROWS, 2, 0, 0, 0, 0]);
    assert_eq!(r.u8().unwrap(), 0x02, "END_OF_TABLE");
    assert_eq!(usize::from(r.u16_le().unwrap()), messages.len());
    for (uid, size) in messages {
        assert_eq!(r.u8().unwrap(), 0, "StandardPropertyRow");
        assert_eq!(r.u64_le().unwrap(), message_id(uid));
        let mut subject = Vec::new();
        loop {
            match r.u16_le().unwrap() {
                0 => break,
                u => subject.push(u),
            }
        }
        assert!(!String::from_utf16(&subject).unwrap().is_empty());
        assert_eq!(r.u32_le().unwrap() as usize, size);
    }
    assert!(r.is_empty());
    // QueryRows before SetColumns, and on a handle that is not a table.
    let mut rop = logon_rop(0, "");
    rop.extend([rops::ROP_OPEN_FOLDER, 0, 0, 1]);
    rop.extend(folder_id(INBOX_INDEX).to_le_bytes());
    rop.push(0);
    rop.extend([rops::ROP_GET_CONTENTS_TABLE, 0, 1, 2, 0]);
    rop.extend([rops::ROP_QUERY_ROWS, 0, 2, 0, 1, 10, 0]);
    rop.extend([rops::ROP_QUERY_ROWS, 0, 1, 0, 1, 10, 0]);
    let (responses, _) = f
        .rpc(1, &cxh, &rop_request(&rop, &[u32::MAX; 3], true))
        .split();
    assert_eq!(
        &responses[responses.len() - 12..],
        [
            rops::ROP_QUERY_ROWS,
            2,
            0xB9,
            4,
            0,
            0,
            rops::ROP_QUERY_ROWS,
            1,
            0xB9,
            4,
            0,
            0
        ]
    );
}

#[test]
fn sessions_are_bounded_per_connection() {
    let f = Fixture::new();
    let limit = EmsmdbConfig::default().max_sessions_per_connection;
    (0..limit).for_each(|_| {
        f.connect(1);
    });
    let c = ctx(Some(&f.alice), 1);
    let stub = connect_stub(&alice_dn(), &[], 0);
    let got = parse_connect(&response(f.emsmdb.call(&c, OP_CONNECT_EX, &stub)));
    assert_eq!((got.status, got.cxh.is_nil()), (EC_SERVER_BUSY, true));
    f.connect(2);
}

#[test]
fn a_session_holds_a_bounded_number_of_objects() {
    let f = Fixture::new();
    let cxh = f.connect(1);
    let logon = rop_request(&logon_rop(0, ""), &[u32::MAX], false);
    for _ in 0..rops::MAX_OBJECTS {
        let (responses, _) = f.rpc(1, &cxh, &logon).split();
        assert_eq!(&responses[2..6], &[0; 4]);
    }
    let (responses, handles) = f.rpc(1, &cxh, &logon).split();
    assert_eq!(responses, [rops::ROP_LOGON, 0, 0x0E, 0, 0x07, 0x80]);
    assert_eq!(handles, [u32::MAX]);
    // A release makes room again.
    let (_, handles) = f
        .rpc(
            1,
            &cxh,
            &rop_request(&[rops::ROP_RELEASE, 0, 0], &[1], false),
        )
        .split();
    assert_eq!(handles, [1]);
    let (responses, _) = f.rpc(1, &cxh, &logon).split();
    assert_eq!(&responses[2..6], &[0; 4]);
}

#[test]
fn exchange2010_leaves_opnums_0_and_2_reserved() {
    let f = Fixture::new();
    let c = ctx(Some(&f.alice), 1);
    let range = CallOutcome::Fault(FaultStatus::NCA_S_OP_RNG_ERROR);
    let connect = legacy_connect_stub(&alice_dn());
    assert_eq!(f.emsmdb.call(&c, OP_CONNECT, &connect), range);
    let cxh = f.connect(1);
    let rpc = legacy_rpc_stub(&cxh, &logon_rop(0, &alice_dn()), &[u32::MAX], 0x8000);
    assert_eq!(f.emsmdb.call(&c, OP_RPC, &rpc), range);
    assert_eq!(f.server.sessions(), 1);
}

#[test]
fn exchange2003_connects_and_runs_rops_without_extended_buffers() {
    let f = Fixture::with(EmsmdbConfig::exchange2003());
    let c = ctx(Some(&f.alice), 1);
    let stub = legacy_connect_stub(&alice_dn());
    let got =
        client::parse_legacy_connect(&response(f.emsmdb.call(&c, OP_CONNECT, &stub))).unwrap();
    assert_eq!(got.status, 0);
    assert!(!got.cxh.is_nil());
    assert_eq!(got.display_name.as_deref(), Some(&b"alice"[..]));
    let refused =
        client::parse_legacy_connect(&response(f.emsmdb.call(&ctx(None, 1), OP_CONNECT, &stub)))
            .unwrap();
    assert_eq!(
        (refused.status, refused.cxh.is_nil()),
        (EC_ACCESS_DENIED, true)
    );

    let rpc = legacy_rpc_stub(&got.cxh, &logon_rop(0, &alice_dn()), &[u32::MAX], 0x8000);
    let out = client::parse_legacy_rpc(&response(f.emsmdb.call(&c, OP_RPC, &rpc))).unwrap();
    assert_eq!(out.status, 0);
    let (rops, handles) = out.split();
    assert_eq!(
        rops[..7],
        [rops::ROP_LOGON, 0, 0, 0, 0, 0, 0x01],
        "RopLogon: handle index 0, ReturnValue 0, LogonFlags Private"
    );
    assert_eq!(handles.len(), 1);
    assert_ne!(handles[0], u32::MAX);

    // A response larger than max_data is ecBufferTooSmall, rgb empty.
    let rpc = legacy_rpc_stub(&got.cxh, &logon_rop(0, &alice_dn()), &[u32::MAX], 8);
    let out = client::parse_legacy_rpc(&response(f.emsmdb.call(&c, OP_RPC, &rpc))).unwrap();
    assert_eq!((out.status, out.rop_buffer.len()), (EC_BUFFER_TOO_SMALL, 0));
    // The extended calls stay offered.
    f.connect(1);
    assert_eq!(f.server.sessions(), 2);
}

#[test]
fn exchange2003_legacy_calls_refuse_bad_stubs() {
    let f = Fixture::with(EmsmdbConfig::exchange2003());
    let c = ctx(Some(&f.alice), 1);
    let bad = CallOutcome::Fault(FaultStatus::BAD_STUB_DATA);
    let mut short = legacy_connect_stub(&alice_dn());
    short.truncate(short.len() - 3);
    assert_eq!(f.emsmdb.call(&c, OP_CONNECT, &short), bad);
    let mut lying = legacy_connect_stub(&alice_dn());
    lying[0..4].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    assert_eq!(f.emsmdb.call(&c, OP_CONNECT, &lying), bad);
    assert_eq!(f.server.sessions(), 0);

    let cxh = f.connect(1);
    let good = legacy_rpc_stub(&cxh, &logon_rop(0, &alice_dn()), &[u32::MAX], 0x8000);
    // The 16-bit length disagrees with the array's actual_count.
    let mut lying = good.clone();
    let at = lying.len() - 4;
    lying[at..at + 2].copy_from_slice(&3u16.to_le_bytes());
    assert_eq!(f.emsmdb.call(&c, OP_RPC, &lying), bad);
    // actual_count beyond max_count.
    let mut lying = good.clone();
    lying[20..24].copy_from_slice(&1u32.to_le_bytes());
    assert_eq!(f.emsmdb.call(&c, OP_RPC, &lying), bad);
    let mut short = good.clone();
    short.truncate(short.len() - 1);
    assert_eq!(f.emsmdb.call(&c, OP_RPC, &short), bad);
    // A ROP buffer that does not parse is ecRpcFormat, as in EcDoRpcExt2.
    let mut w = NdrWriter::new();
    w.put_context_handle(&cxh);
    w.put_conformant_varying_bytes(1, &[0x5A]);
    w.put_u16(1);
    w.put_u16(0x8000);
    let out = client::parse_legacy_rpc(&response(f.emsmdb.call(&c, OP_RPC, w.as_bytes()))).unwrap();
    assert_eq!(out.status, EC_RPC_FORMAT);
    // A handle never issued.
    let forged = legacy_rpc_stub(&ContextHandle::NIL, &[], &[], 0x8000);
    assert_eq!(
        f.emsmdb.call(&c, OP_RPC, &forged),
        CallOutcome::Fault(FaultStatus::NCA_S_FAULT_CONTEXT_MISMATCH)
    );
}

#[test]
fn rpc_profiles_parse_by_name() {
    assert_eq!("exchange2003".parse(), Ok(EmsmdbProfile::Exchange2003));
    assert_eq!("Exchange2010".parse(), Ok(EmsmdbProfile::Exchange2010));
    assert!("exchange5.5".parse::<EmsmdbProfile>().is_err());
    assert!(EmsmdbProfile::Exchange2003.config().legacy_opnums);
    assert!(!EmsmdbProfile::default().config().legacy_opnums);
    assert_eq!("exchange2013".parse(), Ok(EmsmdbProfile::Exchange2013));
    assert!(EmsmdbProfile::Exchange2013.config().registration_cache);
    let others = [
        EmsmdbProfile::Exchange2003,
        EmsmdbProfile::Exchange2010,
        EmsmdbProfile::Exchange2010Rtm,
    ];
    assert!(others.iter().all(|p| !p.config().registration_cache));
}

/// The machine account a process running as Local System authenticates as.
fn machine() -> Principal {
    principal("APPSRV$")
}

fn async_connect_as(
    f: &Fixture,
    who: &Principal,
    group: u32,
    cxh: &ContextHandle,
) -> (ContextHandle, u32) {
    let mut w = NdrWriter::new();
    w.put_context_handle(cxh);
    let c = CallContext {
        assoc_group_id: group,
        ..ctx(Some(who), 1)
    };
    let out = response(f.emsmdb.call(&c, OP_ASYNC_CONNECT_EX, w.as_bytes()));
    client::parse_handle_response(&out).unwrap()
}

fn logon_rops() -> Vec<u8> {
    rop_request(&logon_rop(0, &alice_dn()), &[u32::MAX], true)
}

#[test]
fn exchange2013_removes_a_registration_used_under_another_security_context() {
    let f = Fixture::with(EmsmdbProfile::Exchange2013.config());
    // The worker, impersonating alice, connects on connection 1 (association group 1).
    let cxh = f.connect(1);
    assert_eq!(f.rpc(1, &cxh, &logon_rops()).status, 0);
    // alice again on the same association: the registration is hers.
    let (acxh, status) = async_connect_as(&f, &f.alice, 1, &cxh);
    assert_eq!((status, acxh.is_nil()), (0, false));
    assert!(f.server.event_log().is_empty());
    // The async-notification thread runs as the process (Local System: the machine
    // account) on the same association: refused, logged, the registration removed.
    let (acxh, status) = async_connect_as(&f, &machine(), 1, &cxh);
    assert_eq!((status, acxh.is_nil()), (EC_RPC_FAILED, true));
    assert_eq!(
        f.server.event_log(),
        [
            "Registration of the Association GUID failed: association group 0x1 is registered \
          for example\\alice, EcDoAsyncConnectEx came under example\\appsrv$; the \
          registration and its 1 session(s) were removed"
        ]
    );
    assert_eq!(f.server.sessions(), 0);
    // The worker's session went with it: its calls fail the same way, every one, until
    // the connection ends; then the handle is simply unknown.
    assert_eq!(f.rpc(1, &cxh, &logon_rops()).status, EC_RPC_FAILED);
    assert_eq!(f.rpc(1, &cxh, &logon_rops()).status, EC_RPC_FAILED);
    // A new connect registers the group again, for whoever calls first.
    let again = f.connect(1);
    assert_eq!(f.rpc(1, &again, &logon_rops()).status, 0);
    assert_eq!(f.server.event_log().len(), 1);
    // The connection ends: the revoked handle is forgotten with it.
    f.emsmdb.rundown(1);
    let c = ctx(Some(&f.alice), 1);
    let stub = rpc_stub(&cxh, 0, &logon_rops(), logon_rops().len() as u32);
    assert_eq!(
        f.emsmdb.call(&c, OP_RPC_EXT2, &stub),
        CallOutcome::Fault(FaultStatus::NCA_S_FAULT_CONTEXT_MISMATCH)
    );
}

#[test]
fn exchange2013_refuses_every_call_kind_under_a_second_security_context() {
    let f = Fixture::with(EmsmdbProfile::Exchange2013.config());
    let other = machine();
    // Each call kind, first registering alice anew, then under the machine account.
    type StubOf = fn(&ContextHandle) -> Vec<u8>;
    let calls: [(&str, u16, StubOf); 3] = [
        ("EcDoDisconnect", OP_DISCONNECT, client::handle_stub),
        ("EcDoRpcExt2", OP_RPC_EXT2, |cxh| {
            rpc_stub(cxh, 0, &logon_rops(), logon_rops().len() as u32)
        }),
        ("EcDummyRpc", OP_DUMMY_RPC, |_| Vec::new()),
    ];
    for (i, (name, opnum, stub)) in calls.into_iter().enumerate() {
        let cxh = f.connect(1);
        let c = ctx(Some(&other), 1);
        let out = response(f.emsmdb.call(&c, opnum, &stub(&cxh)));
        let status = u32::from_le_bytes(out[out.len() - 4..].try_into().unwrap());
        assert_eq!(status, EC_RPC_FAILED, "{name}");
        assert_eq!(f.server.event_log().len(), i + 1, "{name}");
        assert!(f.server.event_log()[i].contains(name), "{name}");
        assert_eq!(f.server.sessions(), 0, "{name}");
    }
    // EcDoConnectEx and EcDoAsyncWaitEx too.
    let cxh = f.connect(1);
    let (acxh, _) = async_connect_as(&f, &f.alice, 1, &cxh);
    let c = ctx(Some(&other), 1);
    let got = parse_wait(&response(f.async_emsmdb.call(
        &c,
        OP_ASYNC_WAIT_EX,
        &wait_stub(&acxh),
    )));
    assert_eq!(got, (0, EC_RPC_FAILED));
    let _ = f.connect(1);
    let got = parse_connect(&response(f.emsmdb.call(
        &c,
        OP_CONNECT_EX,
        &connect_stub(&alice_dn(), &[], 0),
    )));
    assert_eq!((got.status, got.cxh.is_nil()), (EC_RPC_FAILED, true));
    assert_eq!(f.server.event_log().len(), 5);
}

#[test]
fn exchange2013_keeps_registrations_per_association_group_and_ends_them_with_the_sessions() {
    let f = Fixture::with(EmsmdbProfile::Exchange2013.config());
    let system = machine();
    let cxh = f.connect(1);
    // Another association group is another registration: no clash.
    let c = CallContext {
        assoc_group_id: 2,
        ..ctx(Some(&system), 2)
    };
    let out = response(f.emsmdb.call(&c, OP_DUMMY_RPC, &[]));
    assert_eq!(out, 0u32.to_le_bytes());
    assert_eq!(f.rpc(1, &cxh, &logon_rops()).status, 0);
    // The connection runs down: its sessions and their registration end, and the
    // group may be registered by another security context.
    f.emsmdb.rundown(1);
    let c = ctx(Some(&system), 3);
    assert_eq!(
        response(f.emsmdb.call(&c, OP_DUMMY_RPC, &[])),
        0u32.to_le_bytes()
    );
    assert!(f.server.event_log().is_empty());
}

#[test]
fn exchange2010_lets_any_security_context_of_the_association_use_its_sessions() {
    let f = Fixture::with(EmsmdbProfile::Exchange2010.config());
    let cxh = f.connect(1);
    let (acxh, status) = async_connect_as(&f, &machine(), 1, &cxh);
    assert_eq!((status, acxh.is_nil()), (0, false));
    assert_eq!(f.rpc(1, &cxh, &logon_rops()).status, 0);
    assert!(f.server.event_log().is_empty());
    assert_eq!(f.server.sessions(), 1);
}

#[test]
fn exchange2013_registers_no_more_groups_than_sessions_it_holds() {
    let f = Fixture::with(EmsmdbConfig {
        max_sessions: 1,
        ..EmsmdbProfile::Exchange2013.config()
    });
    let system = machine();
    // Group 1 is registered for alice (the table's one place).
    let _cxh = f.connect(1);
    // Group 2 finds the table full: it goes unregistered, so two security contexts on
    // it clash with nothing.
    for who in [&system, &f.alice, &system] {
        let c = CallContext {
            assoc_group_id: 2,
            ..ctx(Some(who), 2)
        };
        let out = response(f.emsmdb.call(&c, OP_DUMMY_RPC, &[]));
        assert_eq!(out, 0u32.to_le_bytes(), "{}", who.user);
    }
    assert!(f.server.event_log().is_empty());
}

#[test]
fn exchange2013_remembers_no_more_revoked_sessions_than_it_holds() {
    let f = Fixture::with(EmsmdbConfig {
        max_sessions: 1,
        ..EmsmdbProfile::Exchange2013.config()
    });
    let system = machine();
    let clash = |f: &Fixture| {
        let cxh = f.connect(1);
        let (_, status) = async_connect_as(f, &system, 1, &cxh);
        assert_eq!(status, EC_RPC_FAILED);
        cxh
    };
    let first = clash(&f);
    let second = clash(&f);
    assert_eq!(f.server.event_log().len(), 2);
    // Room for one: the newer revoked handle fails as revoked, the older is forgotten.
    assert_eq!(f.rpc(1, &second, &logon_rops()).status, EC_RPC_FAILED);
    let c = ctx(Some(&f.alice), 1);
    let stub = rpc_stub(&first, 0, &logon_rops(), logon_rops().len() as u32);
    assert_eq!(
        f.emsmdb.call(&c, OP_RPC_EXT2, &stub),
        CallOutcome::Fault(FaultStatus::NCA_S_FAULT_CONTEXT_MISMATCH)
    );
}

#[test]
fn the_call_log_keeps_the_newest_calls_up_to_its_bound() {
    let f = Fixture::new();
    let c = ctx(Some(&f.alice), 1);
    for _ in 0..MAX_CALL_LOG + 3 {
        f.emsmdb.call(&c, OP_DUMMY_RPC, &[]);
    }
    let cxh = f.connect(1);
    let log = f.server.call_log();
    assert_eq!(log.len(), MAX_CALL_LOG);
    assert_eq!(log[0], ("EcDummyRpc", "example\\alice".to_string()));
    assert_eq!(
        log.last(),
        Some(&("EcDoConnectEx", "example\\alice".to_string()))
    );
    let _ = cxh;
}

/// The client's listing (`inbox_listing_rops` and `read_inbox_listing`) against the
/// store: the rows are the Inbox's; a refused logon, a lying RowCount, a cut buffer and
/// responses out of order read as what they are.
#[test]
fn the_clients_inbox_listing_reads_the_stores_answer_and_refuses_lies() {
    use client::{inbox_listing_rops, read_inbox_listing, Listing};
    let f = Fixture::new();
    let cxh = f.connect(1);
    let got = f.rpc(
        1,
        &cxh,
        &rop_request(&inbox_listing_rops(""), &[u32::MAX; 3], true),
    );
    assert_eq!(got.status, 0);
    let (responses, _) = got.split();
    let Ok(Listing::Rows(rows)) = read_inbox_listing(&responses) else {
        panic!("rows expected");
    };
    let want = inbox_rows(&f.world, "alice");
    assert_eq!(rows.len(), want.len());
    for (row, want) in rows.iter().zip(&want) {
        assert_eq!(
            (row.mid, row.subject.as_str(), row.from.as_str(), row.size),
            (
                message_id(want.uid),
                want.subject.as_str(),
                want.from.as_str(),
                want.size
            )
        );
    }
    // Another user's DN: RopLogon's own error ends the listing.
    let other = f.rpc(
        1,
        &cxh,
        &rop_request(
            &inbox_listing_rops("/o=EXAMPLE/ou=x/cn=Recipients/cn=bob"),
            &[u32::MAX; 3],
            true,
        ),
    );
    let (refused, _) = other.split();
    assert!(matches!(
        read_inbox_listing(&refused),
        Ok(Listing::Refused {
            rop: rops::ROP_LOGON,
            ..
        })
    ));
    // The RowCount is the u16 after QueryRows' RopId, index, ReturnValue and Origin.
    let query_rows = responses.len()
        - rows
            .iter()
            .map(|r| {
                1 + 8
                    + (r.subject.encode_utf16().count() + 1) * 2
                    + (r.from.encode_utf16().count() + 1) * 2
                    + 4
            })
            .sum::<usize>()
        - 9;
    assert_eq!(responses[query_rows], rops::ROP_QUERY_ROWS);
    let mut lying = responses.clone();
    lying[query_rows + 7..query_rows + 9].copy_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(
        read_inbox_listing(&lying),
        Err(client::ResponseError::Invalid(
            "listing: RowCount beyond the buffer"
        ))
    );
    assert!(read_inbox_listing(&responses[..responses.len() - 1]).is_err());
    assert!(read_inbox_listing(&responses[..100]).is_err());
    assert_eq!(
        read_inbox_listing(&responses[166..]),
        Err(client::ResponseError::Invalid(
            "listing: ROP responses out of order"
        ))
    );
    let mut extra = responses.clone();
    extra.push(0);
    assert_eq!(
        read_inbox_listing(&extra),
        Err(client::ResponseError::Invalid(
            "listing: octets after the last row"
        ))
    );
}
