//! The NTLM cryptographic functions of [MS-NLMP] §3.3 (responses), §3.4.5 (key derivation),
//! §3.4.4 (message signatures) and §6 (DESL, KXKEY). Pure functions over byte arrays.

use des::cipher::{BlockEncrypt, KeyInit};
use des::Des;
use hmac::{Hmac, Mac};
use md4::{Digest, Md4};
use md5::Md5;
use std::ops::Range;

use harness_wire::ntlm::NegotiateFlags;
/// String encodings belong to the messages; re-exported for the paths callers use.
pub use harness_wire::ntlm::{oem, utf16le};

type HmacMd5 = Hmac<Md5>;

/// [MS-NLMP] §3.3.1: the constant LMOWFv1 encrypts.
const LM_MAGIC: &[u8; 8] = b"KGS!@#$%";

/// [MS-NLMP] §3.4.5.2 / §3.4.5.3 magic constants (NUL-terminated).
const CLIENT_SIGN_MAGIC: &[u8] = b"session key to client-to-server signing key magic constant\0";
const SERVER_SIGN_MAGIC: &[u8] = b"session key to server-to-client signing key magic constant\0";
const CLIENT_SEAL_MAGIC: &[u8] = b"session key to client-to-server sealing key magic constant\0";
const SERVER_SEAL_MAGIC: &[u8] = b"session key to server-to-client sealing key magic constant\0";

pub fn md4(data: &[u8]) -> [u8; 16] {
    Md4::digest(data).into()
}

pub fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-MD5 over the concatenation of `parts`.
pub fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = hmac_md5_state(key);
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn hmac_md5_state(key: &[u8]) -> HmacMd5 {
    // HMAC takes keys of any length (RFC 2104 §2), so this never fails; the fallback keeps
    // the function total without a panic path.
    <HmacMd5 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| <HmacMd5 as KeyInit>::new(&Default::default()))
}

/// Constant-time equality for secrets (MACs, proofs).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Spreads 7 key bytes over the 8 bytes DES wants (the low bit of each is parity, which
/// DES ignores).
fn des_key(k7: &[u8; 7]) -> [u8; 8] {
    [
        k7[0],
        (k7[0] << 7) | (k7[1] >> 1),
        (k7[1] << 6) | (k7[2] >> 2),
        (k7[2] << 5) | (k7[3] >> 3),
        (k7[3] << 4) | (k7[4] >> 4),
        (k7[4] << 3) | (k7[5] >> 5),
        (k7[5] << 2) | (k7[6] >> 6),
        k7[6] << 1,
    ]
}

/// DES-ECB of one block under a 56-bit key ([MS-NLMP] §6 `DES`).
pub fn des7(k7: &[u8; 7], block: &[u8; 8]) -> [u8; 8] {
    let key = des_key(k7);
    let cipher = Des::new(&key.into());
    let mut b = (*block).into();
    cipher.encrypt_block(&mut b);
    b.into()
}

fn seven(bytes: &[u8]) -> [u8; 7] {
    let mut k = [0u8; 7];
    for (d, s) in k.iter_mut().zip(bytes) {
        *d = *s;
    }
    k
}

/// [MS-NLMP] §6 DESL(K, D): K is 16 bytes, padded to 21 with zeros and cut into three
/// DES keys.
pub fn desl(key: &[u8; 16], data: &[u8; 8]) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&des7(&seven(&key[0..7]), data));
    out[8..16].copy_from_slice(&des7(&seven(&key[7..14]), data));
    out[16..].copy_from_slice(&des7(&seven(&key[14..16]), data));
    out
}

/// [MS-NLMP] §3.3.1 LMOWFv1: DES of "KGS!@#$%" under the upper-cased OEM password,
/// padded with zeros (or cut) to 14 bytes.
pub fn lmowf_v1(password: &str) -> [u8; 16] {
    let upper: String = password.chars().flat_map(char::to_uppercase).collect();
    let mut p = [0u8; 14];
    for (d, s) in p.iter_mut().zip(oem(&upper)) {
        *d = s;
    }
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&des7(&seven(&p[..7]), LM_MAGIC));
    out[8..].copy_from_slice(&des7(&seven(&p[7..]), LM_MAGIC));
    out
}

/// [MS-NLMP] §3.3.1 NTOWFv1 = MD4(UNICODE(Passwd)).
pub fn ntowf_v1(password: &str) -> [u8; 16] {
    md4(&utf16le(password))
}

/// [MS-NLMP] §3.3.2 NTOWFv2 = HMAC_MD5(NTOWFv1, UNICODE(Upper(User) ‖ UserDom)).
pub fn ntowf_v2(password: &str, user: &str, domain: &str) -> [u8; 16] {
    let upper: String = user.chars().flat_map(char::to_uppercase).collect();
    hmac_md5(&ntowf_v1(password), &[&utf16le(&upper), &utf16le(domain)])
}

