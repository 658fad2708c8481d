//! The MIME structure of a stored message, for BODYSTRUCTURE and `BODY[section]`
//! (RFC 3501 6.4.5, 7.4.2). mail-parser finds the parts; this module keeps only byte
//! ranges into the message and the header values the IMAP responses need, and re-parses
//! message/rfc822 parts in place so every range is relative to the stored message.

use std::ops::Range;

use mail_parser::{MessageParser, MessagePart, MimeHeaders, PartType};

use super::message::{self, write_list, write_nstring, write_string};

/// Nesting of message/rfc822 parts followed before the rest is treated as opaque.
const MAX_DEPTH: usize = 16;
/// Parts described per message; more are left out of the structure.
const MAX_PARTS: usize = 2_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The part's MIME header (for the whole message: the message header), blank line
    /// included.
    pub header: Range<usize>,
    /// The part's body, still in its transfer encoding.
    pub body: Range<usize>,
    pub ctype: String,
    pub subtype: String,
    pub params: Vec<(String, String)>,
    pub id: Option<String>,
    pub description: Option<String>,
    pub encoding: String,
    pub disposition: Option<(String, Vec<(String, String)>)>,
    pub language: Vec<String>,
    pub location: Option<String>,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Single,
    Multipart(Vec<Part>),
    /// message/rfc822: the nested message (its header is `header`, its body `body`).
    Message(Box<Part>),
}

/// The structure of `data`, a whole RFC 5322 message.
pub fn parse(data: &[u8]) -> Part {
    let mut budget = MAX_PARTS;
    parse_at(data, 0..data.len(), 0, &mut budget)
}

fn parse_at(data: &[u8], range: Range<usize>, depth: usize, budget: &mut usize) -> Part {
    let bytes = data.get(range.clone()).unwrap_or_default();
    let parsed = MessageParser::default().parse(bytes);
    match parsed {
        Some(m) if !m.parts.is_empty() => {
            let root = m.parts.first();
            match root {
                Some(root) => part_of(data, range.start, &m.parts, root, depth, budget),
                None => opaque(range),
            }
        }
        _ => opaque(range),
    }
}

/// Something mail-parser could not make sense of: one text/plain part of the whole.
fn opaque(range: Range<usize>) -> Part {
    Part {
        header: range.start..range.start,
        body: range,
        ctype: "TEXT".into(),
        subtype: "PLAIN".into(),
        params: vec![("CHARSET".into(), "US-ASCII".into())],
        id: None,
        description: None,
        encoding: "7BIT".into(),
        disposition: None,
        language: Vec::new(),
        location: None,
        kind: Kind::Single,
    }
}

fn offset(base: usize, v: u32) -> usize {
    base.saturating_add(v as usize)
}

fn part_of(
    data: &[u8],
    base: usize,
    parts: &[MessagePart<'_>],
    p: &MessagePart<'_>,
    depth: usize,
    budget: &mut usize,
) -> Part {
    *budget = budget.saturating_sub(1);
    let end = offset(base, p.offset_end).min(data.len());
    let body_start = offset(base, p.offset_body).min(end);
    let header_start = offset(base, p.offset_header).min(body_start);
    let (mut ctype, mut subtype, mut params) = match p.content_type() {
        Some(ct) => (
            ct.ctype().to_ascii_uppercase(),
            ct.subtype().unwrap_or("PLAIN").to_ascii_uppercase(),
            ct.attributes()
                .unwrap_or_default()
                .iter()
                .map(|a| (a.name.to_ascii_uppercase(), a.value.to_string()))
                .collect::<Vec<_>>(),
        ),
        None => ("TEXT".into(), "PLAIN".into(), Vec::new()),
    };
    let kind = match &p.body {
        PartType::Multipart(ids) => {
            let mut children = Vec::new();
            for c in ids.iter().filter_map(|&id| parts.get(id as usize)) {
                if *budget == 0 {
                    break;
                }
                children.push(part_of(data, base, parts, c, depth, budget));
            }
            Kind::Multipart(children)
        }
        PartType::Message(_) if depth < MAX_DEPTH && *budget > 0 => {
            let inner = parse_at(data, body_start..end, depth + 1, budget);
            Kind::Message(Box::new(inner))
        }
        _ => Kind::Single,
    };
    if matches!(kind, Kind::Multipart(_)) && ctype != "MULTIPART" {
        ctype = "MULTIPART".into();
        subtype = "MIXED".into();
    }
    if ctype == "TEXT" && !params.iter().any(|(k, _)| k == "CHARSET") {
        params.push(("CHARSET".into(), "US-ASCII".into()));
    }
    Part {
        header: header_start..body_start,
        body: body_start..end,
        ctype,
        subtype,
        params,
        id: p.content_id().map(|s| format!("<{s}>")),
        description: p.content_description().map(str::to_string),
        encoding: p
            .content_transfer_encoding()
            .map(str::to_ascii_uppercase)
            .unwrap_or_else(|| "7BIT".into()),
        disposition: p.content_disposition().map(|d| {
            (
                d.ctype().to_ascii_uppercase(),
                d.attributes()
                    .unwrap_or_default()
                    .iter()
                    .map(|a| (a.name.to_ascii_uppercase(), a.value.to_string()))
                    .collect(),
            )
        }),
        language: p
            .content_language()
            .as_text_list()
            .map(|l| l.iter().map(|s| s.to_string()).collect())
            .or_else(|| p.content_language().as_text().map(|s| vec![s.to_string()]))
            .unwrap_or_default(),
        location: p.content_location().map(str::to_string),
        kind,
    }
}

/// The part a section number path names (RFC 3501 6.4.5): in a message that is not
/// multipart, part 1 is its body; a message/rfc822 part's numbers go on into the message
/// it holds.
pub fn find<'a>(root: &'a Part, path: &[u32]) -> Option<&'a Part> {
    let mut options: Vec<&Part> = message_parts(root);
    let mut found = None;
    for (i, &n) in path.iter().enumerate() {
        let idx = usize::try_from(n).ok()?.checked_sub(1)?;
        let p = *options.get(idx)?;
        found = Some(p);
        if i + 1 < path.len() {
            options = match &p.kind {
                Kind::Multipart(children) => children.iter().collect(),
                Kind::Message(inner) => message_parts(inner),
                Kind::Single => return None,
            };
        }
    }
    found
}

