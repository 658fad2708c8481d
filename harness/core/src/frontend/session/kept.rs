//! The side of a lease that may outlive its client session: the session cache's
//! (`PoolPolicy::keep_sessions`: park the authenticated back-end session for its user) and
//! the pool's (`PoolPolicy::unauthenticate`: recycle the connection for any user). Both
//! follow the relayed traffic and answer a LOGOUT themselves; the session cache's reset
//! (UNSELECT) goes out ahead of the next client's first command here, the pool's
//! (UNAUTHENTICATE) ahead of the next request made on the connection (`backend_events`).

use super::*;

/// Where a kept session's reset (UNSELECT) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reset {
    /// Nothing selected (fresh from LOGIN, or reset).
    Done,
    /// Taken from the cache: the reset goes out ahead of the client's first command.
    Needed,
    /// Sent; back-end output up to its completion belongs to the previous client.
    InFlight,
}

/// Where a kept lease goes when its client logs out.
#[derive(Debug)]
pub(super) enum KeepAs {
    /// Parked in the session cache for this user and these credentials.
    Park {
        user: String,
        digest: CredentialDigest,
        ok_text: String,
    },
    /// Back to the pool, to be reset with UNAUTHENTICATE before its next request.
    Recycle,
}

/// A lease that may end in the session cache or back in the pool.
#[derive(Debug)]
pub(super) struct Keep {
    pub(super) target: KeepAs,
    /// The back-end can reset the session the way the target needs (UNSELECT for the
    /// cache, UNAUTHENTICATE for the pool): without it the session is not kept.
    pub(super) can_reset: bool,
    /// A client command used the reset tag: the session is not kept.
    pub(super) tainted: bool,
    pub(super) reset: Reset,
    /// Client commands relayed, and tagged completions relayed back (the reset's own not
    /// counted): equal when nothing is outstanding.
    pub(super) commands: u64,
    pub(super) completions: u64,
    pub(super) client: StreamScanner,
    pub(super) backend: StreamScanner,
}

impl Keep {
    pub(super) fn new(target: KeepAs, can_reset: bool, reset: Reset) -> Keep {
        Keep {
            target,
            can_reset,
            tainted: false,
            reset,
            commands: 0,
            completions: 0,
            client: StreamScanner::new(SCAN_LINE),
            backend: StreamScanner::responses(SCAN_LINE),
        }
    }

    /// Nothing the client sent is still waiting for its completion, and no reset is in
    /// flight.
    pub(super) fn drained(&self) -> bool {
        self.commands == self.completions && self.reset != Reset::InFlight
    }
}

pub(super) fn is_reset_reply(line: &[u8]) -> bool {
    line.starts_with(RESET_TAG.as_bytes()) && line.get(RESET_TAG.len()) == Some(&b' ')
}