/// The NTLMv1 challenge responses of [MS-NLMP] §3.3.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Responses {
    pub lm: [u8; 24],
    pub nt: [u8; 24],
    pub session_base_key: [u8; 16],
}

/// NTLMv1 without extended session security: DESL of the server challenge under each OWF.
pub fn ntlm_v1(password: &str, server_challenge: &[u8; 8]) -> V1Responses {
    let nt_owf = ntowf_v1(password);
    V1Responses {
        lm: desl(&lmowf_v1(password), server_challenge),
        nt: desl(&nt_owf, server_challenge),
        session_base_key: md4(&nt_owf),
    }
}

/// The 8 bytes NTLMv1 with ESS signs instead of the server challenge:
/// MD5(ServerChallenge ‖ ClientChallenge)[0..8] ([MS-NLMP] §3.3.1).
pub fn ess_challenge(server_challenge: &[u8; 8], client_challenge: &[u8; 8]) -> [u8; 8] {
    let h = md5(&[server_challenge, client_challenge]);
    let mut out = [0u8; 8];
    out.copy_from_slice(&h[..8]);
    out
}

/// NTLMv1 with extended session security ("NTLM2 session response"): the LM response is
/// the client challenge padded with zeros.
pub fn ntlm_v1_ess(
    password: &str,
    server_challenge: &[u8; 8],
    client_challenge: &[u8; 8],
) -> V1Responses {
    let nt_owf = ntowf_v1(password);
    let mut lm = [0u8; 24];
    lm[..8].copy_from_slice(client_challenge);
    V1Responses {
        lm,
        nt: desl(&nt_owf, &ess_challenge(server_challenge, client_challenge)),
        session_base_key: md4(&nt_owf),
    }
}

/// The `temp` blob of [MS-NLMP] §3.3.2 (everything of the NTLMv2 response after
/// NTProofStr): `01 01 Z(6) Time ClientChallenge Z(4) AvPairs Z(4)`. `av_pairs` is the
/// encoded list including its MsvAvEOL.
pub fn ntlm_v2_temp(timestamp: u64, client_challenge: &[u8; 8], av_pairs: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(32 + av_pairs.len());
    t.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
    t.extend_from_slice(&timestamp.to_le_bytes());
    t.extend_from_slice(client_challenge);
    t.extend_from_slice(&[0; 4]);
    t.extend_from_slice(av_pairs);
    t.extend_from_slice(&[0; 4]);
    t
}

/// NTProofStr = HMAC_MD5(ResponseKeyNT, ServerChallenge ‖ temp).
pub fn nt_proof_str(
    response_key_nt: &[u8; 16],
    server_challenge: &[u8; 8],
    temp: &[u8],
) -> [u8; 16] {
    hmac_md5(response_key_nt, &[server_challenge, temp])
}

/// The NTLMv2 responses of [MS-NLMP] §3.3.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Responses {
    /// NTProofStr ‖ temp.
    pub nt: Vec<u8>,
    /// LMv2: HMAC_MD5(ResponseKeyLM, ServerChallenge ‖ ClientChallenge) ‖ ClientChallenge.
    pub lm: [u8; 24],
    pub session_base_key: [u8; 16],
}

pub fn ntlm_v2(
    response_key: &[u8; 16],
    server_challenge: &[u8; 8],
    client_challenge: &[u8; 8],
    timestamp: u64,
    av_pairs: &[u8],
) -> V2Responses {
    let temp = ntlm_v2_temp(timestamp, client_challenge, av_pairs);
    let proof = nt_proof_str(response_key, server_challenge, &temp);
    let mut nt = proof.to_vec();
    nt.extend_from_slice(&temp);
    V2Responses {
        nt,
        lm: lm_v2(response_key, server_challenge, client_challenge),
        session_base_key: hmac_md5(response_key, &[&proof]),
    }
}

pub fn lm_v2(
    response_key: &[u8; 16],
    server_challenge: &[u8; 8],
    client_challenge: &[u8; 8],
) -> [u8; 24] {
    let mut lm = [0u8; 24];
    lm[..16].copy_from_slice(&hmac_md5(
        response_key,
        &[server_challenge, client_challenge],
    ));
    lm[16..].copy_from_slice(client_challenge);
    lm
}

