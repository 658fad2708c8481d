//! FETCH rendering (RFC 3501 6.4.5, 7.4.2): the `* n FETCH (...)` response for one
//! message, its data items, and the octets `BODY[section]<partial>` names.

use imap_codec::imap_types::fetch::{MessageDataItemName, Part, Section};

use super::date;
use super::message::{self, write_astring, write_list};
use super::mime;
use super::view::ViewMsg;
use crate::world::{DerivedText, StoredMessage};

/// Writes `* n FETCH (...)` for one message.
pub(super) fn fetch_one(
    out: &mut Vec<u8>,
    seq: usize,
    msg: &StoredMessage,
    vm: &ViewMsg,
    items: &[MessageDataItemName<'_>],
    uid_cmd: bool,
    newly_seen: bool,
) {
    out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b' ');
        }
        first = false;
    };
    let asks_uid = items.iter().any(|i| matches!(i, MessageDataItemName::Uid));
    let asks_flags = items
        .iter()
        .any(|i| matches!(i, MessageDataItemName::Flags));
    // RFC 3501 6.4.8: UID FETCH responses always carry the UID.
    if uid_cmd && !asks_uid {
        sep(out);
        out.extend_from_slice(format!("UID {}", msg.uid).as_bytes());
    }
    let data: &[u8] = &msg.data;
    let (header, text) = message::split(data);
    for item in items {
        sep(out);
        match item {
            MessageDataItemName::Uid => {
                out.extend_from_slice(format!("UID {}", msg.uid).as_bytes());
            }
            MessageDataItemName::Flags => {
                out.extend_from_slice(format!("FLAGS {}", vm.flag_list()).as_bytes());
            }
            MessageDataItemName::Rfc822Size => {
                out.extend_from_slice(format!("RFC822.SIZE {}", data.len()).as_bytes());
            }
            MessageDataItemName::InternalDate => {
                out.extend_from_slice(b"INTERNALDATE ");
                out.extend_from_slice(date::internal_date(msg.internal_date).as_bytes());
            }
            MessageDataItemName::Envelope => {
                out.extend_from_slice(b"ENVELOPE ");
                let envelope = msg.derived.get(DerivedText::Envelope, |text| {
                    message::write_envelope(text, header)
                });
                out.extend_from_slice(envelope);
            }
            MessageDataItemName::Body => {
                out.extend_from_slice(b"BODY ");
                let body = msg.derived.get(DerivedText::Body, |text| {
                    mime::write_structure(text, data, &mime::parse(data), false)
                });
                out.extend_from_slice(body);
            }
            MessageDataItemName::BodyStructure => {
                out.extend_from_slice(b"BODYSTRUCTURE ");
                let structure = msg.derived.get(DerivedText::BodyStructure, |text| {
                    mime::write_structure(text, data, &mime::parse(data), true)
                });
                out.extend_from_slice(structure);
            }
            MessageDataItemName::Rfc822 => literal_item(out, "RFC822", data),
            MessageDataItemName::Rfc822Header => literal_item(out, "RFC822.HEADER", header),
            MessageDataItemName::Rfc822Text => literal_item(out, "RFC822.TEXT", text),
            MessageDataItemName::BodyExt {
                section, partial, ..
            } => {
                let mut name = b"BODY[".to_vec();
                if let Some(s) = section {
                    write_section(&mut name, s);
                }
                name.push(b']');
                // RFC 3501 7.4.2: a section that does not exist is NIL.
                let Some(content) = section_data(section.as_ref(), header, text, data) else {
                    out.extend_from_slice(&name);
                    out.extend_from_slice(b" NIL");
                    continue;
                };
                let content: &[u8] = match partial {
                    // RFC 3501 6.4.5: <origin.octets>; the reply names only the origin.
                    Some((origin, len)) => {
                        name.extend_from_slice(format!("<{origin}>").as_bytes());
                        let start = (*origin as usize).min(content.len());
                        let end = start.saturating_add(len.get() as usize).min(content.len());
                        content.get(start..end).unwrap_or_default()
                    }
                    None => &content,
                };
                out.extend_from_slice(&name);
                out.extend_from_slice(format!(" {{{}}}\r\n", content.len()).as_bytes());
                out.extend_from_slice(content);
            }
            MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. } => {
                out.extend_from_slice(b"NIL");
            }
        }
    }
    // RFC 3501 6.4.5: setting \Seen implies an untagged FETCH of the new flags.
    if newly_seen && !asks_flags {
        sep(out);
        out.extend_from_slice(format!("FLAGS {}", vm.flag_list()).as_bytes());
    }
    out.extend_from_slice(b")\r\n");
}

