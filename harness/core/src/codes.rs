//! The one catalogue of error codes the harness reports: MAPI / Exchange `ec` codes,
//! Outlook Express `IXP_E_*`, Kerberos, and Win32 RPC status. Outcomes and snapshots name
//! a code through this table, so every report prints it the same way:
//! `MAPI_E_NETWORK_ERROR (0x80040115)`.
//!
//! Values: ../shared/PROTOCOLS.md section 7 (MS-OXCDATA 2.4, OpenChange mapi-codes,
//! gromox mapierr.hpp; RFC 4120 7.5.9; Wine imnxport.idl; impacket system_errors).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// MAPI HRESULTs and Exchange `ec` values ([MS-OXCDATA] 2.4).
    Mapi,
    /// Outlook Express / inetcomm transport errors: `0x800C0000 | n`.
    Ixp,
    /// Kerberos error codes (RFC 4120 7.5.9).
    Kerberos,
    /// Win32 / RPC runtime status.
    Win32,
    /// HTTP status codes as WinHTTP/WinInet name them (an application's HTTP request).
    Http,
}

/// A code as it appears on the wire or in a client's report.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode {
    pub family: Family,
    pub value: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeInfo {
    pub family: Family,
    pub value: u32,
    /// The name reports use.
    pub name: &'static str,
    /// Other names the same value goes by.
    pub aliases: &'static [&'static str],
}

macro_rules! codes {
    ($( $family:ident $value:literal $name:literal $( | $alias:literal )* ; )*) => {
        /// Every code the harness knows, in the order of PROTOCOLS.md section 7.
        pub const CATALOGUE: &[CodeInfo] = &[
            $( CodeInfo { family: Family::$family, value: $value, name: $name, aliases: &[$($alias),*] }, )*
        ];
    };
}