/// [MS-NLMP] §3.4.5.1 KXKEY for NTLMv1 (with or without ESS, per `flags`). For NTLMv2 the
/// KeyExchangeKey is the SessionBaseKey itself.
pub fn kxkey_v1(
    flags: NegotiateFlags,
    session_base_key: &[u8; 16],
    lm_response: &[u8],
    server_challenge: &[u8; 8],
    lmowf: &[u8; 16],
) -> [u8; 16] {
    let mut lm8 = [0u8; 8];
    for (d, s) in lm8.iter_mut().zip(lm_response) {
        *d = *s;
    }
    if flags.contains(NegotiateFlags::EXTENDED_SESSIONSECURITY) {
        hmac_md5(session_base_key, &[server_challenge, &lm8])
    } else if flags.contains(NegotiateFlags::LM_KEY) {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&des7(&seven(&lmowf[..7]), &lm8));
        let k2 = [lmowf[7], 0xBD, 0xBD, 0xBD, 0xBD, 0xBD, 0xBD];
        out[8..].copy_from_slice(&des7(&k2, &lm8));
        out
    } else if flags.contains(NegotiateFlags::REQUEST_NON_NT_SESSION_KEY) {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&lmowf[..8]);
        out
    } else {
        *session_base_key
    }
}

/// RC4 (the stream cipher), kept small and local: a state that keeps running across
/// calls, as NTLM's sealing handle does ([MS-NLMP] §3.4.3).
#[derive(Clone)]
pub struct Rc4 {
    s: [u8; 256],
    i: u8,
    j: u8,
}

impl std::fmt::Debug for Rc4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rc4 { .. }")
    }
}

impl Rc4 {
    /// Key scheduling. An empty key is treated as a single zero byte.
    pub fn new(key: &[u8]) -> Rc4 {
        let key: &[u8] = if key.is_empty() { &[0] } else { key };
        let mut s = [0u8; 256];
        for (i, v) in s.iter_mut().enumerate() {
            *v = i as u8;
        }
        let mut j = 0u8;
        for i in 0..256usize {
            j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
            s.swap(i, usize::from(j));
        }
        Rc4 { s, i: 0, j: 0 }
    }

    pub fn apply(&mut self, data: &mut [u8]) {
        for b in data {
            self.i = self.i.wrapping_add(1);
            self.j = self.j.wrapping_add(self.s[usize::from(self.i)]);
            self.s.swap(usize::from(self.i), usize::from(self.j));
            let k = self.s[usize::from(
                self.s[usize::from(self.i)].wrapping_add(self.s[usize::from(self.j)]),
            )];
            *b ^= k;
        }
    }

    pub fn process(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        self.apply(&mut out);
        out
    }
}

/// One-shot RC4K(key, data).
pub fn rc4(key: &[u8], data: &[u8]) -> Vec<u8> {
    Rc4::new(key).process(data)
}

/// RC4K(KeyExchangeKey, RandomSessionKey) for 16-byte keys ([MS-NLMP] §3.1.5.1.2).
pub fn rc4_16(key: &[u8; 16], data: &[u8; 16]) -> [u8; 16] {
    let mut out = *data;
    Rc4::new(key).apply(&mut out);
    out
}

/// MIC = HMAC_MD5(ExportedSessionKey, NEGOTIATE ‖ CHALLENGE ‖ AUTHENTICATE), the
/// AUTHENTICATE message having its MIC field zeroed ([MS-NLMP] §3.1.5.1.2).
pub fn mic(
    exported_session_key: &[u8; 16],
    negotiate: &[u8],
    challenge: &[u8],
    authenticate_mic_zeroed: &[u8],
) -> [u8; 16] {
    hmac_md5(
        exported_session_key,
        &[negotiate, challenge, authenticate_mic_zeroed],
    )
}

/// Which end's keys to derive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

/// [MS-NLMP] §3.4.5.2 SIGNKEY (only defined with extended session security).
pub fn sign_key(exported_session_key: &[u8; 16], dir: Direction) -> [u8; 16] {
    let magic = match dir {
        Direction::ClientToServer => CLIENT_SIGN_MAGIC,
        Direction::ServerToClient => SERVER_SIGN_MAGIC,
    };
    md5(&[exported_session_key, magic])
}

/// [MS-NLMP] §3.4.5.3 SEALKEY: with ESS the key is weakened to 40/56/128 bits and hashed
/// with the magic constant; without ESS, LM_KEY weakens it, else it is used as is.
pub fn seal_key(flags: NegotiateFlags, exported_session_key: &[u8; 16], dir: Direction) -> Vec<u8> {
    if flags.contains(NegotiateFlags::EXTENDED_SESSIONSECURITY) {
        let base: &[u8] = if flags.contains(NegotiateFlags::NEGOTIATE_128) {
            exported_session_key
        } else if flags.contains(NegotiateFlags::NEGOTIATE_56) {
            &exported_session_key[..7]
        } else {
            &exported_session_key[..5]
        };
        let magic = match dir {
            Direction::ClientToServer => CLIENT_SEAL_MAGIC,
            Direction::ServerToClient => SERVER_SEAL_MAGIC,
        };
        md5(&[base, magic]).to_vec()
    } else if flags.contains(NegotiateFlags::LM_KEY) {
        let mut k = Vec::with_capacity(8);
        if flags.contains(NegotiateFlags::NEGOTIATE_56) {
            k.extend_from_slice(&exported_session_key[..7]);
            k.push(0xA0);
        } else {
            k.extend_from_slice(&exported_session_key[..5]);
            k.extend_from_slice(&[0xE5, 0x38, 0xB0]);
        }
        k
    } else {
        exported_session_key.to_vec()
    }
}

