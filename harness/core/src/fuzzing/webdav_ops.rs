//! `webdav_body`: the Exchange WebDAV store ([`crate::webdav`]) on arbitrary requests, and
//! its client's 207 reader on arbitrary octets.
//!
//! Input: octet 0 picks the method, octet 1 the Depth header, octet 2 flags (bit 0
//! `Brief: t`, bit 1 TLS, bit 2 the path is the input's first line rather than one of
//! [`PATHS`] picked by bits 4-6, bit 7 the user is carol rather than alice); the rest is
//! the body. Invariants: never a panic; only the statuses the store documents; a refusal
//! is a short line of text; every 207 reads back with the client's reader and names only
//! the user's own mailbox; a 200 GET is exactly one of the user's messages; the reader
//! gives entries or a typed error for any body.

use std::sync::OnceLock;

use crate::webdav::client::read_multistatus;
use crate::webdav::{handle, DavRequest};
use crate::world::{LabFile, World, DEFAULT_LAB};

const METHODS: [&str; 7] = [
    "OPTIONS",
    "PROPFIND",
    "SEARCH",
    "GET",
    "HEAD",
    "DELETE",
    "PROPPATCH",
];
const DEPTHS: [Option<&str>; 7] = [
    None,
    Some("0"),
    Some("1"),
    Some("1,noroot"),
    Some("infinity"),
    Some(" 1 , NoRoot"),
    Some("2"),
];
pub const PATHS: [&str; 8] = [
    "/exchange/alice/",
    "/exchange/alice/Inbox/",
    "/exchange/alice/Inbox/1.EML",
    "/exchange/bob/Inbox/",
    "/exchange/carol/Archive/",
    "/exchange/carol/inbox/2.eml",
    "/",
    "/exchange/carol/Sent%20Items/",
];

/// The default lab and carol, who has nested folders, a read message and a space in a
/// folder's name. Only read: the store never changes the world.
fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let text = format!(
            "{DEFAULT_LAB}\n[[user]]\nname = \"carol\"\npassword = \"pw\"\n\
             mailbox = [\"Archive\", \"Archive/2024\", \"Sent Items\"]\n\
             [[user.message]]\nsubject = \"a & b\"\nflags = [\"\\\\Seen\"]\n\
             [[user.message]]\nraw = \"Subject: <x>\\n\\nbody\\n\"\n"
        );
        LabFile::parse(&text)
            .and_then(|lab| lab.build())
            .expect("the fuzz world builds")
    })
}

pub fn webdav_body(data: &[u8]) {
    check(data);
}

/// Runs one input; the store's status, when the input made a request.
fn check(data: &[u8]) -> Option<u16> {
    let [method, depth, flags, rest @ ..] = data else {
        let _ = read_multistatus(data);
        return None;
    };
    let _ = read_multistatus(rest);
    let method = METHODS[usize::from(*method) % METHODS.len()];
    let depth = DEPTHS[usize::from(*depth) % DEPTHS.len()];
    let user = if flags & 0x80 != 0 { "carol" } else { "alice" };
    let (path, body) = if flags & 0x04 != 0 {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let (line, body) = rest.split_at(end);
        (
            String::from_utf8_lossy(line).into_owned(),
            body.get(1..).unwrap_or_default(),
        )
    } else {
        (PATHS[usize::from(flags >> 4 & 0x07)].to_string(), rest)
    };
    let world = world();
    let r = handle(
        &DavRequest {
            method,
            path: &path,
            depth,
            brief: (flags & 0x01 != 0).then_some("t"),
            host: Some("mail.example.test"),
            tls: flags & 0x02 != 0,
            body,
        },
        user,
        world,
    );
    match r.status {
        200 if method == "OPTIONS" => {
            assert!(r.headers.contains(&("DAV", "1".to_string())));
        }
        200 => {
            let mine = world.store.lock().get(user).is_some_and(|account| {
                account
                    .mailboxes
                    .values()
                    .flat_map(|m| &m.messages)
                    .any(|m| *m.data == *r.body)
            });
            assert!(
                mine,
                "GET {path} gave octets that are not one of {user}'s messages"
            );
        }
        207 => {
            assert!(matches!(method, "PROPFIND" | "SEARCH"), "207 for {method}");
            let entries = read_multistatus(&r.body).unwrap_or_else(|e| {
                panic!(
                    "the store's 207 does not read back: {e}\n{}",
                    String::from_utf8_lossy(&r.body)
                )
            });
            let own = format!("http://mail.example.test/exchange/{user}/");
            let own_tls = format!("https://mail.example.test/exchange/{user}/");
            for e in &entries {
                let lower = e.href.to_ascii_lowercase();
                assert!(
                    lower.starts_with(&own) || lower.starts_with(&own_tls),
                    "{} is not in {user}'s mailbox",
                    e.href
                );
            }
            if method == "PROPFIND" && depth == Some("0") {
                assert_eq!(entries.len(), 1, "Depth 0 is one resource");
            }
        }
        400 | 403 | 404 | 405 | 413 | 422 => {
            let text = std::str::from_utf8(&r.body).expect("a refusal is text");
            assert!(
                text.ends_with("\r\n") && text.len() < 1024,
                "refusal {}: {text:?}",
                r.status
            );
        }
        other => panic!("status {other} for {method} {path}"),
    }
    Some(r.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each seed under corpus/fuzz/webdav_body reaches the answer it is named for.
    #[test]
    fn seeds_reach_what_they_are_named_for() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/fuzz/webdav_body");
        let status = |name: &str| {
            let data = std::fs::read(dir.join(name)).expect("seed");
            check(&data)
        };
        let expected = [
            ("get-message", Some(200)),
            // The 207 reader's input: as a request it is a PROPFIND with a wrong body.
            ("multistatus-body", Some(400)),
            ("options", Some(200)),
            ("propfind-carol-archive-noroot-brief", Some(207)),
            ("propfind-inbox-depth-1", Some(207)),
            ("propfind-message-propname", Some(207)),
            ("search-inbox", Some(207)),
        ];
        for (name, want) in expected {
            assert_eq!(status(name), want, "{name}");
        }
    }
}