impl FrontendSession {
    /// The client sent LOGOUT on a lease that may be kept: once the back-end has answered
    /// everything the client sent before, the front-end answers the LOGOUT itself and the
    /// session is parked (its reset waits for the next client). A session that cannot be
    /// kept gets the LOGOUT relayed.
    pub(super) fn logout_leased(&mut self, conn: ConnId, client_tag: String, line: Vec<u8>) {
        let Some(keep) = self.keep.as_ref() else {
            self.relay_to_backend(conn, line);
            return;
        };
        let (what, reset) = match keep.target {
            KeepAs::Park { .. } => ("session cache", "UNSELECT"),
            KeepAs::Recycle => ("pool", "UNAUTHENTICATE"),
        };
        let why = if !keep.can_reset {
            Some(format!("the back-end does not offer {reset}"))
        } else if keep.tainted {
            Some("the client used the front-end's reset tag or UNAUTHENTICATE".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            self.be(conn, "..", format!("{what}: not kept ({why})"));
            self.keep = None;
            self.relay_to_backend(conn, line);
            return;
        }
        self.phase = Phase::Returning {
            conn,
            client_tag,
            deadline: self.last_input.saturating_add(RETURN_WAIT),
        };
        self.finish_return(conn);
    }

    /// Back-end output on a kept lease: the previous client's leftovers and the reset's
    /// completion are swallowed, the rest is relayed with its completions counted.
    pub(super) fn kept_backend_input(&mut self, conn: ConnId, bytes: &[u8]) {
        let Some(keep) = self.keep.as_mut() else {
            return;
        };
        let mut pieces = Vec::new();
        keep.backend.push(bytes, &mut pieces);
        if keep.reset != Reset::InFlight {
            // The common case: relay the bytes as they came.
            for piece in &pieces {
                match piece {
                    Piece::Line(line) => keep.completions += u64::from(is_tagged(line)),
                    Piece::LongLine { head } => keep.completions += u64::from(is_tagged(head)),
                    Piece::Other(_) => {}
                }
            }
            self.be(conn, "->", format!("relay {} bytes", bytes.len()));
            self.write(bytes);
            return;
        }
        let mut relay = Vec::new();
        let mut swallowed = 0usize;
        let mut failed = None;
        for piece in pieces {
            let reset_reply = match &piece {
                Piece::Line(line) | Piece::LongLine { head: line } => {
                    keep.reset == Reset::InFlight && is_reset_reply(line)
                }
                Piece::Other(_) => false,
            };
            match piece {
                Piece::Line(line) | Piece::LongLine { head: line } if reset_reply => {
                    let status = line
                        .get(RESET_TAG.len() + 1..)
                        .and_then(|r| r.split(|&b| b == b' ').next())
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    // RFC 3691: OK, or BAD when no mailbox was selected; either way the
                    // session is in the authenticated state now.
                    if status == b"OK" || status == b"BAD" {
                        keep.reset = Reset::Done;
                    } else {
                        failed = Some(printable(&line, TRACE_TEXT));
                    }
                    swallowed += line.len();
                }
                Piece::Line(b) | Piece::Other(b) if keep.reset == Reset::InFlight => {
                    swallowed += b.len();
                }
                Piece::LongLine { .. } if keep.reset == Reset::InFlight => {}
                Piece::Line(line) => {
                    keep.completions += u64::from(is_tagged(&line));
                    relay.extend_from_slice(&line);
                }
                Piece::LongLine { head } => keep.completions += u64::from(is_tagged(&head)),
                Piece::Other(b) => relay.extend_from_slice(&b),
            }
            if failed.is_some() {
                break;
            }
        }
        if swallowed > 0 {
            self.be(
                conn,
                "->",
                format!("{swallowed} bytes swallowed (the reset and what came before it)"),
            );
        }
        if let Some(line) = failed {
            self.be(conn, "!!", format!("reset refused: {line}"));
            self.write(b"* BYE [UNAVAILABLE] Back-end session lost.\r\n");
            self.close();
            return;
        }
        if !relay.is_empty() {
            self.be(conn, "->", format!("relay {} bytes", relay.len()));
            self.write(&relay);
        }
    }

    /// A LOGOUT is waiting: when the back-end has answered everything before it, answer
    /// the client and park the session.
    pub(super) fn finish_return(&mut self, conn: ConnId) {
        let drained = self.keep.as_ref().is_some_and(Keep::drained);
        if !drained {
            return;
        }
        let Phase::Returning { client_tag, .. } = std::mem::replace(&mut self.phase, Phase::Closed)
        else {
            return;
        };
        self.write(b"* BYE Microsoft Exchange 2000 IMAP4rev1 server signing off.\r\n");
        self.imap_tagged(&client_tag, "OK", "LOGOUT completed.");
        match self.keep.take().map(|k| k.target) {
            Some(KeepAs::Park {
                user,
                digest,
                ok_text,
            }) => {
                let shown = printable(user.as_bytes(), 64);
                self.be(conn, "..", format!("session cache: parked (user {shown})"));
                self.backend_out.push_back(BackendIo::Park {
                    conn,
                    user,
                    digest,
                    ok_text,
                });
            }
            Some(KeepAs::Recycle) => {
                let shown = printable(self.user.as_deref().unwrap_or("?").as_bytes(), 64);
                self.be(conn, "..", format!("pool: recycled (user {shown})"));
                self.backend_out.push_back(BackendIo::Recycle { conn });
            }
            None => {}
        }
        self.close();
    }
}
