//! A minimal Exchange 2000/2003 WebDAV store over the world's mail, sans-IO (PROTOCOLS.md
//! §13): [`handle`] answers one authenticated request; HTTP, its authentication and the
//! body's bound on the wire are the adapter's (`harness serve --webdav`). [`client`] is the
//! other side, for a WebDAV provider: the PROPFIND to send and the 207 it reads.
//!
//! URL space (EXSDK "The HTTP: URL Scheme"):
//! - `/exchange/<user>/`: the mailbox root, a collection holding the folders;
//! - `/exchange/<user>/<Folder>/`: an IMAP mailbox by display name (`INBOX` is `Inbox`;
//!   `a/b` is the folder `b` inside `a`), percent-decoded;
//! - `/exchange/<user>/<Folder>/<uid>.EML`: a message, named by its UID so the name is
//!   stable; GET gives its RFC 5322 octets.
//!
//! Methods: OPTIONS (`DAV: 1`, as cadaver 0.27+ requires), PROPFIND (Depth `0`, `1`,
//! `1,noroot`; infinity, also implied by no Depth, is refused on a collection with 403 as
//! RFC 4918 §9.1 allows), SEARCH (the SQL subset of [`search`]), GET/HEAD of a message.
//! Another user's mailbox is 403, an unknown path 404, a body over [`MAX_BODY`] 413,
//! malformed XML or headers 400, a well-formed request this store does not do 422
//! (RFC 4918 §11.2), another method 405; each with a line of text saying why.

pub mod client;
mod props;
pub mod search;
pub mod xml;

#[cfg(test)]
mod tests;

use crate::world::{Account, World};
use props::{Props, Row, Wanted};
use xml::{Element, XmlLimits, DAV};

/// The largest request body read: far above a PROPFIND or SEARCH a client sends.
pub const MAX_BODY: usize = 64 * 1024;
/// Request bodies nest a few levels (propfind/prop/name); this is generous.
const REQUEST_XML: XmlLimits = XmlLimits {
    max_depth: 16,
    max_elements: 1024,
};
/// Distinct properties one request may ask for (each is written once per resource).
pub const MAX_PROPS: usize = 64;

/// What OPTIONS lists and a 405 names.
const ALLOW: &str = "OPTIONS, GET, HEAD, PROPFIND, SEARCH";

/// One request as the store sees it.
#[derive(Debug, Clone, Copy)]
pub struct DavRequest<'a> {
    pub method: &'a str,
    /// The request-target's path as sent (percent-encoded, no query).
    pub path: &'a str,
    pub depth: Option<&'a str>,
    pub brief: Option<&'a str>,
    /// The Host header: hrefs are absolute, as Exchange writes them.
    pub host: Option<&'a str>,
    /// Whether the request came over TLS (`https` hrefs).
    pub tls: bool,
    pub body: &'a [u8],
}

/// The answer: status, headers besides Content-Length, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DavResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl DavResponse {
    /// A `text/plain` answer saying why.
    fn text(status: u16, why: impl Into<String>) -> DavResponse {
        let mut body = why.into();
        body.push_str("\r\n");
        DavResponse {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            body: body.into_bytes(),
        }
    }

    fn too_large(len: usize) -> DavResponse {
        DavResponse::text(
            413,
            format!("the request body has {len} octets; at most {MAX_BODY} are read"),
        )
    }

    /// The 413 an adapter sends when a body is over [`MAX_BODY`] before it has all of it.
    pub fn body_too_large() -> DavResponse {
        DavResponse::text(
            413,
            format!("the request body is over {MAX_BODY} octets, the most this store reads"),
        )
    }
}

/// Answers one request of `user` (already authenticated).
pub fn handle(req: &DavRequest<'_>, user: &str, world: &World) -> DavResponse {
    match req.method {
        "OPTIONS" => DavResponse {
            status: 200,
            headers: vec![
                ("DAV", "1".into()),
                ("MS-Author-Via", "DAV".into()),
                ("Allow", ALLOW.into()),
            ],
            body: Vec::new(),
        },
        "PROPFIND" => propfind(req, user, world).unwrap_or_else(|e| e),
        "SEARCH" => search_request(req, user, world).unwrap_or_else(|e| e),
        "GET" | "HEAD" => get(req, user, world).unwrap_or_else(|e| e),
        other => {
            let mut r = DavResponse::text(
                405,
                format!(
                    "{} is not served by this store; it answers {ALLOW}",
                    printable(other)
                ),
            );
            r.headers.push(("Allow", ALLOW.into()));
            r
        }
    }
}

