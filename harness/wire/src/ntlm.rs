//! NTLM message codecs ([MS-NLMP] 2.2): NEGOTIATE, CHALLENGE, AUTHENTICATE, AV_PAIR
//! lists and VERSION, on [`Reader`] and [`Writer`]. Every variable field is an 8-byte
//! descriptor (Len u16, MaxLen u16, Offset u32 from the start of the message); each is
//! checked against the buffer before it is read. A message is refused outright when
//! larger than [`MAX_MESSAGE_LEN`].
//!
//! The authentication logic (acceptor, initiator, cryptography) lives in harness-core;
//! [`NtlmError`] is here because decoding and the acceptor report through one type.

use std::fmt;

use crate::codec::{Codec, DecodeError, Reader, Reserved, Writer};

/// Everything that can go wrong: malformed messages (decoding) and refused
/// authentication (the acceptor in harness-core).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NtlmError {
    #[error("message of {len} bytes exceeds the 64 KiB limit")]
    TooLarge { len: usize },
    #[error("message truncated: {needed} bytes needed, {got} present")]
    Truncated { needed: usize, got: usize },
    #[error("message does not start with NTLMSSP\\0")]
    BadSignature,
    #[error("expected message type {expected}, found {found}")]
    UnexpectedType { expected: u32, found: u32 },
    #[error("unknown message type {0}")]
    UnknownType(u32),
    #[error("field {field} points outside the message")]
    FieldOutOfBounds { field: &'static str },
    #[error("field {field} overlaps the fixed header")]
    FieldOverlapsHeader { field: &'static str },
    #[error("field {field} has MaxLen smaller than Len")]
    BadFieldLength { field: &'static str },
    #[error("field {field} is not a valid string")]
    BadString { field: &'static str },
    #[error("bad AV_PAIR list: {reason}")]
    BadAvPairs { reason: &'static str },
    #[error("MIC announced but the payload starts inside it")]
    MicOverlapsPayload,
    #[error("malformed NTLMv2 response")]
    MalformedNtlmV2Response,
    #[error("expected {expected}, got {got}")]
    OutOfSequence {
        expected: &'static str,
        got: &'static str,
    },
    #[error("anonymous authentication is refused")]
    AnonymousRefused,
    #[error("no NT response (LM-only authentication is refused)")]
    NoNtResponse,
    #[error("NT response of {0} bytes is neither NTLMv1 (24) nor NTLMv2 (>24)")]
    BadNtResponseLength(usize),
    #[error("LM response of {0} bytes cannot carry the client challenge")]
    BadLmResponseLength(usize),
    #[error("encrypted session key of {0} bytes (16 expected)")]
    BadSessionKeyLength(usize),
    #[error("unknown user")]
    UnknownUser,
    #[error("wrong password")]
    WrongPassword,
    #[error("MIC mismatch")]
    MicMismatch,
}

/// `NTLMSSP\0`, the first 8 bytes of every message.
pub const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
/// Largest message accepted (64 KiB). Real messages are a few hundred bytes.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

crate::wire_enum! {
    /// MessageType ([MS-NLMP] 2.2.1), after the signature.
    pub struct MessageType(u32, le) {
        NEGOTIATE = 1,
        CHALLENGE = 2,
        AUTHENTICATE = 3,
    }
}

pub const NEGOTIATE_TYPE: u32 = MessageType::NEGOTIATE.0;
pub const CHALLENGE_TYPE: u32 = MessageType::CHALLENGE.0;
pub const AUTHENTICATE_TYPE: u32 = MessageType::AUTHENTICATE.0;

/// Offset of the MIC in AUTHENTICATE (after the 8-byte Version at 64).
pub const MIC_OFFSET: usize = 72;
const MIC_END: usize = MIC_OFFSET + 16;

/// UTF-16LE encoding, as NTLM's "UNICODE" strings are ([MS-NLMP] 2.2).
pub fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// OEM encoding. The harness treats the OEM code page as Latin-1; other characters
/// become `?`.
pub fn oem(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

/// NegotiateFlags ([MS-NLMP] §2.2.2.5).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NegotiateFlags(pub u32);

impl NegotiateFlags {
    pub const UNICODE: Self = Self(0x0000_0001);
    pub const OEM: Self = Self(0x0000_0002);
    pub const REQUEST_TARGET: Self = Self(0x0000_0004);
    pub const SIGN: Self = Self(0x0000_0010);
    pub const SEAL: Self = Self(0x0000_0020);
    pub const DATAGRAM: Self = Self(0x0000_0040);
    pub const LM_KEY: Self = Self(0x0000_0080);
    pub const NTLM: Self = Self(0x0000_0200);
    pub const ANONYMOUS: Self = Self(0x0000_0800);
    pub const OEM_DOMAIN_SUPPLIED: Self = Self(0x0000_1000);
    pub const OEM_WORKSTATION_SUPPLIED: Self = Self(0x0000_2000);
    pub const ALWAYS_SIGN: Self = Self(0x0000_8000);
    pub const TARGET_TYPE_DOMAIN: Self = Self(0x0001_0000);
    pub const TARGET_TYPE_SERVER: Self = Self(0x0002_0000);
    pub const EXTENDED_SESSIONSECURITY: Self = Self(0x0008_0000);
    pub const IDENTIFY: Self = Self(0x0010_0000);
    pub const REQUEST_NON_NT_SESSION_KEY: Self = Self(0x0040_0000);
    pub const TARGET_INFO: Self = Self(0x0080_0000);
    pub const VERSION: Self = Self(0x0200_0000);
    pub const NEGOTIATE_128: Self = Self(0x2000_0000);
    pub const KEY_EXCH: Self = Self(0x4000_0000);
    pub const NEGOTIATE_56: Self = Self(0x8000_0000);

    const NAMES: [(Self, &'static str); 22] = [
        (Self::UNICODE, "UNICODE"),
        (Self::OEM, "OEM"),
        (Self::REQUEST_TARGET, "REQUEST_TARGET"),
        (Self::SIGN, "SIGN"),
        (Self::SEAL, "SEAL"),
        (Self::DATAGRAM, "DATAGRAM"),
        (Self::LM_KEY, "LM_KEY"),
        (Self::NTLM, "NTLM"),
        (Self::ANONYMOUS, "ANONYMOUS"),
        (Self::OEM_DOMAIN_SUPPLIED, "OEM_DOMAIN_SUPPLIED"),
        (Self::OEM_WORKSTATION_SUPPLIED, "OEM_WORKSTATION_SUPPLIED"),
        (Self::ALWAYS_SIGN, "ALWAYS_SIGN"),
        (Self::TARGET_TYPE_DOMAIN, "TARGET_TYPE_DOMAIN"),
        (Self::TARGET_TYPE_SERVER, "TARGET_TYPE_SERVER"),
        (Self::EXTENDED_SESSIONSECURITY, "EXTENDED_SESSIONSECURITY"),
        (Self::IDENTIFY, "IDENTIFY"),
        (
            Self::REQUEST_NON_NT_SESSION_KEY,
            "REQUEST_NON_NT_SESSION_KEY",
        ),
        (Self::TARGET_INFO, "TARGET_INFO"),
        (Self::VERSION, "VERSION"),
        (Self::NEGOTIATE_128, "128"),
        (Self::KEY_EXCH, "KEY_EXCH"),
        (Self::NEGOTIATE_56, "56"),
    ];

    /// True when every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    pub fn set(&mut self, other: Self, on: bool) {
        if on {
            self.0 |= other.0;
        } else {
            self.0 &= !other.0;
        }
    }
}

impl std::ops::BitOr for NegotiateFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl fmt::Debug for NegotiateFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NegotiateFlags({:#010x}", self.0)?;
        let mut sep = ": ";
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                write!(f, "{sep}{name}")?;
                sep = "|";
            }
        }
        f.write_str(")")
    }
}

impl Codec for NegotiateFlags {
    fn encode(&self, w: &mut Writer) {
        w.put_u32_le(self.0);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.u32_le().map(NegotiateFlags)
    }
}

crate::wire_enum! {
    /// AV_PAIR identifier ([MS-NLMP] 2.2.2.1). Unknown ids are kept as they are.
    pub struct AvId(u16, le) {
        EOL = 0,
        NB_COMPUTER_NAME = 1,
        NB_DOMAIN_NAME = 2,
        DNS_COMPUTER_NAME = 3,
        DNS_DOMAIN_NAME = 4,
        DNS_TREE_NAME = 5,
        FLAGS = 6,
        TIMESTAMP = 7,
        SINGLE_HOST = 8,
        TARGET_NAME = 9,
        CHANNEL_BINDINGS = 10,
    }
}

/// MsvAvFlags bit: the AUTHENTICATE message carries a MIC.
pub const AV_FLAG_MIC_PRESENT: u32 = 0x2;

/// One AV_PAIR. Values are raw bytes; names are UTF-16LE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvPair {
    pub id: AvId,
    pub value: Vec<u8>,
}

impl AvPair {
    pub fn string(id: AvId, s: &str) -> Self {
        AvPair {
            id,
            value: utf16le(s),
        }
    }
    pub fn timestamp(filetime: u64) -> Self {
        AvPair {
            id: AvId::TIMESTAMP,
            value: filetime.to_le_bytes().to_vec(),
        }
    }
    pub fn flags(flags: u32) -> Self {
        AvPair {
            id: AvId::FLAGS,
            value: flags.to_le_bytes().to_vec(),
        }
    }
    pub fn as_string(&self) -> Option<String> {
        decode_utf16(&self.value)
    }
    pub fn as_u32(&self) -> Option<u32> {
        Some(u32::from_le_bytes(self.value.as_slice().try_into().ok()?))
    }
    pub fn as_u64(&self) -> Option<u64> {
        Some(u64::from_le_bytes(self.value.as_slice().try_into().ok()?))
    }
}

/// The first pair with this id.
pub fn find_av(pairs: &[AvPair], id: AvId) -> Option<&AvPair> {
    pairs.iter().find(|p| p.id == id)
}

/// Decodes an AV_PAIR list up to its MsvAvEOL (which is not returned); bytes after the
/// EOL are ignored. A list without EOL, or a value running past the end, is an error.
pub fn decode_av_pairs(data: &[u8]) -> Result<Vec<AvPair>, NtlmError> {
    let mut r = Reader::new(data);
    let mut out = Vec::new();
    loop {
        let (Ok(id), Ok(len)) = (AvId::decode(&mut r), r.u16_le()) else {
            return Err(NtlmError::BadAvPairs {
                reason: "list ends without MsvAvEOL",
            });
        };
        let Ok(value) = r.take(usize::from(len)) else {
            return Err(NtlmError::BadAvPairs {
                reason: "value runs past the end of the list",
            });
        };
        if id == AvId::EOL {
            return Ok(out);
        }
        out.push(AvPair {
            id,
            value: value.to_vec(),
        });
    }
}

/// Encodes pairs followed by MsvAvEOL. EOL entries inside `pairs` are skipped (they would
/// end the list early) and values longer than 65535 bytes are cut.
pub fn encode_av_pairs(pairs: &[AvPair]) -> Vec<u8> {
    let mut w = Writer::new();
    for p in pairs.iter().filter(|p| p.id != AvId::EOL) {
        let value = cap(&p.value);
        p.id.encode(&mut w);
        w.put_u16_le(value.len() as u16);
        w.put_bytes(value);
    }
    AvId::EOL.encode(&mut w);
    w.put_u16_le(0);
    w.into_bytes()
}

/// VERSION ([MS-NLMP] 2.2.2.10). The 3 reserved bytes are written as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    pub build: u16,
    pub revision: u8,
}

impl Version {
    /// NTLMSSP_REVISION_W2K3.
    pub const REVISION_W2K3: u8 = 0x0F;
    /// Its length on the wire.
    pub const LEN: usize = 8;
}

impl Codec for Version {
    fn encode(&self, w: &mut Writer) {
        w.put_u8(self.major);
        w.put_u8(self.minor);
        w.put_u16_le(self.build);
        w.put_zeros(3);
        w.put_u8(self.revision);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let major = r.u8()?;
        let minor = r.u8()?;
        let build = r.u16_le()?;
        r.skip(3)?;
        Ok(Version {
            major,
            minor,
            build,
            revision: r.u8()?,
        })
    }
}

/// NEGOTIATE_MESSAGE ([MS-NLMP] §2.2.1.1). Domain and workstation are OEM strings.
/// `version` is read when the VERSION flag is set and the header has room for it; keep it
/// `Some` exactly when the flag is set for a faithful round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiateMessage {
    pub flags: NegotiateFlags,
    pub domain: String,
    pub workstation: String,
    pub version: Option<Version>,
}