fn message_parts(message: &Part) -> Vec<&Part> {
    match &message.kind {
        Kind::Multipart(children) => children.iter().collect(),
        _ => vec![message],
    }
}

fn write_params(out: &mut Vec<u8>, params: &[(String, String)]) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    write_list(out, params, |out, (k, v)| {
        write_string(out, k.as_bytes());
        out.push(b' ');
        write_string(out, v.as_bytes());
    });
}

/// RFC 3501 7.4.2 `body`: BODY without extension data, BODYSTRUCTURE with it.
pub fn write_structure(out: &mut Vec<u8>, data: &[u8], part: &Part, extended: bool) {
    out.push(b'(');
    match &part.kind {
        Kind::Multipart(children) if !children.is_empty() => {
            for child in children {
                write_structure(out, data, child, extended);
            }
            out.push(b' ');
            write_string(out, part.subtype.as_bytes());
            if extended {
                out.push(b' ');
                write_params(out, &part.params);
                write_ext_tail(out, part);
            }
        }
        _ => {
            let body = data.get(part.body.clone()).unwrap_or_default();
            let (ctype, subtype) = match &part.kind {
                // An empty multipart is not valid IMAP; describe it as an opaque body.
                Kind::Multipart(_) => ("APPLICATION", "OCTET-STREAM"),
                _ => (part.ctype.as_str(), part.subtype.as_str()),
            };
            write_string(out, ctype.as_bytes());
            out.push(b' ');
            write_string(out, subtype.as_bytes());
            out.push(b' ');
            write_params(out, &part.params);
            out.push(b' ');
            write_nstring(out, part.id.as_deref().map(str::as_bytes));
            out.push(b' ');
            write_nstring(out, part.description.as_deref().map(str::as_bytes));
            out.push(b' ');
            write_string(out, part.encoding.as_bytes());
            out.extend_from_slice(format!(" {}", body.len()).as_bytes());
            match &part.kind {
                Kind::Message(inner) => {
                    let header = data.get(inner.header.clone()).unwrap_or_default();
                    out.push(b' ');
                    message::write_envelope(out, header);
                    out.push(b' ');
                    write_structure(out, data, inner, extended);
                    out.extend_from_slice(format!(" {}", message::count_lines(body)).as_bytes());
                }
                _ if ctype == "TEXT" => {
                    out.extend_from_slice(format!(" {}", message::count_lines(body)).as_bytes());
                }
                _ => {}
            }
            if extended {
                // body-ext-1part: MD5 first.
                out.extend_from_slice(b" NIL");
                write_ext_tail(out, part);
            }
        }
    }
    out.push(b')');
}

/// Disposition, language and location (RFC 3501 `body-ext-*` after MD5 / parameters).
fn write_ext_tail(out: &mut Vec<u8>, part: &Part) {
    out.push(b' ');
    match &part.disposition {
        Some((kind, params)) => {
            out.push(b'(');
            write_string(out, kind.as_bytes());
            out.push(b' ');
            write_params(out, params);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match part.language.as_slice() {
        [] => out.extend_from_slice(b"NIL"),
        [one] => write_string(out, one.as_bytes()),
        many => write_list(out, many, |out, l| write_string(out, l.as_bytes())),
    }
    out.push(b' ');
    write_nstring(out, part.location.as_deref().map(str::as_bytes));
}

/// The message's text as a reader sees it, for SEARCH BODY / TEXT (RFC 3501 6.4.4 asks
/// for substring matching; a match must not depend on the transfer encoding): text parts
/// decoded from base64 / quoted-printable and their charsets, and, with `headers`, the
/// header values decoded from RFC 2047 encoded words. `None` when nothing in the message
/// is encoded, so the raw bytes already say everything.
pub fn decoded_text(data: &[u8], headers: bool) -> Option<String> {
    let encoded = contains_ascii_ci(data, b"content-transfer-encoding")
        || (headers && data.windows(2).any(|w| w == b"=?"));
    if !encoded {
        return None;
    }
    let message = MessageParser::default().parse(data)?;
    let mut text = String::new();
    if headers {
        for header in message.headers() {
            if let Some(value) = header.value().as_text() {
                text.push_str(value);
                text.push('\n');
            }
        }
    }
    for i in 0..message.text_body_count().min(MAX_PARTS) {
        if let Some(body) = message.body_text(i) {
            text.push_str(&body);
            text.push('\n');
        }
    }
    Some(text)
}

fn contains_ascii_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}
