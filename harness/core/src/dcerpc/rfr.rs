//! The address-book referral interface, RFR ([MS-OXABREF]; UUID
//! 1544F5E0-613C-11D1-93DF-00C04FD7BD09 v1.0): tells a client which NSPI server (a
//! global catalog) to use, and the FQDN of a mailbox server named by its DN.
//!
//! ```text
//! // [MS-OXABREF] 3.1.4.1
//! long RfrGetNewDSA(
//!     [in] handle_t hRpc,
//!     [in] unsigned long ulFlags,
//!     [in, string] unsigned char *pUserDN,
//!     [in, out, unique, string] unsigned char **ppszUnused,
//!     [in, out, unique, string] unsigned char **ppszServer);
//! // [MS-OXABREF] 3.1.4.2
//! long RfrGetFQDNFromServerDN(
//!     [in] handle_t hRpc,
//!     [in] unsigned long ulFlags,
//!     [in, range(10,1024)] unsigned long cbMailboxServerDN,
//!     [in, string, size_is(cbMailboxServerDN)] unsigned char *szMailboxServerDN,
//!     [out, ref, string] unsigned char **ppszServerFQDN);
//! ```
//!
//! The referral is data ([`Referral`]) so the global-catalog failover case can change
//! what it answers while clients are connected.

use std::sync::{Arc, RwLock};

use harness_wire::dcerpc::{FaultStatus, SyntaxId, Uuid};
use harness_wire::ndr::{NdrError, NdrReader, NdrWriter};

use super::interface::{CallContext, CallOutcome, RpcInterface};
use crate::codes::known;

/// RFR's abstract syntax.
pub const RFR_SYNTAX: SyntaxId = SyntaxId::new(
    Uuid::new(
        0x1544_f5e0,
        0x613c,
        0x11d1,
        [0x93, 0xdf, 0x00, 0xc0, 0x4f, 0xd7, 0xbd, 0x09],
    ),
    1,
    0,
);

/// What the referral service knows: the NSPI servers in order of preference, and the
/// mailbox servers by their short name (the last `cn=` of a server DN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    /// FQDNs of the global catalogs a client may be sent to; the first is named.
    pub nspi_servers: Vec<String>,
    /// (short server name, FQDN) of each mailbox server.
    pub mailbox_servers: Vec<(String, String)>,
}

/// The RFR interface.
#[derive(Debug)]
pub struct Rfr {
    referral: RwLock<Referral>,
}

/// `ulFlags` and strings: at most this many characters in a DN (cbMailboxServerDN's
/// range, [MS-OXABREF] 3.1.4.2).
const MAX_DN: u32 = 1024;

impl Rfr {
    pub fn new(referral: Referral) -> Arc<Rfr> {
        Arc::new(Rfr {
            referral: RwLock::new(referral),
        })
    }

    /// Replaces what the service answers from the next call on.
    pub fn set_referral(&self, referral: Referral) {
        *self.referral.write().unwrap_or_else(|e| e.into_inner()) = referral;
    }

