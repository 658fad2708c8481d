//! Reading messages out of the two common on-disk mail formats, for seeding a lab: mbox
//! (one file, messages separated by `From ` lines) and Maildir (one file per message, flags
//! in the name). Pure functions on bytes and names; the caller reads the files.

/// The messages of an mbox file, each with CRLF line ends and the `From ` separator line
/// removed. `>From ` quoting is undone one level (mboxrd: `>>From ` becomes `>From `).
pub fn split_mbox(data: &[u8]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in data.split_inclusive(|&b| b == b'\n') {
        let bare = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if bare.starts_with(b"From ") {
            if let Some(m) = current.take() {
                messages.push(finish(m));
            }
            current = Some(Vec::new());
            continue;
        }
        // Text before the first separator is not a message.
        let Some(m) = current.as_mut() else {
            continue;
        };
        let unquoted = match bare.iter().position(|&b| b != b'>') {
            Some(n) if n > 0 && bare.get(n..).is_some_and(|r| r.starts_with(b"From ")) => {
                bare.get(1..).unwrap_or(bare)
            }
            _ => bare,
        };
        m.extend_from_slice(unquoted);
        m.extend_from_slice(b"\r\n");
    }
    if let Some(m) = current {
        messages.push(finish(m));
    }
    messages
}

/// An mbox message ends with the blank line that precedes the next separator.
fn finish(mut m: Vec<u8>) -> Vec<u8> {
    if m.ends_with(b"\r\n\r\n") {
        m.truncate(m.len() - 2);
    }
    m
}

/// Line ends of a single message file made CRLF (bare LF and bare CR both handled).
pub fn crlf_bytes(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    let mut prev = 0u8;
    for &b in data {
        match b {
            b'\n' if prev != b'\r' => out.extend_from_slice(b"\r\n"),
            b'\n' => out.push(b'\n'),
            _ => {
                if prev == b'\r' && b != b'\n' {
                    out.push(b'\n');
                }
                out.push(b);
            }
        }
        prev = b;
    }
    if prev == b'\r' {
        out.push(b'\n');
    }
    out
}

/// IMAP flags from a Maildir file name's info part (`...:2,FRS`): D Draft, F Flagged,
/// R Answered (replied), S Seen, T Deleted (trashed), P `$Forwarded` (passed).
pub fn maildir_flags(file_name: &str) -> Vec<String> {
    let Some((_, info)) = file_name.rsplit_once(":2,") else {
        return Vec::new();
    };
    info.chars()
        .filter_map(|c| match c {
            'D' => Some("\\Draft"),
            'F' => Some("\\Flagged"),
            'R' => Some("\\Answered"),
            'S' => Some("\\Seen"),
            'T' => Some("\\Deleted"),
            'P' => Some("$Forwarded"),
            _ => None,
        })
        .map(String::from)
        .collect()
}

/// The delivery time a Maildir file name starts with (seconds since the epoch), if any.
pub fn maildir_time(file_name: &str) -> Option<i64> {
    let digits: &str = file_name.split('.').next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_split_unquotes_and_normalises() {
        let mbox = b"preamble\nFrom a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody\n>From the start\n>>From deeper\n\nFrom c@d Tue Jan  2 00:00:00 2024\r\nSubject: two\r\n\r\nsecond\r\n";
        let msgs = split_mbox(mbox);
        assert_eq!(msgs.len(), 2);
        assert_eq!(
            msgs[0],
            b"Subject: one\r\n\r\nbody\r\nFrom the start\r\n>From deeper\r\n".to_vec()
        );
        assert_eq!(msgs[1], b"Subject: two\r\n\r\nsecond\r\n".to_vec());
        assert!(split_mbox(b"no separator at all\n").is_empty());
        assert!(split_mbox(b"").is_empty());
    }

    #[test]
    fn crlf_handles_every_line_end() {
        assert_eq!(
            crlf_bytes(b"a\nb\r\nc\rd\r"),
            b"a\r\nb\r\nc\r\nd\r\n".to_vec()
        );
        assert_eq!(crlf_bytes(b""), Vec::<u8>::new());
    }

    #[test]
    fn maildir_names() {
        assert_eq!(
            maildir_flags("1704067201.M1P1.host:2,FRS"),
            vec!["\\Flagged", "\\Answered", "\\Seen"]
        );
        assert!(maildir_flags("1704067201.M1P1.host").is_empty());
        assert_eq!(maildir_time("1704067201.M1P1.host:2,"), Some(1_704_067_201));
        assert_eq!(maildir_time("abc.host"), None);
    }
}