/// A request's Depth (RFC 4918 §10.2; Exchange's `1,noroot` leaves out the collection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    Zero,
    One,
    OneNoRoot,
    Infinity,
}

fn depth(header: Option<&str>) -> Result<Depth, DavResponse> {
    let Some(value) = header else {
        // No Depth is infinity (RFC 4918 §9.1).
        return Ok(Depth::Infinity);
    };
    let squeezed: String = value
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    match squeezed.as_str() {
        "0" => Ok(Depth::Zero),
        "1" => Ok(Depth::One),
        "1,noroot" => Ok(Depth::OneNoRoot),
        "infinity" => Ok(Depth::Infinity),
        _ => Err(DavResponse::text(
            400,
            format!(
                "Depth \"{}\" is not one of 0, 1, 1,noroot, infinity",
                printable(value)
            ),
        )),
    }
}

/// What a path names in the user's mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resource {
    Root,
    /// A mailbox by its store key.
    Folder(String),
    Message {
        folder: String,
        uid: u32,
    },
}

/// A resolved path: the segments after `/exchange/` as the client spelled them (decoded),
/// which hrefs repeat, and what they name.
#[derive(Debug, Clone)]
struct Target {
    segments: Vec<String>,
    resource: Resource,
}

/// The mailbox key of a folder path (`Inbox/x` is `INBOX/x`).
fn folder_key(segments: &[String]) -> String {
    let mut parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    if let Some(first) = parts.first_mut() {
        if first.eq_ignore_ascii_case("inbox") {
            *first = "INBOX";
        }
    }
    Account::mailbox_key(&parts.join("/"))
}

/// The segments of a path, percent-decoded, empty ones (`//`, the trailing `/`) dropped.
fn segments(path: &str) -> Result<Vec<String>, DavResponse> {
    let bad = || DavResponse::text(400, format!("bad path {}", printable(path)));
    if !path.starts_with('/') {
        return Err(bad());
    }
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s).ok_or_else(bad))
        .collect()
}

/// Resolves a path of `user`'s against the store (403 for another mailbox, 404 for what
/// is not there).
fn resolve(path: &str, user: &str, account: Option<&Account>) -> Result<Target, DavResponse> {
    let all = segments(path)?;
    let not_found = || DavResponse::text(404, format!("nothing at {}", printable(path)));
    match all.first() {
        Some(root) if root.eq_ignore_ascii_case("exchange") => {}
        _ => {
            return Err(DavResponse::text(
                404,
                format!(
                    "nothing at {}: mailboxes are under /exchange/<user>/",
                    printable(path)
                ),
            ))
        }
    }
    let Some(owner) = all.get(1) else {
        return Err(not_found());
    };
    if !owner.eq_ignore_ascii_case(user) {
        return Err(DavResponse::text(
            403,
            format!("the mailbox of {} is not {}'s", printable(owner), user),
        ));
    }
    let account = account.ok_or_else(not_found)?;
    let segments: Vec<String> = all[1..].to_vec();
    let rest = &segments[1..];
    if rest.is_empty() {
        return Ok(Target {
            segments,
            resource: Resource::Root,
        });
    }
    let key = folder_key(rest);
    if account.mailbox(&key).is_some() {
        return Ok(Target {
            segments,
            resource: Resource::Folder(key),
        });
    }
    let (last, parent) = rest.split_last().ok_or_else(not_found)?;
    let uid = message_uid(last).ok_or_else(not_found)?;
    let folder = folder_key(parent);
    let exists = !parent.is_empty()
        && account
            .mailbox(&folder)
            .is_some_and(|m| m.messages.iter().any(|m| m.uid == uid));
    if !exists {
        return Err(not_found());
    }
    Ok(Target {
        segments,
        resource: Resource::Message { folder, uid },
    })
}