    pub fn referral(&self) -> Referral {
        self.referral
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn get_new_dsa(&self, stub: &[u8]) -> Result<Vec<u8>, NdrError> {
        let mut r = NdrReader::new(stub);
        let _flags = r.u32()?; // unused, SHOULD be 0, other values ignored
        let _user_dn = r.string()?;
        let unused = in_out_string(&mut r)?;
        let server = in_out_string(&mut r)?;
        let referral = self.referral();
        let mut w = NdrWriter::new();
        // ppszUnused goes back as it came (a client SHOULD send NULL).
        put_in_out_string(&mut w, unused.as_ref().map(|s| s.as_deref()));
        let status = match (server, referral.nspi_servers.first()) {
            // [MS-OXABREF] 3.1.4.1: a NULL ppszServer cannot receive the answer.
            (None, _) => {
                put_in_out_string(&mut w, None);
                known::MAPI_E_INVALID_PARAMETER.value
            }
            (Some(_), None) => {
                put_in_out_string(&mut w, Some(None));
                known::MAPI_E_NOT_FOUND.value
            }
            (Some(_), Some(fqdn)) => {
                put_in_out_string(&mut w, Some(Some(fqdn.as_bytes())));
                0
            }
        };
        w.align(4);
        w.put_u32(status);
        Ok(w.into_bytes())
    }

    fn get_fqdn_from_server_dn(&self, stub: &[u8]) -> Result<Vec<u8>, NdrError> {
        let mut r = NdrReader::new(stub);
        let _flags = r.u32()?;
        let cb = r.u32_in_range(10, MAX_DN)?;
        let dn = r.string()?;
        // cbMailboxServerDN counts the NUL ([MS-OXABREF] 3.1.4.2).
        if dn.len() + 1 > cb as usize {
            return Err(NdrError::Invalid(
                "rfr: szMailboxServerDN longer than cbMailboxServerDN",
            ));
        }
        let referral = self.referral();
        let fqdn = server_short_name(&dn).and_then(|name| {
            referral
                .mailbox_servers
                .iter()
                .find(|(short, _)| short.eq_ignore_ascii_case(&name))
                .map(|(_, fqdn)| fqdn.clone())
        });
        let mut w = NdrWriter::new();
        // [out, ref, string] char **: the ref pointer has no wire form; the inner
        // pointer does (NULL when there is no answer).
        match &fqdn {
            Some(fqdn) => {
                w.put_pointer(true);
                w.put_string(fqdn.as_bytes());
            }
            None => {
                w.put_pointer(false);
            }
        }
        w.align(4);
        w.put_u32(match fqdn {
            Some(_) => 0,
            None => known::MAPI_E_NOT_FOUND.value,
        });
        Ok(w.into_bytes())
    }
}

/// A `[in, out, unique, string] char **`: the outer unique pointer, then (when present)
/// the inner pointer and its string. `None`: outer NULL; `Some(None)`: inner NULL.
fn in_out_string(r: &mut NdrReader<'_>) -> Result<Option<Option<Vec<u8>>>, NdrError> {
    let outer = r.unique_ptr()?;
    r.pointee(outer, |r| {
        let inner = r.unique_ptr()?;
        r.pointee(inner, |r| r.string())
    })
}

fn put_in_out_string(w: &mut NdrWriter, value: Option<Option<&[u8]>>) {
    if w.put_pointer(value.is_some()) == 0 {
        return;
    }
    let inner = value.flatten();
    if w.put_pointer(inner.is_some()) != 0 {
        w.put_string(inner.unwrap_or_default());
    }
}

/// The server's short name from a mailbox server DN: the last `cn=` after `cn=Servers`
/// (the optional instance element comes before it, [MS-OXABREF] 3.1.4.2), or the one
/// before a database element (`.../cn=HOST/cn=Microsoft Private MDB`).
fn server_short_name(dn: &[u8]) -> Option<String> {
    let dn = std::str::from_utf8(dn).ok()?;
    let parts: Vec<&str> = dn.split('/').filter(|p| !p.is_empty()).collect();
    let servers = parts
        .iter()
        .position(|p| p.eq_ignore_ascii_case("cn=servers"))?;
    let names: Vec<&str> = parts[servers + 1..]
        .iter()
        .filter_map(|p| {
            p.get(..3)
                .filter(|k| k.eq_ignore_ascii_case("cn="))
                .map(|_| &p[3..])
        })
        .collect();
    let is_database = |n: &str| n.to_ascii_lowercase().ends_with(" mdb");
    match names.as_slice() {
        [.., server, last] if is_database(last) => Some(server.to_string()),
        [.., last] if !is_database(last) => Some(last.to_string()),
        _ => None,
    }
}

impl RpcInterface for Rfr {
    fn syntax(&self) -> SyntaxId {
        RFR_SYNTAX
    }

    fn name(&self) -> &'static str {
        "rfr"
    }

    fn opnum_count(&self) -> u16 {
        2
    }

