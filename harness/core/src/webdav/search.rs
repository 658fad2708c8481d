//! The SQL of a SEARCH (EXSDK "Searching Folders (WebDAV)"), the subset this store runs:
//!
//! ```text
//! SELECT "DAV:href", "urn:schemas:httpmail:subject"
//! FROM SCOPE('shallow traversal of "/exchange/alice/Inbox/"')   -- or FROM "<url>"
//! WHERE "DAV:ishidden" = false AND "DAV:isfolder" = false        -- optional
//! ```
//!
//! WHERE terms compare `DAV:ishidden` or `DAV:isfolder` with `true`/`false` (or `1`/`0`)
//! and are joined by AND. Text that is not SQL is [`SqlError::Malformed`] (400); SQL this
//! subset does not run (deep traversal, other columns or operators, OR, ORDER BY, `*`)
//! is [`SqlError::Unsupported`] (422).

/// The most tokens one query may have (a body is at most 64 KiB anyway).
const MAX_TOKENS: usize = 1024;

/// A query this store runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The columns, as (namespace, local name).
    pub select: Vec<(String, String)>,
    /// The folder's URL as written (absolute or a path).
    pub scope: String,
    /// `DAV:isfolder` must equal this, when given.
    pub isfolder: Option<bool>,
    /// `DAV:ishidden` must equal this, when given (nothing here is hidden).
    pub ishidden: Option<bool>,
}

impl Query {
    /// Whether a row (a folder or not, never hidden) passes the WHERE clause.
    pub fn matches(&self, folder: bool) -> bool {
        self.isfolder.is_none_or(|f| f == folder) && self.ishidden.is_none_or(|h| !h)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    #[error("malformed SQL: {0}")]
    Malformed(String),
    #[error("SQL this store does not run: {0}")]
    Unsupported(String),
}

impl SqlError {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        match self {
            SqlError::Malformed(_) => 400,
            SqlError::Unsupported(_) => 422,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A keyword or bare value (`SELECT`, `false`).
    Word(String),
    /// `"…"`: a property name or URL.
    Quoted(String),
    /// `'…'`: a string literal.
    Literal(String),
    Open,
    Close,
    Comma,
    /// `=`, or an operator this subset does not run (`<`, `>=`, `!=`, `*`).
    Op(String),
}

fn tokens(sql: &str) -> Result<Vec<Token>, SqlError> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(&c) = chars.peek() {
        if out.len() > MAX_TOKENS {
            return Err(SqlError::Unsupported(format!(
                "more than {MAX_TOKENS} tokens"
            )));
        }
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '"' | '\'' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        // A doubled quote stands for itself.
                        Some(q) if q == c && chars.peek() == Some(&c) => {
                            chars.next();
                            text.push(c);
                        }
                        Some(q) if q == c => break,
                        Some(other) => text.push(other),
                        None => {
                            return Err(SqlError::Malformed(format!(
                                "a string opened with {c} is not closed"
                            )))
                        }
                    }
                }
                out.push(if c == '"' {
                    Token::Quoted(text)
                } else {
                    Token::Literal(text)
                });
            }
            '(' | ')' | ',' => {
                chars.next();
                out.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
            }
            '=' | '<' | '>' | '!' | '*' => {
                let mut op = String::new();
                while let Some(&o) = chars.peek().filter(|o| "=<>!*".contains(**o)) {
                    op.push(o);
                    chars.next();
                }
                out.push(Token::Op(op));
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut word = String::new();
                while let Some(&w) = chars.peek().filter(|w| w.is_alphanumeric() || **w == '_') {
                    word.push(w);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
            other => {
                return Err(SqlError::Malformed(format!(
                    "unexpected character {other:?}"
                )))
            }
        }
    }
    Ok(out)
}

/// Splits a property's URI into namespace and local name (`DAV:href` is `DAV:`, `href`;
/// `http://…/proptag/x0037001f` splits at the last `/`).
pub fn split_property(uri: &str) -> (String, String) {
    match uri.rfind([':', '/', '#']) {
        Some(i) => (uri[..=i].to_string(), uri[i + 1..].to_string()),
        None => (String::new(), uri.to_string()),
    }
}