/// CHALLENGE_MESSAGE ([MS-NLMP] §2.2.1.2). `target_info` is `None` when the field is
/// empty; `Some(vec![])` encodes as a lone MsvAvEOL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeMessage {
    pub flags: NegotiateFlags,
    pub target_name: String,
    pub server_challenge: [u8; 8],
    pub target_info: Option<Vec<AvPair>>,
    pub version: Option<Version>,
}

/// AUTHENTICATE_MESSAGE ([MS-NLMP] §2.2.1.3). `mic` is present exactly when the NTLMv2
/// response's AV pairs carry MsvAvFlags with bit 0x2; an encoder caller keeps the two in
/// step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticateMessage {
    pub flags: NegotiateFlags,
    pub lm_response: Vec<u8>,
    pub nt_response: Vec<u8>,
    pub domain: String,
    pub user: String,
    pub workstation: String,
    pub encrypted_random_session_key: Vec<u8>,
    pub version: Option<Version>,
    pub mic: Option<[u8; 16]>,
}

/// Any NTLM message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Negotiate(NegotiateMessage),
    Challenge(ChallengeMessage),
    Authenticate(AuthenticateMessage),
}

impl Message {
    /// Decodes a message of any of the three types.
    pub fn decode(data: &[u8]) -> Result<Message, NtlmError> {
        match MessageType(message_type(data)?) {
            MessageType::NEGOTIATE => NegotiateMessage::decode(data).map(Message::Negotiate),
            MessageType::CHALLENGE => ChallengeMessage::decode(data).map(Message::Challenge),
            MessageType::AUTHENTICATE => {
                AuthenticateMessage::decode(data).map(Message::Authenticate)
            }
            other => Err(NtlmError::UnknownType(other.0)),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            Message::Negotiate(m) => m.encode(),
            Message::Challenge(m) => m.encode(),
            Message::Authenticate(m) => m.encode(),
        }
    }
}

