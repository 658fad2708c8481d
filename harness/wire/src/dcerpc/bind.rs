//! Association PDUs: bind and alter_context, bind_ack and alter_context_resp, bind_nak
//! ([C706] 12.6.4.3-12.6.4.6; [MS-RPCE] 2.2.2.4-2.2.2.6).

use crate::codec::{Codec, DecodeError, Reader, Writer};
use crate::wire_enum;

use super::uuid::SyntaxId;

/// A bind or alter_context offering no presentation context.
pub const ERR_NO_CONTEXTS: &str = "dcerpc: bind without presentation contexts";
/// A presentation context offering no transfer syntax.
pub const ERR_NO_TRANSFER_SYNTAXES: &str = "dcerpc: presentation context without transfer syntaxes";

/// One `p_cont_elem_t`: a context id, the interface and the transfer syntaxes offered.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ContextElement {
    pub context_id: u16,
    pub abstract_syntax: SyntaxId,
    /// 1 to 255 syntaxes (n_transfer_syn is one octet); the encoder writes at most 255.
    pub transfer_syntaxes: Vec<SyntaxId>,
}

/// The body of bind and of alter_context (the same layout, [C706] 12.6.4.3 and 12.6.4.1).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Bind {
    pub max_xmit_frag: u16,
    pub max_recv_frag: u16,
    /// 0 asks for a new association group.
    pub assoc_group_id: u32,
    /// 1 to 255 contexts (n_context_elem is one octet); the encoder writes at most 255.
    pub contexts: Vec<ContextElement>,
}

/// At most 255 items of a list counted by one octet.
fn counted<T>(items: &[T]) -> &[T] {
    items.get(..255).unwrap_or(items)
}

impl Codec for Bind {
    fn encode(&self, w: &mut Writer) {
        w.put_u16_le(self.max_xmit_frag);
        w.put_u16_le(self.max_recv_frag);
        w.put_u32_le(self.assoc_group_id);
        let contexts = counted(&self.contexts);
        w.put_u8(contexts.len() as u8);
        w.put_zeros(3);
        for c in contexts {
            let syntaxes = counted(&c.transfer_syntaxes);
            w.put_u16_le(c.context_id);
            w.put_u8(syntaxes.len() as u8);
            w.put_u8(0);
            c.abstract_syntax.encode(w);
            syntaxes.iter().for_each(|s| s.encode(w));
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let max_xmit_frag = r.u16_le()?;
        let max_recv_frag = r.u16_le()?;
        let assoc_group_id = r.u32_le()?;
        let n_contexts = r.u8()?;
        r.skip(3)?;
        if n_contexts == 0 {
            return Err(DecodeError::Invalid(ERR_NO_CONTEXTS));
        }
        let mut contexts = Vec::new();
        for _ in 0..n_contexts {
            let context_id = r.u16_le()?;
            let n_syntaxes = r.u8()?;
            r.skip(1)?;
            if n_syntaxes == 0 {
                return Err(DecodeError::Invalid(ERR_NO_TRANSFER_SYNTAXES));
            }
            let abstract_syntax = SyntaxId::decode(r)?;
            let transfer_syntaxes = (0..n_syntaxes)
                .map(|_| SyntaxId::decode(r))
                .collect::<Result<_, _>>()?;
            contexts.push(ContextElement {
                context_id,
                abstract_syntax,
                transfer_syntaxes,
            });
        }
        Ok(Bind {
            max_xmit_frag,
            max_recv_frag,
            assoc_group_id,
            contexts,
        })
    }
}

wire_enum! {
    /// p_cont_def_result_t ([C706] 12.6.3.1; negotiate_ack from [MS-RPCE] 2.2.2.4).
    pub struct AckResult(u16, le) {
        ACCEPTANCE = 0,
        USER_REJECTION = 1,
        PROVIDER_REJECTION = 2,
        /// The answer to a bind-time feature negotiation context; the reason field then
        /// carries the accepted feature bits.
        NEGOTIATE_ACK = 3,
    }
}

wire_enum! {
    /// p_provider_reason_t ([C706] 12.6.3.1).
    pub struct AckReason(u16, le) {
        NOT_SPECIFIED = 0,
        ABSTRACT_SYNTAX_NOT_SUPPORTED = 1,
        PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED = 2,
        LOCAL_LIMIT_EXCEEDED = 3,
    }
}

/// One `p_result_t`: the answer to the context in the same position of the bind.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ContextResult {
    pub result: AckResult,
    pub reason: AckReason,
    /// The transfer syntax chosen (all zeros when rejected).
    pub transfer_syntax: SyntaxId,
}

/// The body of bind_ack and of alter_context_resp ([C706] 12.6.4.4 and 12.6.4.2).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BindAck {
    pub max_xmit_frag: u16,
    pub max_recv_frag: u16,
    pub assoc_group_id: u32,
    /// The secondary address (for ncacn_ip_tcp the server's port as ASCII) exactly as
    /// on the wire: with its terminating NUL, or empty (alter_context_resp usually is).
    pub sec_addr: Vec<u8>,
    /// At most 255 (n_results is one octet); the encoder writes at most 255.
    pub results: Vec<ContextResult>,
}

impl BindAck {
    /// A sec_addr for `port`: its decimal digits and the NUL.
    pub fn sec_addr_for_port(port: u16) -> Vec<u8> {
        let mut s = port.to_string().into_bytes();
        s.push(0);
        s
    }
}

