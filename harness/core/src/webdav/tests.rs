//! The store's answers, exact: bodies, statuses and the text of each refusal.

use super::client::{self, read_multistatus, DavEntry, DavError};
use super::*;
use crate::world::LabFile;
use pretty_assertions::assert_eq;

fn world() -> World {
    LabFile::default_lab().build().expect("default lab")
}

/// carol: INBOX (one read, one unread message), Sent (one), Archive and Archive/2024.
fn carol() -> World {
    LabFile::parse(
        r#"
        [[user]]
        name = "carol"
        password = "pw"
        mailbox = ["Sent", "Archive", "Archive/2024"]
        [[user.message]]
        subject = "R&D <plans>"
        from = "Dan <dan@example.test>"
        body = "x"
        flags = ["\\Seen"]
        internal_date = 1704067200
        [[user.message]]
        subject = "second"
        body = "y"
        internal_date = 1704153600
        [[user.message]]
        mailbox = "Sent"
        raw = "Subject: out\n\nbody\n"
        "#,
    )
    .expect("lab")
    .build()
    .expect("world")
}

fn req<'a>(
    method: &'a str,
    path: &'a str,
    depth: Option<&'a str>,
    body: &'a [u8],
) -> DavRequest<'a> {
    DavRequest {
        method,
        path,
        depth,
        brief: None,
        host: Some("mail.example.test"),
        tls: false,
        body,
    }
}