/// CRC-32 (IEEE 802.3, reflected, as [MS-NLMP] §3.4.4.1 uses for the v1 checksum).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// NTLMSSP_MESSAGE_SIGNATURE.Version, the only one defined ([MS-NLMP] §2.2.2.9).
pub const SIGNATURE_VERSION: u32 = 1;
/// Octets of an NTLMSSP_MESSAGE_SIGNATURE.
pub const SIGNATURE_LEN: usize = 16;

/// Why a received signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// Not 16 octets, or a Version other than 1.
    Malformed,
    /// It does not match: the message or signature was changed, replayed, reordered or
    /// made under another key.
    Mismatch,
    /// A range given to the in-place functions lies outside the buffer.
    OutOfRange,
}

/// One direction of NTLM message security (the sealing handle, keys and sequence number),
/// for [MS-NLMP] §3.4.2–3.4.4 SIGN and SEAL. The sender and the receiver of a direction
/// each hold one, made from the same key and `Direction`; both advance the sequence
/// number and the handle by the same steps, so every check must follow every send in
/// order.
#[derive(Debug, Clone)]
pub struct SecurityContext {
    flags: NegotiateFlags,
    sign_key: [u8; 16],
    handle: Rc4,
    seq: u32,
}

impl SecurityContext {
    pub fn new(flags: NegotiateFlags, exported_session_key: &[u8; 16], dir: Direction) -> Self {
        SecurityContext {
            flags,
            sign_key: sign_key(exported_session_key, dir),
            handle: Rc4::new(&seal_key(flags, exported_session_key, dir)),
            seq: 0,
        }
    }

    /// Whether extended session security was negotiated: the checksum is then an HMAC
    /// (which DCE/RPC computes over the whole PDU) instead of a CRC32.
    pub fn extended_session_security(&self) -> bool {
        self.flags
            .contains(NegotiateFlags::EXTENDED_SESSIONSECURITY)
    }

    /// The signature of `message` before the sealing handle touches it, taking the next
    /// sequence number. With ESS: `01000000 ‖ HMAC_MD5(SigningKey, SeqNum ‖ Message)[0..8]
    /// ‖ SeqNum` (§3.4.4.2). Without: `01000000 ‖ 0 ‖ CRC32(Message) ‖ SeqNum` (§3.4.4.1),
    /// the last 12 octets still to be encrypted.
    fn plain_signature(&mut self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let seq = self.seq.to_le_bytes();
        self.seq = self.seq.wrapping_add(1);
        let mut sig = [0u8; SIGNATURE_LEN];
        sig[..4].copy_from_slice(&SIGNATURE_VERSION.to_le_bytes());
        if self.extended_session_security() {
            let h = hmac_md5(&self.sign_key, &[&seq, message]);
            sig[4..12].copy_from_slice(&h[..8]);
        } else {
            sig[8..12].copy_from_slice(&crc32(message).to_le_bytes());
        }
        sig[12..].copy_from_slice(&seq);
        sig
    }

    /// Runs the parts of a plain signature through the sealing handle. With ESS only the
    /// checksum, and only under KEY_EXCH (§3.4.4.2). Without ESS, RandomPad, checksum and
    /// SeqNum in turn (§3.4.4.1): RC4 of SeqNum is RC4 of zero XOR SeqNum, as the spec
    /// writes it; RandomPad is then cleared.
    fn encrypt_signature(&mut self, sig: &mut [u8; SIGNATURE_LEN]) {
        if self.extended_session_security() {
            if self.flags.contains(NegotiateFlags::KEY_EXCH) {
                self.handle.apply(&mut sig[4..12]);
            }
        } else {
            self.handle.apply(&mut sig[4..]);
            sig[4..8].fill(0);
        }
    }

    /// The 16-byte NTLMSSP_MESSAGE_SIGNATURE of `message` ([MS-NLMP] §3.4.4), advancing
    /// the sequence number.
    pub fn mac(&mut self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut sig = self.plain_signature(message);
        self.encrypt_signature(&mut sig);
        sig
    }