// ---- decoding helpers -------------------------------------------------------------------

fn cap(b: &[u8]) -> &[u8] {
    &b[..b.len().min(usize::from(u16::MAX))]
}

/// Checks size, signature and length of the common prefix; returns the MessageType.
fn message_type(data: &[u8]) -> Result<u32, NtlmError> {
    if data.len() > MAX_MESSAGE_LEN {
        return Err(NtlmError::TooLarge { len: data.len() });
    }
    let n = data.len().min(SIGNATURE.len());
    if data.get(..n) != SIGNATURE.get(..n) {
        return Err(NtlmError::BadSignature);
    }
    let mut r = Reader::new(data);
    r.skip(SIGNATURE.len())
        .and_then(|()| MessageType::decode(&mut r))
        .map(u32::from)
        .map_err(|_| NtlmError::Truncated {
            needed: 12,
            got: data.len(),
        })
}

/// The fixed header of one message type, read front to back after the MessageType.
struct Header<'a> {
    r: Reader<'a>,
    data: &'a [u8],
    len: usize,
}

impl<'a> Header<'a> {
    /// Checks the common prefix, the type and that `len` header octets are there.
    fn open(data: &'a [u8], expected: MessageType, len: usize) -> Result<Self, NtlmError> {
        let found = message_type(data)?;
        if found != expected.0 {
            return Err(NtlmError::UnexpectedType {
                expected: expected.0,
                found,
            });
        }
        let mut h = Header {
            r: Reader::new(data),
            data,
            len,
        };
        if data.len() < len {
            return Err(h.truncated());
        }
        h.read(|r| r.skip(SIGNATURE.len() + 4))?;
        Ok(h)
    }

