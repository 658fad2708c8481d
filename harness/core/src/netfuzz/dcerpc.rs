//! Network fuzzing of a live DCE/RPC server, the sans-IO half. A case is a session the
//! project's client drives (a bind, with NTLM at some level or none, its auth3 leg, in
//! some cases an alter_context that adds a second presentation context the calls then
//! use, then valid calls of the interface) in which one client PDU is mutated: its
//! octets after protection (header fields, truncation, repeats, flipped bits), or, for a
//! call, its stub before the client signs or seals it (an octet changed, or the stub
//! grown until the call goes in several fragments), so that the server's NDR readers see
//! the mutation at every auth level. The session ends with the server's answer to that
//! PDU (or its silence, or its close). The lab then opens a fresh association (the
//! probe) to see that the server still binds and answers.
//!
//! Case N of a seed is always the same plan, and `harness fuzz --seed S --case N
//! --count 1` plays it again; the octets are not the same byte for byte, since the NTLM
//! legs answer the server's challenge of the moment.

use std::collections::VecDeque;

use harness_wire::dcerpc::{Pdu, PduFramer};

use crate::dcerpc::client::{
    AuthLevel, ClientAssociation, ClientConfig, ClientError, ClientEvent, ContextElement,
};
use crate::dcerpc::known_calls::{ntlm_bind, primary_context, KnownInterface};
use crate::ntlm::Credentials;
use crate::rng::SeededRng;

/// How the one mutated client PDU of a case is changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcMutation {
    /// One bit flipped at an offset (modulo the length).
    FlipBit { at: usize, bit: u8 },
    /// One octet replaced.
    SetOctet { at: usize, value: u8 },
    /// Cut to this many octets (modulo the length).
    Truncate { keep: usize },
    /// frag_length (octets 8-9) set.
    FragLength(u16),
    /// PTYPE (octet 2) set.
    PacketType(u8),
    /// pfc_flags (octet 3) set.
    Flags(u8),
    /// auth_length (octets 10-11) set.
    AuthLength(u16),
    /// The PDU sent twice.
    Repeat,
    /// Octets appended after the PDU.
    Append(Vec<u8>),
    /// A call's stub octet replaced before the call is signed or sealed.
    StubOctet { at: usize, value: u8 },
    /// A call's stub grown by this many pseudo-random octets before protection (past
    /// the fragment size: the call goes in several fragments).
    StubGrow(Vec<u8>),
}

impl RpcMutation {
    fn pick(rng: &mut SeededRng) -> RpcMutation {
        let n = rng.next_u64();
        let at = (n >> 8) as usize;
        let octet = (n >> 40) as u8;
        match n % 11 {
            9 => RpcMutation::StubOctet { at, value: octet },
            10 => {
                // Up to 8 KiB: a few fragments at the usual 4280 or the floor of 1432.
                let mut tail = vec![0u8; 1 + at % 8192];
                rng.fill(&mut tail);
                RpcMutation::StubGrow(tail)
            }
            0 => RpcMutation::FlipBit { at, bit: octet % 8 },
            1 => RpcMutation::SetOctet { at, value: octet },
            2 => RpcMutation::Truncate { keep: at },
            3 => RpcMutation::FragLength((n >> 16) as u16),
            4 => RpcMutation::PacketType(octet % 24),
            5 => RpcMutation::Flags(octet),
            6 => RpcMutation::AuthLength((n >> 16) as u16),
            7 => RpcMutation::Repeat,
            _ => {
                let mut tail = vec![0u8; 1 + at % 64];
                rng.fill(&mut tail);
                RpcMutation::Append(tail)
            }
        }
    }

