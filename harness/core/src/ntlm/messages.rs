//! NTLM message codecs ([MS-NLMP] §2.2): NEGOTIATE, CHALLENGE, AUTHENTICATE, AV_PAIR
//! lists and VERSION. Every variable field is an 8-byte descriptor (Len u16, MaxLen u16,
//! Offset u32 from the start of the message); each is checked against the buffer before
//! it is read. A message is refused outright when larger than [`MAX_MESSAGE_LEN`].

use std::fmt;

use super::crypto::{oem, utf16le};
use super::NtlmError;

/// `NTLMSSP\0`, the first 8 bytes of every message.
pub const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
/// Largest message accepted (64 KiB). Real messages are a few hundred bytes.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

pub const NEGOTIATE_TYPE: u32 = 1;
pub const CHALLENGE_TYPE: u32 = 2;
pub const AUTHENTICATE_TYPE: u32 = 3;

/// Offset of the MIC in AUTHENTICATE (after the 8-byte Version at 64).
pub const MIC_OFFSET: usize = 72;
const MIC_END: usize = MIC_OFFSET + 16;

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

/// AV_PAIR identifier ([MS-NLMP] §2.2.2.1). Unknown ids are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AvId(pub u16);

impl AvId {
    pub const EOL: Self = Self(0);
    pub const NB_COMPUTER_NAME: Self = Self(1);
    pub const NB_DOMAIN_NAME: Self = Self(2);
    pub const DNS_COMPUTER_NAME: Self = Self(3);
    pub const DNS_DOMAIN_NAME: Self = Self(4);
    pub const DNS_TREE_NAME: Self = Self(5);
    pub const FLAGS: Self = Self(6);
    pub const TIMESTAMP: Self = Self(7);
    pub const SINGLE_HOST: Self = Self(8);
    pub const TARGET_NAME: Self = Self(9);
    pub const CHANNEL_BINDINGS: Self = Self(10);
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
pub fn decode_av_pairs(mut data: &[u8]) -> Result<Vec<AvPair>, NtlmError> {
    let mut out = Vec::new();
    loop {
        let (Some(id), Some(len)) = (le16(data, 0), le16(data, 2)) else {
            return Err(NtlmError::BadAvPairs {
                reason: "list ends without MsvAvEOL",
            });
        };
        let rest = data.get(4..).unwrap_or_default();
        let Some(value) = rest.get(..usize::from(len)) else {
            return Err(NtlmError::BadAvPairs {
                reason: "value runs past the end of the list",
            });
        };
        if AvId(id) == AvId::EOL {
            return Ok(out);
        }
        out.push(AvPair {
            id: AvId(id),
            value: value.to_vec(),
        });
        data = rest.get(usize::from(len)..).unwrap_or_default();
    }
}

/// Encodes pairs followed by MsvAvEOL. EOL entries inside `pairs` are skipped (they would
/// end the list early) and values longer than 65535 bytes are cut.
pub fn encode_av_pairs(pairs: &[AvPair]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pairs.iter().filter(|p| p.id != AvId::EOL) {
        let value = cap(&p.value);
        out.extend_from_slice(&p.id.0.to_le_bytes());
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// VERSION ([MS-NLMP] §2.2.2.10). The 3 reserved bytes are written as zeros.
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

    fn decode(b: &[u8]) -> Option<Version> {
        Some(Version {
            major: *b.first()?,
            minor: *b.get(1)?,
            build: le16(b, 2)?,
            revision: *b.get(7)?,
        })
    }

    fn encode(&self) -> [u8; 8] {
        let b = self.build.to_le_bytes();
        [self.major, self.minor, b[0], b[1], 0, 0, 0, self.revision]
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
        match message_type(data)? {
            NEGOTIATE_TYPE => NegotiateMessage::decode(data).map(Message::Negotiate),
            CHALLENGE_TYPE => ChallengeMessage::decode(data).map(Message::Challenge),
            AUTHENTICATE_TYPE => AuthenticateMessage::decode(data).map(Message::Authenticate),
            other => Err(NtlmError::UnknownType(other)),
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

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

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
    le32(data, 8).ok_or(NtlmError::Truncated {
        needed: 12,
        got: data.len(),
    })
}

/// Common prefix plus the fixed header of one expected type.
fn check_prefix(data: &[u8], expected: u32, header: usize) -> Result<(), NtlmError> {
    let found = message_type(data)?;
    if found != expected {
        return Err(NtlmError::UnexpectedType { expected, found });
    }
    if data.len() < header {
        return Err(NtlmError::Truncated {
            needed: header,
            got: data.len(),
        });
    }
    Ok(())
}

/// A field descriptor read from the fixed header.
#[derive(Debug, Clone, Copy)]
struct Desc {
    name: &'static str,
    len: u16,
    offset: u32,
}

impl Desc {
    /// Reads and sanity-checks the descriptor at `at` (the caller checked the header
    /// length, so a short read reports truncation).
    fn read(data: &[u8], at: usize, name: &'static str) -> Result<Desc, NtlmError> {
        let truncated = NtlmError::Truncated {
            needed: at + 8,
            got: data.len(),
        };
        let len = le16(data, at).ok_or_else(|| truncated.clone())?;
        let max_len = le16(data, at + 2).ok_or_else(|| truncated.clone())?;
        let offset = le32(data, at + 4).ok_or(truncated)?;
        if len > 0 && max_len < len {
            return Err(NtlmError::BadFieldLength { field: name });
        }
        Ok(Desc { name, len, offset })
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The field's bytes; empty fields are not located at all.
    fn slice<'a>(&self, data: &'a [u8], header_end: usize) -> Result<&'a [u8], NtlmError> {
        if self.is_empty() {
            return Ok(&[]);
        }
        let start = usize::try_from(self.offset)
            .map_err(|_| NtlmError::FieldOutOfBounds { field: self.name })?;
        if start < header_end {
            return Err(NtlmError::FieldOverlapsHeader { field: self.name });
        }
        let end = start
            .checked_add(usize::from(self.len))
            .ok_or(NtlmError::FieldOutOfBounds { field: self.name })?;
        data.get(start..end)
            .ok_or(NtlmError::FieldOutOfBounds { field: self.name })
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
    if flags.contains(NegotiateFlags::VERSION) && payload >= at + 8 {
        data.get(at..at + 8).and_then(Version::decode)
    } else {
        None
    }
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

// ---- encoding helper --------------------------------------------------------------------

/// Builds a message: a zeroed fixed header of `header_len` bytes, then payload fields in
/// the order they are placed, each pointed to by its descriptor.
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn new(message_type: u32, header_len: usize) -> Writer {
        let mut buf = vec![0u8; header_len];
        buf[..8].copy_from_slice(SIGNATURE);
        buf[8..12].copy_from_slice(&message_type.to_le_bytes());
        Writer { buf }
    }

    fn put(&mut self, at: usize, bytes: &[u8]) {
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn field(&mut self, desc_at: usize, data: &[u8]) {
        let data = cap(data);
        let len = (data.len() as u16).to_le_bytes();
        let offset = (self.buf.len() as u32).to_le_bytes();
        self.put(desc_at, &len);
        self.put(desc_at + 2, &len);
        self.put(desc_at + 4, &offset);
        self.buf.extend_from_slice(data);
    }
}

// ---- NEGOTIATE --------------------------------------------------------------------------

const NEGOTIATE_HEADER: usize = 32;

impl NegotiateMessage {
    pub fn decode(data: &[u8]) -> Result<Self, NtlmError> {
        check_prefix(data, NEGOTIATE_TYPE, NEGOTIATE_HEADER)?;
        let flags = NegotiateFlags(le32(data, 12).unwrap_or_default());
        let domain = Desc::read(data, 16, "DomainName")?;
        let workstation = Desc::read(data, 24, "Workstation")?;
        let descs = [domain, workstation];
        let payload = payload_start(data, &descs);
        let version = read_version(data, flags, 32, payload);
        let header_end = NEGOTIATE_HEADER + if version.is_some() { 8 } else { 0 };
        let domain_bytes = domain.slice(data, header_end)?;
        let ws_bytes = workstation.slice(data, header_end)?;
        check_total(NEGOTIATE_HEADER + 8, &descs)?;
        Ok(NegotiateMessage {
            flags,
            domain: decode_str(domain_bytes, false, "DomainName")?,
            workstation: decode_str(ws_bytes, false, "Workstation")?,
            version,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let header = NEGOTIATE_HEADER + if self.version.is_some() { 8 } else { 0 };
        let mut w = Writer::new(NEGOTIATE_TYPE, header);
        w.put(12, &self.flags.0.to_le_bytes());
        if let Some(v) = &self.version {
            w.put(32, &v.encode());
        }
        w.field(16, &oem(&self.domain));
        w.field(24, &oem(&self.workstation));
        w.buf
    }
}

// ---- CHALLENGE --------------------------------------------------------------------------

const CHALLENGE_HEADER: usize = 48;

impl ChallengeMessage {
    pub fn decode(data: &[u8]) -> Result<Self, NtlmError> {
        check_prefix(data, CHALLENGE_TYPE, CHALLENGE_HEADER)?;
        let target_name = Desc::read(data, 12, "TargetName")?;
        let flags = NegotiateFlags(le32(data, 20).unwrap_or_default());
        let server_challenge: [u8; 8] =
            data.get(24..32)
                .and_then(|b| b.try_into().ok())
                .ok_or(NtlmError::Truncated {
                    needed: CHALLENGE_HEADER,
                    got: data.len(),
                })?;
        let target_info = Desc::read(data, 40, "TargetInfo")?;
        let descs = [target_name, target_info];
        let payload = payload_start(data, &descs);
        let version = read_version(data, flags, 48, payload);
        let header_end = CHALLENGE_HEADER + if version.is_some() { 8 } else { 0 };
        let name_bytes = target_name.slice(data, header_end)?;
        let info_bytes = target_info.slice(data, header_end)?;
        check_total(CHALLENGE_HEADER + 8, &descs)?;
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
        let header = CHALLENGE_HEADER + if self.version.is_some() { 8 } else { 0 };
        let mut w = Writer::new(CHALLENGE_TYPE, header);
        w.put(20, &self.flags.0.to_le_bytes());
        w.put(24, &self.server_challenge);
        if let Some(v) = &self.version {
            w.put(48, &v.encode());
        }
        let unicode = self.flags.contains(NegotiateFlags::UNICODE);
        w.field(12, &encode_str(&self.target_name, unicode));
        let info = self
            .target_info
            .as_deref()
            .map(encode_av_pairs)
            .unwrap_or_default();
        w.field(40, &info);
        w.buf
    }
}

// ---- AUTHENTICATE -----------------------------------------------------------------------

const AUTHENTICATE_HEADER: usize = 64;

/// The parts of an NTLMv2 response ([MS-NLMP] §2.2.2.8, NTLMv2_CLIENT_CHALLENGE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtlmV2Response<'a> {
    pub nt_proof_str: [u8; 16],
    /// Everything after NTProofStr, as the HMAC covers it.
    pub temp: &'a [u8],
    pub timestamp: u64,
    pub client_challenge: [u8; 8],
    pub av_pairs: Vec<AvPair>,
}

/// Length of the fixed part of `temp` before the AV pairs.
const TEMP_FIXED: usize = 28;

impl<'a> NtlmV2Response<'a> {
    /// Parses an NT response longer than 24 bytes.
    pub fn parse(nt: &'a [u8]) -> Result<Self, NtlmError> {
        let malformed = NtlmError::MalformedNtlmV2Response;
        let proof = nt.get(..16).ok_or(malformed.clone())?;
        let temp = nt.get(16..).ok_or(malformed.clone())?;
        let fixed: &[u8; TEMP_FIXED] = temp
            .get(..TEMP_FIXED)
            .and_then(|b| b.try_into().ok())
            .ok_or(malformed.clone())?;
        // RespType and HiRespType are both 1.
        if fixed[0] != 1 || fixed[1] != 1 {
            return Err(malformed);
        }
        let mut nt_proof_str = [0u8; 16];
        nt_proof_str.copy_from_slice(proof);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&fixed[8..16]);
        let mut client_challenge = [0u8; 8];
        client_challenge.copy_from_slice(&fixed[16..24]);
        let av_pairs = decode_av_pairs(temp.get(TEMP_FIXED..).unwrap_or_default())?;
        Ok(NtlmV2Response {
            nt_proof_str,
            temp,
            timestamp: u64::from_le_bytes(ts),
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
        check_prefix(data, AUTHENTICATE_TYPE, AUTHENTICATE_HEADER)?;
        let lm = Desc::read(data, 12, "LmChallengeResponse")?;
        let nt = Desc::read(data, 20, "NtChallengeResponse")?;
        let domain = Desc::read(data, 28, "DomainName")?;
        let user = Desc::read(data, 36, "UserName")?;
        let ws = Desc::read(data, 44, "Workstation")?;
        let key = Desc::read(data, 52, "EncryptedRandomSessionKey")?;
        let flags = NegotiateFlags(le32(data, 60).unwrap_or_default());
        let descs = [lm, nt, domain, user, ws, key];
        let payload = payload_start(data, &descs);
        let version = read_version(data, flags, 64, payload);
        // Locate the payload first with the smallest header, then decide on the MIC:
        // MsvAvFlags in the NTLMv2 response says whether the 16 bytes at 72 are a MIC,
        // and then no field may start before 88.
        let min_header = AUTHENTICATE_HEADER + if version.is_some() { 8 } else { 0 };
        let nt_bytes = nt.slice(data, min_header)?;
        let mic = if announces_mic(nt_bytes) {
            if payload < MIC_END || data.len() < MIC_END {
                return Err(NtlmError::MicOverlapsPayload);
            }
            let m: [u8; 16] = data
                .get(MIC_OFFSET..MIC_END)
                .and_then(|b| b.try_into().ok())
                .ok_or(NtlmError::MicOverlapsPayload)?;
            Some(m)
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
    /// NT, session key), which reproduces the [MS-NLMP] §4.2.4 example byte for byte.
    pub fn encode(&self) -> Vec<u8> {
        let header = if self.mic.is_some() {
            MIC_END
        } else if self.version.is_some() {
            AUTHENTICATE_HEADER + 8
        } else {
            AUTHENTICATE_HEADER
        };
        let mut w = Writer::new(AUTHENTICATE_TYPE, header);
        w.put(60, &self.flags.0.to_le_bytes());
        if let Some(v) = &self.version {
            w.put(64, &v.encode());
        }
        if let Some(m) = &self.mic {
            w.put(MIC_OFFSET, m);
        }
        let unicode = self.flags.contains(NegotiateFlags::UNICODE);
        w.field(28, &encode_str(&self.domain, unicode));
        w.field(36, &encode_str(&self.user, unicode));
        w.field(44, &encode_str(&self.workstation, unicode));
        w.field(12, &self.lm_response);
        w.field(20, &self.nt_response);
        w.field(52, &self.encrypted_random_session_key);
        w.buf
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