/// The path of a URL as written in a scope: `http://host/exchange/…` gives `/exchange/…`.
pub fn url_path(url: &str) -> String {
    let lower = url.to_ascii_lowercase();
    for scheme in ["http://", "https://"] {
        if lower.starts_with(scheme) {
            let rest = &url[scheme.len()..];
            return match rest.find('/') {
                Some(i) => rest[i..].to_string(),
                None => "/".to_string(),
            };
        }
    }
    url.to_string()
}

struct Parser {
    tokens: std::vec::IntoIter<Token>,
}

impl Parser {
    fn next(&mut self) -> Option<Token> {
        self.tokens.next()
    }

    fn keyword(&mut self, want: &str) -> Result<(), SqlError> {
        match self.next() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(want) => Ok(()),
            other => Err(SqlError::Malformed(format!(
                "expected {want}, found {}",
                shown(other.as_ref())
            ))),
        }
    }
}

fn shown(token: Option<&Token>) -> String {
    match token {
        None => "the end".into(),
        Some(Token::Word(w)) => w.clone(),
        Some(Token::Quoted(q)) => format!("\"{q}\""),
        Some(Token::Literal(l)) => format!("'{l}'"),
        Some(Token::Open) => "(".into(),
        Some(Token::Close) => ")".into(),
        Some(Token::Comma) => ",".into(),
        Some(Token::Op(o)) => o.clone(),
    }
}

/// Reads the SQL of a `DAV:sql` element.
pub fn parse(sql: &str) -> Result<Query, SqlError> {
    // The messages repeat the query's words, which may be long or hold controls.
    parse_query(sql).map_err(|e| match e {
        SqlError::Malformed(m) => SqlError::Malformed(super::printable(&m)),
        SqlError::Unsupported(m) => SqlError::Unsupported(super::printable(&m)),
    })
}

