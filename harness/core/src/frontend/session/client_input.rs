//! Client input: framing before authentication, holding input while a back-end request
//! is in flight, relaying after the lease, and starting back-end requests.

use super::*;

impl FrontendSession {
    // ---- reading client input ----

    pub(super) fn frame_config(&self) -> FrameConfig {
        let max_line = self.limits.max_line.max(64);
        FrameConfig {
            max_line,
            // Before authentication only credentials travel in literals.
            max_literal: self.limits.max_literal.min(max_line),
            literal_plus: true,
        }
    }

    /// Runs every complete client message while the front-end itself is answering.
    pub(super) fn process(&mut self) {
        loop {
            if self.closing {
                return;
            }
            let mode = match (&self.phase, self.protocol) {
                (Phase::PreAuth, Protocol::Imap) => FrameMode::Command,
                (Phase::PreAuth, Protocol::Pop3) | (Phase::ClientSasl(_), _) => FrameMode::Line,
                _ => return,
            };
            let cfg = self.frame_config();
            let Some(frame) = self.framer.next_frame(mode, cfg) else {
                return;
            };
            match frame {
                Frame::ContinuationNeeded => self.write(LITERAL_CONTINUATION),
                Frame::Rejected { tag, error } => {
                    if let Phase::ClientSasl(ctx) =
                        std::mem::replace(&mut self.phase, Phase::PreAuth)
                    {
                        self.abandon_sasl(ctx, "BAD", &error.to_string());
                        continue;
                    }
                    match (self.protocol, tag) {
                        (Protocol::Imap, Some(tag)) => {
                            self.imap_tagged(&tag, "BAD", &error.to_string())
                        }
                        (Protocol::Imap, None) => {
                            self.write(format!("* BAD {error}\r\n").as_bytes())
                        }
                        (Protocol::Pop3, _) => self.pop_err(&error.to_string()),
                    }
                }
                Frame::Line(line) => match std::mem::replace(&mut self.phase, Phase::PreAuth) {
                    Phase::ClientSasl(ctx) => self.sasl_line(ctx, &line),
                    Phase::PreAuth => self.pop3_line(&line),
                    other => self.phase = other,
                },
                Frame::Command(msg) => self.imap_command(&msg),
            }
        }
    }

    /// A back-end request finished: go on with what the client sent meanwhile.
    pub(super) fn resume(&mut self) {
        let held = std::mem::take(&mut self.held);
        match self.phase {
            Phase::Leased { conn } => {
                let mut rest = self.framer.take_unread();
                rest.extend_from_slice(&held);
                if !rest.is_empty() {
                    self.client_to_backend(conn, rest);
                }
            }
            Phase::PreAuth | Phase::ClientSasl(_) => {
                self.framer.push(&held);
                self.process();
            }
            Phase::Returning { .. } => {}
            Phase::Busy(_) | Phase::Closed => self.held = held,
        }
    }

    /// Client bytes after the lease. With the session cache on, a LOGOUT at a command
    /// boundary is not relayed (the session may be parked instead), and a session taken
    /// from the cache gets its reset ahead of the client's first command.
    pub(super) fn client_to_backend(&mut self, conn: ConnId, bytes: Vec<u8>) {
        let Some(keep) = self.keep.as_mut() else {
            self.relay_to_backend(conn, bytes);
            return;
        };
        let mut pieces = Vec::new();
        keep.client.push(&bytes, &mut pieces);
        let mut relay = Vec::with_capacity(bytes.len());
        let mut logout = None;
        for piece in pieces {
            match piece {
                Piece::Line(line) => {
                    if let Some(tag) = logout_tag(&line) {
                        // Anything after LOGOUT is not obeyed (the server would close).
                        logout = Some((String::from_utf8_lossy(tag).into_owned(), line));
                        break;
                    }
                    // RFC 8437 8: a client's own UNAUTHENTICATE could log in past the
                    // front-end; such a connection is never reused.
                    keep.tainted |= is_reset_reply(&line) || names_command(&line, "UNAUTHENTICATE");
                    keep.commands += u64::from(is_tagged(&line));
                    relay.extend_from_slice(&line);
                }
                Piece::LongLine { head } => {
                    keep.tainted |= is_reset_reply(&head) || names_command(&head, "UNAUTHENTICATE");
                    keep.commands += u64::from(is_tagged(&head));
                }
                Piece::Other(b) => relay.extend_from_slice(&b),
            }
        }
        if !relay.is_empty() {
            let mut before = Vec::new();
            if keep.reset == Reset::Needed {
                // In the same write as the client's first command.
                keep.reset = Reset::InFlight;
                before = format!("{RESET_TAG} UNSELECT\r\n").into_bytes();
                self.be(
                    conn,
                    "<-",
                    format!(
                        "{RESET_TAG} UNSELECT (reset of the cached session, ahead of the client)"
                    ),
                );
            }
            self.relay_after(conn, before, relay);
        }
        if let Some((tag, line)) = logout {
            self.logout_leased(conn, tag, line);
        }
    }

    /// Relays client bytes after the lease. The trace names the command only (IMAP tag
    /// and command, POP3 keyword) and the size, so a password typed again is not shown.
    pub(super) fn relay_to_backend(&mut self, conn: ConnId, bytes: Vec<u8>) {
        self.relay_after(conn, Vec::new(), bytes);
    }

    /// Relays client bytes behind `before` (the front-end's own, traced already) in one
    /// write.
    pub(super) fn relay_after(&mut self, conn: ConnId, mut before: Vec<u8>, bytes: Vec<u8>) {
        let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        let words = match self.protocol {
            Protocol::Imap => 2,
            Protocol::Pop3 => 1,
        };
        // Called for every chunk of client bytes: the text is made only when traced.
        let text = if self.tracing {
            let head: Vec<String> = first_line
                .split(|&b| b == b' ')
                .take(words)
                .map(|w| printable(w, 32))
                .collect();
            format!("relay {} ({} bytes)", head.join(" "), bytes.len())
        } else {
            String::new()
        };
        if before.is_empty() {
            self.send(conn, bytes, text);
        } else {
            before.extend_from_slice(&bytes);
            self.send(conn, before, text);
        }
    }

    pub(super) fn start(&mut self, kind: OpKind) {
        self.reader = new_reader(self.protocol);
        let pinned = match &kind {
            OpKind::Sasl { ctx, .. } => ctx.pinned,
            _ => None,
        };
        match pinned {
            Some(conn) => {
                // The exchange lives on this connection: the step is a plain SASL line.
                if let OpKind::Sasl { ctx, data } = kind {
                    self.send_sasl_step(conn, ctx, data);
                }
            }
            None => {
                let lookup = match &kind {
                    OpKind::Login {
                        user,
                        digest: Some(digest),
                        ..
                    } => Some(BackendIo::CacheLookup {
                        user: user.clone(),
                        digest: digest.clone(),
                    }),
                    _ => None,
                };
                let (step, io) = match lookup {
                    Some(io) => (Step::CacheLookup, io),
                    None => (Step::Acquiring, BackendIo::Acquire),
                };
                self.phase = Phase::Busy(Op {
                    conn: None,
                    kind,
                    step,
                });
                self.backend_out.push_back(io);
            }
        }
    }
}
