//! What FETCH needs to know about a stored RFC 5322 message: its header/body split, its
//! header fields (unfolded), the ENVELOPE structure (RFC 3501 7.4.2) and the wire forms of
//! strings (dates are in `date.rs`). Everything here works on untrusted bytes and never
//! panics.

/// The header section: from the start up to and including the empty line that ends it
/// (RFC 3501 6.4.5 `HEADER`); the whole message if there is no empty line.
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    if data.starts_with(b"\r\n") {
        return data.split_at(2);
    }
    let mut i = 0;
    while let Some(p) = data
        .get(i..)
        .and_then(|d| d.iter().position(|&b| b == b'\n'))
    {
        let lf = i + p;
        // An empty line: LF followed by CRLF or LF.
        let rest = data.get(lf + 1..).unwrap_or_default();
        if rest.starts_with(b"\r\n") {
            return data.split_at(lf + 3);
        }
        if rest.starts_with(b"\n") {
            return data.split_at(lf + 2);
        }
        i = lf + 1;
    }
    (data, &[])
}

/// One header field: its name and its unfolded value (leading whitespace trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub value: Vec<u8>,
    /// The raw lines of the field, line endings included (for HEADER.FIELDS).
    pub raw: Vec<u8>,
}

/// Header fields in order. Lines that are not `name: value` and not continuations are
/// skipped.
pub fn fields(header: &[u8]) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::new();
    for line in header.split_inclusive(|&b| b == b'\n') {
        let content = trim_eol(line);
        if content.is_empty() {
            break;
        }
        if matches!(content.first(), Some(b' ' | b'\t')) {
            // RFC 5322 2.2.3: unfolding removes the CRLF before the whitespace.
            if let Some(last) = out.last_mut() {
                last.value.extend_from_slice(content);
                last.raw.extend_from_slice(line);
            }
            continue;
        }
        let Some(colon) = content.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &content[..colon];
        if name.is_empty() || !name.iter().all(|&b| b.is_ascii_graphic()) {
            continue;
        }
        let value = trim_ws(&content[colon + 1..]).to_vec();
        out.push(Field {
            name: String::from_utf8_lossy(name).into_owned(),
            value,
            raw: line.to_vec(),
        });
    }
    out
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_ws(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// First field with this name (case-insensitive), if any.
pub fn field<'a>(fields: &'a [Field], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name))
        .map(|f| f.value.as_slice())
}

/// `HEADER.FIELDS` / `HEADER.FIELDS.NOT` (RFC 3501 6.4.5): the matching fields as written,
/// followed by the blank line.
pub fn header_fields(header: &[u8], names: &[Vec<u8>], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields(header) {
        let listed = names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(f.name.as_bytes()));
        if listed != not {
            out.extend_from_slice(&f.raw);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Appends an `nstring`: NIL, a quoted string when that is safe, a literal otherwise.
pub fn write_nstring(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.extend_from_slice(b"NIL"),
        Some(v) => write_string(out, v),
    }
}

/// Appends a `string` (RFC 3501 9): quoted for short 7-bit text, literal otherwise.
pub fn write_string(out: &mut Vec<u8>, v: &[u8]) {
    let quotable = v.len() <= 1024
        && v.iter()
            .all(|&b| (0x01..0x80).contains(&b) && b != b'\r' && b != b'\n');
    if quotable {
        out.push(b'"');
        for &b in v {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", v.len()).as_bytes());
        out.extend_from_slice(v);
    }
}

/// Appends a parenthesized list, items apart by one space (RFC 3501 9: `"(" x *(SP x)
/// ")"`), each written by `write_item`.
pub fn write_list<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    mut write_item: impl FnMut(&mut Vec<u8>, T),
) {
    out.push(b'(');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        write_item(out, item);
    }
    out.push(b')');
}

/// Appends an `astring` (mailbox names): an atom when every octet allows it.
pub fn write_astring(out: &mut Vec<u8>, v: &[u8]) {
    let atom = !v.is_empty()
        && v.iter().all(|&b| {
            (0x21..0x7f).contains(&b)
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\')
        });
    if atom {
        out.extend_from_slice(v);
    } else {
        write_string(out, v);
    }
}

