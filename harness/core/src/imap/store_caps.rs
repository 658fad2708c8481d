//! The caps on how far one session may grow the store (RFC 5530 3 `LIMIT` when reached).

use crate::world::{Mailbox, StoredMessage};

/// How much one session may grow an account through APPEND, COPY and CREATE, so that a
/// client cannot exhaust the lab's memory (COPY 1:* into the same mailbox doubles it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCaps {
    pub max_messages: usize,
    /// Total octets of the messages of one mailbox.
    pub max_bytes: usize,
    pub max_mailboxes: usize,
}

impl Default for StoreCaps {
    fn default() -> Self {
        StoreCaps {
            max_messages: 100_000,
            max_bytes: 256 * 1024 * 1024,
            max_mailboxes: 1000,
        }
    }
}

impl StoreCaps {
    /// True if `extra` messages of `extra_bytes` octets still fit in `mb`.
    pub(super) fn fits(&self, mb: &Mailbox, extra: usize, extra_bytes: usize) -> bool {
        let bytes: usize = mb.messages.iter().map(StoredMessage::size).sum();
        mb.messages.len().saturating_add(extra) <= self.max_messages
            && bytes.saturating_add(extra_bytes) <= self.max_bytes
    }
}