/// The UID of a message's name, `<uid>.EML`.
fn message_uid(name: &str) -> Option<u32> {
    let split = name.len().checked_sub(4)?;
    let (stem, extension) = (name.get(..split)?, name.get(split..)?);
    let digits = !stem.is_empty() && stem.len() <= 10 && stem.bytes().all(|b| b.is_ascii_digit());
    if !extension.eq_ignore_ascii_case(".eml") || !digits {
        return None;
    }
    stem.parse().ok()
}

/// The scheme and authority hrefs start with.
fn origin(req: &DavRequest<'_>, world: &World) -> String {
    let scheme = if req.tls { "https" } else { "http" };
    // A Host that could not be an authority is not repeated; the server's name is.
    let host = req
        .host
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        })
        .unwrap_or(&world.hostname);
    format!("{scheme}://{host}")
}

fn propfind(req: &DavRequest<'_>, user: &str, world: &World) -> Result<DavResponse, DavResponse> {
    if req.body.len() > MAX_BODY {
        return Err(DavResponse::too_large(req.body.len()));
    }
    let wanted = propfind_body(req.body)?;
    let depth = depth(req.depth)?;
    let origin = origin(req, world);
    let accounts = world.store.lock();
    let account = accounts.get(&user.to_ascii_lowercase());
    let target = resolve(req.path, user, account)?;
    let Some(account) = account else {
        return Err(DavResponse::text(404, "no mailbox"));
    };
    let collection = !matches!(target.resource, Resource::Message { .. });
    let rows = match (depth, collection) {
        (Depth::Infinity, true) => {
            return Err(DavResponse::text(
                403,
                "Depth: infinity (also what no Depth header means) is not supported on a \
                 mailbox; send Depth 0 or 1",
            ))
        }
        (Depth::Zero | Depth::Infinity, _) | (_, false) => {
            vec![props::row(
                account,
                &target.segments,
                &target.resource,
                &origin,
            )]
        }
        (Depth::One, true) => {
            let mut rows = vec![props::row(
                account,
                &target.segments,
                &target.resource,
                &origin,
            )];
            rows.extend(props::children(account, &target, &origin));
            rows
        }
        (Depth::OneNoRoot, true) => props::children(account, &target, &origin),
    };
    drop(accounts);
    Ok(multistatus(&rows, &wanted, brief(req.brief), false))
}

/// Whether `Brief: t` asks to leave out the 404 propstats.
fn brief(header: Option<&str>) -> bool {
    header.is_some_and(|b| b.trim().eq_ignore_ascii_case("t"))
}

/// What a PROPFIND body asks for (RFC 4918 §9.1: an empty body is allprop).
fn propfind_body(body: &[u8]) -> Result<Wanted, DavResponse> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Wanted::All);
    }
    let root = xml::parse(body, REQUEST_XML).map_err(|e| DavResponse::text(400, e.to_string()))?;
    if !root.is(DAV, "propfind") {
        return Err(DavResponse::text(
            400,
            format!(
                "the body is a {{{}}}{}, not a DAV:propfind",
                printable(&root.ns),
                printable(&root.name)
            ),
        ));
    }
    let mut kinds = root.children.iter().filter(|c| c.ns == DAV);
    let (Some(kind), None) = (kinds.next(), kinds.next()) else {
        return Err(DavResponse::text(
            400,
            "a DAV:propfind holds one of DAV:prop, DAV:allprop, DAV:propname",
        ));
    };
    match kind.name.as_str() {
        "allprop" => Ok(Wanted::All),
        "propname" => Ok(Wanted::Names),
        "prop" => wanted(kind.children.iter().map(|p| (p.ns.clone(), p.name.clone()))),
        other => Err(DavResponse::text(
            400,
            format!("DAV:{other} is not one of DAV:prop, DAV:allprop, DAV:propname"),
        )),
    }
}

/// The properties asked for, once each, at most [`MAX_PROPS`].
fn wanted(names: impl Iterator<Item = (String, String)>) -> Result<Wanted, DavResponse> {
    let mut list: Vec<(String, String)> = Vec::new();
    for (ns, name) in names {
        if !xml_name(&name) {
            return Err(DavResponse::text(
                400,
                format!("\"{}\" is not a property name", printable(&name)),
            ));
        }
        if list.iter().any(|(n, l)| *n == ns && *l == name) {
            continue;
        }
        if list.len() == MAX_PROPS {
            return Err(DavResponse::text(
                422,
                format!("more than {MAX_PROPS} properties asked for"),
            ));
        }
        list.push((ns, name));
    }
    Ok(Wanted::Some(list))
}