    fn truncated(&self) -> NtlmError {
        NtlmError::Truncated {
            needed: self.len,
            got: self.data.len(),
        }
    }

    /// A read inside the header (whose length was checked, so it fails only as
    /// truncation).
    fn read<T>(
        &mut self,
        f: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
    ) -> Result<T, NtlmError> {
        let truncated = self.truncated();
        f(&mut self.r).map_err(|_| truncated)
    }

    fn flags(&mut self) -> Result<NegotiateFlags, NtlmError> {
        self.read(NegotiateFlags::decode)
    }

    /// Reads and sanity-checks the next field descriptor.
    fn desc(&mut self, name: &'static str) -> Result<Desc, NtlmError> {
        let (len, max_len, offset) = self.read(|r| Ok((r.u16_le()?, r.u16_le()?, r.u32_le()?)))?;
        if len > 0 && max_len < len {
            return Err(NtlmError::BadFieldLength { field: name });
        }
        Ok(Desc { name, len, offset })
    }
}

/// A field descriptor read from the fixed header.
#[derive(Debug, Clone, Copy)]
struct Desc {
    name: &'static str,
    len: u16,
    offset: u32,
}

impl Desc {
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The field's bytes; empty fields are not located at all.
    fn slice<'a>(&self, data: &'a [u8], header_end: usize) -> Result<&'a [u8], NtlmError> {
        if self.is_empty() {
            return Ok(&[]);
        }
        let out_of_bounds = NtlmError::FieldOutOfBounds { field: self.name };
        let start = usize::try_from(self.offset).map_err(|_| out_of_bounds.clone())?;
        if start < header_end {
            return Err(NtlmError::FieldOverlapsHeader { field: self.name });
        }
        let mut r = Reader::new(data);
        r.skip(start)
            .and_then(|()| r.take(usize::from(self.len)))
            .map_err(|_| out_of_bounds)
    }
}

