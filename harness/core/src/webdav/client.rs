//! The client side of the store, for a WebDAV provider: [`propfind_request`] is the
//! PROPFIND to send for a folder, [`read_multistatus`] reads the 207 that answers it into
//! [`DavEntry`]s. Both are sans-IO; the caller does HTTP and its authentication.
//!
//! ```
//! use harness_core::webdav::client::{propfind_request, read_multistatus, Depth};
//! let call = propfind_request("/exchange/alice/Inbox/", Depth::OneNoRoot);
//! assert_eq!((call.method, call.path.as_str()), ("PROPFIND", "/exchange/alice/Inbox/"));
//! let body = br#"<a:multistatus xmlns:a="DAV:"><a:response><a:href>http://h/exchange/alice/Inbox/1.EML</a:href>
//!   <a:propstat><a:status>HTTP/1.1 200 OK</a:status><a:prop><a:isfolder>0</a:isfolder></a:prop></a:propstat>
//!   </a:response></a:multistatus>"#;
//! let entries = read_multistatus(body).unwrap();
//! assert_eq!(entries[0].href, "http://h/exchange/alice/Inbox/1.EML");
//! ```

use super::xml::{self, Element, XmlError, XmlLimits, DAV, HTTPMAIL};

/// The largest 207 body read (a folder of some ten thousand messages).
pub const MAX_MULTISTATUS: usize = 16 * 1024 * 1024;
const MULTISTATUS_XML: XmlLimits = XmlLimits {
    max_depth: 16,
    max_elements: 1_000_000,
};

/// How deep a PROPFIND looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// The resource alone.
    Zero,
    /// The resource and what it holds.
    One,
    /// What it holds, without the resource (Exchange's `1,noroot`).
    OneNoRoot,
}

/// A request to send: method, path, headers (besides Host, Authorization and
/// Content-Length), body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DavCall {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// The PROPFIND for `path` that asks for what a [`DavEntry`] holds.
pub fn propfind_request(path: &str, depth: Depth) -> DavCall {
    let depth = match depth {
        Depth::Zero => "0",
        Depth::One => "1",
        Depth::OneNoRoot => "1,noroot",
    };
    let body = "<?xml version=\"1.0\"?>\r\n\
        <D:propfind xmlns:D=\"DAV:\" xmlns:m=\"urn:schemas:httpmail:\"><D:prop>\
        <D:displayname/><D:isfolder/><D:resourcetype/><D:getcontentlength/>\
        <m:subject/><m:from/></D:prop></D:propfind>";
    DavCall {
        method: "PROPFIND",
        path: path.to_string(),
        headers: vec![
            ("Depth", depth.into()),
            ("Brief", "t".into()),
            ("Content-Type", "text/xml; charset=\"utf-8\"".into()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

/// One resource of a 207: what its 200 propstats carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DavEntry {
    pub href: String,
    pub displayname: Option<String>,
    /// `DAV:isfolder` is 1 or `DAV:resourcetype` holds `DAV:collection`.
    pub is_folder: bool,
    pub subject: Option<String>,
    pub from: Option<String>,
    /// `DAV:getcontentlength`.
    pub size: Option<u64>,
}

/// Why a 207 body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DavError {
    #[error("the body has {len} octets; at most {max} are read")]
    TooLarge { len: usize, max: usize },
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("the body is a {{{ns}}}{name}, not a DAV:multistatus")]
    NotMultistatus { ns: String, name: String },
    #[error("response {0} has no DAV:href")]
    NoHref(usize),
    #[error("getcontentlength {0:?} is not a number")]
    BadLength(String),
}

/// Reads a 207 Multi-Status body (RFC 4918 §13) into its entries, in order.
pub fn read_multistatus(body: &[u8]) -> Result<Vec<DavEntry>, DavError> {
    if body.len() > MAX_MULTISTATUS {
        return Err(DavError::TooLarge {
            len: body.len(),
            max: MAX_MULTISTATUS,
        });
    }
    let root = xml::parse(body, MULTISTATUS_XML)?;
    if !root.is(DAV, "multistatus") {
        return Err(DavError::NotMultistatus {
            ns: root.ns,
            name: root.name,
        });
    }
    root.children
        .iter()
        .filter(|r| r.is(DAV, "response"))
        .enumerate()
        .map(|(i, r)| entry(i, r))
        .collect()
}

fn entry(index: usize, response: &Element) -> Result<DavEntry, DavError> {
    let href = response
        .child(DAV, "href")
        .map(|h| h.text.trim().to_string())
        .ok_or(DavError::NoHref(index))?;
    let mut entry = DavEntry {
        href,
        ..DavEntry::default()
    };
    let found = response
        .children
        .iter()
        .filter(|p| p.is(DAV, "propstat"))
        .filter(|p| p.child(DAV, "status").is_some_and(|s| status_ok(&s.text)));
    for prop in found.flat_map(|p| p.children.iter().filter(|c| c.is(DAV, "prop"))) {
        for value in &prop.children {
            let text = || Some(value.text.clone());
            match (value.ns.as_str(), value.name.as_str()) {
                (DAV, "displayname") => entry.displayname = text(),
                (DAV, "isfolder") => entry.is_folder |= matches!(value.text.trim(), "1" | "true"),
                (DAV, "resourcetype") => {
                    entry.is_folder |= value.child(DAV, "collection").is_some()
                }
                // Empty in a propname reply: a name, no value.
                (DAV, "getcontentlength") => match value.text.trim() {
                    "" => {}
                    n => entry.size = Some(n.parse().map_err(|_| DavError::BadLength(short(n)))?),
                },
                (HTTPMAIL, "subject") => entry.subject = text(),
                (HTTPMAIL, "from") => entry.from = text(),
                _ => {}
            }
        }
    }
    Ok(entry)
}

/// Whether a propstat's `HTTP/1.1 200 OK` says 2xx.
fn status_ok(status: &str) -> bool {
    status
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.len() == 3 && code.starts_with('2'))
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}