    /// The mutation's kind, for the findings' names.
    pub fn name(&self) -> &'static str {
        match self {
            RpcMutation::FlipBit { .. } => "flip-bit",
            RpcMutation::SetOctet { .. } => "set-octet",
            RpcMutation::Truncate { .. } => "truncate",
            RpcMutation::FragLength(_) => "frag-length",
            RpcMutation::PacketType(_) => "packet-type",
            RpcMutation::Flags(_) => "flags",
            RpcMutation::AuthLength(_) => "auth-length",
            RpcMutation::Repeat => "repeat",
            RpcMutation::Append(_) => "append",
            RpcMutation::StubOctet { .. } => "stub-octet",
            RpcMutation::StubGrow(_) => "stub-grow",
        }
    }

    /// The mutation with its parameters, short (appended octets counted, not shown).
    pub fn describe(&self) -> String {
        match self {
            RpcMutation::Append(tail) => format!("append {} octets", tail.len()),
            RpcMutation::StubGrow(tail) => format!("stub grown by {} octets", tail.len()),
            other => format!("{other:?}"),
        }
    }

    /// Applies to a call's stub before protection, not to the PDU's octets.
    pub fn is_stub_level(&self) -> bool {
        matches!(
            self,
            RpcMutation::StubOctet { .. } | RpcMutation::StubGrow(_)
        )
    }

    /// The stub to call with instead of `stub` (unchanged for a PDU-level mutation).
    pub fn apply_to_stub(&self, stub: &[u8]) -> Vec<u8> {
        let mut out = stub.to_vec();
        match self {
            RpcMutation::StubOctet { at, value } => {
                let len = out.len().max(1);
                if let Some(b) = out.get_mut(at % len) {
                    *b = *value;
                }
            }
            RpcMutation::StubGrow(tail) => out.extend_from_slice(tail),
            _ => {}
        }
        out
    }

    /// The octets to send instead of `pdu`.
    pub fn apply(&self, pdu: &[u8]) -> Vec<u8> {
        let mut out = pdu.to_vec();
        let len = out.len().max(1);
        let set = |out: &mut Vec<u8>, at: usize, octets: &[u8]| {
            if let Some(slot) = out.get_mut(at..at + octets.len()) {
                slot.copy_from_slice(octets);
            }
        };
        match self {
            RpcMutation::FlipBit { at, bit } => {
                if let Some(b) = out.get_mut(at % len) {
                    *b ^= 1 << (bit % 8);
                }
            }
            RpcMutation::SetOctet { at, value } => set(&mut out, at % len, &[*value]),
            RpcMutation::Truncate { keep } => out.truncate(keep % len),
            RpcMutation::FragLength(v) => set(&mut out, 8, &v.to_le_bytes()),
            RpcMutation::PacketType(v) => set(&mut out, 2, &[*v]),
            RpcMutation::Flags(v) => set(&mut out, 3, &[*v]),
            RpcMutation::AuthLength(v) => set(&mut out, 10, &v.to_le_bytes()),
            RpcMutation::Repeat => out.extend_from_slice(pdu),
            RpcMutation::Append(tail) => out.extend_from_slice(tail),
            // Applied to the stub before the call was made.
            RpcMutation::StubOctet { .. } | RpcMutation::StubGrow(_) => {}
        }
        out
    }
}

/// One case: the session and which of its client PDUs is mutated how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcCase {
    pub number: u64,
    pub interface: KnownInterface,
    /// NTLM at this level, or no security.
    pub auth: Option<AuthLevel>,
    /// An alter_context after the bind adds presentation context 1, which the calls use.
    pub alter: bool,
    /// Index of the mutated PDU among those the client sends (bind 0, auth3, the
    /// alter_context, calls); a stub-level mutation always targets a call.
    pub target_pdu: usize,
    pub mutation: RpcMutation,
}

impl RpcCase {
    /// Case `number` of `seed`: always the same plan.
    pub fn plan(seed: u64, number: u64, interface: KnownInterface) -> RpcCase {
        let mut rng = SeededRng::new(seed ^ number.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let auth = match rng.next_u64() % 4 {
            0 => None,
            1 => Some(AuthLevel::CONNECT),
            2 => Some(AuthLevel::PKT_INTEGRITY),
            _ => Some(AuthLevel::PKT_PRIVACY),
        };
        let alter = rng.next_u64() % 4 == 0;
        let before_calls = 1 + usize::from(auth.is_some()) + usize::from(alter);
        let calls = interface.valid_calls().len();
        let pick = rng.next_u64();
        let mutation = RpcMutation::pick(&mut rng);
        let target_pdu = if mutation.is_stub_level() {
            before_calls + (pick % calls.max(1) as u64) as usize
        } else {
            (pick % (before_calls + calls) as u64) as usize
        };
        RpcCase {
            number,
            interface,
            auth,
            alter,
            target_pdu,
            mutation,
        }
    }
}

/// The credentials a case's NTLM binds use.
#[derive(Debug, Clone)]
pub struct RpcCredentials {
    pub user: String,
    pub password: String,
    pub domain: String,
}

/// What to send next, and whether the protocol makes the server answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub bytes: Vec<u8>,
    pub expects_reply: bool,
    /// This is the mutated PDU.
    pub mutated: bool,
}