/// Lowest offset of the non-empty fields (where the payload starts), or the message length.
fn payload_start(data: &[u8], descs: &[Desc]) -> usize {
    descs
        .iter()
        .filter(|d| !d.is_empty())
        .map(|d| usize::try_from(d.offset).unwrap_or(usize::MAX))
        .min()
        .unwrap_or(data.len())
        .min(data.len())
}

/// Refuses field sets whose total would not fit one message when re-encoded (only
/// overlapping fields can get there).
fn check_total(header: usize, descs: &[Desc]) -> Result<(), NtlmError> {
    let total: usize = header + descs.iter().map(|d| usize::from(d.len)).sum::<usize>();
    if total > MAX_MESSAGE_LEN {
        return Err(NtlmError::TooLarge { len: total });
    }
    Ok(())
}

/// The VERSION field at `at`, when the flag asks for it and the header has room.
fn read_version(data: &[u8], flags: NegotiateFlags, at: usize, payload: usize) -> Option<Version> {
    if !(flags.contains(NegotiateFlags::VERSION) && payload >= at + Version::LEN) {
        return None;
    }
    let mut r = Reader::new(data);
    r.skip(at).and_then(|()| Version::decode(&mut r)).ok()
}

/// What follows a fixed header of `header` octets: the VERSION (when the flag asks for it
/// and the payload leaves room) and the fields `descs` point at, none of which may start
/// inside the header and VERSION; a field set too large to re-encode is refused.
fn version_and_fields<const N: usize>(
    data: &[u8],
    flags: NegotiateFlags,
    header: usize,
    descs: [Desc; N],
) -> Result<(Option<Version>, [&[u8]; N]), NtlmError> {
    let payload = payload_start(data, &descs);
    let version = read_version(data, flags, header, payload);
    let header_end = header + if version.is_some() { Version::LEN } else { 0 };
    let mut fields: [&[u8]; N] = [&[]; N];
    for (field, desc) in fields.iter_mut().zip(&descs) {
        *field = desc.slice(data, header_end)?;
    }
    check_total(header + Version::LEN, &descs)?;
    Ok((version, fields))
}

