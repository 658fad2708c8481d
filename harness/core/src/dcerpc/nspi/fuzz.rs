//! The fuzz target `nspi_call` and the fixtures it shares with the tests: a small world,
//! an authenticated call context.

use harness_wire::dcerpc::{AuthLevel, AuthType, FaultStatus};

use super::{Nspi, MAX_SESSIONS_PER_CONNECTION};
use crate::dcerpc::interface::{CallContext, CallOutcome, RpcInterface};
use crate::dcerpc::security::Principal;
use crate::world::{Directory, Mailstore, World};

/// Three users in EXAMPLE / example.test.
pub fn small_world() -> World {
    let mut directory = Directory::default();
    for (name, password) in [("alice", "a"), ("bob", "b"), ("carol", "c")] {
        directory.insert(name, password);
    }
    World {
        domain: "EXAMPLE".into(),
        dns_domain: "example.test".into(),
        hostname: "mail.example.test".into(),
        directory,
        store: Mailstore::default(),
        notifications: Default::default(),
    }
}

/// The principal of an NTLM context for `user` (what the association hands the call).
pub fn principal(user: &str) -> Principal {
    Principal {
        auth_type: AuthType::NTLMSSP,
        user: user.into(),
        domain: "EXAMPLE".into(),
        workstation: "WS".into(),
    }
}

/// A call on `connection_id` under `principal` at packet privacy (auth level NONE
/// without one).
pub fn call_context(principal: Option<&Principal>, connection_id: u64) -> CallContext<'_> {
    CallContext {
        principal,
        auth_level: match principal {
            Some(_) => AuthLevel::PKT_PRIVACY,
            None => AuthLevel::NONE,
        },
        auth_context_id: principal.map(|_| 0),
        assoc_group_id: 0x1234,
        connection_id,
        ..CallContext::unauthenticated(connection_id)
    }
}

/// One call of a fuzz input: `[opnum u8][flags u8][stub length u16 LE][stub]`; flags bit
/// 0: no principal, bit 1: connection 1 instead of 0, bit 2: rundown of the connection
/// after the call, bit 3: drop the address book before the call (bit 4: restore it).
struct FuzzCall<'a> {
    opnum: u16,
    flags: u8,
    stub: &'a [u8],
}

fn next_call<'a>(input: &mut &'a [u8]) -> Option<FuzzCall<'a>> {
    let &[opnum, flags, l0, l1, ref rest @ ..] = *input else {
        return None;
    };
    let len = usize::from(u16::from_le_bytes([l0, l1])).min(rest.len());
    let (stub, rest) = rest.split_at(len);
    *input = rest;
    Some(FuzzCall {
        opnum: u16::from(opnum),
        flags,
        stub,
    })
}

/// Fuzz target `nspi_call`: a sequence of calls (any opnum, any stub) against one NSPI
/// interface over [`small_world`]. Invariants: no panic; every outcome is a response
/// of at least a return value or one of the faults the interface documents; sessions
/// never exceed the per-connection cap; rundown releases a connection's sessions.
pub fn fuzz_call(data: &[u8]) {
    let world = small_world();
    let nspi = Nspi::for_world(&world);
    let book = nspi.address_book();
    let alice = principal("alice");
    let mut input = data;
    for _ in 0..256 {
        let Some(call) = next_call(&mut input) else {
            break;
        };
        if call.flags & 8 != 0 {
            nspi.set_address_book(None);
        }
        if call.flags & 16 != 0 {
            nspi.set_address_book(book.clone());
        }
        let who = (call.flags & 1 == 0).then_some(&alice);
        let ctx = call_context(who, u64::from(call.flags >> 1 & 1));
        match nspi.call(&ctx, call.opnum, call.stub) {
            CallOutcome::Response(stub) => {
                assert!(stub.len() >= 4, "response without a return value")
            }
            CallOutcome::Fault(status) => assert!(
                [
                    FaultStatus::BAD_STUB_DATA,
                    FaultStatus::NCA_S_FAULT_CONTEXT_MISMATCH,
                    FaultStatus::CANNOT_SUPPORT,
                    FaultStatus::SERVER_UNAVAILABLE,
                ]
                .contains(&status),
                "undocumented fault {status:?}"
            ),
            CallOutcome::Parked { .. } => panic!("NSPI never parks a call"),
        }
        if call.flags & 4 != 0 {
            nspi.rundown(ctx.connection_id);
        }
        assert!(nspi.session_count() <= 2 * MAX_SESSIONS_PER_CONNECTION);
    }
    nspi.rundown(0);
    nspi.rundown(1);
    assert_eq!(nspi.session_count(), 0, "rundown left sessions");
}