/// ENVELOPE (RFC 3501 7.4.2): date, subject, from, sender, reply-to, to, cc, bcc,
/// in-reply-to, message-id. Sender and Reply-To default to From when absent or empty.
pub fn write_envelope(out: &mut Vec<u8>, header: &[u8]) {
    let fs = fields(header);
    let get = |name: &str| field(&fs, name).filter(|v| !v.is_empty());
    out.push(b'(');
    write_nstring(out, get("Date"));
    out.push(b' ');
    write_nstring(out, get("Subject"));
    let from = get("From");
    for (name, default) in [
        ("From", None),
        ("Sender", from),
        ("Reply-To", from),
        ("To", None),
        ("Cc", None),
        ("Bcc", None),
    ] {
        out.push(b' ');
        write_addresses(out, get(name).or(default));
    }
    out.push(b' ');
    write_nstring(out, get("In-Reply-To"));
    out.push(b' ');
    write_nstring(out, get("Message-ID"));
    out.push(b')');
}

/// One element of an address list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Mailbox {
        name: Option<Vec<u8>>,
        mailbox: Vec<u8>,
        host: Option<Vec<u8>>,
    },
    GroupStart(Vec<u8>),
    GroupEnd,
}

/// The host ENVELOPE writes for an address that has none.
const MISSING_DOMAIN: &[u8] = b"MISSING_DOMAIN";

fn write_addresses(out: &mut Vec<u8>, value: Option<&[u8]>) {
    let list = value.map(parse_addresses).unwrap_or_default();
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in &list {
        // RFC 3501 9: address = "(" addr-name SP addr-adl SP addr-mailbox SP addr-host ")";
        // a group is opened by (NIL NIL "name" NIL) and closed by (NIL NIL NIL NIL).
        match a {
            Address::Mailbox {
                name,
                mailbox,
                host,
            } => {
                out.push(b'(');
                write_nstring(out, name.as_deref());
                out.extend_from_slice(b" NIL ");
                write_nstring(out, Some(mailbox));
                out.push(b' ');
                // RFC 3501 7.4.2: a NIL host marks a group start, so an address without a
                // domain gets a placeholder host instead (Dovecot's `MISSING_DOMAIN`).
                write_nstring(out, Some(host.as_deref().unwrap_or(MISSING_DOMAIN)));
                out.push(b')');
            }
            Address::GroupStart(name) => {
                out.extend_from_slice(b"(NIL NIL ");
                write_nstring(out, Some(name));
                out.extend_from_slice(b" NIL)");
            }
            Address::GroupEnd => out.extend_from_slice(b"(NIL NIL NIL NIL)"),
        }
    }
    out.push(b')');
}

/// Where the octets of a header value stand (RFC 5322 3.2.4 quoted strings and quoted
/// pairs, 3.2.2 nested comments), fed one octet at a time.
#[derive(Debug, Default)]
struct Lexer {
    in_quote: bool,
    escape: bool,
    comment_depth: usize,
}

impl Lexer {
    /// Moves past `b`; true when `b` is plain text outside quoted strings and comments
    /// (not a quote, an opening or closing parenthesis of a comment, a backslash that
    /// escapes, or the octet it escapes).
    fn step(&mut self, b: u8) -> bool {
        if self.escape {
            self.escape = false;
            return false;
        }
        match b {
            b'\\' if self.in_quote || self.comment_depth > 0 => self.escape = true,
            b'"' if self.comment_depth == 0 => self.in_quote = !self.in_quote,
            b'(' if !self.in_quote => self.comment_depth += 1,
            b')' if !self.in_quote && self.comment_depth > 0 => self.comment_depth -= 1,
            _ => return !self.in_quote && self.comment_depth == 0,
        }
        false
    }
}

/// Splits an address list at top-level commas, honouring quotes, comments and angle
/// brackets, and recognising groups (`name: a, b;`). Lenient: anything odd becomes a
/// mailbox with no host rather than an error.
pub fn parse_addresses(value: &[u8]) -> Vec<Address> {
    let mut out = Vec::new();
    let mut item = Vec::new();
    let mut lexer = Lexer::default();
    let mut angle = false;
    let mut in_group = false;
    for &b in value {
        if !lexer.step(b) {
            item.push(b);
            continue;
        }
        match b {
            b'<' => {
                angle = true;
                item.push(b);
            }
            b'>' => {
                angle = false;
                item.push(b);
            }
            b':' if !angle && !in_group => {
                let name = phrase(&uncomment(&item).text);
                out.push(Address::GroupStart(name));
                in_group = true;
                item.clear();
            }
            b';' if !angle && in_group => {
                if let Some(a) = parse_one(&item) {
                    out.push(a);
                }
                out.push(Address::GroupEnd);
                in_group = false;
                item.clear();
            }
            b',' if !angle => {
                if let Some(a) = parse_one(&item) {
                    out.push(a);
                }
                item.clear();
            }
            _ => item.push(b),
        }
    }
    if let Some(a) = parse_one(&item) {
        out.push(a);
    }
    if in_group {
        out.push(Address::GroupEnd);
    }
    out
}

