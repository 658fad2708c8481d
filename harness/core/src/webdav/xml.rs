//! The XML of WebDAV bodies: a small element tree read with quick-xml (namespaces
//! resolved, nesting and element count bounded, no DTD), and the escaping the hand-written
//! replies need.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

// A message that repeats the client's text (a name may be 64 KiB long) escapes its
// controls and keeps at most 200 octets of it.
use super::printable as short;

/// The `DAV:` namespace (RFC 4918 §21.1).
pub const DAV: &str = "DAV:";
/// Exchange's mail properties (EXSDK `urn:schemas:httpmail:`).
pub const HTTPMAIL: &str = "urn:schemas:httpmail:";

/// One element: its namespace (empty when unbound), local name, child elements and the
/// text directly inside it (entity and character references resolved).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub ns: String,
    pub name: String,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// Is this `{ns}name`?
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// The first child `{ns}name`.
    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, name))
    }
}

/// What a body's XML may not do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("the body has no root element")]
    Empty,
    #[error("elements nest deeper than {0}")]
    TooDeep(usize),
    #[error("more than {0} elements")]
    TooManyElements(usize),
    #[error("a DOCTYPE is not accepted")]
    Doctype,
    #[error("unknown entity &{0};")]
    UnknownEntity(String),
}

/// How much XML one reading accepts.
#[derive(Debug, Clone, Copy)]
pub struct XmlLimits {
    pub max_depth: usize,
    pub max_elements: usize,
}

/// Reads `body` as one XML document into its root element.
pub fn parse(body: &[u8], limits: XmlLimits) -> Result<Element, XmlError> {
    let text =
        std::str::from_utf8(body).map_err(|e| XmlError::Malformed(format!("not UTF-8 ({e})")))?;
    let mut reader = NsReader::from_str(text);
    let malformed = |e: quick_xml::Error| XmlError::Malformed(short(&e.to_string()));
    // The open elements, innermost last; the finished root lands in `root`.
    let mut open: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(malformed)?;
        let ns = match ns {
            ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
            ResolveResult::Unbound => String::new(),
            ResolveResult::Unknown(p) => {
                return Err(XmlError::Malformed(format!(
                    "unknown namespace prefix \"{}\"",
                    short(&String::from_utf8_lossy(&p))
                )))
            }
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if root.is_some() {
                    return Err(XmlError::Malformed("content after the root element".into()));
                }
                count += 1;
                if count > limits.max_elements {
                    return Err(XmlError::TooManyElements(limits.max_elements));
                }
                if open.len() >= limits.max_depth {
                    return Err(XmlError::TooDeep(limits.max_depth));
                }
                // Attributes are not used, but a broken one is still malformed XML.
                for a in e.attributes() {
                    a.map_err(|e| XmlError::Malformed(short(&e.to_string())))?;
                }
                let element = Element {
                    ns,
                    name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    ..Element::default()
                };
                if matches!(event, Event::Start(_)) {
                    open.push(element);
                } else {
                    close(element, &mut open, &mut root);
                }
            }
            Event::End(_) => {
                // quick-xml checks that the names match.
                let element = open
                    .pop()
                    .ok_or_else(|| XmlError::Malformed("end tag without a start".into()))?;
                close(element, &mut open, &mut root);
            }
            Event::Text(t) => {
                let t = t.xml10_content().map_err(|e| malformed(e.into()))?;
                push_text(&mut open, &t)?;
            }
            Event::CData(t) => {
                let t = t.decode().map_err(|e| malformed(e.into()))?;
                push_text(&mut open, &t)?;
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(malformed)? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| malformed(e.into()))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| XmlError::UnknownEntity(short(&name)))?
                            .to_string()
                    }
                };
                push_text(&mut open, &resolved)?;
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => {
                if !open.is_empty() {
                    return Err(XmlError::Malformed(
                        "the document ends inside an element".into(),
                    ));
                }
                return root.ok_or(XmlError::Empty);
            }
        }
    }
}

fn close(element: Element, open: &mut [Element], root: &mut Option<Element>) {
    match open.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn push_text(open: &mut [Element], text: &str) -> Result<(), XmlError> {
    match open.last_mut() {
        Some(e) => {
            e.text.push_str(text);
            Ok(())
        }
        // Whitespace around the root is allowed, anything else is not.
        None if text.trim().is_empty() => Ok(()),
        None => Err(XmlError::Malformed("text outside the root element".into())),
    }
}

/// `text` escaped for element content or an attribute value; characters XML 1.0 cannot
/// carry (most C0 controls) become U+FFFD, so a reply stays well-formed whatever a
/// message's header holds.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: XmlLimits = XmlLimits {
        max_depth: 4,
        max_elements: 8,
    };

    #[test]
    fn namespaces_text_and_references_are_resolved() {
        let doc = br#"<?xml version="1.0"?><D:a xmlns:D="DAV:"><b xmlns="urn:x:">x &amp; &#65;<![CDATA[<y>]]></b><D:c/></D:a>"#;
        let root = parse(doc, LIMITS).expect("parses");
        assert_eq!(
            root,
            Element {
                ns: "DAV:".into(),
                name: "a".into(),
                text: String::new(),
                children: vec![
                    Element {
                        ns: "urn:x:".into(),
                        name: "b".into(),
                        text: "x & A<y>".into(),
                        children: vec![],
                    },
                    Element {
                        ns: "DAV:".into(),
                        name: "c".into(),
                        ..Element::default()
                    },
                ],
            }
        );
    }

    #[test]
    fn bad_documents_are_refused_with_the_reason() {
        let cases: [(&[u8], XmlError); 10] = [
            (b"", XmlError::Empty),
            (b"  ", XmlError::Empty),
            (b"<a><b><c><d><e/></d></c></b></a>", XmlError::TooDeep(4)),
            (
                b"<a><b/><b/><b/><b/><b/><b/><b/><b/></a>",
                XmlError::TooManyElements(8),
            ),
            (b"<!DOCTYPE a [<!ENTITY x \"y\">]><a/>", XmlError::Doctype),
            (b"<a>&x;</a>", XmlError::UnknownEntity("x".into())),
            (
                b"<a><b></a>",
                XmlError::Malformed(
                    "ill-formed document: expected `</b>`, but `</a>` was found".into(),
                ),
            ),
            (
                b"<a>",
                XmlError::Malformed("the document ends inside an element".into()),
            ),
            (
                b"<a/><b/>",
                XmlError::Malformed("content after the root element".into()),
            ),
            (
                b"<x:a/>",
                XmlError::Malformed("unknown namespace prefix \"x\"".into()),
            ),
        ];
        for (doc, expected) in cases {
            assert_eq!(
                parse(doc, LIMITS),
                Err(expected),
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
        // A name of controls is escaped and cut (webdav_body's second finding).
        let long = format!("<x{}:a/>", "\u{1f}".repeat(100));
        assert_eq!(
            parse(long.as_bytes(), LIMITS),
            Err(XmlError::Malformed(format!(
                "unknown namespace prefix \"x{}…\"",
                "\\u{1f}".repeat(33)
            )))
        );
        assert!(matches!(
            parse(b"<a>\xff</a>", LIMITS),
            Err(XmlError::Malformed(m)) if m.starts_with("not UTF-8")
        ));
    }

    #[test]
    fn escape_keeps_replies_well_formed() {
        assert_eq!(
            escape("a<b>&\"c\"\u{7}\td"),
            "a&lt;b&gt;&amp;&quot;c&quot;\u{fffd}\td"
        );
    }
}