fn literal_item(out: &mut Vec<u8>, name: &str, content: &[u8]) {
    out.extend_from_slice(format!("{name} {{{}}}\r\n", content.len()).as_bytes());
    out.extend_from_slice(content);
}

/// The octets a section names, or `None` when the message has no such part (RFC 3501
/// 6.4.5): part numbers walk the MIME tree; HEADER, TEXT and HEADER.FIELDS below the top
/// level need a message/rfc822 part; MIME is a part's own header.
fn section_data(
    section: Option<&Section<'_>>,
    header: &[u8],
    text: &[u8],
    data: &[u8],
) -> Option<Vec<u8>> {
    let names = |list: &[imap_codec::imap_types::core::AString<'_>]| -> Vec<Vec<u8>> {
        list.iter().map(|a| a.as_ref().to_vec()).collect()
    };
    let path = |p: &Part| -> Vec<u32> { p.0.as_ref().iter().map(|n| n.get()).collect() };
    let bytes = |r: std::ops::Range<usize>| data.get(r).unwrap_or_default().to_vec();
    let Some(section) = section else {
        return Some(data.to_vec());
    };
    // Top-level sections need no MIME parse.
    match section {
        Section::Header(None) => return Some(header.to_vec()),
        Section::HeaderFields(None, list) => {
            return Some(message::header_fields(header, &names(list.as_ref()), false))
        }
        Section::HeaderFieldsNot(None, list) => {
            return Some(message::header_fields(header, &names(list.as_ref()), true))
        }
        Section::Text(None) => return Some(text.to_vec()),
        _ => {}
    }
    let root = mime::parse(data);
    // The message inside a message/rfc822 part named by `p`.
    let inner = |p: &Part| match mime::find(&root, &path(p)).map(|part| &part.kind) {
        Some(mime::Kind::Message(m)) => Some((**m).clone()),
        _ => None,
    };
    match section {
        Section::Part(p) => mime::find(&root, &path(p)).map(|part| bytes(part.body.clone())),
        Section::Mime(p) => mime::find(&root, &path(p)).map(|part| bytes(part.header.clone())),
        Section::Header(Some(p)) => inner(p).map(|m| bytes(m.header)),
        Section::Text(Some(p)) => inner(p).map(|m| bytes(m.body)),
        Section::HeaderFields(Some(p), list) => {
            inner(p).map(|m| message::header_fields(&bytes(m.header), &names(list.as_ref()), false))
        }
        Section::HeaderFieldsNot(Some(p), list) => {
            inner(p).map(|m| message::header_fields(&bytes(m.header), &names(list.as_ref()), true))
        }
        _ => None,
    }
}

fn write_part(out: &mut Vec<u8>, p: &Part) {
    let nums: Vec<String> = p.0.as_ref().iter().map(|n| n.get().to_string()).collect();
    out.extend_from_slice(nums.join(".").as_bytes());
}

/// The section spec as the response names it (RFC 3501 7.4.2 `BODY[<section>]`).
fn write_section(out: &mut Vec<u8>, s: &Section<'_>) {
    let prefix = |out: &mut Vec<u8>, p: &Option<Part>| {
        if let Some(p) = p {
            write_part(out, p);
            out.push(b'.');
        }
    };
    let field_list = |out: &mut Vec<u8>, list: &[imap_codec::imap_types::core::AString<'_>]| {
        out.push(b' ');
        write_list(out, list, |out, a| write_astring(out, a.as_ref()));
    };
    match s {
        Section::Part(p) => write_part(out, p),
        Section::Header(p) => {
            prefix(out, p);
            out.extend_from_slice(b"HEADER");
        }
        Section::HeaderFields(p, list) => {
            prefix(out, p);
            out.extend_from_slice(b"HEADER.FIELDS");
            field_list(out, list.as_ref());
        }
        Section::HeaderFieldsNot(p, list) => {
            prefix(out, p);
            out.extend_from_slice(b"HEADER.FIELDS.NOT");
            field_list(out, list.as_ref());
        }
        Section::Text(p) => {
            prefix(out, p);
            out.extend_from_slice(b"TEXT");
        }
        Section::Mime(p) => {
            write_part(out, p);
            out.extend_from_slice(b".MIME");
        }
    }
}