/// An address item with its comments taken out (RFC 5322 3.2.2).
struct Uncommented {
    /// The text, each comment replaced by a space: a comment parts tokens as white space
    /// does (`user(c)@x` is `user @x`). Quoted strings are kept as written.
    text: Vec<u8>,
    /// What the last closed comment says: its nested comments kept, quoted-pair
    /// backslashes removed, white space at its ends trimmed.
    last_comment: Option<Vec<u8>>,
}

fn uncomment(s: &[u8]) -> Uncommented {
    let mut text = Vec::new();
    let mut comment = Vec::new();
    let mut last_comment = None;
    let mut lexer = Lexer::default();
    for &b in s {
        let depth = lexer.comment_depth;
        lexer.step(b);
        match (depth, lexer.comment_depth) {
            (0, 0) => text.push(b),
            (0, _) => {
                text.push(b' ');
                comment.clear();
            }
            (_, 0) => last_comment = Some(trim_ws(&comment).to_vec()),
            // Inside: a backslash that escapes is left out, the octet it escapes kept.
            _ if lexer.escape => {}
            _ => comment.push(b),
        }
    }
    Uncommented { text, last_comment }
}

/// Removes surrounding quotes and quoted-pair backslashes; collapses nothing else.
fn unquote(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut escape = false;
    for &b in s {
        if escape {
            out.push(b);
            escape = false;
        } else if b == b'\\' {
            escape = true;
        } else if b != b'"' {
            out.push(b);
        }
    }
    out
}

/// A display name (RFC 5322 3.2.5 `phrase`): its words, each run of white space outside
/// quoted strings one space, quotes and quoted-pair backslashes removed.
fn phrase(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let (mut in_quote, mut escape, mut space) = (false, false, false);
    for &b in trim_ws(s) {
        if escape {
            out.push(b);
            escape = false;
            continue;
        }
        match b {
            b'\\' => escape = true,
            b'"' => in_quote = !in_quote,
            b' ' | b'\t' if !in_quote => space = true,
            _ => {
                if std::mem::take(&mut space) && !out.is_empty() {
                    out.push(b' ');
                }
                out.push(b);
            }
        }
    }
    out
}

/// Where `target` stands in `s` outside quoted strings, from the start (or `after` on).
fn position_unquoted(s: &[u8], target: u8, after: usize) -> Option<usize> {
    let (mut in_quote, mut escape) = (false, false);
    for (i, &b) in s.iter().enumerate() {
        if escape {
            escape = false;
        } else if in_quote && b == b'\\' {
            escape = true;
        } else if b == b'"' {
            in_quote = !in_quote;
        } else if b == target && !in_quote && i >= after {
            return Some(i);
        }
    }
    None
}

/// An addr-spec (RFC 5322 3.4.1) as (local part, domain). White space next to a dot or
/// the `@` is dropped (`obs-local-part`, `obs-domain`, 4.4: CFWS may stand around the
/// dots), and the local part loses its quotes. No `@`: the whole text, no domain.
fn addr_spec(spec: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut compact = Vec::with_capacity(spec.len());
    let (mut in_quote, mut escape, mut space) = (false, false, false);
    for &b in trim_ws(spec) {
        if in_quote {
            compact.push(b);
            if escape {
                escape = false;
            } else if b == b'\\' {
                escape = true;
            } else if b == b'"' {
                in_quote = false;
            }
            continue;
        }
        if matches!(b, b' ' | b'\t') {
            space = true;
            continue;
        }
        let joins = |c: u8| matches!(c, b'.' | b'@');
        if std::mem::take(&mut space) && !joins(b) && !compact.last().is_some_and(|&c| joins(c)) {
            compact.push(b' ');
        }
        in_quote = b == b'"';
        compact.push(b);
    }
    let mut at = None;
    let mut from = 0;
    while let Some(i) = position_unquoted(&compact, b'@', from) {
        at = Some(i);
        from = i + 1;
    }
    match at {
        Some(at) => (
            unquote(compact.get(..at).unwrap_or_default()),
            Some(compact.get(at + 1..).unwrap_or_default().to_vec()),
        ),
        None => (unquote(&compact), None),
    }
}