    /// SEAL: encrypts `message` with the sealing handle, then signs the plaintext
    /// ([MS-NLMP] §3.4.3). Returns (sealed message, signature).
    pub fn seal(&mut self, message: &[u8]) -> (Vec<u8>, [u8; SIGNATURE_LEN]) {
        let mut sealed = message.to_vec();
        let all = 0..sealed.len();
        let sig = self.seal_in_place(&mut sealed, all.clone(), all);
        (sealed, sig.unwrap_or_default())
    }

    /// SEAL for a message inside a larger buffer, as DCE/RPC uses it: `buf[sealed]` is
    /// encrypted in place and the signature covers the plaintext of `buf[signed]`. The
    /// handle encrypts the message first and the checksum after it ([MS-NLMP] §3.4.3).
    pub fn seal_in_place(
        &mut self,
        buf: &mut [u8],
        sealed: Range<usize>,
        signed: Range<usize>,
    ) -> Result<[u8; SIGNATURE_LEN], SignatureError> {
        in_range(buf, &sealed, &signed)?;
        let mut sig = self.plain_signature(buf.get(signed).unwrap_or_default());
        if let Some(data) = buf.get_mut(sealed) {
            self.handle.apply(data);
        }
        self.encrypt_signature(&mut sig);
        Ok(sig)
    }

    /// Checks a received `signature` of `message` ([MS-NLMP] §3.4.4), advancing the
    /// sequence number and the handle as the sender's `mac` did.
    pub fn verify(&mut self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        let received = well_formed(signature)?;
        let expected = self.mac(message);
        self.compare(&expected, received)
    }

    /// UNSEAL for a message inside a larger buffer: decrypts `buf[sealed]` in place, then
    /// checks `signature` over the plaintext of `buf[signed]`, mirroring `seal_in_place`
    /// (the handle decrypts the message before the checksum).
    pub fn unseal_in_place(
        &mut self,
        buf: &mut [u8],
        sealed: Range<usize>,
        signed: Range<usize>,
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let received = well_formed(signature)?;
        in_range(buf, &sealed, &signed)?;
        if let Some(data) = buf.get_mut(sealed) {
            self.handle.apply(data);
        }
        let expected = self.mac(buf.get(signed).unwrap_or_default());
        self.compare(&expected, received)
    }

