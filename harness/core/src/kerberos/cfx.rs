//! The krb5 mechanism's per-message tokens for the AES enctypes (RFC 4121 4.2): MIC
//! tokens (`04 04`) and sealed Wrap tokens (`05 04`), in the layout DCE/RPC carries them
//! (MS-KILE 3.4.5.4.1): the Wrap header and the first rotated octets in the auth_value,
//! the rest of the ciphertext in place of the stub. Facts: ../shared/PROTOCOLS.md 10.3
//! and 12.3.
//!
//! A sealed Wrap is `E(key, usage, plaintext | EC filler | header with RRC 0)` in RFC 3961
//! terms, rotated right by RRC + EC (MS-KILE: the filler counts too). The MIC's checksum
//! is the key's keyed checksum (HMAC-SHA1-96 with the derived key) over the message and
//! the token's first 16 octets.

use super::keys::Key;

pub const TOK_MIC: [u8; 2] = [0x04, 0x04];
pub const TOK_WRAP: [u8; 2] = [0x05, 0x04];

/// Token flags (RFC 4121 4.2.2).
pub mod cfx_flags {
    pub const SENT_BY_ACCEPTOR: u8 = 0x01;
    pub const SEALED: u8 = 0x02;
    pub const ACCEPTOR_SUBKEY: u8 = 0x04;
}

/// Key usages (RFC 4121 2).
pub const USAGE_ACCEPTOR_SEAL: i32 = 22;
pub const USAGE_ACCEPTOR_SIGN: i32 = 23;
pub const USAGE_INITIATOR_SEAL: i32 = 24;
pub const USAGE_INITIATOR_SIGN: i32 = 25;