/// What the server's octets came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// Not yet the answer awaited.
    More,
    /// The answer to the last PDU came (an ack, nak, response or fault).
    Answered,
    /// The octets do not frame as PDUs: no DCE/RPC server sends that.
    Malformed(String),
    /// They frame, but the client refuses them (after a mutated PDU, e.g. a fault
    /// with call id 0).
    Refused(String),
}

/// One case's client: the association, the PDUs still to send, what was sent.
pub struct RpcSession {
    client: ClientAssociation,
    interface: KnownInterface,
    /// Calls still to make once the association is ready.
    calls: VecDeque<(u16, Vec<u8>)>,
    /// The alter_context is still to send (it adds context 1, which the calls then use).
    alter_pending: bool,
    /// The presentation context the calls go on.
    call_context: u16,
    queue: VecDeque<Outgoing>,
    sent: usize,
    target: Option<(usize, RpcMutation)>,
    framer: PduFramer,
    /// Every PDU sent (after mutation) and every octet received, for reproducers.
    pub log: Vec<(bool, Vec<u8>)>,
}

impl RpcSession {
    /// A case's session: its bind is the first PDU to send.
    pub fn for_case(case: &RpcCase, creds: &RpcCredentials) -> Result<RpcSession, ClientError> {
        let mut s = RpcSession::new(case.interface, case.auth, creds)?;
        s.target = Some((case.target_pdu, case.mutation.clone()));
        s.alter_pending = case.alter;
        // The bind was queued before the target was known.
        if case.target_pdu == 0 && !case.mutation.is_stub_level() {
            if let Some(bind) = s.queue.front_mut() {
                bind.bytes = case.mutation.apply(&bind.bytes);
                bind.mutated = true;
            }
        }
        Ok(s)
    }

    /// An unmutated session (the probe: `auth` None).
    pub fn new(
        interface: KnownInterface,
        auth: Option<AuthLevel>,
        creds: &RpcCredentials,
    ) -> Result<RpcSession, ClientError> {
        let mut client = ClientAssociation::new(ClientConfig {
            max_response_stub: 1 << 20,
            ..ClientConfig::default()
        });
        let credentials = Credentials {
            user: creds.user.clone(),
            password: creds.password.clone(),
            domain: creds.domain.clone(),
            workstation: "HARNESS".into(),
        };
        let security = auth.map(|level| ntlm_bind(credentials, level));
        let contexts = [primary_context(interface)];
        let bind = client.bind(&contexts, security)?;
        let mut s = RpcSession {
            client,
            interface,
            calls: interface.valid_calls().iter().cloned().collect(),
            alter_pending: false,
            call_context: 0,
            queue: VecDeque::new(),
            sent: 0,
            target: None,
            framer: PduFramer::new(u16::MAX),
            log: Vec::new(),
        };
        s.push(bind, true);
        Ok(s)
    }

    /// The mutation of the PDU that goes next, if it is the target.
    fn mutation_here(&self) -> Option<&RpcMutation> {
        let index = self.sent + self.queue.len();
        self.target
            .as_ref()
            .filter(|(t, _)| *t == index)
            .map(|(_, m)| m)
    }

    fn push(&mut self, pdu: Vec<u8>, expects_reply: bool) {
        let (bytes, mutated) = match self.mutation_here() {
            Some(m) if !m.is_stub_level() => (m.apply(&pdu), true),
            _ => (pdu, false),
        };
        self.queue.push_back(Outgoing {
            bytes,
            expects_reply,
            mutated,
        });
    }