    fn call(&self, _ctx: &CallContext<'_>, opnum: u16, stub: &[u8]) -> CallOutcome {
        let result = match opnum {
            0 => self.get_new_dsa(stub),
            1 => self.get_fqdn_from_server_dn(stub),
            _ => return CallOutcome::Fault(FaultStatus::NCA_S_OP_RNG_ERROR),
        };
        match result {
            Ok(stub) => CallOutcome::Response(stub),
            Err(e) => CallOutcome::Fault(e.fault_status()),
        }
    }
}

/// Request stubs for the tests and the fuzz targets' seeds (`harness_core::fuzzing`).
pub mod vectors {
    use super::super::epm::impacket::octets;
    use harness_wire::ndr::NdrWriter;

    /// The stub impacket 0.13.1 sends for `hRfrGetNewDSA(dce, '/o=EXAMPLE/ou=x/cn=Recipients/cn=alice')`
    /// (`oxabref.RfrGetNewDSA()` with ppszUnused NULL and ppszServer "", `getData()`):
    /// random referent ids, and a pad octet 0xbf that is not zero.
    pub fn impacket_get_new_dsa() -> Vec<u8> {
        octets(
            "00000000 27000000 00000000 27000000
             2f6f3d4558414d504c452f6f753d782f636e3d526563697069656e74732f636e3d616c69636500
             bf 00000000 d4b30000 41370000 01000000 00000000 01000000 00",
        )
    }

    /// An RfrGetFQDNFromServerDN stub: flags 0, `cb` and the DN.
    pub fn fqdn_request(dn: &str, cb: u32) -> Vec<u8> {
        let mut w = NdrWriter::new();
        w.put_u32(0);
        w.put_u32(cb);
        w.put_string(dn.as_bytes());
        w.into_bytes()
    }
}

/// RfrGetNewDSA's request as a client sends it ([MS-OXABREF] 3.1.4.1): flags 0, the
/// user's DN, ppszUnused NULL and ppszServer pointing at an empty string (as impacket and
/// Outlook send it).
pub fn get_new_dsa_request(user_dn: &str) -> Vec<u8> {
    let mut w = NdrWriter::new();
    w.put_u32(0);
    w.put_string(user_dn.as_bytes());
    put_in_out_string(&mut w, None);
    put_in_out_string(&mut w, Some(Some(b"")));
    w.into_bytes()
}

/// A `[in, out, unique, string] char **` read back (see [`in_out_string`]).
pub type InOutString = Option<Option<Vec<u8>>>;

/// Reads RfrGetNewDSA's out parameters: ppszUnused, ppszServer and the status; the
/// whole stub must be used.
pub fn decode_get_new_dsa_response(
    stub: &[u8],
) -> Result<(InOutString, InOutString, u32), NdrError> {
    let mut r = NdrReader::new(stub);
    let unused = in_out_string(&mut r)?;
    let server = in_out_string(&mut r)?;
    r.align(4)?;
    let status = r.u32()?;
    if !r.is_empty() {
        return Err(NdrError::Invalid("rfr: octets after the status"));
    }
    Ok((unused, server, status))
}

/// Reads RfrGetFQDNFromServerDN's out parameters: the FQDN (None: a NULL pointer) and
/// the status; the whole stub must be used.
pub fn decode_fqdn_response(stub: &[u8]) -> Result<(Option<Vec<u8>>, u32), NdrError> {
    let mut r = NdrReader::new(stub);
    let p = r.unique_ptr()?;
    let fqdn = r.pointee(p, |r| r.string())?;
    r.align(4)?;
    let status = r.u32()?;
    if !r.is_empty() {
        return Err(NdrError::Invalid("rfr: octets after the status"));
    }
    Ok((fqdn, status))
}

#[cfg(test)]
mod tests {
    use super::vectors::*;
    use super::*;

    fn rfr() -> Arc<Rfr> {
        Rfr::new(Referral {
            nspi_servers: vec!["gc1.example.test".into(), "gc2.example.test".into()],
            mailbox_servers: vec![("MAIL".into(), "mail.example.test".into())],
        })
    }

