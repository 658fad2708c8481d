//! The mail protocols the harness speaks: one enum for the endpoints, the front-end, the
//! driver, the network fuzzer and the lab, named one way everywhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// A mail protocol. Reports print it as `IMAP`/`POP3` ([`Protocol::name`], `Display`, JSON);
/// URLs, transcripts (`@protocol`) and scenario files write it as `imap`/`pop3`
/// ([`Protocol::keyword`]), read in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Imap,
    Pop3,
}

/// A protocol name the harness does not speak.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?} (imap, pop3)")]
pub struct UnknownProtocol(pub String);

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Imap, Protocol::Pop3];

    /// As reports and snapshots print it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Imap => "IMAP",
            Protocol::Pop3 => "POP3",
        }
    }

    /// As URL schemes and the harness's file formats write it.
    pub fn keyword(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
        }
    }

    /// `imap` or `pop3` in any case.
    pub fn parse(name: &str) -> Option<Protocol> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.keyword().eq_ignore_ascii_case(name))
    }

    /// The IANA port of the plain service (RFC 3501 section 2.1, RFC 1939 section 3).
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Imap => 143,
            Protocol::Pop3 => 110,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    fn from_str(s: &str) -> Result<Protocol, UnknownProtocol> {
        Protocol::parse(s).ok_or_else(|| UnknownProtocol(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Protocol, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keywords_and_parsing_agree() {
        for p in Protocol::ALL {
            assert_eq!(Protocol::parse(p.keyword()), Some(p));
            assert_eq!(Protocol::parse(p.name()), Some(p));
            assert_eq!(p.to_string(), p.name());
            assert_eq!(p.name().to_ascii_lowercase(), p.keyword());
        }
        assert_eq!(Protocol::parse("Pop3"), Some(Protocol::Pop3));
        assert_eq!(Protocol::parse("smtp"), None);
        assert_eq!(Protocol::parse(""), None);
        assert_eq!(
            "imap4".parse::<Protocol>(),
            Err(UnknownProtocol("imap4".into()))
        );
        assert_eq!(
            (Protocol::Imap.default_port(), Protocol::Pop3.default_port()),
            (143, 110)
        );
    }

    #[test]
    fn serde_writes_the_report_name_and_reads_either_case() {
        assert_eq!(serde_json::to_string(&Protocol::Pop3).unwrap(), "\"POP3\"");
        let back: Protocol = serde_json::from_str("\"imap\"").unwrap();
        assert_eq!(back, Protocol::Imap);
        let back: Protocol = serde_json::from_str("\"IMAP\"").unwrap();
        assert_eq!(back, Protocol::Imap);
        assert!(serde_json::from_str::<Protocol>("\"nntp\"").is_err());
    }
}
