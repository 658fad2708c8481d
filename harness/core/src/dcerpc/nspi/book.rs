//! The address book NSPI serves: a view of the lab's directory, one mail user per
//! principal, in one container (the Global Address List, Minimal Entry ID 0), sorted by
//! display name. Built once from a [`World`]; the interface holds it behind an `Arc` so
//! a test can swap it (GC failover) or drop it.

use md5::{Digest, Md5};

use super::types::{prop_type, ptype, with_type, PropValue, PropertyRow, PropertyValue};
use crate::world::World;

/// Proptags, as [MS-OXPROPS] defines them (canonical names in the comments).
pub mod tag {
    /// PidTagEntryId.
    pub const ENTRY_ID: u32 = 0x0FFF_0102;
    /// PidTagInstanceKey.
    pub const INSTANCE_KEY: u32 = 0x0FF6_0102;
    /// PidTagObjectType.
    pub const OBJECT_TYPE: u32 = 0x0FFE_0003;
    /// PidTagDisplayName.
    pub const DISPLAY_NAME: u32 = 0x3001_001F;
    /// PidTagAddressType.
    pub const ADDRESS_TYPE: u32 = 0x3002_001F;
    /// PidTagEmailAddress.
    pub const EMAIL_ADDRESS: u32 = 0x3003_001F;
    /// PidTagDepth.
    pub const DEPTH: u32 = 0x3005_0003;
    /// PidTagContainerFlags.
    pub const CONTAINER_FLAGS: u32 = 0x3600_0003;
    /// PidTagDisplayType.
    pub const DISPLAY_TYPE: u32 = 0x3900_0003;
    /// PidTagTemplateid.
    pub const TEMPLATE_ID: u32 = 0x3902_0102;
    /// PidTagSmtpAddress.
    pub const SMTP_ADDRESS: u32 = 0x39FE_001F;
    /// PidTagAccount.
    pub const ACCOUNT: u32 = 0x3A00_001F;
    /// PidTagTransmittableDisplayName.
    pub const TRANSMITTABLE_DISPLAY_NAME: u32 = 0x3A20_001F;
    /// PidTagAddressBookProxyAddresses.
    pub const PROXY_ADDRESSES: u32 = 0x800F_101F;
    /// PidTagAddressBookObjectGuid.
    pub const OBJECT_GUID: u32 = 0x8C6D_0102;
    /// PidTagAddressBookIsMaster.
    pub const IS_MASTER: u32 = 0xFFFB_000B;
    /// PidTagAddressBookContainerId.
    pub const CONTAINER_ID: u32 = 0xFFFD_0003;
    /// PidTagPrimaryTelephoneNumber.
    pub const PRIMARY_TELEPHONE: u32 = 0x3A1A_001F;
    /// PidTagDepartmentName.
    pub const DEPARTMENT: u32 = 0x3A18_001F;
    /// PidTagOfficeLocation.
    pub const OFFICE_LOCATION: u32 = 0x3A19_001F;
}

/// PidTagObjectType MAPI_MAILUSER ([MS-OXOABK], PidTagObjectType) and PidTagDisplayType
/// DT_MAILUSER / DT_CONTAINER ([MS-OXNSPI] 2.2.1.3).
pub const MAPI_MAILUSER: i32 = 6;
pub const DT_MAILUSER: u32 = 0;
pub const DT_CONTAINER: u32 = 0x100;

/// PidTagContainerFlags AB_RECIPIENTS | AB_UNMODIFIABLE ([MS-OXOABK] 2.2.2.1).
pub const GAL_CONTAINER_FLAGS: i32 = 0x1 | 0x8;

/// The Permanent Entry ID GUID ([MS-OXNSPI] 2.2.1.7), C840A7DC-42C0-1A10-B4B9-08002B2FE182
/// as it goes on the wire.
pub const GUID_NSPI: [u8; 16] = [
    0xdc, 0xa7, 0x40, 0xc8, 0xc0, 0x42, 0x10, 0x1a, 0xb4, 0xb9, 0x08, 0x00, 0x2b, 0x2f, 0xe1, 0x82,
];

/// The first Minimal Entry ID of a user: above the positioning ones 0-2
/// ([MS-OXNSPI] 2.2.1.8) and the GAL's container id 0.
pub const FIRST_MID: u32 = 0x1000;

/// The Global Address List's Minimal Entry ID (its PidTagAddressBookContainerId).
pub const GAL_MID: u32 = 0;

/// CP_WINUNICODE ([MS-OXNSPI] 2.2.1.5): strings asked for as PtypString8 come back as
/// PtypString.
pub const CP_WINUNICODE: u32 = 0x04B0;