codes! {
    Mapi 0x8000_4005 "MAPI_E_CALL_FAILED" | "ecError" | "GeneralFailure";
    Mapi 0x8004_0102 "MAPI_E_NO_SUPPORT" | "ecNotSupported";
    Mapi 0x8004_0106 "MAPI_E_UNKNOWN_FLAGS";
    Mapi 0x8004_010F "MAPI_E_NOT_FOUND";
    Mapi 0x8004_0110 "MAPI_E_VERSION" | "ecVersionMismatch";
    Mapi 0x8004_0111 "MAPI_E_LOGON_FAILED" | "ecLoginFailure";
    Mapi 0x8004_0115 "MAPI_E_NETWORK_ERROR" | "ecRpcFailed";
    Mapi 0x8004_0121 "MAPI_E_PASSWORD_EXPIRED";
    Mapi 0x8004_0124 "MAPI_E_ACCOUNT_DISABLED";
    Mapi 0x8004_0200 "MAPI_E_END_OF_SESSION";
    Mapi 0x8004_0401 "MAPI_E_TIMEOUT";
    Mapi 0x8007_0005 "MAPI_E_NO_ACCESS" | "ecAccessDenied";
    Mapi 0x8007_000E "MAPI_E_NOT_ENOUGH_MEMORY";
    Mapi 0x8007_0057 "MAPI_E_INVALID_PARAMETER";
    Mapi 0x0000_03EB "ecUnknownUser";
    Mapi 0x0000_03ED "ecExiting";
    Mapi 0x0000_03F2 "ecLoginPerm";
    Mapi 0x0000_0478 "ecWrongServer";
    Mapi 0x0000_047F "ecServerPaused";
    Mapi 0x0000_0480 "ecServerBusy";
    Mapi 0x0000_04B6 "ecRpcFormat";
    Mapi 0x0000_04BC "ecRpcAuthentication";
    Mapi 0x0000_04DF "ecClientVerDisallowed";
    Mapi 0x0000_04E0 "ecRpcHttpDisallowed";
    Mapi 0x0000_04E1 "ecCachedModeRequired";
    Mapi 0x0000_050C "ecMailboxInTransit";
    Mapi 0x0000_07D8 "ecProtocolDisabled";
    Mapi 0x0000_07EE "ecRejected";
    Mapi 0x0000_096C "ecMailboxDisabled";
    Mapi 0x0000_0970 "ecNotEncrypted";

    Kerberos 0 "KDC_ERR_NONE";
    Kerberos 3 "KDC_ERR_BAD_PVNO";
    Kerberos 6 "KDC_ERR_C_PRINCIPAL_UNKNOWN";
    Kerberos 7 "KDC_ERR_S_PRINCIPAL_UNKNOWN";
    Kerberos 11 "KDC_ERR_NEVER_VALID";
    Kerberos 12 "KDC_ERR_POLICY";
    Kerberos 13 "KDC_ERR_BADOPTION";
    Kerberos 14 "KDC_ERR_ETYPE_NOSUPP";
    Kerberos 16 "KDC_ERR_PADATA_TYPE_NOSUPP";
    Kerberos 18 "KDC_ERR_CLIENT_REVOKED";
    Kerberos 23 "KDC_ERR_KEY_EXPIRED";
    Kerberos 24 "KDC_ERR_PREAUTH_FAILED";
    Kerberos 25 "KDC_ERR_PREAUTH_REQUIRED";
    Kerberos 31 "KRB_AP_ERR_BAD_INTEGRITY";
    Kerberos 32 "KRB_AP_ERR_TKT_EXPIRED";
    Kerberos 33 "KRB_AP_ERR_TKT_NYV";
    Kerberos 34 "KRB_AP_ERR_REPEAT";
    Kerberos 35 "KRB_AP_ERR_NOT_US";
    Kerberos 36 "KRB_AP_ERR_BADMATCH";
    Kerberos 37 "KRB_AP_ERR_SKEW";
    Kerberos 40 "KRB_AP_ERR_MSG_TYPE";
    Kerberos 41 "KRB_AP_ERR_MODIFIED";
    Kerberos 50 "KRB_AP_ERR_INAPP_CKSUM";
    Kerberos 52 "KRB_ERR_RESPONSE_TOO_BIG";
    Kerberos 60 "KRB_ERR_GENERIC";
    Kerberos 61 "KRB_ERR_FIELD_TOOLONG";
    Kerberos 68 "KDC_ERR_WRONG_REALM";

    Ixp 0x800C_CC00 "IXP_E_LOAD_SICILY_FAILED";
    Ixp 0x800C_CC0D "IXP_E_CANT_FIND_HOST";
    Ixp 0x800C_CC0E "IXP_E_FAILED_TO_CONNECT";
    Ixp 0x800C_CC0F "IXP_E_CONNECTION_DROPPED";
    Ixp 0x800C_CC16 "IXP_E_INVALID_ACCOUNT";
    Ixp 0x800C_CC17 "IXP_E_USER_CANCEL";
    Ixp 0x800C_CC18 "IXP_E_SICILY_LOGON_FAILED";
    Ixp 0x800C_CC19 "IXP_E_TIMEOUT";
    Ixp 0x800C_CC1A "IXP_E_SECURE_CONNECT_FAILED";
    Ixp 0x800C_CC90 "IXP_E_POP3_RESPONSE_ERROR";
    Ixp 0x800C_CC91 "IXP_E_POP3_INVALID_USER_NAME";
    Ixp 0x800C_CC92 "IXP_E_POP3_INVALID_PASSWORD";
    Ixp 0x800C_CCD1 "IXP_E_IMAP_LOGINFAILURE";
    Ixp 0x800C_CCD2 "IXP_E_IMAP_TAGGED_NO_RESPONSE";
    Ixp 0x800C_CCD3 "IXP_E_IMAP_BAD_RESPONSE";
    Ixp 0x800C_CCDD "IXP_E_IMAP_UNSOLICITED_BYE";
    Ixp 0x800C_CCDE "IXP_E_IMAP_IMPROPER_SVRSTATE";
    Ixp 0x800C_CCDF "IXP_E_IMAP_AUTH_NOT_POSSIBLE";
    Ixp 0x800C_CCE0 "IXP_E_IMAP_OUT_OF_AUTH_METHODS";

    Http 401 "HTTP_STATUS_DENIED";
    Http 403 "HTTP_STATUS_FORBIDDEN";
    Http 404 "HTTP_STATUS_NOT_FOUND";

    Win32 5 "ERROR_ACCESS_DENIED" | "RPC_S_ACCESS_DENIED";
    Win32 1326 "ERROR_LOGON_FAILURE";
    Win32 1702 "RPC_S_INVALID_BINDING";
    Win32 1717 "RPC_S_UNKNOWN_IF";
    Win32 1721 "RPC_S_OUT_OF_RESOURCES";
    Win32 1722 "RPC_S_SERVER_UNAVAILABLE";
    Win32 1723 "RPC_S_SERVER_TOO_BUSY";
    Win32 1726 "RPC_S_CALL_FAILED";
    Win32 1727 "RPC_S_CALL_FAILED_DNE";
    Win32 1728 "RPC_S_PROTOCOL_ERROR";
    Win32 1745 "RPC_S_PROCNUM_OUT_OF_RANGE";
    Win32 1747 "RPC_S_UNKNOWN_AUTHN_SERVICE";
    Win32 1753 "EPT_S_NOT_REGISTERED";
    Win32 1764 "RPC_S_CANNOT_SUPPORT";
    Win32 1783 "RPC_X_BAD_STUB_DATA";
    Win32 1818 "RPC_S_CALL_CANCELLED";
    Win32 1820 "RPC_S_COMM_FAILURE";
    Win32 1821 "RPC_S_UNSUPPORTED_AUTHN_LEVEL";
    Win32 1825 "RPC_S_SEC_PKG_ERROR";
}

impl ErrorCode {
    pub const fn new(family: Family, value: u32) -> Self {
        ErrorCode { family, value }
    }