impl Codec for BindAck {
    fn encode(&self, w: &mut Writer) {
        w.put_u16_le(self.max_xmit_frag);
        w.put_u16_le(self.max_recv_frag);
        w.put_u32_le(self.assoc_group_id);
        let sec_addr = self
            .sec_addr
            .get(..usize::from(u16::MAX))
            .unwrap_or(&self.sec_addr);
        w.put_u16_le(sec_addr.len() as u16);
        w.put_bytes(sec_addr);
        // The result list starts 4-aligned; the body starts at offset 16, so counting
        // from the writer's start or the PDU's gives the same padding.
        w.pad_to(4);
        let results = counted(&self.results);
        w.put_u8(results.len() as u8);
        w.put_zeros(3);
        for res in results {
            res.result.encode(w);
            res.reason.encode(w);
            res.transfer_syntax.encode(w);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let max_xmit_frag = r.u16_le()?;
        let max_recv_frag = r.u16_le()?;
        let assoc_group_id = r.u32_le()?;
        let sec_addr_len = r.u16_le()?;
        let sec_addr = r.take(usize::from(sec_addr_len))?.to_vec();
        r.align(4)?;
        let n_results = r.u8()?;
        r.skip(3)?;
        let results = (0..n_results)
            .map(|_| {
                Ok(ContextResult {
                    result: AckResult::decode(r)?,
                    reason: AckReason::decode(r)?,
                    transfer_syntax: SyntaxId::decode(r)?,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(BindAck {
            max_xmit_frag,
            max_recv_frag,
            assoc_group_id,
            sec_addr,
            results,
        })
    }
}

wire_enum! {
    /// p_reject_reason_t of bind_nak ([C706] 12.6.3.1; 8 and 9 from [MS-RPCE] 2.2.2.5).
    pub struct RejectReason(u16, le) {
        NOT_SPECIFIED = 0,
        TEMPORARY_CONGESTION = 1,
        LOCAL_LIMIT_EXCEEDED = 2,
        CALLED_PADDR_UNKNOWN = 3,
        PROTOCOL_VERSION_NOT_SUPPORTED = 4,
        DEFAULT_CONTEXT_NOT_SUPPORTED = 5,
        USER_DATA_NOT_READABLE = 6,
        NO_PSAP_AVAILABLE = 7,
        INVALID_AUTH_TYPE = 8,
        INVALID_CHECKSUM = 9,
    }
}

/// The body of bind_nak ([C706] 12.6.4.5): the reason and the protocol versions
/// (major, minor) the server supports. Octets after the list (Windows may add a
/// signature and extended error) are not kept.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BindNak {
    pub reason: RejectReason,
    /// At most 255 (n_protocols is one octet); the encoder writes at most 255.
    pub versions: Vec<(u8, u8)>,
}

impl Codec for BindNak {
    fn encode(&self, w: &mut Writer) {
        self.reason.encode(w);
        let versions = counted(&self.versions);
        w.put_u8(versions.len() as u8);
        for &(major, minor) in versions {
            w.put_bytes(&[major, minor]);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let reason = RejectReason::decode(r)?;
        let n = r.u8()?;
        let versions = (0..n)
            .map(|_| Ok((r.u8()?, r.u8()?)))
            .collect::<Result<_, DecodeError>>()?;
        Ok(BindNak { reason, versions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_bind() -> Bind {
        Bind {
            max_xmit_frag: 4280,
            max_recv_frag: 4280,
            assoc_group_id: 0,
            contexts: vec![ContextElement {
                context_id: 0,
                abstract_syntax: SyntaxId::NDR64,
                transfer_syntaxes: vec![SyntaxId::NDR20, SyntaxId::NDR64],
            }],
        }
    }

    #[test]
    fn bodies_round_trip() {
        let bind = sample_bind();
        assert_eq!(Bind::decode(&mut Reader::new(&bind.to_bytes())), Ok(bind));
        for sec_addr in [vec![], BindAck::sec_addr_for_port(135), b"49664\0".to_vec()] {
            let ack = BindAck {
                max_xmit_frag: 5840,
                max_recv_frag: 5840,
                assoc_group_id: 0x1234,
                sec_addr,
                results: vec![ContextResult {
                    result: AckResult::NEGOTIATE_ACK,
                    reason: AckReason(3),
                    transfer_syntax: SyntaxId::default(),
                }],
            };
            let bytes = ack.to_bytes();
            assert_eq!(bytes.len() % 4, 0);
            assert_eq!(BindAck::decode(&mut Reader::new(&bytes)), Ok(ack));
        }
        let nak = BindNak {
            reason: RejectReason::PROTOCOL_VERSION_NOT_SUPPORTED,
            versions: vec![(5, 0), (5, 1)],
        };
        assert_eq!(nak.to_bytes(), [4, 0, 2, 5, 0, 5, 1]);
        assert_eq!(BindNak::decode(&mut Reader::new(&nak.to_bytes())), Ok(nak));
    }

    #[test]
    fn zero_contexts_and_counts_beyond_the_bytes() {
        let mut none = sample_bind();
        none.contexts.clear();
        assert_eq!(
            Bind::decode(&mut Reader::new(&none.to_bytes())),
            Err(DecodeError::Invalid(ERR_NO_CONTEXTS))
        );
        let mut bytes = sample_bind().to_bytes();
        bytes[14] = 0;
        assert_eq!(
            Bind::decode(&mut Reader::new(&bytes)),
            Err(DecodeError::Invalid(ERR_NO_TRANSFER_SYNTAXES))
        );
        bytes[14] = 200; // 200 syntaxes announced, 2 there: the third UUID's first field is short
        assert_eq!(
            Bind::decode(&mut Reader::new(&bytes)),
            Err(DecodeError::Incomplete { needed: 4 })
        );
    }
}