    /// Compares in constant time. Without ESS the RandomPad field is not compared: the
    /// spec clears it, but Samba's signer sends it encrypted and its checker skips it
    /// (`ntlmssp_check_packet` compares from octet 8).
    fn compare(
        &self,
        expected: &[u8; SIGNATURE_LEN],
        received: &[u8],
    ) -> Result<(), SignatureError> {
        let from = if self.extended_session_security() {
            4
        } else {
            8
        };
        if ct_eq(&expected[from..], received.get(from..).unwrap_or_default()) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// Both ranges lie inside `buf` (checked before any state moves).
fn in_range(buf: &[u8], a: &Range<usize>, b: &Range<usize>) -> Result<(), SignatureError> {
    match (buf.get(a.clone()), buf.get(b.clone())) {
        (Some(_), Some(_)) => Ok(()),
        _ => Err(SignatureError::OutOfRange),
    }
}

/// A received signature of 16 octets and Version 1, or `Malformed`.
fn well_formed(signature: &[u8]) -> Result<&[u8], SignatureError> {
    match signature {
        [v0, v1, v2, v3, ..]
            if signature.len() == SIGNATURE_LEN
                && u32::from_le_bytes([*v0, *v1, *v2, *v3]) == SIGNATURE_VERSION =>
        {
            Ok(signature)
        }
        _ => Err(SignatureError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const SERVER_CHALLENGE: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
    const CLIENT_CHALLENGE: [u8; 8] = [0xaa; 8];
    const RANDOM_SESSION_KEY: [u8; 16] = [0x55; 16];

    fn plaintext() -> Vec<u8> {
        utf16le("Plaintext")
    }

    /// `got` is the octets the hex string `want` spells (spaces ignored).
    #[track_caller]
    fn assert_hex(got: impl AsRef<[u8]>, want: &str) {
        assert_eq!(got.as_ref(), &hex(want)[..]);
    }

    /// KXKEY of a v1 exchange with the spec's password and server challenge.
    fn kxkey_of(flags: NegotiateFlags, r: &V1Responses) -> [u8; 16] {
        kxkey_v1(
            flags,
            &r.session_base_key,
            &r.lm,
            &SERVER_CHALLENGE,
            &lmowf_v1("Password"),
        )
    }

    /// The spec's plaintext sealed client to server with `key`: (sealed, signature).
    fn seal_plaintext(flags: NegotiateFlags, key: &[u8; 16]) -> (Vec<u8>, [u8; 16]) {
        SecurityContext::new(flags, key, Direction::ClientToServer).seal(&plaintext())
    }

    #[test]
    fn primitives() {
        // RFC 1320 A.5 and RFC 1321 A.5 "message digest"; RFC 2104 test 1.
        assert_hex(md4(b"message digest"), "d9130a8164549fe818874806e1c7014b");
        assert_hex(
            md5(&[b"message digest"]),
            "f96b697d7cb7938d525a2f31aaf161d0",
        );
        assert_hex(
            hmac_md5(&[0x0b; 16], &[b"Hi There"]),
            "9294727a3638bb1c13f48ef8158bfc9d",
        );
        // RC4 test vector ("Key", "Plaintext") from the original cypherpunks post / Wikipedia.
        assert_eq!(rc4(b"Key", b"Plaintext"), hex("bbf316e8d940af0ad3"));
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(&plaintext()), 0x93AA_847D);
        assert_eq!(format!("{:?}", Rc4::new(b"Key")), "Rc4 { .. }");
        assert!(ct_eq(b"abc", b"abc"));
        // Two differences that would cancel if the fold XORed them.
        assert!(!ct_eq(b"ab", b"`c"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    /// [MS-NLMP] §4.2.2 (PROTOCOLS.md §3.5).
    #[test]
    fn ntlm_v1_vectors() {
        let flags = NegotiateFlags(0xE202_8233);
        assert_hex(lmowf_v1("Password"), "e52cac67419a9a224a3b108f3fa6cb6d");
        assert_hex(ntowf_v1("Password"), "a4f49c406510bdcab6824ee7c30fd852");
        let r = ntlm_v1("Password", &SERVER_CHALLENGE);
        assert_hex(r.session_base_key, "d87262b0cde4b1cb7499becccdf10784");
        assert_hex(r.nt, "67c43011f30298a2ad35ece64f16331c44bdbed927841f94");
        assert_hex(r.lm, "98def7b87f88aa5dafe2df779688a172def11c7d5ccdef13");
        let kx = kxkey_of(flags, &r);
        assert_eq!(kx, r.session_base_key);
        assert_hex(
            rc4_16(&kx, &RANDOM_SESSION_KEY),
            "518822b1b3f350c8958682ecbb3e3cb7",
        );
        // §4.2.2.4: without ESS the sealing key is the exported session key itself.
        let (sealed, sig) = seal_plaintext(flags, &RANDOM_SESSION_KEY);
        assert_hex(sealed, "56fe04d861f9319af0d7238a2e3b4d457fb8");
        // Version 1, RandomPad cleared, RC4(CRC32), RC4(0) ^ SeqNum 0.
        assert_hex(sig, "01000000 00000000 09dcd1df 2e459d36");
    }

    /// [MS-NLMP] §4.2.3.
    #[test]
    fn ntlm_v1_ess_vectors() {
        let flags = NegotiateFlags(0x820A_8233);
        let r = ntlm_v1_ess("Password", &SERVER_CHALLENGE, &CLIENT_CHALLENGE);
        assert_hex(r.lm, "aaaaaaaaaaaaaaaa00000000000000000000000000000000");
        assert_hex(r.nt, "7537f803ae367128ca458204bde7caf81e97ed2683267232");
        assert_hex(r.session_base_key, "d87262b0cde4b1cb7499becccdf10784");
        let kx = kxkey_of(flags, &r);
        assert_hex(kx, "eb93429a8bd952f8b89c55b87f475edc");
        // No KEY_EXCH in these flags: the exported session key is the KeyExchangeKey.
        assert_hex(
            sign_key(&kx, Direction::ClientToServer),
            "60e799be5c72fc92922ae8ebe961fb8d",
        );
        assert_hex(
            seal_key(flags, &kx, Direction::ClientToServer),
            "04dd7f014d8504d265a25cc86a3a7c06",
        );
        let (sealed, sig) = seal_plaintext(flags, &kx);
        assert_hex(sealed, "a02372f6530273f3aa1eb90190ce5200c99d");
        assert_hex(sig, "01000000ff2aeb52f681793a00000000");
    }

    pub(crate) fn spec_av_pairs() -> Vec<u8> {
        hex("02000c0044006f006d00610069006e0001000c00530065007200760065007200 00000000")
    }

    /// [MS-NLMP] §4.2.4.
    #[test]
    fn ntlm_v2_vectors() {
        let flags = NegotiateFlags(0xE28A_8233);
        let key = ntowf_v2("Password", "User", "Domain");
        assert_hex(key, "0c868a403bfd7a93a3001ef22ef02e3f");
        let temp = ntlm_v2_temp(0, &CLIENT_CHALLENGE, &spec_av_pairs());
        let mut want_temp = hex("0101000000000000 0000000000000000 aaaaaaaaaaaaaaaa 00000000");
        want_temp.extend_from_slice(&spec_av_pairs());
        want_temp.extend_from_slice(&[0; 4]);
        assert_eq!(temp.len(), 68);
        assert_eq!(temp, want_temp);
        let proof = nt_proof_str(&key, &SERVER_CHALLENGE, &temp);
        assert_hex(proof, "68cd0ab851e51c96aabc927bebef6a1c");
        let r = ntlm_v2(
            &key,
            &SERVER_CHALLENGE,
            &CLIENT_CHALLENGE,
            0,
            &spec_av_pairs(),
        );
        assert_eq!(&r.nt[..16], &proof[..]);
        assert_eq!(&r.nt[16..], &temp[..]);
        assert_hex(r.session_base_key, "8de40ccadbc14a82f15cb0ad0de95ca3");
        assert_hex(r.lm, "86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa");
        assert_hex(
            rc4_16(&r.session_base_key, &RANDOM_SESSION_KEY),
            "c5dad2544fc9799094ce1ce90bc9d03e",
        );
        assert_hex(
            seal_key(flags, &RANDOM_SESSION_KEY, Direction::ClientToServer),
            "59f600973cc4960a25480a7c196e4c58",
        );
        assert_hex(
            sign_key(&RANDOM_SESSION_KEY, Direction::ClientToServer),
            "4788dc861b4782f35d43fd98fe1a2d39",
        );
        let (sealed, sig) = seal_plaintext(flags, &RANDOM_SESSION_KEY);
        assert_hex(sealed, "54e50165bf1936dc996020c1811b0f06fb5f");
        assert_hex(sig, "010000007fb38ec5c55d497600000000");
    }

    /// The receiving end of each spec vector: a context with the sender's key and
    /// direction unseals the sealed message and accepts the signature; changed, replayed
    /// or malformed it refuses.
    #[test]
    fn unseal_and_verify_spec_vectors() {
        let v1 = NegotiateFlags(0xE202_8233);
        let ess = NegotiateFlags(0x820A_8233);
        let v2 = NegotiateFlags(0xE28A_8233);
        let ess_key = kxkey_of(
            ess,
            &ntlm_v1_ess("Password", &SERVER_CHALLENGE, &CLIENT_CHALLENGE),
        );
        for (flags, key) in [
            (v1, RANDOM_SESSION_KEY),
            (ess, ess_key),
            (v2, RANDOM_SESSION_KEY),
        ] {
            let (sealed, sig) = seal_plaintext(flags, &key);
            let receiver = || SecurityContext::new(flags, &key, Direction::ClientToServer);
            let all = 0..sealed.len();

            let mut rx = receiver();
            let mut buf = sealed.clone();
            assert_eq!(
                rx.unseal_in_place(&mut buf, all.clone(), all.clone(), &sig),
                Ok(())
            );
            assert_eq!(buf, plaintext());
            // The same octets again: the handle and the sequence number moved on.
            let mut buf = sealed.clone();
            assert_eq!(
                rx.unseal_in_place(&mut buf, all.clone(), all.clone(), &sig),
                Err(SignatureError::Mismatch)
            );

            // Another direction's keys do not verify it (with ESS the keys differ; without
            // ESS the key is shared and only the handle state tells).
            let mut other = SecurityContext::new(flags, &key, Direction::ServerToClient);
            let mut buf = sealed.clone();
            let other_result = other.unseal_in_place(&mut buf, all.clone(), all.clone(), &sig);
            assert_eq!(other_result.is_ok(), !rx.extended_session_security());

            // A changed octet of the message.
            let mut buf = sealed.clone();
            buf[3] ^= 1;
            assert_eq!(
                receiver().unseal_in_place(&mut buf, all.clone(), all.clone(), &sig),
                Err(SignatureError::Mismatch)
            );

            // Signing alone: verify the MAC of the plaintext.
            let mac =
                SecurityContext::new(flags, &key, Direction::ClientToServer).mac(&plaintext());
            let mut rx = receiver();
            assert_eq!(rx.verify(&plaintext(), &mac), Ok(()));
            let mac2 = {
                let mut tx = SecurityContext::new(flags, &key, Direction::ClientToServer);
                tx.mac(b"first");
                tx.mac(&plaintext())
            };
            assert_eq!(rx.verify(&plaintext(), &mac2), Ok(()), "second in sequence");
            let mut rx = receiver();
            assert_eq!(rx.verify(b"plaintext", &mac), Err(SignatureError::Mismatch));

            // Malformed: wrong length or version; nothing moved, so the genuine one
            // still verifies after.
            let mut rx = receiver();
            assert_eq!(
                rx.verify(&plaintext(), &mac[..15]),
                Err(SignatureError::Malformed)
            );
            let mut long = mac.to_vec();
            long.push(0);
            assert_eq!(
                rx.verify(&plaintext(), &long),
                Err(SignatureError::Malformed)
            );
            let mut v2sig = mac;
            v2sig[0] = 2;
            assert_eq!(
                rx.verify(&plaintext(), &v2sig),
                Err(SignatureError::Malformed)
            );
            let mut buf = sealed.clone();
            assert_eq!(
                rx.unseal_in_place(&mut buf, all.clone(), all.clone(), &v2sig),
                Err(SignatureError::Malformed)
            );
            assert_eq!(buf, sealed, "a malformed signature decrypted nothing");
            assert_eq!(rx.verify(&plaintext(), &mac), Ok(()));
        }
    }

    #[test]
    fn in_place_ranges() {
        let flags = NegotiateFlags(0xE28A_8233);
        let key = RANDOM_SESSION_KEY;
        let mut buf = b"headerPlaintext-trailer".to_vec();
        let (sealed, signed) = (6..15, 0..buf.len());
        let mut tx = SecurityContext::new(flags, &key, Direction::ServerToClient);
        let mut rx = SecurityContext::new(flags, &key, Direction::ServerToClient);
        #[allow(clippy::reversed_empty_ranges)]
        for bad in [0..99, 30..31, 9..2] {
            assert_eq!(
                tx.seal_in_place(&mut buf, bad.clone(), signed.clone()),
                Err(SignatureError::OutOfRange)
            );
            assert_eq!(
                tx.seal_in_place(&mut buf, sealed.clone(), bad.clone()),
                Err(SignatureError::OutOfRange)
            );
            assert_eq!(
                rx.unseal_in_place(
                    &mut buf,
                    bad.clone(),
                    signed.clone(),
                    &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
                ),
                Err(SignatureError::OutOfRange)
            );
            assert_eq!(
                rx.unseal_in_place(
                    &mut buf,
                    sealed.clone(),
                    bad,
                    &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
                ),
                Err(SignatureError::OutOfRange)
            );
        }
        assert_eq!(
            buf, b"headerPlaintext-trailer",
            "refused ranges changed nothing"
        );
        let sig = tx
            .seal_in_place(&mut buf, sealed.clone(), signed.clone())
            .unwrap();
        assert_eq!(&buf[..6], b"header");
        assert_eq!(&buf[15..], b"-trailer");
        assert_ne!(&buf[6..15], b"Plaintext");
        // The signature is over the plaintext of the whole buffer, as `mac` gives it
        // from a fresh context whose handle first encrypted the 9 octets.
        let mut reference = SecurityContext::new(flags, &key, Direction::ServerToClient);
        reference.handle.apply(&mut [0u8; 9]);
        assert_eq!(sig, reference.mac(b"headerPlaintext-trailer"));
        assert_eq!(rx.unseal_in_place(&mut buf, sealed, signed, &sig), Ok(()));
        assert_eq!(buf, b"headerPlaintext-trailer");
    }

    /// Without ESS: RandomPad is cleared on sending and not compared on receiving.
    #[test]
    fn v1_random_pad() {
        let flags = NegotiateFlags(0xE202_8233);
        let mut tx = SecurityContext::new(flags, &RANDOM_SESSION_KEY, Direction::ClientToServer);
        let mut sig = tx.mac(b"message");
        assert_eq!(sig[4..8], [0; 4]);
        sig[4..8].copy_from_slice(b"pad!");
        let mut rx = SecurityContext::new(flags, &RANDOM_SESSION_KEY, Direction::ClientToServer);
        assert_eq!(rx.verify(b"message", &sig), Ok(()));
        assert!(!rx.extended_session_security());
    }

    #[test]
    fn lm_key_and_non_nt_session_key_variants() {
        let lmowf = lmowf_v1("Password");
        // One exchange (session base key, LM response, LMOWF) under two sets of flags.
        let kx = |flags: NegotiateFlags| {
            kxkey_v1(flags, &[7; 16], &[0x11; 24], &SERVER_CHALLENGE, &lmowf)
        };
        let k = kx(NegotiateFlags::REQUEST_NON_NT_SESSION_KEY);
        assert_eq!(&k[..8], &lmowf[..8]);
        assert_eq!(&k[8..], &[0u8; 8]);
        let k = kx(NegotiateFlags::LM_KEY);
        assert_eq!(&k[..8], &des7(&seven(&lmowf[..7]), &[0x11; 8]));
        // 40-bit LM_KEY sealing key: 5 key bytes then E5 38 B0 ([MS-NLMP] §3.4.5.3).
        let sk = seal_key(
            NegotiateFlags(NegotiateFlags::LM_KEY.0),
            &[9; 16],
            Direction::ClientToServer,
        );
        assert_hex(sk, "0909090909e538b0");
    }
}