fn decode_utf16(b: &[u8]) -> Option<String> {
    if b.len() % 2 != 0 {
        return None;
    }
    let units = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .ok()
}

fn decode_str(b: &[u8], unicode: bool, field: &'static str) -> Result<String, NtlmError> {
    if unicode {
        decode_utf16(b).ok_or(NtlmError::BadString { field })
    } else {
        // OEM, treated as Latin-1.
        Ok(b.iter().map(|&c| char::from(c)).collect())
    }
}

fn encode_str(s: &str, unicode: bool) -> Vec<u8> {
    if unicode {
        utf16le(s)
    } else {
        oem(s)
    }
}

// ---- encoding helpers -------------------------------------------------------------------

/// Signature and MessageType, the common prefix.
fn start(ty: MessageType) -> Writer {
    let mut w = Writer::new();
    w.put_bytes(SIGNATURE);
    ty.encode(&mut w);
    w
}

/// Appends a payload field and points its reserved descriptor at it.
fn put_field(w: &mut Writer, desc: Reserved, data: &[u8]) {
    let data = cap(data);
    let len = data.len() as u16;
    let mut d = Writer::new();
    d.put_u16_le(len);
    d.put_u16_le(len);
    d.put_u32_le(w.len() as u32);
    w.patch(desc, d.as_bytes());
    w.put_bytes(data);
}

/// Reserves one 8-byte field descriptor.
fn reserve_desc(w: &mut Writer) -> Reserved {
    w.reserve(8)
}

// ---- NEGOTIATE --------------------------------------------------------------------------

const NEGOTIATE_HEADER: usize = 32;

