//! IDLE (RFC 2177): after the continuation the session reports changes as they happen,
//! until the client sends `DONE`.

use crate::imap::server::{ImapServer, Mode, Reply};
use crate::profile::ImapStatus;

impl ImapServer {
    /// Starts IDLE; the tagged completion comes when `DONE` arrives.
    pub(in crate::imap) fn idle(&mut self, tag: &str) -> Option<Reply> {
        self.write(b"+ idling\r\n");
        self.mode = Mode::Idle {
            tag: tag.to_string(),
        };
        self.sync(true);
        None
    }

    pub(in crate::imap) fn idle_line(&mut self, tag: String, line: &[u8]) {
        // RFC 2177 3: the client ends IDLE with "DONE".
        if line.eq_ignore_ascii_case(b"DONE") {
            self.sync(true);
            self.tagged(&tag, Reply::of(ImapStatus::Ok, "IDLE terminated"));
        } else {
            self.tagged(
                &tag,
                Reply::of(ImapStatus::Bad, "Expected DONE to end IDLE"),
            );
        }
    }
}