/// One mail user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub mid: u32,
    pub account: String,
    pub display_name: String,
    pub smtp_address: String,
    /// PidTagEmailAddress: the legacy Exchange DN.
    pub legacy_dn: String,
    pub object_guid: [u8; 16],
}

/// Which entry a name resolves to ([MS-OXNSPI] 2.2.1.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Unresolved,
    Ambiguous,
    Resolved(u32),
}

impl Resolution {
    /// The MId that stands for it in ppMIds (MID_UNRESOLVED 0, MID_AMBIGUOUS 1).
    pub fn mid(self) -> u32 {
        match self {
            Resolution::Unresolved => 0,
            Resolution::Ambiguous => 1,
            Resolution::Resolved(mid) => mid,
        }
    }
}

/// How values are asked for: the code page of the call and the entry id form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ValueStyle {
    pub code_page: u32,
    /// fEphID: Ephemeral rather than Permanent Entry IDs.
    pub ephemeral_ids: bool,
    /// Strings in PtypString when the tag says PtypUnspecified (or always, for
    /// NspiGetSpecialTable with NspiUnicodeStrings).
    pub unicode: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressBook {
    /// The server's GUID: NspiBind's pServerGuid and the ProviderUID of Ephemeral IDs.
    pub server_guid: [u8; 16],
    /// `<org>` of the legacy DNs.
    pub organization: String,
    entries: Vec<Entry>,
}

