//! A sans-IO framer for a connection-oriented byte stream: bytes in, whole PDUs out.
//! frag_length is checked against the negotiated limit ([C706] 12.6.3.1 max_recv_frag)
//! as soon as the header is in, before any octet of the body is buffered.

use crate::codec::{DecodeError, Reader};

use super::header::{Header, HEADER_LEN};
use super::pdu::Pdu;

/// Why the stream can no longer be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramerError {
    /// frag_length is larger than the configured maximum fragment.
    #[error("dcerpc: frag_length {frag_length} above the limit of {max}")]
    FragmentTooLong { frag_length: u16, max: u16 },
    /// The header (rpc_vers, frag_length below 16) or the body is malformed.
    #[error(transparent)]
    Pdu(#[from] DecodeError),
}

/// Cuts a stream into PDUs. After an error every later push returns the same error:
/// the fragment boundaries are lost, so the connection has to go.
#[derive(Debug, Clone)]
pub struct PduFramer {
    max_frag: u16,
    buf: Vec<u8>,
    /// frag_length of the fragment being buffered, once its header is in.
    frag_length: Option<usize>,
    failed: Option<FramerError>,
}

impl PduFramer {
    /// A framer accepting fragments of at most `max_frag` octets (the max_recv_frag
    /// this side announced).
    pub fn new(max_frag: u16) -> PduFramer {
        PduFramer {
            max_frag,
            buf: Vec::new(),
            frag_length: None,
            failed: None,
        }
    }

    /// Changes the limit, e.g. once the bind negotiated a smaller one.
    pub fn set_max_frag(&mut self, max_frag: u16) {
        self.max_frag = max_frag;
    }

    /// Octets of an unfinished fragment held.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes `bytes` from the stream and appends each PDU completed to `out`. PDUs
    /// completed before an error are in `out` too, however the stream was chunked.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Pdu>) -> Result<(), FramerError> {
        let mut frames = Vec::new();
        let split = self.push_frames(bytes, &mut frames);
        for frame in frames {
            match Pdu::decode(&frame) {
                Ok((pdu, _)) => out.push(pdu),
                Err(e) => return Err(self.fail(e.into())),
            }
        }
        split
    }

    /// Like [`PduFramer::push`], but appends each fragment's octets as they came, its
    /// header checked and the body not decoded: what a receiver needs when it must
    /// verify a signature over the octets (and decrypt a sealed stub) before decoding.
    pub fn push_frames(
        &mut self,
        mut bytes: &[u8],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FramerError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        while !bytes.is_empty() {
            let want = self.frag_length.unwrap_or(HEADER_LEN);
            let n = (want - self.buf.len()).min(bytes.len());
            let (now, later) = bytes.split_at(n);
            self.buf.extend_from_slice(now);
            bytes = later;
            if let Err(e) = self.step(out) {
                return Err(self.fail(e));
            }
        }
        Ok(())
    }

    /// Remembers `e` for every later push and drops what was buffered.
    fn fail(&mut self, e: FramerError) -> FramerError {
        self.failed = Some(e.clone());
        self.buf = Vec::new();
        self.frag_length = None;
        e
    }

    /// Checks the header once it is in, hands the fragment out once it is complete.
    fn step(&mut self, out: &mut Vec<Vec<u8>>) -> Result<(), FramerError> {
        if self.frag_length.is_none() && self.buf.len() == HEADER_LEN {
            let header = Header::decode(&mut Reader::new(&self.buf))?;
            if header.frag_length > self.max_frag {
                return Err(FramerError::FragmentTooLong {
                    frag_length: header.frag_length,
                    max: self.max_frag,
                });
            }
            let frag_length = usize::from(header.frag_length);
            self.buf.reserve_exact(frag_length - HEADER_LEN);
            self.frag_length = Some(frag_length);
        }
        if self.frag_length == Some(self.buf.len()) {
            let capacity = self.buf.capacity();
            out.push(std::mem::replace(
                &mut self.buf,
                Vec::with_capacity(capacity.min(HEADER_LEN * 4)),
            ));
            self.frag_length = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::call::Response;
    use super::super::header::{PfcFlags, ERR_FRAG_TOO_SHORT, ERR_VERSION};
    use super::super::pdu::PduBody;
    use super::*;

    fn response(call_id: u32, stub_len: usize) -> Pdu {
        let body = PduBody::Response(Response {
            alloc_hint: stub_len as u32,
            context_id: 0,
            cancel_count: 0,
            stub: vec![0x5a; stub_len],
        });
        Pdu::new(call_id, PfcFlags::WHOLE, body)
    }

    #[test]
    fn any_chunking_gives_the_same_pdus() {
        let pdus: Vec<Pdu> = (1..=3).map(|i| response(i, 10 * i as usize)).collect();
        let stream: Vec<u8> = pdus.iter().flat_map(|p| p.encode().unwrap()).collect();
        for chunk in [1, 2, 7, 16, 17, 100, stream.len()] {
            let mut framer = PduFramer::new(4280);
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                framer.push(piece, &mut out).unwrap();
            }
            assert_eq!(out, pdus, "chunks of {chunk}");
            assert_eq!(framer.buffered(), 0);
        }
    }

    #[test]
    fn lengths_are_refused_before_the_body_is_buffered() {
        let mut big = response(1, 100).encode().unwrap();
        let mut framer = PduFramer::new(64);
        let mut out = Vec::new();
        assert_eq!(
            framer.push(&big[..20], &mut out),
            Err(FramerError::FragmentTooLong {
                frag_length: 124,
                max: 64
            })
        );
        assert_eq!(framer.buffered(), 0);
        assert!(framer.push(&big, &mut out).is_err(), "stays failed");
        big[8] = 8;
        big[9] = 0;
        let mut framer = PduFramer::new(64);
        assert_eq!(
            framer.push(&big, &mut out),
            Err(FramerError::Pdu(DecodeError::Invalid(ERR_FRAG_TOO_SHORT)))
        );
        big[0] = 6;
        let mut framer = PduFramer::new(64);
        assert_eq!(
            framer.push(&big, &mut out),
            Err(FramerError::Pdu(DecodeError::Invalid(ERR_VERSION)))
        );
        assert!(out.is_empty());
    }
}
