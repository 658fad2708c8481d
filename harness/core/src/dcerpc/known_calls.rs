//! Calls every server of an interface must answer, for the tools that drive a live or
//! in-process server with the project's client and need a known-good session to vary:
//! the network fuzzer (`harness fuzz --target dcerpc://`), the association fuzz targets.
//! The stubs are impacket's (the endpoint mapper's and RFR's, as captured) and ours built
//! the same way.

use std::sync::OnceLock;

use super::client::{AuthLevel, BindSecurity, ContextElement, SyntaxId};
use super::epm::{self, impacket, EPM_SYNTAX};
use super::ntlm::NtlmClientSecurity;
use super::rfr::{self, RFR_SYNTAX};
use crate::ntlm::{Credentials, InitiatorOptions, ResponseKind};

/// An interface with known-good calls: the endpoint mapper (every DCE/RPC server has one,
/// Samba's included) or RFR (the Exchange endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownInterface {
    Epm,
    Rfr,
}

impl KnownInterface {
    pub fn syntax(self) -> SyntaxId {
        match self {
            KnownInterface::Epm => EPM_SYNTAX,
            KnownInterface::Rfr => RFR_SYNTAX,
        }
    }

    /// Stubs every server of the interface answers with a response, by opnum; decoded
    /// once per process.
    pub fn valid_calls(self) -> &'static [(u16, Vec<u8>)] {
        static EPM: OnceLock<Vec<(u16, Vec<u8>)>> = OnceLock::new();
        static RFR: OnceLock<Vec<(u16, Vec<u8>)>> = OnceLock::new();
        match self {
            KnownInterface::Epm => EPM.get_or_init(|| {
                vec![
                    (epm::OPNUM_EPT_MAP, impacket::octets(impacket::MAP_EMSMDB)),
                    (epm::OPNUM_EPT_MAP, impacket::octets(impacket::MAP_NSPI)),
                    (
                        epm::OPNUM_EPT_LOOKUP,
                        impacket::octets(impacket::LOOKUP_ALL),
                    ),
                    (
                        epm::OPNUM_EPT_LOOKUP,
                        impacket::octets(impacket::LOOKUP_NSPI),
                    ),
                    (epm::OPNUM_EPT_LOOKUP_HANDLE_FREE, vec![0; 20]),
                ]
            }),
            KnownInterface::Rfr => RFR.get_or_init(|| {
                let dn = "/o=EXAMPLE/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)\
                          /cn=Configuration/cn=Servers/cn=MAIL";
                vec![
                    (0, rfr::vectors::impacket_get_new_dsa()),
                    (1, rfr::vectors::fqdn_request(dn, dn.len() as u32 + 1)),
                ]
            }),
        }
    }
}

/// NTLM (NTLMv2 with a MIC, fixed client randoms so a session replays) as `credentials`
/// at `level`, context id 1.
pub fn ntlm_bind(credentials: Credentials, level: AuthLevel) -> BindSecurity {
    BindSecurity {
        provider: Box::new(NtlmClientSecurity::new(
            credentials,
            InitiatorOptions::fixed(7, 9, ResponseKind::V2, true),
        )),
        level,
        auth_context_id: 1,
    }
}

/// Presentation context 0: `interface` in NDR 2.0.
pub fn primary_context(interface: KnownInterface) -> ContextElement {
    ContextElement {
        context_id: 0,
        abstract_syntax: interface.syntax(),
        transfer_syntaxes: vec![SyntaxId::NDR20],
    }
}