/// One address (RFC 5322 3.4): `phrase <addr-spec>`, or a bare addr-spec whose last
/// comment, if any, is taken for the name (`user@host (Real Name)`, as Dovecot and Cyrus
/// do). Comments anywhere, also inside the brackets, are passed over.
fn parse_one(item: &[u8]) -> Option<Address> {
    let Uncommented { text, last_comment } = uncomment(item);
    let text = trim_ws(&text);
    if text.is_empty() {
        return None;
    }
    let angle = position_unquoted(text, b'<', 0)
        .and_then(|open| Some((open, position_unquoted(text, b'>', open)?)));
    let (name, (mailbox, host)) = match angle {
        Some((open, close)) => {
            let name = phrase(text.get(..open).unwrap_or_default());
            let spec = trim_ws(text.get(open + 1..close).unwrap_or_default());
            // Drop a source route (`@a,@b:`), RFC 5322 4.4 obs-route.
            let spec = match spec.iter().position(|&b| b == b':') {
                Some(c) if spec.first() == Some(&b'@') => spec.get(c + 1..).unwrap_or_default(),
                _ => spec,
            };
            ((!name.is_empty()).then_some(name), addr_spec(spec))
        }
        None => (last_comment.filter(|c| !c.is_empty()), addr_spec(text)),
    };
    Some(Address::Mailbox {
        name,
        mailbox,
        host,
    })
}

impl Address {
    /// The address as a reader writes it, `name <mailbox@host>` or `mailbox@host`; a
    /// group's name; nothing for a group's end. What SEARCH FROM, TO, CC and BCC look in.
    pub fn written(&self) -> Vec<u8> {
        match self {
            Address::Mailbox {
                name,
                mailbox,
                host,
            } => {
                let mut out = Vec::new();
                if let Some(name) = name {
                    out.extend_from_slice(name);
                    out.extend_from_slice(b" <");
                }
                out.extend_from_slice(mailbox);
                if let Some(host) = host {
                    out.push(b'@');
                    out.extend_from_slice(host);
                }
                if name.is_some() {
                    out.push(b'>');
                }
                out
            }
            Address::GroupStart(name) => name.clone(),
            Address::GroupEnd => Vec::new(),
        }
    }
}

