//! Kerberos over TCP (RFC 4120 7.2.2): each message is preceded by its length as four
//! big-endian octets, the high bit reserved and zero. Over UDP a datagram is one message.

/// The largest request the lab reads. KDC requests are a few hundred octets (a TGS-REQ
/// with a ticket and authenticator under 2 KiB); the bound is checked before anything is
/// allocated for a record.
pub const MAX_RECORD: usize = 64 * 1024;

/// The largest reply sent over UDP; a longer one is replaced by KRB_ERR_RESPONSE_TOO_BIG
/// so the client retries over TCP (MIT's KDC bounds its datagram replies the same way).
pub const MAX_DATAGRAM_REPLY: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A whole message.
    Message(Vec<u8>),
    /// More octets are needed.
    Incomplete,
    /// The length prefix sets the reserved bit or exceeds `MAX_RECORD`: answer
    /// KRB_ERR_FIELD_TOOLONG and close (RFC 4120 7.2.2).
    TooLong(u32),
}

/// Takes one record off the front of `buf`, leaving what follows it.
pub fn take_record(buf: &mut Vec<u8>) -> Record {
    let Some(prefix) = buf.get(..4) else {
        return Record::Incomplete;
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if len & 0x8000_0000 != 0 || len as usize > MAX_RECORD {
        return Record::TooLong(len);
    }
    let end = 4 + len as usize;
    if buf.len() < end {
        return Record::Incomplete;
    }
    let message = buf[4..end].to_vec();
    buf.drain(..end);
    Record::Message(message)
}

/// `message` with its TCP length prefix.
pub fn record(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + message.len());
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_join_and_refuse_oversize() {
        let mut buf = record(b"abc");
        buf.extend_from_slice(&record(b"de")[..3]);
        assert_eq!(take_record(&mut buf), Record::Message(b"abc".to_vec()));
        assert_eq!(take_record(&mut buf), Record::Incomplete);
        buf.extend_from_slice(b"\x02de");
        assert_eq!(take_record(&mut buf), Record::Message(b"de".to_vec()));
        assert!(buf.is_empty());
        let mut reserved = vec![0x80, 0, 0, 1, 0];
        assert_eq!(take_record(&mut reserved), Record::TooLong(0x8000_0001));
        let mut huge = (MAX_RECORD as u32 + 1).to_be_bytes().to_vec();
        assert_eq!(
            take_record(&mut huge),
            Record::TooLong(MAX_RECORD as u32 + 1)
        );
        let mut limit = (MAX_RECORD as u32).to_be_bytes().to_vec();
        assert_eq!(take_record(&mut limit), Record::Incomplete);
    }
}