impl NegotiateMessage {
    pub fn decode(data: &[u8]) -> Result<Self, NtlmError> {
        let mut h = Header::open(data, MessageType::NEGOTIATE, NEGOTIATE_HEADER)?;
        let flags = h.flags()?;
        let domain = h.desc("DomainName")?;
        let workstation = h.desc("Workstation")?;
        let (version, [domain_bytes, ws_bytes]) =
            version_and_fields(data, flags, NEGOTIATE_HEADER, [domain, workstation])?;
        Ok(NegotiateMessage {
            flags,
            domain: decode_str(domain_bytes, false, "DomainName")?,
            workstation: decode_str(ws_bytes, false, "Workstation")?,
            version,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = start(MessageType::NEGOTIATE);
        self.flags.encode(&mut w);
        let domain = reserve_desc(&mut w);
        let workstation = reserve_desc(&mut w);
        if let Some(v) = &self.version {
            v.encode(&mut w);
        }
        put_field(&mut w, domain, &oem(&self.domain));
        put_field(&mut w, workstation, &oem(&self.workstation));
        w.into_bytes()
    }
}

// ---- CHALLENGE --------------------------------------------------------------------------

const CHALLENGE_HEADER: usize = 48;

impl ChallengeMessage {
    pub fn decode(data: &[u8]) -> Result<Self, NtlmError> {
        let mut h = Header::open(data, MessageType::CHALLENGE, CHALLENGE_HEADER)?;
        let target_name = h.desc("TargetName")?;
        let flags = h.flags()?;
        let server_challenge = h.read(|r| r.array::<8>())?;
        h.read(|r| r.skip(8))?; // Reserved
        let target_info = h.desc("TargetInfo")?;
        let (version, [name_bytes, info_bytes]) =
            version_and_fields(data, flags, CHALLENGE_HEADER, [target_name, target_info])?;
        let unicode = flags.contains(NegotiateFlags::UNICODE);
        let name = decode_str(name_bytes, unicode, "TargetName")?;
        let info = if target_info.is_empty() {
            None
        } else {
            Some(decode_av_pairs(info_bytes)?)
        };
        Ok(ChallengeMessage {
            flags,
            target_name: name,
            server_challenge,
            target_info: info,
            version,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = start(MessageType::CHALLENGE);
        let name = reserve_desc(&mut w);
        self.flags.encode(&mut w);
        w.put_bytes(&self.server_challenge);
        w.put_zeros(8); // Reserved
        let info = reserve_desc(&mut w);
        if let Some(v) = &self.version {
            v.encode(&mut w);
        }
        let unicode = self.flags.contains(NegotiateFlags::UNICODE);
        put_field(&mut w, name, &encode_str(&self.target_name, unicode));
        let info_bytes = self
            .target_info
            .as_deref()
            .map(encode_av_pairs)
            .unwrap_or_default();
        put_field(&mut w, info, &info_bytes);
        w.into_bytes()
    }
}

// ---- AUTHENTICATE -----------------------------------------------------------------------

const AUTHENTICATE_HEADER: usize = 64;

/// The parts of an NTLMv2 response ([MS-NLMP] 2.2.2.8, NTLMv2_CLIENT_CHALLENGE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtlmV2Response<'a> {
    pub nt_proof_str: [u8; 16],
    /// Everything after NTProofStr, as the HMAC covers it.
    pub temp: &'a [u8],
    pub timestamp: u64,
    pub client_challenge: [u8; 8],
    pub av_pairs: Vec<AvPair>,
}

impl<'a> NtlmV2Response<'a> {
    /// Parses an NT response longer than 24 bytes.
    pub fn parse(nt: &'a [u8]) -> Result<Self, NtlmError> {
        let mut r = Reader::new(nt);
        let fixed = (|| {
            let nt_proof_str = r.array::<16>()?;
            let temp = r.rest();
            // RespType, HiRespType (both 1), Reserved1 (2), Reserved2 (4), TimeStamp,
            // ChallengeFromClient, Reserved3 (4), then the AV pairs.
            let types = r.array::<2>()?;
            r.skip(6)?;
            let timestamp = r.u64_le()?;
            let client_challenge = r.array::<8>()?;
            r.skip(4)?;
            Ok::<_, DecodeError>((nt_proof_str, temp, types, timestamp, client_challenge))
        })();
        let Ok((nt_proof_str, temp, [1, 1], timestamp, client_challenge)) = fixed else {
            return Err(NtlmError::MalformedNtlmV2Response);
        };
        let av_pairs = decode_av_pairs(r.rest())?;
        Ok(NtlmV2Response {
            nt_proof_str,
            temp,
            timestamp,
            client_challenge,
            av_pairs,
        })
    }

    pub fn mic_present(&self) -> bool {
        find_av(&self.av_pairs, AvId::FLAGS)
            .and_then(AvPair::as_u32)
            .is_some_and(|f| f & AV_FLAG_MIC_PRESENT != 0)
    }
}

/// Whether an NT response announces a MIC (NTLMv2 with MsvAvFlags bit 0x2).
fn announces_mic(nt_response: &[u8]) -> bool {
    nt_response.len() > 24 && NtlmV2Response::parse(nt_response).is_ok_and(|r| r.mic_present())
}

impl AuthenticateMessage {
    pub fn decode(data: &[u8]) -> Result<Self, NtlmError> {
        let mut h = Header::open(data, MessageType::AUTHENTICATE, AUTHENTICATE_HEADER)?;
        let lm = h.desc("LmChallengeResponse")?;
        let nt = h.desc("NtChallengeResponse")?;
        let domain = h.desc("DomainName")?;
        let user = h.desc("UserName")?;
        let ws = h.desc("Workstation")?;
        let key = h.desc("EncryptedRandomSessionKey")?;
        let flags = h.flags()?;
        let descs = [lm, nt, domain, user, ws, key];
        let payload = payload_start(data, &descs);
        let version = read_version(data, flags, 64, payload);
        // Locate the payload first with the smallest header, then decide on the MIC:
        // MsvAvFlags in the NTLMv2 response says whether the 16 bytes at 72 are a MIC,
        // and then no field may start before 88.
        let min_header = AUTHENTICATE_HEADER + if version.is_some() { 8 } else { 0 };
        let nt_bytes = nt.slice(data, min_header)?;
        let mic = if announces_mic(nt_bytes) {
            if payload < MIC_END {
                return Err(NtlmError::MicOverlapsPayload);
            }
            let mut r = Reader::new(data);
            let mic = r.skip(MIC_OFFSET).and_then(|()| r.array::<16>());
            Some(mic.map_err(|_| NtlmError::MicOverlapsPayload)?)
        } else {
            None
        };
        let header_end = if mic.is_some() { MIC_END } else { min_header };
        let [lm, nt, domain, user, ws, key] = descs.map(|d| d.slice(data, header_end));
        let (lm, nt, domain, user, ws, key) = (lm?, nt?, domain?, user?, ws?, key?);
        check_total(MIC_END, &descs)?;
        let unicode = flags.contains(NegotiateFlags::UNICODE);
        Ok(AuthenticateMessage {
            flags,
            lm_response: lm.to_vec(),
            nt_response: nt.to_vec(),
            domain: decode_str(domain, unicode, "DomainName")?,
            user: decode_str(user, unicode, "UserName")?,
            workstation: decode_str(ws, unicode, "Workstation")?,
            encrypted_random_session_key: key.to_vec(),
            version,
            mic,
        })
    }

    /// Encodes with the payload in the order Windows uses (domain, user, workstation, LM,
    /// NT, session key), which reproduces the [MS-NLMP] 4.2.4 example byte for byte.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = start(MessageType::AUTHENTICATE);
        let [lm, nt, domain, user, ws, key] = [(); 6].map(|()| reserve_desc(&mut w));
        self.flags.encode(&mut w);
        match (&self.version, &self.mic) {
            (Some(v), _) => v.encode(&mut w),
            // The MIC sits after the Version field, present or not.
            (None, Some(_)) => w.put_zeros(Version::LEN),
            (None, None) => {}
        }
        if let Some(m) = &self.mic {
            w.put_bytes(m);
        }
        let unicode = self.flags.contains(NegotiateFlags::UNICODE);
        put_field(&mut w, domain, &encode_str(&self.domain, unicode));
        put_field(&mut w, user, &encode_str(&self.user, unicode));
        put_field(&mut w, ws, &encode_str(&self.workstation, unicode));
        put_field(&mut w, lm, &self.lm_response);
        put_field(&mut w, nt, &self.nt_response);
        put_field(&mut w, key, &self.encrypted_random_session_key);
        w.into_bytes()
    }

    /// The NTLMv2 response structure, when the NT response is one.
    pub fn ntlm_v2_response(&self) -> Option<Result<NtlmV2Response<'_>, NtlmError>> {
        (self.nt_response.len() > 24).then(|| NtlmV2Response::parse(&self.nt_response))
    }
}

/// A copy of an encoded AUTHENTICATE message with its MIC field zeroed (for computing or
/// checking the MIC); `None` when the message is too short to hold one.
pub fn zero_mic(authenticate: &[u8]) -> Option<Vec<u8>> {
    let mut copy = authenticate.to_vec();
    copy.get_mut(MIC_OFFSET..MIC_END)?.fill(0);
    Some(copy)
}
