//! `emsmdb_call`: a run of EMSMDB / AsyncEMSMDB calls on one fresh server over the
//! default lab, alice's principal on connection 1. Each record is a selector octet, a
//! u16 length and that many stub octets. Selector bits 0-3 pick the call (0 EcDoConnectEx,
//! 1 EcDoRpcExt2, 2 EcDoAsyncConnectEx, 3 EcDoAsyncWaitEx, 4 EcDoDisconnect, 5
//! EcDummyRpc, 6 an opnum out of range, others: publish new mail for alice); bit 7
//! puts the last CXH (or, for a wait, ACXH) the server handed out in front of the stub,
//! so mutations reach past the handle check.
//!
//! Never a panic; every call a response, a fault or (a wait only) a park; a parked wait
//! resumed at its deadline answers; after the connection's rundown no session and no
//! subscription is left.

use std::sync::{Arc, OnceLock};

use harness_wire::ndr::{ContextHandle, NdrReader};

use crate::dcerpc::emsmdb::{
    EmsmdbConfig, EmsmdbServer, OP_ASYNC_CONNECT_EX, OP_ASYNC_WAIT_EX, OP_CONNECT_EX,
    OP_DISCONNECT, OP_DUMMY_RPC, OP_RPC_EXT2,
};
use crate::dcerpc::security::Principal;
use crate::dcerpc::{CallContext, CallOutcome, RpcInterface};
use crate::notify::{MailEvent, MailEventKind};
use crate::world::{LabFile, World};

/// Records per input, so one input stays quick.
const MAX_RECORDS: usize = 64;

fn lab() -> Arc<World> {
    static WORLD: OnceLock<World> = OnceLock::new();
    // A clone has its own store copy and an empty hub: inputs do not see each other.
    let world = WORLD.get_or_init(|| {
        LabFile::default_lab()
            .build()
            .unwrap_or_else(|_| panic!("default lab"))
    });
    Arc::new(world.clone())
}

/// Fuzz target `emsmdb_call`.
pub fn emsmdb_call(data: &[u8]) {
    run(data);
}

/// What one input reached: the most subscriptions held at once, the waits parked.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Reached {
    pub(crate) subscriptions: usize,
    pub(crate) parked: usize,
}

pub(crate) fn run(data: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let world = lab();
    let server = EmsmdbServer::new(Arc::clone(&world), EmsmdbConfig::default());
    let (sync, asynchronous) = server.interfaces();
    let alice = Principal {
        auth_type: harness_wire::dcerpc::AuthType::NTLMSSP,
        user: "alice".into(),
        domain: world.domain.clone(),
        workstation: "FUZZ".into(),
    };
    let ctx = CallContext {
        principal: Some(&alice),
        ..CallContext::unauthenticated(1)
    };
    let (mut cxh, mut acxh) = (ContextHandle::NIL, ContextHandle::NIL);
    let mut rest = data;
    for _ in 0..MAX_RECORDS {
        let [selector, lo, hi, tail @ ..] = rest else {
            break;
        };
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (body, next) = tail.split_at(len);
        rest = next;
        let call = selector & 0x0F;
        let mut stub = Vec::with_capacity(body.len() + 20);
        if selector & 0x80 != 0 {
            let handle = if call == 3 { acxh } else { cxh };
            stub.extend_from_slice(&handle.attributes.to_le_bytes());
            stub.extend_from_slice(&handle_octets(&handle));
        }
        stub.extend_from_slice(body);
        reached.subscriptions = reached
            .subscriptions
            .max(world.notifications.subscriptions());
        let outcome = match call {
            0 => sync.call(&ctx, OP_CONNECT_EX, &stub),
            1 => sync.call(&ctx, OP_RPC_EXT2, &stub),
            2 => sync.call(&ctx, OP_ASYNC_CONNECT_EX, &stub),
            3 => asynchronous.call(&ctx, OP_ASYNC_WAIT_EX, &stub),
            4 => sync.call(&ctx, OP_DISCONNECT, &stub),
            5 => sync.call(&ctx, OP_DUMMY_RPC, &stub),
            6 => sync.call(&ctx, 3, &stub),
            _ => {
                world.notifications.publish(MailEvent {
                    kind: MailEventKind::NewMail,
                    user: "alice".into(),
                    mailbox: "INBOX".into(),
                    uid: u32::from(*selector),
                });
                continue;
            }
        };
        match outcome {
            CallOutcome::Response(out) => {
                // Remember the handles the server hands out (the first out parameter).
                let handle = NdrReader::new(&out).context_handle().ok();
                match (call, handle) {
                    (0, Some(h)) if !h.is_nil() => cxh = h,
                    (2, Some(h)) if !h.is_nil() => acxh = h,
                    _ => {}
                }
            }
            CallOutcome::Fault(_) => {}
            CallOutcome::Parked { token, until } => {
                reached.parked += 1;
                assert_eq!(call, 3, "only EcDoAsyncWaitEx parks");
                let later = CallContext { now: until, ..ctx };
                let _ = asynchronous.resume(&later, token, false);
                assert!(
                    asynchronous.resume(&later, token, true).is_some() || server.sessions() == 0,
                    "a wait answers at its deadline"
                );
            }
        }
    }
    reached.subscriptions = reached
        .subscriptions
        .max(world.notifications.subscriptions());
    sync.rundown(1);
    asynchronous.rundown(1);
    assert_eq!(server.sessions(), 0, "rundown leaves no session");
    assert_eq!(world.notifications.subscriptions(), 0, "nor a subscription");
    reached
}