/// 16 stable octets from a label (MD5, version nibble 3 as name-based UUIDs have it).
fn stable_guid(label: &str) -> [u8; 16] {
    let mut g: [u8; 16] = Md5::digest(label.as_bytes()).into();
    g[7] = (g[7] & 0x0f) | 0x30;
    g[8] = (g[8] & 0x3f) | 0x80;
    g
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The legacy DN of a recipient, as Exchange 2007 and later form it.
pub fn legacy_dn(organization: &str, account: &str) -> String {
    format!(
        "/o={organization}/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn={account}"
    )
}

/// A Permanent Entry ID ([MS-OXNSPI] 2.2.9.3): IDType 0, R1-R3 0, ProviderUID
/// GUID_NSPI, R4 1, DisplayType, the DN and its NUL.
pub fn permanent_entry_id(display_type: u32, dn: &str) -> Vec<u8> {
    let mut id = vec![0u8; 4];
    id.extend_from_slice(&GUID_NSPI);
    id.extend_from_slice(&1u32.to_le_bytes());
    id.extend_from_slice(&display_type.to_le_bytes());
    id.extend_from_slice(dn.as_bytes());
    id.push(0);
    id
}

/// An Ephemeral Entry ID ([MS-OXNSPI] 2.2.9.2): IDType 0x87, R1-R3 0, ProviderUID the
/// server GUID, R4 1, DisplayType, MId.
pub fn ephemeral_entry_id(server_guid: &[u8; 16], display_type: u32, mid: u32) -> Vec<u8> {
    let mut id = vec![0x87, 0, 0, 0];
    id.extend_from_slice(server_guid);
    id.extend_from_slice(&1u32.to_le_bytes());
    id.extend_from_slice(&display_type.to_le_bytes());
    id.extend_from_slice(&mid.to_le_bytes());
    id
}

/// A string as PtypString8: ASCII as is, anything else as '?' (the lab's names are
/// ASCII; no code page tables here).
fn string8(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
        .collect()
}

/// NotFound ([MS-OXCDATA] 2.4): the PtypErrorCode value of a property a row lacks.
pub const NOT_FOUND: u32 = 0x8004_010F;

impl AddressBook {
    /// One entry per principal of the world's directory, MIds from [`FIRST_MID`] in
    /// display-name order (so they are stable for a given directory).
    pub fn from_world(world: &World) -> Self {
        let organization = world.domain.clone();
        let mut accounts: Vec<&str> = world
            .directory
            .principals()
            .map(|p| p.name.as_str())
            .collect();
        accounts.sort_by_key(|name| name.to_lowercase());
        let entries = accounts
            .into_iter()
            .zip(FIRST_MID..)
            .map(|(account, mid)| Entry {
                mid,
                account: account.to_string(),
                display_name: account.to_string(),
                smtp_address: format!("{account}@{}", world.dns_domain),
                legacy_dn: legacy_dn(&organization, account),
                object_guid: stable_guid(&format!(
                    "harness-nspi-object:{}",
                    account.to_lowercase()
                )),
            })
            .collect();
        AddressBook {
            server_guid: stable_guid(&format!("harness-nspi-server:{}", world.hostname)),
            organization,
            entries,
        }
    }

    /// The rows of the GAL, in table order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn by_mid(&self, mid: u32) -> Option<&Entry> {
        self.entries.iter().find(|e| e.mid == mid)
    }

    /// Position of `mid` in the GAL.
    pub fn position_of(&self, mid: u32) -> Option<usize> {
        self.entries.iter().position(|e| e.mid == mid)
    }

    /// The entry whose legacy DN is `dn` (case-insensitive, as DNs compare), or whose
    /// object GUID `dn` names as `/guid=<32 hex>` (the short form Exchange 2013 and later
    /// accept and impacket's exchanger sends).
    pub fn by_dn(&self, dn: &str) -> Option<&Entry> {
        let guid = dn
            .get(..6)
            .filter(|p| p.eq_ignore_ascii_case("/guid="))
            .and_then(|_| dn.get(6..));
        self.entries.iter().find(|e| {
            e.legacy_dn.eq_ignore_ascii_case(dn)
                || guid.is_some_and(|g| g.eq_ignore_ascii_case(&hex(&e.object_guid)))
        })
    }

    /// Ambiguous name resolution (as [MS-OXNSPI] describes it for NspiResolveNames,
    /// simplified): an exact DN,
    /// SMTP address or account resolves; otherwise a prefix of the display name or the
    /// account, resolved when exactly one entry has it.
    pub fn resolve(&self, name: &str) -> Resolution {
        let name = name.trim();
        if name.is_empty() {
            return Resolution::Unresolved;
        }
        let exact = self.by_dn(name).or_else(|| {
            self.entries.iter().find(|e| {
                let address = name
                    .get(..5)
                    .filter(|p| p.eq_ignore_ascii_case("smtp:"))
                    .and_then(|_| name.get(5..))
                    .unwrap_or(name);
                e.smtp_address.eq_ignore_ascii_case(address) || e.account.eq_ignore_ascii_case(name)
            })
        });
        if let Some(e) = exact {
            return Resolution::Resolved(e.mid);
        }
        let lower = name.to_lowercase();
        let mut hits = self.entries.iter().filter(|e| {
            e.display_name.to_lowercase().starts_with(&lower)
                || e.account.to_lowercase().starts_with(&lower)
        });
        match (hits.next(), hits.next()) {
            (None, _) => Resolution::Unresolved,
            (Some(e), None) => Resolution::Resolved(e.mid),
            (Some(_), Some(_)) => Resolution::Ambiguous,
        }
    }

    /// Every proptag an entry has, in the given string flavour (NspiQueryColumns and
    /// NspiGetProps without pPropTags).
    pub fn columns(unicode: bool) -> Vec<u32> {
        let string = |t: u32| match unicode {
            true => t,
            false => with_type(t, ptype::STRING8),
        };
        vec![
            tag::ENTRY_ID,
            tag::INSTANCE_KEY,
            tag::OBJECT_TYPE,
            string(tag::DISPLAY_NAME),
            string(tag::ADDRESS_TYPE),
            string(tag::EMAIL_ADDRESS),
            tag::DISPLAY_TYPE,
            tag::TEMPLATE_ID,
            string(tag::SMTP_ADDRESS),
            string(tag::ACCOUNT),
            string(tag::TRANSMITTABLE_DISPLAY_NAME),
            match unicode {
                true => tag::PROXY_ADDRESSES,
                false => with_type(tag::PROXY_ADDRESSES, ptype::MV_STRING8),
            },
            tag::OBJECT_GUID,
        ]
    }

    /// The native value of a property of `entry` (its tag with the canonical type), or
    /// `None` when the entry lacks it.
    fn native(&self, entry: &Entry, id: u32, style: ValueStyle) -> Option<PropValue> {
        let text = |s: &str| PropValue::Unicode(s.to_string());
        let entry_id = || match style.ephemeral_ids {
            true => ephemeral_entry_id(&self.server_guid, DT_MAILUSER, entry.mid),
            false => permanent_entry_id(DT_MAILUSER, &entry.legacy_dn),
        };
        Some(match id {
            x if x == tag::ENTRY_ID >> 16 => PropValue::Binary(entry_id()),
            x if x == tag::TEMPLATE_ID >> 16 => {
                PropValue::Binary(permanent_entry_id(DT_MAILUSER, &entry.legacy_dn))
            }
            x if x == tag::INSTANCE_KEY >> 16 => {
                PropValue::Binary(entry.mid.to_le_bytes().to_vec())
            }
            x if x == tag::OBJECT_TYPE >> 16 => PropValue::I32(MAPI_MAILUSER),
            x if x == tag::DISPLAY_TYPE >> 16 => PropValue::I32(DT_MAILUSER as i32),
            x if x == tag::DISPLAY_NAME >> 16 => text(&entry.display_name),
            x if x == tag::TRANSMITTABLE_DISPLAY_NAME >> 16 => text(&entry.display_name),
            x if x == tag::ADDRESS_TYPE >> 16 => text("EX"),
            x if x == tag::EMAIL_ADDRESS >> 16 => text(&entry.legacy_dn),
            x if x == tag::SMTP_ADDRESS >> 16 => text(&entry.smtp_address),
            x if x == tag::ACCOUNT >> 16 => text(&entry.account),
            x if x == tag::PROXY_ADDRESSES >> 16 => {
                PropValue::MvUnicode(vec![format!("SMTP:{}", entry.smtp_address)])
            }
            x if x == tag::OBJECT_GUID >> 16 => PropValue::Binary(entry.object_guid.to_vec()),
            _ => return None,
        })
    }

    /// The value of `tag` for `entry` (None: an unknown MId), converted to the type the
    /// tag asks for; a property the row lacks, or one asked for in a type it cannot
    /// take, is a PtypErrorCode NotFound value.
    pub fn value(&self, entry: Option<&Entry>, tag: u32, style: ValueStyle) -> PropertyValue {
        let native = entry.and_then(|e| self.native(e, tag >> 16, style));
        match native.and_then(|v| convert(v, tag, style)) {
            Some(v) => v,
            None => PropertyValue::error(tag, NOT_FOUND),
        }
    }

    /// A row of the values of `tags` for `entry`.
    pub fn row(&self, entry: Option<&Entry>, tags: &[u32], style: ValueStyle) -> PropertyRow {
        tags.iter().map(|t| self.value(entry, *t, style)).collect()
    }

    /// The hierarchy table ([MS-OXNSPI] 3.1.4.1.3): one row, the Global Address List.
    pub fn hierarchy_table(&self, style: ValueStyle) -> Vec<PropertyRow> {
        let name = "Global Address List";
        let display_name = match style.unicode {
            true => PropertyValue {
                tag: tag::DISPLAY_NAME,
                value: PropValue::Unicode(name.into()),
            },
            false => PropertyValue {
                tag: with_type(tag::DISPLAY_NAME, ptype::STRING8),
                value: PropValue::String8(name.into()),
            },
        };
        let gal_dn = format!("/guid={}", hex(&stable_guid("harness-nspi-gal")));
        let value = |tag, value| PropertyValue { tag, value };
        vec![vec![
            value(
                tag::ENTRY_ID,
                PropValue::Binary(permanent_entry_id(DT_CONTAINER, &gal_dn)),
            ),
            value(tag::CONTAINER_FLAGS, PropValue::I32(GAL_CONTAINER_FLAGS)),
            value(tag::DEPTH, PropValue::I32(0)),
            value(tag::CONTAINER_ID, PropValue::I32(GAL_MID as i32)),
            display_name,
            value(tag::IS_MASTER, PropValue::Bool(0)),
        ]]
    }
}

