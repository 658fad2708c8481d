//! EXPUNGE (RFC 3501 6.4.3), UID EXPUNGE (RFC 4315 2.1) and CLOSE (RFC 3501 6.4.2), which
//! expunges silently. The `* n EXPUNGE` responses come from the sync that follows the
//! command.

use imap_codec::imap_types::sequence::SequenceSet;

use crate::imap::server::{ImapServer, Reply};
use crate::imap::view::Ranges;

fn deleted(m: &crate::world::StoredMessage) -> bool {
    m.flags.contains("\\Deleted")
}

impl ImapServer {
    pub(in crate::imap) fn expunge(&mut self) -> Option<Reply> {
        if self.view.as_ref().is_some_and(|v| v.read_only) {
            return Reply::no("Mailbox is read-only");
        }
        let name = self.view.as_ref().map(|v| v.mailbox.clone());
        if let Some(name) = name {
            self.remove_messages(&name, deleted);
        }
        Reply::ok("EXPUNGE completed")
    }

    /// RFC 4315 2.1: UID EXPUNGE removes only the \Deleted messages it names.
    pub(in crate::imap) fn uid_expunge(&mut self, set: &SequenceSet) -> Option<Reply> {
        if self.view.as_ref().is_some_and(|v| v.read_only) {
            return Reply::no("Mailbox is read-only");
        }
        let Some(view) = &self.view else {
            return Reply::bad("No mailbox selected");
        };
        let name = view.mailbox.clone();
        let r = Ranges::resolve(set, view.max_uid());
        self.remove_messages(&name, |m| deleted(m) && r.contains(m.uid));
        Reply::ok("UID EXPUNGE completed")
    }

    /// RFC 3501 6.4.2: silent expunge, unless the mailbox is read-only.
    pub(in crate::imap) fn close_mailbox(&mut self) -> Option<Reply> {
        if let Some(view) = self.view.take() {
            if !view.read_only {
                self.remove_messages(&view.mailbox, deleted);
            }
        }
        Reply::ok("CLOSE completed")
    }
}
