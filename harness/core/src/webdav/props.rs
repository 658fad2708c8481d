//! The properties of the store's resources (PROPFIND and SEARCH rows) and the 207's
//! `DAV:response` elements that carry them (RFC 4918 §14.16, §14.22).

use crate::dcerpc::emsmdb::message_row;
use crate::imap::date::{civil_from_days, month_name};
use crate::world::{Account, Mailbox, StoredMessage};

use super::xml::{escape, DAV, HTTPMAIL};
use super::{percent_encode, Resource, Target};

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Wanted {
    /// Every property a resource has (`DAV:allprop`, or an empty PROPFIND body).
    All,
    /// The names of every property a resource has (`DAV:propname`).
    Names,
    /// These, by (namespace, local name).
    Some(Vec<(String, String)>),
}

/// One resource as a 207 describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    /// Absolute, percent-encoded.
    pub href: String,
    pub display: String,
    pub folder: bool,
    pub class: &'static str,
    pub size: Option<usize>,
    pub modified: Option<i64>,
    pub subject: Option<String>,
    pub from: Option<String>,
    pub received: Option<i64>,
    pub read: Option<bool>,
    pub unread: Option<usize>,
}

impl Row {
    /// A resource with only the properties every one has.
    fn new(href: String, display: String, folder: bool, class: &'static str) -> Row {
        Row {
            href,
            display,
            folder,
            class,
            size: None,
            modified: None,
            subject: None,
            from: None,
            received: None,
            read: None,
            unread: None,
        }
    }
}

/// The properties this store knows (PROTOCOLS.md §13.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Href,
    DisplayName,
    IsFolder,
    IsHidden,
    ContentClass,
    GetContentLength,
    ResourceType,
    GetLastModified,
    Subject,
    From,
    DateReceived,
    Read,
    UnreadCount,
}

const KNOWN: [(Known, &str, &str); 13] = [
    (Known::Href, DAV, "href"),
    (Known::DisplayName, DAV, "displayname"),
    (Known::IsFolder, DAV, "isfolder"),
    (Known::IsHidden, DAV, "ishidden"),
    (Known::ContentClass, DAV, "contentclass"),
    (Known::GetContentLength, DAV, "getcontentlength"),
    (Known::ResourceType, DAV, "resourcetype"),
    (Known::GetLastModified, DAV, "getlastmodified"),
    (Known::Subject, HTTPMAIL, "subject"),
    (Known::From, HTTPMAIL, "from"),
    (Known::DateReceived, HTTPMAIL, "datereceived"),
    (Known::Read, HTTPMAIL, "read"),
    (Known::UnreadCount, HTTPMAIL, "unreadcount"),
];

fn flag(b: bool) -> String {
    if b { "1" } else { "0" }.to_string()
}

/// The property's content in `row` (escaped XML), if the resource has it.
fn value(known: Known, row: &Row) -> Option<String> {
    match known {
        Known::Href => Some(escape(&row.href)),
        Known::DisplayName => Some(escape(&row.display)),
        Known::IsFolder => Some(flag(row.folder)),
        Known::IsHidden => Some(flag(false)),
        Known::ContentClass => Some(row.class.to_string()),
        Known::GetContentLength => row.size.map(|n| n.to_string()),
        Known::ResourceType => Some(if row.folder { "<a:collection/>" } else { "" }.into()),
        Known::GetLastModified => row.modified.map(http_date),
        Known::Subject => row.subject.as_deref().map(escape),
        Known::From => row.from.as_deref().map(escape),
        Known::DateReceived => row.received.map(iso_date),
        Known::Read => row.read.map(flag),
        Known::UnreadCount => row.unread.map(|n| n.to_string()),
    }
}

/// Writing `DAV:response` elements.
pub(super) struct Props;

impl Props {
    /// Appends `row`'s `DAV:response` to `out`.
    pub fn write_response(out: &mut String, row: &Row, wanted: &Wanted, brief: bool) {
        let mut found = String::new();
        let mut missing = String::new();
        let element = |out: &mut String, ns: &str, name: &str, content: &str| {
            let prefix = if ns == DAV { "a" } else { "d" };
            if content.is_empty() {
                out.push_str(&format!("<{prefix}:{name}/>"));
            } else {
                out.push_str(&format!("<{prefix}:{name}>{content}</{prefix}:{name}>"));
            }
        };
        match wanted {
            Wanted::All | Wanted::Names => {
                for (known, ns, name) in KNOWN {
                    if let Some(v) = value(known, row) {
                        let content = if *wanted == Wanted::All {
                            v.as_str()
                        } else {
                            ""
                        };
                        element(&mut found, ns, name, content);
                    }
                }
            }
            Wanted::Some(list) => {
                for (ns, name) in list {
                    let known = KNOWN.iter().find(|(_, n, l)| n == ns && l == name);
                    match known.and_then(|(k, _, _)| value(*k, row)) {
                        Some(v) => element(&mut found, ns, name, &v),
                        None if known.is_some() => element(&mut missing, ns, name, ""),
                        // Any other namespace is declared on the element itself.
                        None => missing.push_str(&format!("<{name} xmlns=\"{}\"/>", escape(ns))),
                    }
                }
            }
        }
        out.push_str("<a:response><a:href>");
        out.push_str(&escape(&row.href));
        out.push_str("</a:href>");
        // A response holds at least one propstat (RFC 4918 §14.24).
        if !found.is_empty() || missing.is_empty() || brief {
            propstat(out, "HTTP/1.1 200 OK", &found);
        }
        if !missing.is_empty() && !brief {
            // Exchange's reason phrase.
            propstat(out, "HTTP/1.1 404 Resource Not Found", &missing);
        }
        out.push_str("</a:response>");
    }
}