/// `value` (native type) as `tag` asks: strings as PtypString8 or PtypString (CP_WINUNICODE
/// turns PtypString8 into PtypString, [MS-OXNSPI] 3.1.4.1.7 and 3.1.4.1.8), PtypUnspecified
/// as the native type; any other mismatch is `None`.
fn convert(value: PropValue, tag: u32, style: ValueStyle) -> Option<PropertyValue> {
    let asked = prop_type(tag);
    let unicode_out = style.code_page == CP_WINUNICODE || style.unicode;
    let out = |ty, value| {
        Some(PropertyValue {
            tag: with_type(tag, ty),
            value,
        })
    };
    match value {
        PropValue::Unicode(s) => match asked {
            ptype::UNICODE => out(ptype::UNICODE, PropValue::Unicode(s)),
            ptype::STRING8 | ptype::UNSPECIFIED if unicode_out => {
                out(ptype::UNICODE, PropValue::Unicode(s))
            }
            ptype::STRING8 | ptype::UNSPECIFIED => {
                out(ptype::STRING8, PropValue::String8(string8(&s)))
            }
            _ => None,
        },
        PropValue::MvUnicode(list) => match asked {
            ptype::MV_UNICODE => out(ptype::MV_UNICODE, PropValue::MvUnicode(list)),
            ptype::MV_STRING8 | ptype::UNSPECIFIED if unicode_out => {
                out(ptype::MV_UNICODE, PropValue::MvUnicode(list))
            }
            ptype::MV_STRING8 | ptype::UNSPECIFIED => out(
                ptype::MV_STRING8,
                PropValue::MvString8(list.iter().map(|s| string8(s)).collect()),
            ),
            _ => None,
        },
        other => {
            let native = other.native_type();
            match asked == native || asked == ptype::UNSPECIFIED {
                true => out(native, other),
                false => None,
            }
        }
    }
}