fn text(r: &DavResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The body with a line break before each response, for readable diffs.
fn lines(r: &DavResponse) -> Vec<String> {
    text(r)
        .replace("<a:response>", "\n<a:response>")
        .replace("</a:multistatus>", "\n</a:multistatus>")
        .lines()
        .map(str::to_string)
        .collect()
}

const HEAD: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>";
const OPEN: &str = "<a:multistatus xmlns:a=\"DAV:\" xmlns:d=\"urn:schemas:httpmail:\">";
const OK: &str = "<a:propstat><a:status>HTTP/1.1 200 OK</a:status><a:prop>";
const MISSING: &str = "<a:propstat><a:status>HTTP/1.1 404 Resource Not Found</a:status><a:prop>";
const END: &str = "</a:prop></a:propstat>";

fn size(world: &World, user: &str, mailbox: &str, uid: u32) -> usize {
    world.store.with_account(user, |a| {
        a.mailbox(mailbox)
            .and_then(|m| m.messages.iter().find(|m| m.uid == uid))
            .map_or(0, |m| m.size())
    })
}

#[test]
fn options_says_dav_1_and_what_it_allows() {
    let r = handle(
        &req("OPTIONS", "/exchange/alice/Inbox/", None, b""),
        "alice",
        &world(),
    );
    assert_eq!(
        r,
        DavResponse {
            status: 200,
            headers: vec![
                ("DAV", "1".into()),
                ("MS-Author-Via", "DAV".into()),
                ("Allow", "OPTIONS, GET, HEAD, PROPFIND, SEARCH".into()),
            ],
            body: vec![],
        }
    );
}

#[test]
fn propfind_depth_0_allprop_on_the_inbox() {
    // cadaver's `open`: the href names the same path, resourcetype holds collection.
    let r = handle(
        &req("PROPFIND", "/exchange/alice/Inbox/", Some("0"), b""),
        "alice",
        &world(),
    );
    assert_eq!(r.status, 207);
    assert_eq!(
        r.headers,
        vec![("Content-Type", "text/xml; charset=\"utf-8\"".to_string())]
    );
    assert_eq!(
        lines(&r),
        [
            HEAD.to_string(),
            OPEN.to_string(),
            format!(
                "<a:response><a:href>http://mail.example.test/exchange/alice/Inbox/</a:href>{OK}\
                 <a:href>http://mail.example.test/exchange/alice/Inbox/</a:href>\
                 <a:displayname>Inbox</a:displayname><a:isfolder>1</a:isfolder>\
                 <a:ishidden>0</a:ishidden>\
                 <a:contentclass>urn:content-classes:mailfolder</a:contentclass>\
                 <a:resourcetype><a:collection/></a:resourcetype>\
                 <a:getlastmodified>Mon, 01 Jan 2024 00:00:03 GMT</a:getlastmodified>\
                 <d:unreadcount>3</d:unreadcount>{END}</a:response>"
            ),
            "</a:multistatus>".to_string(),
        ]
    );
}

#[test]
fn propfind_depth_1_lists_the_inbox_messages_with_their_subjects() {
    let world = world();
    let body = br#"<?xml version="1.0"?>
<D:propfind xmlns:D="DAV:" xmlns:m="urn:schemas:httpmail:" xmlns:x="urn:x:">
  <D:prop><D:getcontentlength/><m:subject/><m:from/><D:isfolder/><x:other/></D:prop>
</D:propfind>"#;
    let r = handle(
        &req("PROPFIND", "/exchange/alice/Inbox", Some("1"), body),
        "alice",
        &world,
    );
    assert_eq!(r.status, 207);
    let message = |uid: u32| {
        format!(
            "<a:response><a:href>http://mail.example.test/exchange/alice/Inbox/{uid}.EML</a:href>{OK}\
             <a:getcontentlength>{}</a:getcontentlength>\
             <d:subject>Test message {uid}</d:subject>\
             <d:from>Sender &lt;sender@example.test&gt;</d:from>\
             <a:isfolder>0</a:isfolder>{END}{MISSING}<other xmlns=\"urn:x:\"/>{END}</a:response>",
            size(&world, "alice", "INBOX", uid)
        )
    };
    assert_eq!(
        lines(&r)[2..],
        [
            format!(
                "<a:response><a:href>http://mail.example.test/exchange/alice/Inbox/</a:href>{OK}\
                 <a:isfolder>1</a:isfolder>{END}{MISSING}<a:getcontentlength/><d:subject/>\
                 <d:from/><other xmlns=\"urn:x:\"/>{END}</a:response>"
            ),
            message(1),
            message(2),
            message(3),
            "</a:multistatus>".to_string(),
        ]
    );
    // Brief: t leaves the 404 propstats out; 1,noroot the folder itself.
    let brief = DavRequest {
        brief: Some("t"),
        ..req("PROPFIND", "/exchange/alice/Inbox/", Some("1,noroot"), body)
    };
    let r = handle(&brief, "alice", &world);
    let t = text(&r);
    assert_eq!(
        (
            t.matches("<a:response>").count(),
            t.contains("404"),
            t.contains("/Inbox/</a:href>")
        ),
        (3, false, false)
    );
    // A client's own reading of it.
    let entries = read_multistatus(&r.body).expect("our 207 reads back");
    assert_eq!(
        entries,
        (1..=3)
            .map(|uid| DavEntry {
                href: format!("http://mail.example.test/exchange/alice/Inbox/{uid}.EML"),
                displayname: None,
                is_folder: false,
                subject: Some(format!("Test message {uid}")),
                from: Some("Sender <sender@example.test>".into()),
                size: Some(size(&world, "alice", "INBOX", uid) as u64),
            })
            .collect::<Vec<_>>()
    );
}

#[test]
fn the_root_holds_the_folders_and_folders_their_subfolders() {
    let world = carol();
    let names = |path: &str, depth: &str| {
        let r = handle(&req("PROPFIND", path, Some(depth), b""), "carol", &world);
        assert_eq!(r.status, 207, "{}", text(&r));
        read_multistatus(&r.body)
            .expect("reads")
            .into_iter()
            .map(|e| {
                (
                    e.href.replace("http://mail.example.test", ""),
                    e.displayname.unwrap_or_default(),
                    e.is_folder,
                )
            })
            .collect::<Vec<_>>()
    };
    let s = |h: &str, d: &str, f: bool| (h.to_string(), d.to_string(), f);
    assert_eq!(
        names("/exchange/carol/", "1"),
        [
            s("/exchange/carol/", "carol", true),
            s("/exchange/carol/Archive/", "Archive", true),
            s("/exchange/carol/Inbox/", "Inbox", true),
            s("/exchange/carol/Sent/", "Sent", true),
        ]
    );
    assert_eq!(
        names("/exchange/carol/Archive/", "1,noroot"),
        [s("/exchange/carol/Archive/2024/", "2024", true)]
    );
    assert_eq!(
        names("/exchange/carol/Archive/2024/", "0"),
        [s("/exchange/carol/Archive/2024/", "2024", true)]
    );
    // A message: Depth infinity (or none) is Depth 0 on it.
    assert_eq!(
        names("/exchange/carol/Sent/1.EML", "infinity"),
        [s("/exchange/carol/Sent/1.EML", "1.EML", false)]
    );
}

#[test]
fn a_message_has_its_mail_properties() {
    let world = carol();
    let r = handle(
        &req("PROPFIND", "/exchange/carol/inbox/1.eml", Some("0"), b""),
        "carol",
        &world,
    );
    assert_eq!(
        lines(&r)[2],
        format!(
            "<a:response><a:href>http://mail.example.test/exchange/carol/inbox/1.eml</a:href>{OK}\
             <a:href>http://mail.example.test/exchange/carol/inbox/1.eml</a:href>\
             <a:displayname>1.EML</a:displayname><a:isfolder>0</a:isfolder><a:ishidden>0</a:ishidden>\
             <a:contentclass>urn:content-classes:message</a:contentclass>\
             <a:getcontentlength>{}</a:getcontentlength><a:resourcetype/>\
             <a:getlastmodified>Mon, 01 Jan 2024 00:00:00 GMT</a:getlastmodified>\
             <d:subject>R&amp;D &lt;plans&gt;</d:subject><d:from>Dan &lt;dan@example.test&gt;</d:from>\
             <d:datereceived>2024-01-01T00:00:00.000Z</d:datereceived><d:read>1</d:read>{END}</a:response>",
            size(&world, "carol", "INBOX", 1)
        )
    );
    // propname: the same names, empty.
    let r = handle(
        &req(
            "PROPFIND",
            "/exchange/carol/Inbox/2.EML",
            Some("0"),
            b"<propfind xmlns='DAV:'><propname/></propfind>",
        ),
        "carol",
        &world,
    );
    assert_eq!(
        lines(&r)[2],
        format!(
            "<a:response><a:href>http://mail.example.test/exchange/carol/Inbox/2.EML</a:href>{OK}\
             <a:href/><a:displayname/><a:isfolder/><a:ishidden/><a:contentclass/><a:getcontentlength/>\
             <a:resourcetype/><a:getlastmodified/><d:subject/><d:from/><d:datereceived/><d:read/>\
             {END}</a:response>"
        )
    );
    // A client reads the names as no values.
    assert_eq!(
        read_multistatus(&r.body),
        Ok(vec![DavEntry {
            href: "http://mail.example.test/exchange/carol/Inbox/2.EML".into(),
            displayname: Some(String::new()),
            subject: Some(String::new()),
            from: Some(String::new()),
            ..DavEntry::default()
        }])
    );
    // The unread count of the folder, over TLS with the client's Host.
    let r = handle(
        &DavRequest {
            tls: true,
            host: Some("127.0.0.1:8443"),
            ..req(
                "PROPFIND",
                "/exchange/carol/Inbox/",
                Some("0"),
                b"<a:propfind xmlns:a='DAV:'><a:prop><unreadcount xmlns='urn:schemas:httpmail:'/></a:prop></a:propfind>",
            )
        },
        "carol",
        &world,
    );
    assert_eq!(
        lines(&r)[2],
        format!("<a:response><a:href>https://127.0.0.1:8443/exchange/carol/Inbox/</a:href>{OK}<d:unreadcount>1</d:unreadcount>{END}</a:response>")
    );
}

#[test]
fn get_gives_the_message_octets() {
    let world = world();
    let r = handle(
        &req("GET", "/exchange/alice/Inbox/2.EML", None, b""),
        "alice",
        &world,
    );
    let expected = world.store.with_account("alice", |a| {
        a.mailbox("INBOX").map(|m| m.messages[1].data.to_vec())
    });
    assert_eq!(
        (r.status, r.headers, Some(r.body)),
        (
            200,
            vec![("Content-Type", "message/rfc822".to_string())],
            expected
        )
    );
}

const SEARCH: &str = r#"<?xml version="1.0"?><D:searchrequest xmlns:D="DAV:"><D:sql>SELECT "DAV:href", "urn:schemas:httpmail:subject"
FROM SCOPE('shallow traversal of "http://mail.example.test/exchange/carol/Inbox/"')
WHERE "DAV:ishidden" = false AND "DAV:isfolder" = false</D:sql></D:searchrequest>"#;

#[test]
fn search_answers_the_exsdk_query() {
    let world = carol();
    let r = handle(
        &req("SEARCH", "/exchange/carol/Inbox/", None, SEARCH.as_bytes()),
        "carol",
        &world,
    );
    assert_eq!(r.status, 207, "{}", text(&r));
    assert_eq!(
        r.headers,
        vec![
            ("Content-Type", "text/xml; charset=\"utf-8\"".to_string()),
            ("Accept-Ranges", "rows".to_string()),
        ]
    );
    let row = |uid: u32, subject: &str| {
        let href = format!("http://mail.example.test/exchange/carol/Inbox/{uid}.EML");
        format!("<a:response><a:href>{href}</a:href>{OK}<a:href>{href}</a:href><d:subject>{subject}</d:subject>{END}</a:response>")
    };
    assert_eq!(
        lines(&r)[2..],
        [
            row(1, "R&amp;D &lt;plans&gt;"),
            row(2, "second"),
            "</a:multistatus>".to_string()
        ]
    );
    // isfolder = true: the subfolders (the root holds Archive, Inbox, Sent).
    let folders = SEARCH
        .replace("carol/Inbox/", "carol/")
        .replace("\"DAV:isfolder\" = false", "\"DAV:isfolder\" = true");
    let r = handle(
        &req("SEARCH", "/exchange/carol/", None, folders.as_bytes()),
        "carol",
        &world,
    );
    let hrefs: Vec<String> = read_multistatus(&r.body)
        .expect("reads")
        .into_iter()
        .map(|e| e.href)
        .collect();
    assert_eq!(
        hrefs,
        ["Archive", "Inbox", "Sent"]
            .map(|f| format!("http://mail.example.test/exchange/carol/{f}/"))
    );
}

/// Method, path, Depth, body; status and the line that says why.
type Case<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, u16, &'a str);

/// Every refusal: its status and the line that says why.
#[test]
fn bad_requests_get_clear_answers() {
    let world = carol();
    let big = vec![b' '; MAX_BODY + 1];
    let deep = format!(
        "<propfind xmlns='DAV:'>{}{}</propfind>",
        "<a>".repeat(20),
        "</a>".repeat(20)
    );
    let many: String = (0..70).map(|i| format!("<p{i}/>")).collect();
    let many = format!("<propfind xmlns='DAV:'><prop>{many}</prop></propfind>");
    let long_path = format!("/\u{7}{}", "é".repeat(200));
    let long_refusal = format!(
        "nothing at /\\u{{7}}{}…: mailboxes are under /exchange/<user>/",
        "é".repeat(97)
    );
    let search =
        |sql: &str| format!("<searchrequest xmlns='DAV:'><sql>{sql}</sql></searchrequest>");
    let cases: Vec<Case> = vec![
        ("PROPFIND", "/exchange/carol/Inbox/", None, vec![], 403,
         "Depth: infinity (also what no Depth header means) is not supported on a mailbox; send Depth 0 or 1"),
        ("PROPFIND", "/exchange/carol/", Some("infinity"), vec![], 403,
         "Depth: infinity (also what no Depth header means) is not supported on a mailbox; send Depth 0 or 1"),
        ("PROPFIND", "/exchange/carol/", Some("2"), vec![], 400,
         "Depth \"2\" is not one of 0, 1, 1,noroot, infinity"),
        ("PROPFIND", "/exchange/alice/Inbox/", Some("1"), vec![], 403, "the mailbox of alice is not carol's"),
        ("PROPFIND", "/exchange/carol/Drafts/", Some("1"), vec![], 404, "nothing at /exchange/carol/Drafts/"),
        ("PROPFIND", "/exchange/carol/Inbox/9.EML", Some("0"), vec![], 404, "nothing at /exchange/carol/Inbox/9.EML"),
        ("PROPFIND", "/exchange/carol/Inbox/99999999999.EML", Some("0"), vec![], 404,
         "nothing at /exchange/carol/Inbox/99999999999.EML"),
        ("PROPFIND", "/public/", Some("0"), vec![], 404, "nothing at /public/: mailboxes are under /exchange/<user>/"),
        ("PROPFIND", "/exchange/", Some("0"), vec![], 404, "nothing at /exchange/"),
        ("PROPFIND", "/exchange/carol/%ZZ/", Some("0"), vec![], 400, "bad path /exchange/carol/%ZZ/"),
        ("PROPFIND", "/exchange/carol/%FF/", Some("0"), vec![], 400, "bad path /exchange/carol/%FF/"),
        ("PROPFIND", "*", Some("0"), vec![], 400, "bad path *"),
        // A refusal repeats at most 200 octets of the client's text, controls escaped.
        ("PROPFIND", &long_path, Some("0"), vec![], 404, &long_refusal),
        ("PROPFIND", "/exchange/carol/", Some("0"), big.clone(), 413,
         "the request body has 65537 octets; at most 65536 are read"),
        ("PROPFIND", "/exchange/carol/", Some("0"), b"<propfind xmlns='DAV:'><prop>".to_vec(), 400,
         "malformed XML: the document ends inside an element"),
        ("PROPFIND", "/exchange/carol/", Some("0"), b"<foo/>".to_vec(), 400, "the body is a {}foo, not a DAV:propfind"),
        ("PROPFIND", "/exchange/carol/", Some("0"), b"<propfind xmlns='DAV:'/>".to_vec(), 400,
         "a DAV:propfind holds one of DAV:prop, DAV:allprop, DAV:propname"),
        ("PROPFIND", "/exchange/carol/", Some("0"), b"<propfind xmlns='DAV:'><include/></propfind>".to_vec(), 400,
         "DAV:include is not one of DAV:prop, DAV:allprop, DAV:propname"),
        ("PROPFIND", "/exchange/carol/", Some("0"), deep.into_bytes(), 400, "elements nest deeper than 16"),
        ("PROPFIND", "/exchange/carol/", Some("0"), many.into_bytes(), 422, "more than 64 properties asked for"),
        ("PROPFIND", "/exchange/carol/", Some("0"),
         b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]><propfind xmlns='DAV:'><allprop/></propfind>".to_vec(), 400,
         "a DOCTYPE is not accepted"),
        ("SEARCH", "/exchange/carol/Inbox/", None, b"<propfind xmlns='DAV:'/>".to_vec(), 400,
         "the body is not a DAV:searchrequest holding a DAV:sql"),
        ("SEARCH", "/exchange/carol/Inbox/", None, search("SELECT * FROM \"/exchange/carol/Inbox/\"").into_bytes(), 422,
         "SQL this store does not run: SELECT * (name the properties)"),
        ("SEARCH", "/exchange/carol/Inbox/", None, search("SELECT \"DAV:href\" FROM \"/exchange/carol/Inbox/\" WHERE \"DAV:isfolder\" &lt; 1").into_bytes(), 422,
         "SQL this store does not run: the operator < (only =)"),
        ("SEARCH", "/exchange/carol/Inbox/", None, search("SELECT \"DAV:href\" FROM").into_bytes(), 400,
         "malformed SQL: expected SCOPE(…) or a quoted URL after FROM, found the end"),
        ("SEARCH", "/exchange/carol/Inbox/", None, search("SELECT \"DAV:href\" FROM \"/exchange/alice/Inbox/\"").into_bytes(), 403,
         "the mailbox of alice is not carol's"),
        ("SEARCH", "/exchange/carol/Inbox/", None, search("SELECT \"DAV:href\" FROM \"/exchange/carol/Inbox/1.EML\"").into_bytes(), 422,
         "the scope /exchange/carol/Inbox/1.EML is a message, not a folder"),
        ("SEARCH", "/exchange/carol/Inbox/", None, search("SELECT \"bad name\" FROM \"/exchange/carol/Inbox/\"").into_bytes(), 400,
         "\"bad name\" is not a property name"),
        ("SEARCH", "/exchange/carol/Inbox/", None, big, 413, "the request body has 65537 octets; at most 65536 are read"),
        ("GET", "/exchange/carol/Inbox/", None, vec![], 405, "a folder is listed with PROPFIND, not GET"),
        ("DELETE", "/exchange/carol/Inbox/1.EML", None, vec![], 405,
         "DELETE is not served by this store; it answers OPTIONS, GET, HEAD, PROPFIND, SEARCH"),
    ];
    for (method, path, depth, body, status, why) in cases {
        let r = handle(&req(method, path, depth, &body), "carol", &world);
        assert_eq!(
            (r.status, text(&r)),
            (status, format!("{why}\r\n")),
            "{method} {path} {depth:?}"
        );
    }
}