    fn call(rfr: &Rfr, opnum: u16, stub: &[u8]) -> CallOutcome {
        let ctx = CallContext::unauthenticated(1);
        rfr.call(&ctx, opnum, stub)
    }

    #[test]
    fn get_new_dsa_names_the_first_global_catalog() {
        let CallOutcome::Response(stub) = call(&rfr(), 0, &impacket_get_new_dsa()) else {
            panic!("no response");
        };
        let (unused, server, status) = decode_get_new_dsa_response(&stub).unwrap();
        assert_eq!(unused, None, "ppszUnused stays NULL");
        assert_eq!(server, Some(Some(b"gc1.example.test".to_vec())));
        assert_eq!(status, 0);
    }

    #[test]
    fn get_new_dsa_without_a_catalog_or_an_out_string() {
        let rfr = rfr();
        rfr.set_referral(Referral {
            nspi_servers: vec![],
            mailbox_servers: vec![],
        });
        let CallOutcome::Response(stub) = call(&rfr, 0, &impacket_get_new_dsa()) else {
            panic!("no response");
        };
        assert_eq!(&stub[stub.len() - 4..], &0x8004_010fu32.to_le_bytes());
        let mut no_out = impacket_get_new_dsa();
        let at = no_out.len() - 21; // the ppszServer referent
        no_out.truncate(at);
        no_out.extend_from_slice(&[0; 4]);
        let CallOutcome::Response(stub) = call(&rfr, 0, &no_out) else {
            panic!("no response");
        };
        assert_eq!(&stub[stub.len() - 4..], &0x8007_0057u32.to_le_bytes());
    }

    #[test]
    fn fqdn_from_server_dn() {
        let rfr = rfr();
        let answer = |dn: &str| match call(&rfr, 1, &fqdn_request(dn, dn.len() as u32 + 1)) {
            CallOutcome::Response(stub) => {
                let (s, status) = decode_fqdn_response(&stub).unwrap();
                (s.map(|s| String::from_utf8(s).unwrap()), status)
            }
            other => panic!("{other:?}"),
        };
        let base = "/o=EXAMPLE/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Configuration/cn=Servers";
        assert_eq!(
            answer(&format!("{base}/cn=MAIL")),
            (Some("mail.example.test".into()), 0)
        );
        assert_eq!(
            answer(&format!("{base}/cn=mail")),
            (Some("mail.example.test".into()), 0)
        );
        assert_eq!(
            answer(&format!("{base}/cn=MAIL/cn=Microsoft Private MDB")),
            (Some("mail.example.test".into()), 0)
        );
        assert_eq!(answer(&format!("{base}/cn=OTHER")), (None, 0x8004_010f));
        assert_eq!(answer("/o=EXAMPLE/cn=nothing"), (None, 0x8004_010f));
    }

    #[test]
    fn bad_stubs_fault() {
        let rfr = rfr();
        let bad = FaultStatus::BAD_STUB_DATA;
        assert_eq!(call(&rfr, 0, &[]), CallOutcome::Fault(bad));
        let long = format!("/o=x/{}", "a".repeat(30));
        // cbMailboxServerDN out of range, or shorter than the string.
        assert_eq!(
            call(&rfr, 1, &fqdn_request(&long, 9)),
            CallOutcome::Fault(bad)
        );
        assert_eq!(
            call(&rfr, 1, &fqdn_request(&long, 2000)),
            CallOutcome::Fault(bad)
        );
        assert_eq!(
            call(&rfr, 1, &fqdn_request(&long, 12)),
            CallOutcome::Fault(bad)
        );
        let mut truncated = impacket_get_new_dsa();
        truncated.truncate(truncated.len() - 3);
        assert_eq!(call(&rfr, 0, &truncated), CallOutcome::Fault(bad));
        assert_eq!(
            call(&rfr, 2, &[]),
            CallOutcome::Fault(FaultStatus::NCA_S_OP_RNG_ERROR)
        );
    }
}
