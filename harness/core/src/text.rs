//! Making peer text safe to show in step lines, traces and snapshots, and the names enums
//! are shown by.

/// `Display` for enums shown by their `name()` (one impl for all of them).
macro_rules! display_by_name {
    ($($t:ty),+ $(,)?) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    )+};
}
pub(crate) use display_by_name;

/// One printable line: trailing CR and LF characters are dropped, printable ASCII and spaces are
/// kept, anything else becomes `?`, and the text is cut at `max` characters with `...`.
pub fn printable(bytes: &[u8], max: usize) -> String {
    let mut bytes = bytes;
    while let [rest @ .., b'\r' | b'\n'] = bytes {
        bytes = rest;
    }
    let mut s: String = bytes
        .iter()
        .take(max)
        .map(|&b| {
            if b == b' ' || b.is_ascii_graphic() {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect();
    if bytes.len() > max {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn masks_controls_drops_the_line_end_and_cuts() {
        assert_eq!(printable(b"a\x01b\xffc", 10), "a?b?c");
        assert_eq!(printable(b"a\x01b\r\n", 10), "a?b");
        assert_eq!(printable(b"NOOP\r", 10), "NOOP");
        assert_eq!(printable(b"abcdef", 3), "abc...");
        assert_eq!(printable(b"", 3), "");
    }
}