#[test]
fn the_client_asks_for_what_an_entry_holds_and_reads_refusals() {
    let call = client::propfind_request("/exchange/alice/Inbox/", client::Depth::OneNoRoot);
    assert_eq!(
        call.headers,
        vec![
            ("Depth", "1,noroot".to_string()),
            ("Brief", "t".to_string()),
            ("Content-Type", "text/xml; charset=\"utf-8\"".to_string()),
        ]
    );
    // The store answers the client's own request.
    let world = world();
    let r = handle(
        &DavRequest {
            depth: Some("1,noroot"),
            brief: Some("t"),
            ..req(call.method, &call.path, None, &call.body)
        },
        "alice",
        &world,
    );
    let entries = read_multistatus(&r.body).expect("reads");
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.displayname.as_deref(), e.subject.as_deref()))
            .collect::<Vec<_>>(),
        [
            (Some("1.EML"), Some("Test message 1")),
            (Some("2.EML"), Some("Test message 2")),
            (Some("3.EML"), Some("Test message 3")),
        ]
    );
    let folder = read_multistatus(
        br#"<m:multistatus xmlns:m="DAV:"><m:response><m:href> /x/ </m:href>
        <m:propstat><m:status>HTTP/1.1 404 Not Found</m:status><m:prop><m:getcontentlength>zz</m:getcontentlength></m:prop></m:propstat>
        <m:propstat><m:status>HTTP/1.1 200 OK</m:status><m:prop><m:resourcetype><m:collection/></m:resourcetype></m:prop></m:propstat>
        </m:response></m:multistatus>"#,
    );
    assert_eq!(
        folder,
        Ok(vec![DavEntry {
            href: "/x/".into(),
            is_folder: true,
            ..DavEntry::default()
        }])
    );
    let refusals: [(&[u8], DavError); 4] = [
        (b"<a/>", DavError::NotMultistatus { ns: String::new(), name: "a".into() }),
        (
            b"<multistatus xmlns='DAV:'><response><status>HTTP/1.1 200 OK</status></response></multistatus>",
            DavError::NoHref(0),
        ),
        (
            b"<multistatus xmlns='DAV:'><response><href>/</href><propstat><status>HTTP/1.1 200 OK</status><prop><getcontentlength>-1</getcontentlength></prop></propstat></response></multistatus>",
            DavError::BadLength("-1".into()),
        ),
        (b"<multistatus xmlns='DAV:'>", DavError::Xml(xml::XmlError::Malformed("the document ends inside an element".into()))),
    ];
    for (body, expected) in refusals {
        assert_eq!(
            read_multistatus(body),
            Err(expected),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let huge = vec![b' '; client::MAX_MULTISTATUS + 1];
    assert_eq!(
        read_multistatus(&huge),
        Err(DavError::TooLarge {
            len: client::MAX_MULTISTATUS + 1,
            max: client::MAX_MULTISTATUS
        })
    );
}