fn handle_octets(handle: &ContextHandle) -> Vec<u8> {
    let mut w = harness_wire::ndr::NdrWriter::new();
    w.put_uuid(&handle.uuid);
    w.into_bytes()
}

/// Seeds from the interface's test stubs: connect, logon and register, async connect,
/// new mail, a wait, an RPC fetching the notification, disconnect.
#[cfg(test)]
pub(crate) fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use crate::dcerpc::emsmdb::rops;
    use crate::dcerpc::emsmdb::tests::{
        connect_stub, logon_rop, register_rop, rop_request, rpc_stub, wait_stub,
    };
    use crate::dcerpc::legacy_dn::user_dn;
    let record = |selector: u8, stub: &[u8]| {
        let mut r = vec![selector];
        r.extend_from_slice(&(stub.len() as u16).to_le_bytes());
        r.extend_from_slice(stub);
        r
    };
    // A stub without its leading handle (the target puts the live one there).
    let after_handle = |stub: Vec<u8>| stub[20..].to_vec();
    let dn = user_dn("EXAMPLE", "alice");
    let connect = record(0, &connect_stub(&dn, &[], 0));
    let mut rops = logon_rop(0, &dn);
    rops.extend(register_rop(0, 1));
    let rgb_in = rop_request(&rops, &[u32::MAX; 2], true);
    let nil = ContextHandle::NIL;
    let logon = record(
        0x81,
        &after_handle(rpc_stub(&nil, 0, &rgb_in, rgb_in.len() as u32)),
    );
    let empty = rop_request(&[], &[], false);
    let fetch = record(
        0x81,
        &after_handle(rpc_stub(&nil, 3, &empty, empty.len() as u32)),
    );
    // Logon, open the Inbox, its contents table, two columns, query 10 rows.
    let mut table = logon_rop(0, "");
    table.extend([rops::ROP_OPEN_FOLDER, 0, 0, 1]);
    table.extend(rops::folder_id(rops::INBOX_INDEX).to_le_bytes());
    table.extend([0, rops::ROP_GET_CONTENTS_TABLE, 0, 1, 2, 0]);
    table.extend([rops::ROP_SET_COLUMNS, 0, 2, 0, 2, 0]);
    table.extend(rops::PID_TAG_SUBJECT.to_le_bytes());
    table.extend(0x0FFF_0102u32.to_le_bytes());
    table.extend([rops::ROP_QUERY_ROWS, 0, 2, 0, 1, 10, 0]);
    let table_in = rop_request(&table, &[u32::MAX; 3], true);
    let table = record(
        0x81,
        &after_handle(rpc_stub(&nil, 0, &table_in, table_in.len() as u32)),
    );
    let async_connect = record(0x82, &[]);
    let wait = record(0x83, &after_handle(wait_stub(&nil)));
    let new_mail = record(0x0F, &[]);
    let disconnect = record(0x84, &[]);
    vec![
        ("connect", connect.clone()),
        (
            "connect-logon-register",
            [connect.clone(), logon.clone()].concat(),
        ),
        ("contents-table", [connect.clone(), table].concat()),
        (
            "notify-round-trip",
            [
                connect.clone(),
                logon.clone(),
                async_connect.clone(),
                wait.clone(),
                new_mail.clone(),
                wait.clone(),
                fetch.clone(),
                disconnect.clone(),
            ]
            .concat(),
        ),
        (
            "wait-after-disconnect",
            [connect, logon, async_connect, disconnect, wait, fetch].concat(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_reach_what_they_are_named_for() {
        let reached: Vec<(&str, Reached)> = seeds().iter().map(|(n, s)| (*n, run(s))).collect();
        let expect = |subscriptions, parked| Reached {
            subscriptions,
            parked,
        };
        assert_eq!(
            reached,
            [
                ("connect", expect(0, 0)),
                ("connect-logon-register", expect(1, 0)),
                ("contents-table", expect(0, 0)),
                ("notify-round-trip", expect(1, 1)),
                ("wait-after-disconnect", expect(1, 0)),
            ]
        );
    }
}