fn parse_query(sql: &str) -> Result<Query, SqlError> {
    let mut p = Parser {
        tokens: tokens(sql)?.into_iter(),
    };
    p.keyword("SELECT")?;
    let mut select = Vec::new();
    loop {
        match p.next() {
            Some(Token::Quoted(name)) => select.push(split_property(&name)),
            Some(Token::Op(o)) if o == "*" => {
                return Err(SqlError::Unsupported(
                    "SELECT * (name the properties)".into(),
                ))
            }
            other => {
                return Err(SqlError::Malformed(format!(
                    "expected a quoted property name, found {}",
                    shown(other.as_ref())
                )))
            }
        }
        match p.next() {
            Some(Token::Comma) => continue,
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("FROM") => break,
            other => {
                return Err(SqlError::Malformed(format!(
                    "expected , or FROM, found {}",
                    shown(other.as_ref())
                )))
            }
        }
    }
    let scope = match p.next() {
        Some(Token::Quoted(url)) => url,
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("SCOPE") => {
            let (Some(Token::Open), Some(Token::Literal(text)), Some(Token::Close)) =
                (p.next(), p.next(), p.next())
            else {
                return Err(SqlError::Malformed(
                    "SCOPE takes one quoted string: SCOPE('shallow traversal of \"url\"')".into(),
                ));
            };
            scope_url(&text)?
        }
        other => {
            return Err(SqlError::Malformed(format!(
                "expected SCOPE(…) or a quoted URL after FROM, found {}",
                shown(other.as_ref())
            )))
        }
    };
    let mut query = Query {
        select,
        scope,
        isfolder: None,
        ishidden: None,
    };
    match p.next() {
        None => return Ok(query),
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("WHERE") => {}
        Some(Token::Word(w))
            if w.eq_ignore_ascii_case("ORDER") || w.eq_ignore_ascii_case("GROUP") =>
        {
            return Err(SqlError::Unsupported(format!(
                "{} BY",
                w.to_ascii_uppercase()
            )))
        }
        other => {
            return Err(SqlError::Malformed(format!(
                "expected WHERE or the end, found {}",
                shown(other.as_ref())
            )))
        }
    }
    loop {
        let column = match p.next() {
            Some(Token::Quoted(c)) => c,
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("NOT") => {
                return Err(SqlError::Unsupported("NOT".into()))
            }
            Some(Token::Open) => return Err(SqlError::Unsupported("parentheses in WHERE".into())),
            other => {
                return Err(SqlError::Malformed(format!(
                    "expected a quoted property name in WHERE, found {}",
                    shown(other.as_ref())
                )))
            }
        };
        match p.next() {
            Some(Token::Op(o)) if o == "=" => {}
            Some(Token::Op(o)) => {
                return Err(SqlError::Unsupported(format!("the operator {o} (only =)")))
            }
            Some(Token::Word(w)) => {
                return Err(SqlError::Unsupported(format!(
                    "the operator {} (only =)",
                    w.to_ascii_uppercase()
                )))
            }
            other => {
                return Err(SqlError::Malformed(format!(
                    "expected = after \"{column}\", found {}",
                    shown(other.as_ref())
                )))
            }
        }
        let value = match p.next() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") || w == "1" => true,
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") || w == "0" => false,
            other => {
                return Err(SqlError::Unsupported(format!(
                    "comparing with {} (only true or false)",
                    shown(other.as_ref())
                )))
            }
        };
        match column.as_str() {
            "DAV:isfolder" => query.isfolder = Some(value),
            "DAV:ishidden" => query.ishidden = Some(value),
            other => {
                return Err(SqlError::Unsupported(format!(
                    "WHERE on \"{other}\" (only \"DAV:ishidden\" and \"DAV:isfolder\")"
                )))
            }
        }
        match p.next() {
            None => return Ok(query),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("AND") => {}
            Some(Token::Word(w))
                if ["OR", "ORDER", "GROUP"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                return Err(SqlError::Unsupported(w.to_ascii_uppercase()))
            }
            other => {
                return Err(SqlError::Malformed(format!(
                    "expected AND or the end, found {}",
                    shown(other.as_ref())
                )))
            }
        }
    }
}