/// Lines in a text body, as BODYSTRUCTURE's `body-fld-lines` counts them.
/// Text lines of a body: line ends, plus one for a last line without one (a MIME part
/// ends before the CRLF that belongs to the next boundary, RFC 2046 5.1.1).
pub fn count_lines(body: &[u8]) -> usize {
    let ends = body.iter().filter(|&&b| b == b'\n').count();
    ends + usize::from(!body.is_empty() && !body.ends_with(b"\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: \"Doe, Jane\" <jane@example.test>\r\nTo: bob@example.test,\r\n  Carl <carl@x.test>\r\nSubject: Hi\r\n there\r\nDate: Mon, 1 Jan 2024 00:00:01 +0000\r\nMessage-ID: <m1@x>\r\n\r\nBody line\r\n";

    #[test]
    fn split_and_unfold() {
        let (h, b) = split(MSG);
        assert!(h.ends_with(b"<m1@x>\r\n\r\n"));
        assert_eq!(b, b"Body line\r\n");
        let fs = fields(h);
        assert_eq!(field(&fs, "subject"), Some(&b"Hi there"[..]));
        assert_eq!(split(b"no blank line"), (&b"no blank line"[..], &b""[..]));
        assert_eq!(split(b"\r\nbody"), (&b"\r\n"[..], &b"body"[..]));
    }

    #[test]
    fn envelope_exact() {
        let mut out = Vec::new();
        write_envelope(&mut out, split(MSG).0);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "(\"Mon, 1 Jan 2024 00:00:01 +0000\" \"Hi there\" ((\"Doe, Jane\" NIL \"jane\" \"example.test\")) ((\"Doe, Jane\" NIL \"jane\" \"example.test\")) ((\"Doe, Jane\" NIL \"jane\" \"example.test\")) ((NIL NIL \"bob\" \"example.test\")(\"Carl\" NIL \"carl\" \"x.test\")) NIL NIL NIL \"<m1@x>\")"
        );
        let mut out = Vec::new();
        write_envelope(&mut out, b"");
        assert_eq!(out, b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    }

    #[test]
    fn groups_and_comments() {
        let list = parse_addresses(b"undisclosed: a@b, (c) d@e;, f (Fred) ");
        assert_eq!(list.len(), 5);
        assert_eq!(list[0], Address::GroupStart(b"undisclosed".to_vec()));
        assert_eq!(list[3], Address::GroupEnd);
        // A bare addr-spec takes its comment for the name (as Dovecot and Cyrus do).
        assert_eq!(
            list[4],
            Address::Mailbox {
                name: Some(b"Fred".to_vec()),
                mailbox: b"f".to_vec(),
                host: None
            }
        );
    }

    /// The address list as ENVELOPE writes it.
    fn envelope_list(value: &[u8]) -> String {
        let mut out = Vec::new();
        write_addresses(&mut out, Some(value));
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn an_address_without_a_domain_is_no_group_start() {
        // RFC 3501 7.4.2: (NIL NIL "nobody" NIL) would open a group that never ends.
        assert_eq!(
            envelope_list(b"nobody"),
            r#"((NIL NIL "nobody" "MISSING_DOMAIN"))"#
        );
        assert_eq!(
            envelope_list(b"list: nobody;"),
            r#"((NIL NIL "list" NIL)(NIL NIL "nobody" "MISSING_DOMAIN")(NIL NIL NIL NIL))"#
        );
    }

    #[test]
    fn comments_and_white_space_inside_addresses() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"user@domain (Real Name)",
                r#"(("Real Name" NIL "user" "domain"))"#,
            ),
            (
                b"<user (c)@ (c) domain.org>",
                r#"((NIL NIL "user" "domain.org"))"#,
            ),
            (
                b"(lead) x @ y . org (tail)",
                r#"(("tail" NIL "x" "y.org"))"#,
            ),
            (b"a@b.c (x) (Second)", r#"(("Second" NIL "a" "b.c"))"#),
            (
                b"a@b.c (outer (inner) \\) x)",
                r#"(("outer (inner) ) x" NIL "a" "b.c"))"#,
            ),
            (b"a@b.c ()", r#"((NIL NIL "a" "b.c"))"#),
            (b"\"Q\" <q@r.s> (cmt)", r#"(("Q" NIL "q" "r.s"))"#),
            (b"<q@r.s> (cmt)", r#"((NIL NIL "q" "r.s"))"#),
            (
                b"John (x) Smith <a@b.org>",
                r#"(("John Smith" NIL "a" "b.org"))"#,
            ),
            (
                b"Jo \t  Smith <a@b.org>",
                r#"(("Jo Smith" NIL "a" "b.org"))"#,
            ),
            (b"\"john  doe\"@x.org", r#"((NIL NIL "john  doe" "x.org"))"#),
            (b"\"a@b (c)\" <d@e>", r#"(("a@b (c)" NIL "d" "e"))"#),
            (b"<@route,@x:u@h>", r#"((NIL NIL "u" "h"))"#),
            (b"(only a comment)", "NIL"),
        ];
        for (value, expect) in cases {
            assert_eq!(
                envelope_list(value),
                *expect,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        assert_eq!(
            parse_addresses(b"Jane (x) Doe <jane @ example . org>")[0].written(),
            b"Jane Doe <jane@example.org>"
        );
    }

    #[test]
    fn strings() {
        let mut out = Vec::new();
        write_string(&mut out, b"a\"b\\");
        write_string(&mut out, b"x\r\ny");
        write_astring(&mut out, b"INBOX");
        write_astring(&mut out, b"My Box");
        assert_eq!(out, b"\"a\\\"b\\\\\"{4}\r\nx\r\nyINBOX\"My Box\"");
        assert_eq!(
            header_fields(split(MSG).0, &[b"SUBJECT".to_vec()], false),
            b"Subject: Hi\r\n there\r\n\r\n"
        );
        let mut out = Vec::new();
        crate::imap::mime::write_structure(&mut out, MSG, &crate::imap::mime::parse(MSG), false);
        assert_eq!(
            out,
            b"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 11 1)"
        );
    }
}