const HEADER_LEN: usize = 16;
/// A MIC token with the 12-octet HMAC-SHA1-96 of the AES enctypes.
pub const MIC_LEN: usize = HEADER_LEN + 12;
/// The right rotation a sealing sender uses: confounder and HMAC, so the stub is
/// encrypted in place (MS-KILE 3.4.5.4.1; what Windows and impacket send).
pub const DCE_RRC: u16 = 28;
/// Filler octets this side adds when sealing: MS-KILE says a sender should use 16, and a
/// fixed count keeps the auth_value's length fixed (60 + EC).
pub const DCE_EC: u16 = 16;
/// The auth_value of a sealed PDU from this side.
pub const DCE_WRAP_LEN: usize = HEADER_LEN + 16 + DCE_RRC as usize + DCE_EC as usize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CfxError {
    #[error("malformed per-message token: {0}")]
    Malformed(&'static str),
    #[error("token flags {got:#04x}, expected {expected:#04x}")]
    Flags { expected: u8, got: u8 },
    #[error("token sequence number {got}, expected {expected}")]
    Sequence { expected: u64, got: u64 },
    #[error("token checksum or ciphertext does not verify")]
    Integrity,
}

/// One side's per-message state: the context key, who this side is, whether the key is
/// the acceptor's subkey, and a sequence number per direction.
#[derive(Debug, Clone)]
pub struct Cfx {
    key: Key,
    acceptor: bool,
    acceptor_subkey: bool,
    send_seq: u64,
    recv_seq: u64,
}

impl Cfx {
    /// `key` is the acceptor's subkey when it sent one (`acceptor_subkey`), else the
    /// initiator's subkey, else the session key (RFC 4121 2). The sequence numbers start
    /// at the seq-numbers of the authenticator (initiator) and the AP-REP (acceptor).
    pub fn new(
        key: Key,
        acceptor: bool,
        acceptor_subkey: bool,
        send_seq: u64,
        recv_seq: u64,
    ) -> Cfx {
        Cfx {
            key,
            acceptor,
            acceptor_subkey,
            send_seq,
            recv_seq,
        }
    }

    fn flags(&self, sent_by_acceptor: bool) -> u8 {
        let mut f = 0;
        if sent_by_acceptor {
            f |= cfx_flags::SENT_BY_ACCEPTOR;
        }
        if self.acceptor_subkey {
            f |= cfx_flags::ACCEPTOR_SUBKEY;
        }
        f
    }

    fn usages(&self, sending: bool) -> (i32, i32) {
        // (sign, seal) of the direction's sender.
        if self.acceptor == sending {
            (USAGE_ACCEPTOR_SIGN, USAGE_ACCEPTOR_SEAL)
        } else {
            (USAGE_INITIATOR_SIGN, USAGE_INITIATOR_SEAL)
        }
    }

    fn take_send_seq(&mut self) -> u64 {
        let seq = self.send_seq;
        self.send_seq = self.send_seq.wrapping_add(1);
        seq
    }

    /// Reads a token header's sequence number and checks it is the next one.
    fn check_seq(&self, header: &[u8]) -> Result<(), CfxError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[8..16]);
        let got = u64::from_be_bytes(b);
        if got != self.recv_seq {
            return Err(CfxError::Sequence {
                expected: self.recv_seq,
                got,
            });
        }
        Ok(())
    }

    fn check_flags(&self, got: u8, sealed: bool) -> Result<(), CfxError> {
        let mut expected = self.flags(!self.acceptor);
        if sealed {
            expected |= cfx_flags::SEALED;
        }
        if got != expected {
            return Err(CfxError::Flags { expected, got });
        }
        Ok(())
    }

    /// GetMIC over `message`.
    pub fn get_mic(&mut self, message: &[u8]) -> Vec<u8> {
        let mut token = TOK_MIC.to_vec();
        token.push(self.flags(self.acceptor));
        token.extend_from_slice(&[0xFF; 5]);
        token.extend_from_slice(&self.take_send_seq().to_be_bytes());
        let (sign, _) = self.usages(true);
        let mut signed = message.to_vec();
        signed.extend_from_slice(&token);
        token.extend(self.key.checksum(sign, &signed));
        token
    }

    /// VerifyMIC of `token` over `message`; the next sequence number is expected.
    pub fn verify_mic(&mut self, message: &[u8], token: &[u8]) -> Result<(), CfxError> {
        if token.len() != MIC_LEN {
            return Err(CfxError::Malformed("MIC token length"));
        }
        if token[..2] != TOK_MIC || token[3..8] != [0xFF; 5] {
            return Err(CfxError::Malformed("not a MIC token"));
        }
        self.check_flags(token[2], false)?;
        self.check_seq(token)?;
        let (sign, _) = self.usages(false);
        let mut signed = message.to_vec();
        signed.extend_from_slice(&token[..HEADER_LEN]);
        let cksumtype = self.key.etype.checksum_type();
        if !self
            .key
            .verify_checksum(sign, cksumtype, &signed, &token[HEADER_LEN..])
        {
            return Err(CfxError::Integrity);
        }
        self.recv_seq = self.recv_seq.wrapping_add(1);
        Ok(())
    }

    /// Seals `data` in place and returns the auth_value: the Wrap header (EC 16, RRC 28)
    /// and the first 44 + EC octets of the rotated ciphertext; `data` keeps the rest,
    /// which is as long as the plaintext was.
    pub fn wrap_dce(&mut self, data: &mut [u8]) -> Result<Vec<u8>, CfxError> {
        let mut header = TOK_WRAP.to_vec();
        header.push(self.flags(self.acceptor) | cfx_flags::SEALED);
        header.push(0xFF);
        header.extend_from_slice(&DCE_EC.to_be_bytes());
        header.extend_from_slice(&0u16.to_be_bytes());
        header.extend_from_slice(&self.take_send_seq().to_be_bytes());
        let mut plain = data.to_vec();
        plain.extend(std::iter::repeat_n(0xFF, usize::from(DCE_EC)));
        plain.extend_from_slice(&header);
        let (_, seal) = self.usages(true);
        let mut cipher = self.key.encrypt(seal, &plain);
        let len = cipher.len();
        // Confounder, plaintext and HMAC; less only if the cipher refused the key.
        if len != plain.len() + 16 + 12 {
            return Err(CfxError::Malformed("the key does not encrypt"));
        }
        cipher.rotate_right(usize::from(DCE_RRC + DCE_EC) % len.max(1));
        header[6..8].copy_from_slice(&DCE_RRC.to_be_bytes());
        let split = len - data.len();
        data.copy_from_slice(&cipher[split..]);
        header.extend_from_slice(&cipher[..split]);
        Ok(header)
    }

    /// Opens a sealed Wrap whose header and first rotated octets are `auth_value` and
    /// whose remaining ciphertext is `data`, in place. Any EC and RRC are honoured.
    pub fn unwrap_dce(&mut self, data: &mut [u8], auth_value: &[u8]) -> Result<(), CfxError> {
        let header = auth_value
            .get(..HEADER_LEN)
            .ok_or(CfxError::Malformed("Wrap token shorter than its header"))?;
        if header[..2] != TOK_WRAP || header[3] != 0xFF {
            return Err(CfxError::Malformed("not a Wrap token"));
        }
        self.check_flags(header[2], true)?;
        self.check_seq(header)?;
        let ec = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let rrc = usize::from(u16::from_be_bytes([header[6], header[7]]));
        let mut cipher = auth_value[HEADER_LEN..].to_vec();
        cipher.extend_from_slice(data);
        let len = cipher.len();
        cipher.rotate_left((rrc + ec) % len.max(1));
        let (_, seal) = self.usages(false);
        let plain = self
            .key
            .decrypt(seal, &cipher)
            .map_err(|_| CfxError::Integrity)?;
        if plain.len() != data.len() + ec + HEADER_LEN {
            return Err(CfxError::Malformed("Wrap lengths do not add up"));
        }
        // The encrypted copy of the header is the header with RRC 0 (RFC 4121 4.2.5).
        let mut inner = header.to_vec();
        inner[6..8].copy_from_slice(&[0, 0]);
        if plain[plain.len() - HEADER_LEN..] != inner[..] {
            return Err(CfxError::Integrity);
        }
        data.copy_from_slice(&plain[..data.len()]);
        self.recv_seq = self.recv_seq.wrapping_add(1);
        Ok(())
    }
}