    /// The next PDU to send (the alter_context, then a call, once the association is
    /// ready), or None when the session is over.
    pub fn next_pdu(&mut self) -> Option<Outgoing> {
        if self.queue.is_empty() && self.client.is_ready() && self.alter_pending {
            self.alter_pending = false;
            let added = ContextElement {
                context_id: 1,
                ..primary_context(self.interface)
            };
            if let Ok(pdu) = self.client.alter_context(&[added]) {
                self.call_context = 1;
                self.push(pdu, true);
            }
        } else if self.queue.is_empty() && self.client.is_ready() {
            if let Some((opnum, stub)) = self.calls.pop_front() {
                let stub_mutation = self.mutation_here().filter(|m| m.is_stub_level()).cloned();
                let stub = match &stub_mutation {
                    Some(m) => m.apply_to_stub(&stub),
                    None => stub,
                };
                if let Ok(call) = self.client.call(self.call_context, opnum, None, &stub) {
                    if stub_mutation.is_some() {
                        self.queue.push_back(Outgoing {
                            bytes: call.fragments.concat(),
                            expects_reply: true,
                            mutated: true,
                        });
                    } else {
                        self.push(call.fragments.concat(), true);
                    }
                }
            }
        }
        let out = self.queue.pop_front()?;
        self.sent += 1;
        self.log.push((true, out.bytes.clone()));
        Some(out)
    }

    /// Takes the server's octets.
    pub fn heard(&mut self, bytes: &[u8]) -> Heard {
        self.log.push((false, bytes.to_vec()));
        let mut pdus: Vec<Pdu> = Vec::new();
        if let Err(e) = self.framer.push(bytes, &mut pdus) {
            return Heard::Malformed(e.to_string());
        }
        let mut events = Vec::new();
        if let Err(e) = self.client.receive(bytes, &mut events) {
            return Heard::Refused(e.to_string());
        }
        let mut answered = false;
        for e in events {
            match e {
                ClientEvent::Send(leg) => self.push(leg, false),
                ClientEvent::Shutdown => {}
                _ => answered = true,
            }
        }
        if answered {
            Heard::Answered
        } else {
            Heard::More
        }
    }

    /// The interface this session binds to.
    pub fn interface(&self) -> KnownInterface {
        self.interface
    }
}