    /// The catalogue entry, if the code is a known one.
    pub fn info(self) -> Option<&'static CodeInfo> {
        CATALOGUE
            .iter()
            .find(|c| c.family == self.family && c.value == self.value)
    }

    pub fn name(self) -> Option<&'static str> {
        self.info().map(|c| c.name)
    }

    /// Looks a code up by its name or any alias (exact spelling).
    pub fn by_name(name: &str) -> Option<ErrorCode> {
        CATALOGUE
            .iter()
            .find(|c| c.name == name || c.aliases.contains(&name))
            .map(|c| ErrorCode::new(c.family, c.value))
    }

    /// The value as reports print it: hex for HRESULT-like families, decimal for Kerberos.
    pub fn value_text(self) -> String {
        match self.family {
            Family::Kerberos | Family::Http => self.value.to_string(),
            Family::Win32 => format!("0x{:X}", self.value),
            Family::Mapi | Family::Ixp => format!("0x{:08X}", self.value),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.value_text()),
            None => write!(f, "unknown {:?} code ({})", self.family, self.value_text()),
        }
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Named constants for the codes the mail-side cases report.
pub mod known {
    use super::{ErrorCode, Family};
    pub const IXP_E_SICILY_LOGON_FAILED: ErrorCode = ErrorCode::new(Family::Ixp, 0x800C_CC18);
    pub const IXP_E_IMAP_AUTH_NOT_POSSIBLE: ErrorCode = ErrorCode::new(Family::Ixp, 0x800C_CCDF);
    pub const IXP_E_IMAP_LOGINFAILURE: ErrorCode = ErrorCode::new(Family::Ixp, 0x800C_CCD1);
    pub const IXP_E_POP3_INVALID_PASSWORD: ErrorCode = ErrorCode::new(Family::Ixp, 0x800C_CC92);
    pub const MAPI_E_LOGON_FAILED: ErrorCode = ErrorCode::new(Family::Mapi, 0x8004_0111);
    pub const MAPI_E_NETWORK_ERROR: ErrorCode = ErrorCode::new(Family::Mapi, 0x8004_0115);
    pub const MAPI_E_END_OF_SESSION: ErrorCode = ErrorCode::new(Family::Mapi, 0x8004_0200);
    pub const MAPI_E_NOT_FOUND: ErrorCode = ErrorCode::new(Family::Mapi, 0x8004_010F);
    pub const MAPI_E_INVALID_PARAMETER: ErrorCode = ErrorCode::new(Family::Mapi, 0x8007_0057);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn reports_print_name_and_value() {
        assert_eq!(
            known::MAPI_E_NETWORK_ERROR.to_string(),
            "MAPI_E_NETWORK_ERROR (0x80040115)"
        );
        assert_eq!(
            known::IXP_E_SICILY_LOGON_FAILED.to_string(),
            "IXP_E_SICILY_LOGON_FAILED (0x800CCC18)"
        );
        assert_eq!(
            ErrorCode::new(Family::Kerberos, 24).to_string(),
            "KDC_ERR_PREAUTH_FAILED (24)"
        );
        assert_eq!(
            ErrorCode::new(Family::Win32, 1722).to_string(),
            "RPC_S_SERVER_UNAVAILABLE (0x6BA)"
        );
        assert_eq!(
            ErrorCode::new(Family::Mapi, 0x1234).to_string(),
            "unknown Mapi code (0x00001234)"
        );
    }

    #[test]
    fn names_and_aliases_find_the_same_code() {
        assert_eq!(
            ErrorCode::by_name("ecRpcFailed"),
            Some(known::MAPI_E_NETWORK_ERROR)
        );
        assert_eq!(
            ErrorCode::by_name("MAPI_E_LOGON_FAILED"),
            Some(known::MAPI_E_LOGON_FAILED)
        );
        assert_eq!(
            ErrorCode::by_name("IXP_E_IMAP_AUTH_NOT_POSSIBLE"),
            Some(known::IXP_E_IMAP_AUTH_NOT_POSSIBLE)
        );
        assert_eq!(ErrorCode::by_name("nope"), None);
    }

    #[test]
    fn catalogue_has_no_duplicate_values_or_names_and_ixp_codes_are_facility_internet() {
        let mut values = HashSet::new();
        let mut names = HashSet::new();
        for c in CATALOGUE {
            assert!(values.insert((c.family, c.value)), "duplicate value {c:?}");
            for n in std::iter::once(&c.name).chain(c.aliases) {
                assert!(names.insert(*n), "duplicate name {n}");
            }
            if c.family == Family::Ixp {
                // HR_E(n) = MAKE_SCODE(SEVERITY_ERROR, FACILITY_INTERNET = 12, n)
                assert_eq!(c.value & 0xFFFF_0000, 0x800C_0000, "{c:?}");
            }
            if c.family == Family::Http {
                assert!((400..600).contains(&c.value), "{c:?}");
            }
        }
        // MAPI, Kerberos, IXP, Win32, HTTP.
        assert_eq!(CATALOGUE.len(), 30 + 27 + 19 + 19 + 3);
        assert_eq!(
            ErrorCode::new(Family::Http, 401).to_string(),
            "HTTP_STATUS_DENIED (401)"
        );
    }
}