/// Fuzz target `krb_cfx_unwrap`: an initiator and an acceptor sharing a key. The first
/// octet picks the token (MIC or sealed Wrap) and the mode: arbitrary octets as a token
/// and a message, which must be refused without a panic (a forged checksum is out of
/// reach); or a message wrapped by the initiator, then tampered at the offsets and with
/// the masks that follow, which the acceptor must take back unchanged when untampered
/// and refuse otherwise.
pub fn fuzz_unwrap(data: &[u8]) {
    let [sel, rest @ ..] = data else {
        return;
    };
    let key = Key::from_wire(17, &[0x5A; 16]).expect("a 16-octet AES-128 key");
    let subkey = sel & 0x04 != 0;
    let mut initiator = Cfx::new(key.clone(), false, subkey, 3, 9);
    let mut acceptor = Cfx::new(key, true, subkey, 9, 3);
    let sealed = sel & 0x01 != 0;
    if sel & 0x02 != 0 {
        let (len, rest) = rest.split_first().unwrap_or((&0, &[]));
        let (token, message) = rest.split_at(usize::from(*len).min(rest.len()));
        let mut message = message.to_vec();
        let refused = if sealed {
            acceptor.unwrap_dce(&mut message, token).is_err()
        } else {
            acceptor.verify_mic(&message, token).is_err()
        };
        assert!(refused, "an arbitrary token verified");
        return;
    }
    let (len, rest) = rest.split_first().unwrap_or((&0, &[]));
    let (message, tampers) = rest.split_at(usize::from(len % 64).min(rest.len()));
    let mut sent = message.to_vec();
    let mut token = if sealed {
        initiator.wrap_dce(&mut sent).expect("a valid key encrypts")
    } else {
        initiator.get_mic(&sent)
    };
    let mut tampered = false;
    for t in tampers.chunks_exact(3) {
        let mask = t[2];
        let target: &mut Vec<u8> = if t[0] % 2 == 0 { &mut token } else { &mut sent };
        if target.is_empty() || mask == 0 {
            continue;
        }
        let at = usize::from(t[1]) % target.len();
        target[at] ^= mask;
        tampered = true;
    }
    let result = if sealed {
        acceptor.unwrap_dce(&mut sent, &token)
    } else {
        acceptor.verify_mic(&sent, &token)
    };
    match (tampered, result) {
        (false, Ok(())) => assert_eq!(sent, message, "unwrapped to another message"),
        (false, Err(e)) => panic!("an untampered token was refused: {e}"),
        // Masks may cancel each other out: then the token is the sent one again.
        (true, Ok(())) => assert_eq!(sent, message, "a tampered token verified"),
        (true, Err(_)) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kerberos::keys::Etype;

    fn pair(acceptor_subkey: bool) -> (Cfx, Cfx) {
        let key = Key::from_password(Etype::Aes256, "k", "S");
        (
            Cfx::new(key.clone(), false, acceptor_subkey, 7, 900),
            Cfx::new(key, true, acceptor_subkey, 900, 7),
        )
    }

    #[test]
    fn mic_tokens_have_the_rfc_4121_layout_and_verify_once_in_order() {
        let (mut client, mut server) = pair(true);
        let token = client.get_mic(b"stub");
        assert_eq!(token.len(), MIC_LEN);
        assert_eq!(
            &token[..16],
            &[4, 4, 0x04, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 7]
        );
        let key = Key::from_password(Etype::Aes256, "k", "S");
        let mut signed = b"stub".to_vec();
        signed.extend_from_slice(&token[..16]);
        assert_eq!(&token[16..], &key.checksum(25, &signed)[..]);
        assert_eq!(server.verify_mic(b"stub", &token), Ok(()));
        assert_eq!(
            server.verify_mic(b"stub", &token),
            Err(CfxError::Sequence {
                expected: 8,
                got: 7
            })
        );
        let next = client.get_mic(b"stub");
        assert_eq!(server.verify_mic(b"stuB", &next), Err(CfxError::Integrity));
        let back = server.get_mic(b"reply");
        assert_eq!(back[2], 0x05, "sent by the acceptor, acceptor subkey");
        let mut signed = b"reply".to_vec();
        signed.extend_from_slice(&back[..16]);
        assert_eq!(&back[16..], &key.checksum(23, &signed)[..]);
        assert_eq!(client.verify_mic(b"reply", &back), Ok(()));
        // A token reflected back at its sender is refused by the direction flag.
        let (mut c2, _) = pair(true);
        let own = c2.get_mic(b"x");
        assert_eq!(
            c2.verify_mic(b"x", &own),
            Err(CfxError::Flags {
                expected: 0x05,
                got: 0x04
            })
        );
    }

    #[test]
    fn sealed_wraps_round_trip_in_place_with_the_dce_layout() {
        let (mut client, mut server) = pair(false);
        let mut data = b"twenty-one octets!!!!".to_vec();
        let plain = data.clone();
        let auth = client.wrap_dce(&mut data).unwrap();
        assert_eq!(auth.len(), DCE_WRAP_LEN);
        assert_eq!(DCE_WRAP_LEN, 76);
        assert_eq!(&auth[..8], &[5, 4, 0x02, 0xFF, 0, 16, 0, 28]);
        assert_ne!(data, plain);
        assert_eq!(server.unwrap_dce(&mut data, &auth), Ok(()));
        assert_eq!(data, plain);
        let mut reply = b"answer".to_vec();
        let auth = server.wrap_dce(&mut reply).unwrap();
        assert_eq!(auth[2], 0x03);
        let mut tampered = reply.clone();
        tampered[0] ^= 1;
        let mut c = client.clone();
        assert_eq!(c.unwrap_dce(&mut tampered, &auth), Err(CfxError::Integrity));
        assert_eq!(client.unwrap_dce(&mut reply, &auth), Ok(()));
        assert_eq!(reply, b"answer");
    }

    #[test]
    fn wraps_with_another_filler_count_are_honoured() {
        // impacket pads to the block size and sends that count as EC, often 0.
        let key = Key::from_password(Etype::Aes128, "k", "S");
        let mut server = Cfx::new(key.clone(), true, true, 0, 0);
        let plain = b"0123456789abcdef".to_vec();
        let mut header = vec![5, 4, 0x06, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut inner = plain.clone();
        inner.extend_from_slice(&header);
        let mut cipher = key.encrypt(USAGE_INITIATOR_SEAL, &inner);
        cipher.rotate_right(28);
        header[7] = 28;
        let mut auth = header.clone();
        auth.extend_from_slice(&cipher[..44]);
        let mut data = cipher[44..].to_vec();
        assert_eq!(server.unwrap_dce(&mut data, &auth), Ok(()));
        assert_eq!(data, plain);
    }
}