/// A reproducer's text: the plan, what happened, and every PDU sent and octet
/// received in hex (C: and S: lines).
pub fn report(
    seed: u64,
    case: &RpcCase,
    outcome: &str,
    detail: &str,
    log: &[(bool, Vec<u8>)],
) -> String {
    let mut out = format!(
        "# harness fuzz dcerpc: seed {seed} case {} ({outcome}: {detail})\n\
         # interface {:?}, auth {:?}, alter_context {}, PDU {} mutated by {}\n\
         # `harness fuzz --target dcerpc://HOST:PORT --seed {seed} --case {} --count 1` plays\n\
         # this plan again (not byte for byte: the NTLM legs answer the server's challenge)\n",
        case.number,
        case.interface,
        case.auth,
        case.alter,
        case.target_pdu,
        case.mutation.describe(),
        case.number
    );
    for (client, bytes) in log {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        out.push_str(if *client { "C: " } else { "S: " });
        out.push_str(&hex);
        out.push('\n');
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fuzzing::rpc_ops::Lab;
    use crate::session::{Output, ServerSession};
    use std::time::Duration;

    /// The lab's account (alice), for this module's tests and rpch's.
    pub(crate) fn creds() -> RpcCredentials {
        RpcCredentials {
            user: "alice".into(),
            password: "secret".into(),
            domain: "EXAMPLE".into(),
        }
    }

    /// Plays a session against the lab in-process; returns (PDUs sent, answers).
    fn play(mut s: RpcSession, which: KnownInterface) -> (usize, usize) {
        let lab = Lab::new().unwrap();
        let mut assoc = lab.accept(which);
        let (mut sent, mut answers) = (0, 0);
        while let Some(out) = s.next_pdu() {
            sent += 1;
            assoc.handle_input(Duration::ZERO, &out.bytes);
            let mut written = Vec::new();
            while let Some(o) = assoc.poll_output() {
                if let Output::Write(b) = o {
                    written.extend_from_slice(&b);
                }
            }
            if written.is_empty() {
                continue;
            }
            match s.heard(&written) {
                Heard::Answered => answers += 1,
                Heard::More => {}
                other => panic!("{other:?}"),
            }
        }
        (sent, answers)
    }

    #[test]
    fn unmutated_sessions_bind_and_call() {
        for which in [KnownInterface::Epm, KnownInterface::Rfr] {
            for auth in [None, Some(AuthLevel::PKT_PRIVACY)] {
                let s = RpcSession::new(which, auth, &creds()).unwrap();
                let calls = which.valid_calls().len();
                let legs = usize::from(auth.is_some());
                assert_eq!(play(s, which), (1 + legs + calls, 1 + calls));
            }
        }
    }

    #[test]
    fn an_alter_context_session_calls_on_the_added_context() {
        for auth in [None, Some(AuthLevel::PKT_INTEGRITY)] {
            let mut s = RpcSession::new(KnownInterface::Rfr, auth, &creds()).unwrap();
            s.alter_pending = true;
            let calls = KnownInterface::Rfr.valid_calls().len();
            let legs = usize::from(auth.is_some());
            // bind, auth3, alter_context, calls; the ack of each answered.
            assert_eq!(play(s, KnownInterface::Rfr), (2 + legs + calls, 2 + calls));
            // Every request names presentation context 1 (p_cont_id, octets 20-21 of a
            // request, [C706] 12.6.4.9).
            let mut s = RpcSession::new(KnownInterface::Rfr, auth, &creds()).unwrap();
            s.alter_pending = true;
            let lab = Lab::new().unwrap();
            let mut assoc = lab.accept(KnownInterface::Rfr);
            let mut requests = 0;
            while let Some(out) = s.next_pdu() {
                if out.bytes.get(2) == Some(&0) {
                    requests += 1;
                    assert_eq!(
                        out.bytes.get(20..22),
                        Some(&[1u8, 0][..]),
                        "{:02x?}",
                        out.bytes
                    );
                }
                assoc.handle_input(Duration::ZERO, &out.bytes);
                let mut written = Vec::new();
                while let Some(o) = assoc.poll_output() {
                    if let Output::Write(b) = o {
                        written.extend_from_slice(&b);
                    }
                }
                if !written.is_empty() {
                    s.heard(&written);
                }
            }
            assert_eq!(requests, calls);
        }
    }

    #[test]
    fn stub_mutations_are_sealed_after_they_are_made_and_reach_the_interface() {
        // A stub-level mutation of a sealed call verifies at the server: the answer is
        // the interface's (a response or a stub fault), never the signature refusal.
        let lab = Lab::new().unwrap();
        let mut seen = 0;
        for n in 0..400 {
            let case = RpcCase::plan(9, n, KnownInterface::Epm);
            if !case.mutation.is_stub_level() || case.auth != Some(AuthLevel::PKT_PRIVACY) {
                continue;
            }
            seen += 1;
            let mut s = RpcSession::for_case(&case, &creds()).unwrap();
            let mut assoc = lab.accept(KnownInterface::Epm);
            let mut verdict = None;
            while let Some(out) = s.next_pdu() {
                assoc.handle_input(Duration::ZERO, &out.bytes);
                let mut written = Vec::new();
                while let Some(o) = assoc.poll_output() {
                    if let Output::Write(b) = o {
                        written.extend_from_slice(&b);
                    }
                }
                let heard = (!written.is_empty()).then(|| s.heard(&written));
                if out.mutated {
                    verdict = Some((heard, written));
                    break;
                }
            }
            let (heard, written) = verdict.expect("the mutated call was sent");
            assert_eq!(heard, Some(Heard::Answered), "case {n}: {case:?}");
            // ptype 2 (response) or 3 (fault) whose status is not rpc_s_sec_pkg_error.
            assert!(matches!(written[2], 2 | 3), "case {n}");
            if written[2] == 3 {
                assert_ne!(written[24..28], 0x721u32.to_le_bytes(), "case {n}");
            }
        }
        assert!(seen >= 5, "only {seen} sealed stub-level cases");
    }

    #[test]
    fn plans_are_fixed_by_seed_and_mutate_their_pdu() {
        let a = RpcCase::plan(3, 17, KnownInterface::Epm);
        assert_eq!(a, RpcCase::plan(3, 17, KnownInterface::Epm));
        let kinds: std::collections::BTreeSet<&str> = (0..500)
            .map(|n| RpcCase::plan(1, n, KnownInterface::Epm).mutation.name())
            .collect();
        assert_eq!(kinds.len(), 11);
        let mut s = RpcSession::for_case(&a, &creds()).unwrap();
        let first = s.next_pdu().unwrap();
        assert_eq!(first.mutated, a.target_pdu == 0);
        let bind = RpcSession::new(KnownInterface::Epm, a.auth, &creds())
            .unwrap()
            .next_pdu()
            .unwrap();
        assert_eq!(
            first.bytes == bind.bytes,
            !first.mutated || a.mutation.apply(&bind.bytes) == bind.bytes
        );
        assert!(report(3, &a, "ok", "-", &s.log).contains("C: "));
    }
}