fn propstat(out: &mut String, status: &str, props: &str) {
    out.push_str("<a:propstat><a:status>");
    out.push_str(status);
    out.push_str("</a:status><a:prop>");
    out.push_str(props);
    out.push_str("</a:prop></a:propstat>");
}

/// The href of the resource `segments` name (after `/exchange/`).
fn href(origin: &str, segments: &[String], collection: bool) -> String {
    let mut out = format!("{origin}/exchange");
    for s in segments {
        out.push('/');
        out.push_str(&percent_encode(s));
    }
    if collection {
        out.push('/');
    }
    out
}

/// A folder's name as Exchange shows it.
fn display_name(key: &str) -> &str {
    if key == "INBOX" {
        "Inbox"
    } else {
        key.rsplit('/').next().unwrap_or(key)
    }
}

fn seen(message: &StoredMessage) -> bool {
    message
        .flags
        .iter()
        .any(|f| f.eq_ignore_ascii_case("\\Seen"))
}

fn folder_row(href: String, key: &str, mailbox: &Mailbox) -> Row {
    Row {
        modified: mailbox.messages.iter().map(|m| m.internal_date).max(),
        unread: Some(mailbox.messages.iter().filter(|m| !seen(m)).count()),
        ..Row::new(
            href,
            display_name(key).to_string(),
            true,
            "urn:content-classes:mailfolder",
        )
    }
}

const MESSAGE_CLASS: &str = "urn:content-classes:message";

fn message_name(uid: u32) -> String {
    format!("{uid}.EML")
}

fn message_row_of(href: String, message: &StoredMessage) -> Row {
    // The same reading of Subject and From as an EMSMDB contents table's.
    let fields = message_row(message);
    Row {
        size: Some(message.size()),
        modified: Some(message.internal_date),
        subject: Some(fields.subject),
        from: Some(fields.from),
        received: Some(message.internal_date),
        read: Some(seen(message)),
        ..Row::new(href, message_name(message.uid), false, MESSAGE_CLASS)
    }
}

/// The row of the resource `segments` name.
pub(super) fn row(
    account: &Account,
    segments: &[String],
    resource: &Resource,
    origin: &str,
) -> Row {
    match resource {
        Resource::Root => Row::new(
            href(origin, segments, true),
            segments.first().cloned().unwrap_or_default(),
            true,
            "urn:content-classes:folder",
        ),
        Resource::Folder(key) => match account.mailbox(key) {
            Some(m) => folder_row(href(origin, segments, true), key, m),
            None => folder_row(href(origin, segments, true), key, &Mailbox::new(key, 0)),
        },
        Resource::Message { folder, uid } => {
            let message = account
                .mailbox(folder)
                .and_then(|m| m.messages.iter().find(|m| m.uid == *uid));
            match message {
                Some(m) => message_row_of(href(origin, segments, false), m),
                None => Row::new(
                    href(origin, segments, false),
                    message_name(*uid),
                    false,
                    MESSAGE_CLASS,
                ),
            }
        }
    }
}

/// The rows of what `target` holds: a root's top folders; a folder's subfolders, then
/// its messages in UID order.
pub(super) fn children(account: &Account, target: &Target, origin: &str) -> Vec<Row> {
    let with = |name: String| {
        let mut segments = target.segments.clone();
        segments.push(name);
        segments
    };
    let prefix = match &target.resource {
        Resource::Root => String::new(),
        Resource::Folder(key) => format!("{key}/"),
        Resource::Message { .. } => return Vec::new(),
    };
    let mut rows: Vec<Row> = account
        .mailboxes
        .iter()
        .filter_map(|(key, m)| {
            let rest = key.strip_prefix(&prefix)?;
            (!rest.is_empty() && !rest.contains('/'))
                .then(|| folder_row(href(origin, &with(display_name(key).into()), true), key, m))
        })
        .collect();
    if let Resource::Folder(key) = &target.resource {
        if let Some(m) = account.mailbox(key) {
            rows.extend(m.messages.iter().map(|message| {
                message_row_of(
                    href(origin, &with(message_name(message.uid)), false),
                    message,
                )
            }));
        }
    }
    rows
}

/// RFC 1123 date in GMT (RFC 4918 §15.7 `getlastmodified`).
fn http_date(epoch: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let epoch = epoch.clamp(0, 253_402_300_799);
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let weekday = DAYS
        .get(usize::try_from(days.rem_euclid(7)).unwrap_or(0))
        .copied()
        .unwrap_or("Thu");
    let month = month_name(m);
    format!(
        "{weekday}, {d:02} {month} {y:04} {:02}:{:02}:{:02} GMT",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Exchange's `dateTime.tz` form: `2024-01-01T00:00:01.000Z`.
fn iso_date(epoch: i64) -> String {
    let epoch = epoch.clamp(0, 253_402_300_799);
    let (y, m, d) = civil_from_days(epoch.div_euclid(86_400));
    let secs = epoch.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_both_forms() {
        assert_eq!(http_date(1_704_067_201), "Mon, 01 Jan 2024 00:00:01 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(iso_date(1_704_067_201), "2024-01-01T00:00:01.000Z");
        // Out of range dates are clamped, not overflowed.
        assert_eq!(iso_date(i64::MIN), "1970-01-01T00:00:00.000Z");
        assert_eq!(http_date(i64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }
}