/// The URL of `shallow traversal of "url"`.
fn scope_url(text: &str) -> Result<String, SqlError> {
    let words: Vec<&str> = text.split_whitespace().take(3).collect();
    let kind = words.first().map(|w| w.to_ascii_lowercase());
    let of_traversal = words
        .get(1)
        .is_some_and(|w| w.eq_ignore_ascii_case("traversal"))
        && words.get(2).is_some_and(|w| w.eq_ignore_ascii_case("of"));
    match kind.as_deref() {
        Some("shallow") if of_traversal => {}
        Some("deep" | "hierarchical") if of_traversal => {
            return Err(SqlError::Unsupported(format!(
                "{} traversal (only shallow)",
                words.first().copied().unwrap_or_default()
            )))
        }
        // A bare URL is a deep traversal (EXSDK SCOPE).
        _ => {
            return Err(SqlError::Unsupported(
                "a SCOPE without 'shallow traversal of'".into(),
            ))
        }
    }
    let quoted = text.find('"').and_then(|start| {
        let rest = &text[start + 1..];
        rest.find('"')
            .map(|end| (&rest[..end], rest[end + 1..].trim()))
    });
    match quoted {
        Some((url, "")) if !url.is_empty() => Ok(url.to_string()),
        _ => Err(SqlError::Malformed(
            "the scope names its URL in double quotes: 'shallow traversal of \"url\"'".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exsdk_query_and_a_plain_from() {
        let q = parse(
            "SELECT \"DAV:href\", \"urn:schemas:httpmail:subject\" FROM SCOPE('shallow traversal of \"/exchange/alice/Inbox/\"') WHERE \"DAV:ishidden\" = false AND \"DAV:isfolder\" = false",
        )
        .expect("parses");
        assert_eq!(
            q,
            Query {
                select: vec![
                    ("DAV:".into(), "href".into()),
                    ("urn:schemas:httpmail:".into(), "subject".into())
                ],
                scope: "/exchange/alice/Inbox/".into(),
                isfolder: Some(false),
                ishidden: Some(false),
            }
        );
        assert!(q.matches(false) && !q.matches(true));
        let q = parse("select \"DAV:displayname\" from \"http://mail/exchange/alice/Inbox\"")
            .expect("parses");
        assert_eq!(
            (q.scope.as_str(), q.isfolder),
            ("http://mail/exchange/alice/Inbox", None)
        );
        assert_eq!(url_path(&q.scope), "/exchange/alice/Inbox");
        assert!(q.matches(true) && q.matches(false));
    }

    #[test]
    fn bad_and_unsupported_sql_say_why() {
        let scope = "FROM SCOPE('shallow traversal of \"/x/\"')";
        let cases: Vec<(String, SqlError)> = vec![
            ("".into(), SqlError::Malformed("expected SELECT, found the end".into())),
            (
                "SELECT \"DAV:href\" FROM SCOPE('shallow traversal of \"/x/".into(),
                SqlError::Malformed("a string opened with ' is not closed".into()),
            ),
            (
                format!("SELECT * {scope}"),
                SqlError::Unsupported("SELECT * (name the properties)".into()),
            ),
            (
                "SELECT \"DAV:href\" FROM SCOPE('deep traversal of \"/x/\"')".into(),
                SqlError::Unsupported("deep traversal (only shallow)".into()),
            ),
            (
                format!("SELECT \"DAV:href\" {scope} WHERE \"urn:schemas:httpmail:read\" = false"),
                SqlError::Unsupported(
                    "WHERE on \"urn:schemas:httpmail:read\" (only \"DAV:ishidden\" and \"DAV:isfolder\")"
                        .into(),
                ),
            ),
            (
                format!("SELECT \"DAV:href\" {scope} WHERE \"DAV:isfolder\" != false"),
                SqlError::Unsupported("the operator != (only =)".into()),
            ),
            (
                format!("SELECT \"DAV:href\" {scope} WHERE \"DAV:isfolder\" = false OR \"DAV:ishidden\" = false"),
                SqlError::Unsupported("OR".into()),
            ),
            (
                format!("SELECT \"DAV:href\" {scope} ORDER BY \"DAV:href\""),
                SqlError::Unsupported("ORDER BY".into()),
            ),
            (
                format!("SELECT \"DAV:href\" {scope} WHERE \"DAV:isfolder\" = 'no'"),
                SqlError::Unsupported("comparing with 'no' (only true or false)".into()),
            ),
            (
                "SELECT \"DAV:href\" FROM SCOPE('shallow traversal of /x/')".into(),
                SqlError::Malformed(
                    "the scope names its URL in double quotes: 'shallow traversal of \"url\"'"
                        .into(),
                ),
            ),
            (
                "SELECT \"DAV:href\" FROM alice".into(),
                SqlError::Malformed(
                    "expected SCOPE(…) or a quoted URL after FROM, found alice".into(),
                ),
            ),
            (
                "SELECT \"DAV:href\"; DROP".into(),
                SqlError::Malformed("unexpected character ';'".into()),
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(parse(&sql), Err(expected.clone()), "{sql}");
        }
        let long = format!("SELECT {}", "\"a\", ".repeat(600));
        assert_eq!(
            parse(&long),
            Err(SqlError::Unsupported("more than 1024 tokens".into()))
        );
    }

    #[test]
    fn property_uris_split_into_namespace_and_name() {
        assert_eq!(
            split_property("http://schemas.microsoft.com/mapi/proptag/x0037001f"),
            (
                "http://schemas.microsoft.com/mapi/proptag/".into(),
                "x0037001f".into()
            )
        );
        assert_eq!(split_property("plain"), (String::new(), "plain".into()));
    }
}
