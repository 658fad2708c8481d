//! Keys and the two enctypes the lab speaks: aes256-cts-hmac-sha1-96 (18) and
//! aes128-cts-hmac-sha1-96 (17), RFC 3962. The cipher and PBKDF2 are picky-krb's.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use picky_krb::crypto::{ChecksumSuite, CipherSuite};

use crate::rng::SeededRng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Etype {
    Aes128,
    Aes256,
}

impl Etype {
    /// Strongest first: the order keys are made and tickets are sealed in.
    pub const ALL: [Etype; 2] = [Etype::Aes256, Etype::Aes128];

    pub fn number(self) -> i64 {
        match self {
            Etype::Aes128 => 17,
            Etype::Aes256 => 18,
        }
    }

    pub fn from_number(n: i64) -> Option<Etype> {
        match n {
            17 => Some(Etype::Aes128),
            18 => Some(Etype::Aes256),
            _ => None,
        }
    }

    /// The keyed checksum that goes with the key (RFC 3962 6: 15 and 16).
    pub fn checksum_type(self) -> i64 {
        match self {
            Etype::Aes128 => 15,
            Etype::Aes256 => 16,
        }
    }

    pub fn key_len(self) -> usize {
        match self {
            Etype::Aes128 => 16,
            Etype::Aes256 => 32,
        }
    }

    fn suite(self) -> CipherSuite {
        match self {
            Etype::Aes128 => CipherSuite::Aes128CtsHmacSha196,
            Etype::Aes256 => CipherSuite::Aes256CtsHmacSha196,
        }
    }

    fn checksum_suite(self) -> ChecksumSuite {
        match self {
            Etype::Aes128 => ChecksumSuite::HmacSha196Aes128,
            Etype::Aes256 => ChecksumSuite::HmacSha196Aes256,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Etype::Aes128 => "aes128-cts-hmac-sha1-96",
            Etype::Aes256 => "aes256-cts-hmac-sha1-96",
        }
    }
}

/// Why a decryption or checksum failed; the KDC answers KRB_AP_ERR_BAD_INTEGRITY or
/// KRB_AP_ERR_MODIFIED for either.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("integrity check failed (wrong key or altered ciphertext)")]
    Integrity,
    #[error("ciphertext of {0} bytes is too short")]
    Short(usize),
    #[error("{0}")]
    Other(String),
}

#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub etype: Etype,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material into logs or snapshots.
        write!(f, "Key({})", self.etype.name())
    }
}

/// The smallest AES-CTS ciphertext: confounder (one block) plus the 12-byte HMAC.
const MIN_CIPHERTEXT: usize = 16 + 12;

impl Key {
    /// RFC 3962 4 string-to-key with the default 4096 iterations. Derivations are kept
    /// for the life of the process: every lab, fuzz input and test would otherwise redo
    /// the same PBKDF2 for the same fixed passwords.
    pub fn from_password(etype: Etype, password: &str, salt: &str) -> Key {
        type Cache = Mutex<HashMap<(Etype, String, String), Vec<u8>>>;
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let id = (etype, password.to_string(), salt.to_string());
        if let Some(bytes) = cache.lock().ok().and_then(|c| c.get(&id).cloned()) {
            return Key { etype, bytes };
        }
        let bytes = etype
            .suite()
            .cipher()
            .generate_key_from_password(password.as_bytes(), salt.as_bytes())
            // PBKDF2 into a buffer of the cipher's own size does not fail.
            .unwrap_or_else(|_| vec![0; etype.key_len()]);
        if let Ok(mut c) = cache.lock() {
            if c.len() < 4096 {
                c.insert(id, bytes.clone());
            }
        }
        Key { etype, bytes }
    }

    /// A fresh session key from the seeded stream (random-to-key is the identity for AES).
    pub fn random(etype: Etype, rng: &mut SeededRng) -> Key {
        let mut bytes = vec![0; etype.key_len()];
        rng.fill(&mut bytes);
        Key { etype, bytes }
    }

    /// A key as it arrives in an EncryptionKey; `None` for another enctype or a wrong length.
    pub fn from_wire(etype: i64, bytes: &[u8]) -> Option<Key> {
        let etype = Etype::from_number(etype)?;
        (bytes.len() == etype.key_len()).then(|| Key {
            etype,
            bytes: bytes.to_vec(),
        })
    }

    pub fn encrypt(&self, usage: i32, plain: &[u8]) -> Vec<u8> {
        self.etype
            .suite()
            .cipher()
            .encrypt(&self.bytes, usage, plain)
            // The key length is checked where a Key is made; encryption cannot fail then.
            .unwrap_or_default()
    }

