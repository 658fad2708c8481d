//! Calls larger than one fragment: joining request or response fragments (FIRST_FRAG
//! ... LAST_FRAG, one call_id) into one stub under a size limit, and splitting a stub
//! into fragments that fit max_xmit_frag ([C706] 12.6.3.7; [MS-RPCE] 3.3.1.5.5).
//! Verifiers are per fragment: check them before joining, sign after splitting.

use super::auth::{SEC_TRAILER_LEN, STUB_AUTH_ALIGN};
use super::call::RESPONSE_HEADER_LEN;
use super::header::{PacketType, PfcFlags, HEADER_LEN};
use super::pdu::{Pdu, PduBody};

/// Why a fragment cannot join the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    #[error("dcerpc: {0:?} is not a request or response fragment")]
    NotACallFragment(PacketType),
    #[error("dcerpc: a fragment without FIRST_FRAG and no call in progress")]
    NoCallInProgress,
    #[error("dcerpc: FIRST_FRAG of call {got} while call {in_progress} is unfinished")]
    CallInProgress { in_progress: u32, got: u32 },
    #[error(
        "dcerpc: fragment of call {got} (or of another PTYPE or context) inside call {in_progress}"
    )]
    WrongCall { in_progress: u32, got: u32 },
    #[error("dcerpc: the call's stub would exceed {limit} octets")]
    StubTooLarge { limit: usize },
}

/// Joins the fragments of one call at a time (calls on one connection do not
/// interleave without CONC_MPX, which this side does not offer).
#[derive(Debug, Clone)]
pub struct CallReassembler {
    max_stub: usize,
    /// The first fragment, its stub growing as fragments come.
    call: Option<Pdu>,
}

fn stub_mut(pdu: &mut Pdu) -> Option<&mut Vec<u8>> {
    match &mut pdu.body {
        PduBody::Request(r) => Some(&mut r.stub),
        PduBody::Response(r) => Some(&mut r.stub),
        _ => None,
    }
}

fn context_id(pdu: &Pdu) -> Option<u16> {
    match &pdu.body {
        PduBody::Request(r) => Some(r.context_id),
        PduBody::Response(r) => Some(r.context_id),
        _ => None,
    }
}

impl CallReassembler {
    /// A reassembler refusing calls whose stub exceeds `max_stub` octets.
    pub fn new(max_stub: usize) -> CallReassembler {
        CallReassembler {
            max_stub,
            call: None,
        }
    }

    /// Adds one fragment. Returns the whole call when this was its LAST_FRAG: the first
    /// fragment with the joined stub, FIRST_FRAG and LAST_FRAG set and no verifier.
    /// After an error the call in progress is dropped.
    pub fn push(&mut self, mut fragment: Pdu) -> Result<Option<Pdu>, ReassemblyError> {
        let result = self.join(&mut fragment);
        if result.is_err() {
            self.call = None;
        }
        result
    }

    fn join(&mut self, fragment: &mut Pdu) -> Result<Option<Pdu>, ReassemblyError> {
        let packet_type = fragment.packet_type();
        let got = fragment.call_id;
        let first = fragment.flags.contains(PfcFlags::FIRST_FRAG);
        let last = fragment.flags.contains(PfcFlags::LAST_FRAG);
        let limit = self.max_stub;
        let Some(stub) = stub_mut(fragment) else {
            return Err(ReassemblyError::NotACallFragment(packet_type));
        };
        if stub.len() > limit {
            return Err(ReassemblyError::StubTooLarge { limit });
        }
        let stub = std::mem::take(stub);
        let call = match (self.call.as_mut(), first) {
            (Some(call), true) => {
                return Err(ReassemblyError::CallInProgress {
                    in_progress: call.call_id,
                    got,
                })
            }
            (None, false) => return Err(ReassemblyError::NoCallInProgress),
            (None, true) => {
                let mut call = fragment.clone();
                if let Some(s) = stub_mut(&mut call) {
                    // alloc_hint is only a hint: reserve by it, but never past the limit.
                    let hint = match &fragment.body {
                        PduBody::Request(r) => r.alloc_hint,
                        PduBody::Response(r) => r.alloc_hint,
                        _ => 0,
                    };
                    s.reserve_exact((hint as usize).min(limit));
                    s.extend_from_slice(&stub);
                }
                call.auth = None;
                self.call.insert(call)
            }
            (Some(call), false) => {
                if call.call_id != got
                    || call.packet_type() != packet_type
                    || context_id(call) != context_id(fragment)
                {
                    return Err(ReassemblyError::WrongCall {
                        in_progress: call.call_id,
                        got,
                    });
                }
                let Some(s) = stub_mut(call) else {
                    return Err(ReassemblyError::NotACallFragment(packet_type));
                };
                if s.len() + stub.len() > limit {
                    return Err(ReassemblyError::StubTooLarge { limit });
                }
                s.extend_from_slice(&stub);
                call
            }
        };
        if !last {
            return Ok(None);
        }
        call.flags.set(PfcFlags::WHOLE, true);
        Ok(self.call.take())
    }
}

/// Splits a whole request or response into fragments whose encodings fit `max_frag`
/// octets: header, body header, stub, auth padding and verifier counted. Each carries
/// the call's verifier (a placeholder of the signature's length, to be signed), its
/// alloc_hint is the stub left from that fragment on, and only the first and last carry
/// FIRST_FRAG and LAST_FRAG. `None` when `max_frag` leaves no room for stub data or the
/// body is not a request or response.
pub fn fragment(call: &Pdu, max_frag: u16) -> Option<Vec<Pdu>> {
    let (body_header, stub) = match &call.body {
        PduBody::Request(r) => (r.header_len(), &r.stub),
        PduBody::Response(r) => (RESPONSE_HEADER_LEN, &r.stub),
        _ => return None,
    };
    let auth_len = call
        .auth
        .as_ref()
        .map(|v| SEC_TRAILER_LEN + v.auth_value.len());
    let room =
        usize::from(max_frag).checked_sub(HEADER_LEN + body_header + auth_len.unwrap_or(0))?;
    // With a verifier, a full fragment's stub is a multiple of 16, so it needs no
    // padding (the pad counts from the stub's start, [MS-RPCE] 2.2.2.11).
    let per_fragment = match auth_len {
        Some(_) => room / STUB_AUTH_ALIGN * STUB_AUTH_ALIGN,
        None => room,
    };
    if per_fragment == 0 {
        return None;
    }
    let pieces: Vec<&[u8]> = if stub.is_empty() {
        vec![&[]]
    } else {
        stub.chunks(per_fragment).collect()
    };
    let count = pieces.len();
    let mut left = stub.len();
    let fragments = pieces
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            let mut f = call.clone();
            f.flags.set(PfcFlags::FIRST_FRAG, i == 0);
            f.flags.set(PfcFlags::LAST_FRAG, i + 1 == count);
            let hint = u32::try_from(left).unwrap_or(u32::MAX);
            match &mut f.body {
                PduBody::Request(r) => {
                    r.stub = piece.to_vec();
                    r.alloc_hint = hint;
                }
                PduBody::Response(r) => {
                    r.stub = piece.to_vec();
                    r.alloc_hint = hint;
                }
                _ => {}
            }
            left -= piece.len();
            f
        })
        .collect();
    Some(fragments)
}