/// Whether `name` can be written as an element's local name (a conservative NCName).
fn xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn search_request(
    req: &DavRequest<'_>,
    user: &str,
    world: &World,
) -> Result<DavResponse, DavResponse> {
    if req.body.len() > MAX_BODY {
        return Err(DavResponse::too_large(req.body.len()));
    }
    let root =
        xml::parse(req.body, REQUEST_XML).map_err(|e| DavResponse::text(400, e.to_string()))?;
    let sql = root
        .is(DAV, "searchrequest")
        .then(|| root.child(DAV, "sql"))
        .flatten()
        .map(|e: &Element| e.text.as_str())
        .ok_or_else(|| {
            DavResponse::text(400, "the body is not a DAV:searchrequest holding a DAV:sql")
        })?;
    let query = search::parse(sql).map_err(|e| DavResponse::text(e.status(), e.to_string()))?;
    let wanted = wanted(query.select.iter().cloned())?;
    let origin = origin(req, world);
    let accounts = world.store.lock();
    let account = accounts.get(&user.to_ascii_lowercase());
    resolve(req.path, user, account)?;
    let scope = resolve(&search::url_path(&query.scope), user, account)?;
    let Some(account) = account else {
        return Err(DavResponse::text(404, "no mailbox"));
    };
    if matches!(scope.resource, Resource::Message { .. }) {
        return Err(DavResponse::text(
            422,
            format!(
                "the scope {} is a message, not a folder",
                printable(&query.scope)
            ),
        ));
    }
    let rows: Vec<Row> = props::children(account, &scope, &origin)
        .into_iter()
        .filter(|row| query.matches(row.folder))
        .collect();
    drop(accounts);
    Ok(multistatus(&rows, &wanted, brief(req.brief), true))
}

fn get(req: &DavRequest<'_>, user: &str, world: &World) -> Result<DavResponse, DavResponse> {
    let accounts = world.store.lock();
    let account = accounts.get(&user.to_ascii_lowercase());
    let target = resolve(req.path, user, account)?;
    let Resource::Message { folder, uid } = &target.resource else {
        let mut r = DavResponse::text(405, "a folder is listed with PROPFIND, not GET");
        r.headers
            .push(("Allow", "OPTIONS, PROPFIND, SEARCH".into()));
        return Err(r);
    };
    let message = account
        .and_then(|a| a.mailbox(folder))
        .and_then(|m| m.messages.iter().find(|m| m.uid == *uid))
        .ok_or_else(|| DavResponse::text(404, "the message is gone"))?;
    Ok(DavResponse {
        status: 200,
        headers: vec![("Content-Type", "message/rfc822".into())],
        body: message.data.to_vec(),
    })
}

/// The 207 of `rows` (RFC 4918 §13): per resource, the properties found in a 200
/// propstat and the ones asked for but missing in a 404 one, unless `brief`.
fn multistatus(rows: &[Row], wanted: &Wanted, brief: bool, search: bool) -> DavResponse {
    let mut body = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n\
         <a:multistatus xmlns:a=\"DAV:\" xmlns:d=\"urn:schemas:httpmail:\">",
    );
    for row in rows {
        Props::write_response(&mut body, row, wanted, brief);
    }
    body.push_str("</a:multistatus>");
    let mut headers = vec![("Content-Type", "text/xml; charset=\"utf-8\"".into())];
    if search {
        // EXSDK SEARCH: the rows may be paged with `Range: rows=`; this store sends all.
        headers.push(("Accept-Ranges", "rows".into()));
    }
    DavResponse {
        status: 207,
        headers,
        body: body.into_bytes(),
    }
}

/// `s` with its `%XX` escapes decoded; `None` for a broken escape or bytes that are not
/// UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `s` as a path segment: everything but RFC 3986's unreserved characters escaped.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A client's text as an error message may repeat it: controls escaped, at most 200
/// octets of it (a cut is marked with `…`).
pub(crate) fn printable(s: &str) -> String {
    const MAX: usize = 200;
    let mut out = String::new();
    for c in s.chars() {
        let before = out.len();
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        if out.len() > MAX {
            out.truncate(before);
            out.push('…');
            break;
        }
    }
    out
}