    pub fn decrypt(&self, usage: i32, cipher: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if cipher.len() < MIN_CIPHERTEXT {
            return Err(CryptoError::Short(cipher.len()));
        }
        self.etype
            .suite()
            .cipher()
            .decrypt(&self.bytes, usage, cipher)
            .map_err(|e| match e {
                picky_krb::crypto::KerberosCryptoError::IntegrityCheck => CryptoError::Integrity,
                other => CryptoError::Other(other.to_string()),
            })
    }

    /// The key's keyed checksum (HMAC-SHA1-96 with a derived key, RFC 3961 5.4).
    pub fn checksum(&self, usage: i32, data: &[u8]) -> Vec<u8> {
        self.etype
            .checksum_suite()
            .hasher()
            .checksum(&self.bytes, usage, data)
            .unwrap_or_default()
    }

    /// Checks a checksum of type `cksumtype` over `data`: the type must be this key's
    /// (a keyless or foreign checksum proves nothing) and the value must match.
    pub fn verify_checksum(&self, usage: i32, cksumtype: i64, data: &[u8], value: &[u8]) -> bool {
        cksumtype == self.etype.checksum_type()
            && !value.is_empty()
            && constant_time_eq(&self.checksum(usage, data), value)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The default salt: the realm, then the name's components, with no separators
/// (RFC 4120 4; MIT `pr_to_salt.c`).
pub fn default_salt(realm: &str, components: &[String]) -> String {
    let mut salt = realm.to_string();
    for c in components {
        salt.push_str(c);
    }
    salt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn string_to_key_matches_the_4096_iteration_vectors() {
        // PROTOCOLS.md 9.5: password "password", salt "ATHENA.MIT.EDUraeburn".
        let k128 = Key::from_password(Etype::Aes128, "password", "ATHENA.MIT.EDUraeburn");
        assert_eq!(hex(&k128.bytes), "fca822951813fb252154c883f5ee1cf4");
        let k256 = Key::from_password(Etype::Aes256, "password", "ATHENA.MIT.EDUraeburn");
        assert_eq!(
            hex(&k256.bytes),
            "01b897121d933ab44b47eb5494db15e50eb74530dbdae9b634d65020ff5d88c1"
        );
    }

    #[test]
    fn encryption_round_trips_and_refuses_the_wrong_key_or_usage() {
        let key = Key::from_password(Etype::Aes256, "secret", "EXAMPLE.TESTalice");
        let other = Key::from_password(Etype::Aes256, "wrong", "EXAMPLE.TESTalice");
        let sealed = key.encrypt(3, b"hello kerberos");
        assert_eq!(
            key.decrypt(3, &sealed).as_deref(),
            Ok(&b"hello kerberos"[..])
        );
        assert_eq!(other.decrypt(3, &sealed), Err(CryptoError::Integrity));
        assert_eq!(key.decrypt(2, &sealed), Err(CryptoError::Integrity));
        assert_eq!(key.decrypt(3, &sealed[..20]), Err(CryptoError::Short(20)));
        // The shortest ciphertext is an empty plaintext's: confounder and HMAC, 28 octets.
        let empty = key.encrypt(3, b"");
        assert_eq!(empty.len(), MIN_CIPHERTEXT);
        assert_eq!(key.decrypt(3, &empty), Ok(Vec::new()));
        assert_eq!(key.decrypt(3, &empty[..27]), Err(CryptoError::Short(27)));
    }

    #[test]
    fn checksums_verify_only_with_the_right_type_key_and_data() {
        let key = Key::from_password(Etype::Aes128, "k", "S");
        let sum = key.checksum(6, b"body");
        assert_eq!(sum.len(), 12);
        assert!(key.verify_checksum(6, 15, b"body", &sum));
        assert!(!key.verify_checksum(6, 16, b"body", &sum));
        assert!(!key.verify_checksum(7, 15, b"body", &sum));
        assert!(!key.verify_checksum(6, 15, b"bodY", &sum));
        assert!(!key.verify_checksum(6, 15, b"body", &[]));
        // The same bit flipped in two octets: differences must not cancel out.
        let mut twice = sum.clone();
        twice[0] ^= 1;
        twice[1] ^= 1;
        assert!(!key.verify_checksum(6, 15, b"body", &twice));
    }

    #[test]
    fn salts_join_realm_and_components() {
        let comps = vec!["HTTP".to_string(), "web.example.test".to_string()];
        assert_eq!(
            default_salt("EXAMPLE.TEST", &comps),
            "EXAMPLE.TESTHTTPweb.example.test"
        );
    }
}
