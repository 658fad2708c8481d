//! LIST and LSUB (RFC 3501 6.3.8, 6.3.9), with CHILDREN (RFC 3348).

use std::collections::BTreeMap;
use std::sync::Arc;

use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox as MailboxName};

use crate::imap::mailbox_name::DELIMITER;
use crate::imap::message::write_astring;
use crate::imap::server::{ImapServer, Reply};

impl ImapServer {
    /// LIST / LSUB (RFC 3501 6.3.8, 6.3.9).
    pub(in crate::imap) fn list(
        &mut self,
        reference: &MailboxName<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
    ) -> Option<Reply> {
        let word = if lsub { "LSUB" } else { "LIST" };
        let reference = match reference {
            MailboxName::Inbox => "INBOX".to_string(),
            MailboxName::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
        };
        let pattern_bytes: &[u8] = match pattern {
            ListMailbox::Token(t) => t.as_ref(),
            ListMailbox::String(s) => s.as_ref(),
        };
        let pattern = String::from_utf8_lossy(pattern_bytes).into_owned();
        if pattern.is_empty() && !lsub {
            // The delimiter and root of the reference's hierarchy.
            self.write(format!("* LIST (\\Noselect) \"{DELIMITER}\" \"\"\r\n").as_bytes());
            return Reply::ok("LIST completed");
        }
        let full = format!("{reference}{pattern}");
        let matches = |name: &str| {
            if name == "INBOX" {
                wildcard_match(&full.to_ascii_uppercase(), "INBOX")
            } else {
                wildcard_match(&full, name)
            }
        };
        let world = Arc::clone(&self.ctx.world);
        let names: BTreeMap<String, bool> = world.store.with_account(&self.user_key(), |acct| {
            // LIST: the mailboxes; LSUB: the subscribed names, whether or not a mailbox
            // has the name now (RFC 3501 6.3.9). Then parents implied by hierarchy names.
            let mut names = BTreeMap::new();
            if lsub {
                for name in &acct.subscriptions {
                    names.insert(name.clone(), true);
                }
            } else {
                for name in acct.mailboxes.keys() {
                    names.insert(name.clone(), true);
                }
            }
            let listed: Vec<String> = names.keys().cloned().collect();
            for name in listed {
                // RFC 3501 6.3.9: a `%` at the end of an LSUB pattern stops at a level, and
                // a subscribed name below it shows as its superior at that level, flagged
                // \Noselect unless that superior is subscribed itself.
                if lsub && (!full.ends_with('%') || matches(&name)) {
                    continue;
                }
                for (at, _) in name.match_indices(DELIMITER) {
                    let Some(parent) = name.get(..at) else {
                        continue;
                    };
                    if !lsub || matches(parent) {
                        names.entry(parent.to_string()).or_insert(false);
                    }
                }
            }
            names
        });
        // RFC 3348: with CHILDREN, every LIST entry says whether it has inferiors.
        let children = !lsub && self.has_capability("CHILDREN");
        let parent_of = |name: &str| {
            let prefix = format!("{name}{DELIMITER}");
            names.keys().any(|k| k.starts_with(&prefix))
        };
        let mut out = Vec::new();
        for (name, &selectable) in &names {
            if matches(name) {
                let mut attrs: Vec<&str> = Vec::new();
                if !selectable {
                    attrs.push("\\Noselect");
                }
                if children {
                    attrs.push(if parent_of(name) {
                        "\\HasChildren"
                    } else {
                        "\\HasNoChildren"
                    });
                }
                let attrs = format!("({})", attrs.join(" "));
                out.extend_from_slice(format!("* {word} {attrs} \"{DELIMITER}\" ").as_bytes());
                write_astring(&mut out, name.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        self.write(&out);
        Reply::ok(format!("{word} completed"))
    }
}

/// `*` and `%` matching (RFC 3501 6.3.8): `*` matches anything, `%` anything but the
/// delimiter. Iterative with one backtrack point per wildcard kind, O(pattern x name).
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // dp[j]: pattern prefix so far matches name prefix of length j.
    let mut dp = vec![false; n.len() + 1];
    dp[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                let mut reach = false;
                for j in 0..=n.len() {
                    if dp[j] {
                        reach = true;
                    }
                    next[j] = reach;
                    // `%` cannot run across a delimiter.
                    if pc == '%' && n.get(j) == Some(&DELIMITER) {
                        reach = false;
                    }
                }
            }
            c => {
                for j in 0..n.len() {
                    if dp[j] && n.get(j) == Some(&c) {
                        next[j + 1] = true;
                    }
                }
            }
        }
        dp = next;
    }
    dp[n.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", "Archive/2024"));
        assert!(!wildcard_match("%", "Archive/2024"));
        assert!(wildcard_match("%", "Archive"));
        assert!(wildcard_match("Archive/%", "Archive/2024"));
        assert!(wildcard_match("A*4", "Archive/2024"));
        assert!(!wildcard_match("A%4", "Archive/2024"));
        assert!(wildcard_match("INBOX", "INBOX"));
        assert!(!wildcard_match("INBOX", "INBOX2"));
        assert!(wildcard_match("", ""));
    }
}
