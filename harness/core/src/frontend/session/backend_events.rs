//! Back-end events: the adapter's answers (a granted connection, a cache lookup) and the
//! back-end's replies, read up to their end and turned into client replies.

use super::*;

impl FrontendSession {
    // ---- back-end events ----

    /// The adapter's answer to `CacheLookup`: a parked session of the user with the same
    /// credentials, or none (then the login goes to a pooled connection as usual).
    pub fn handle_cache_lookup(&mut self, found: Option<Parked>) {
        let op = match std::mem::replace(&mut self.phase, Phase::PreAuth) {
            Phase::Busy(op) if matches!(op.step, Step::CacheLookup) => op,
            other => {
                self.phase = other;
                if let Some(p) = found {
                    // Not wanted (any more): the session cannot be parked again as it is.
                    self.discard(p.conn);
                }
                return;
            }
        };
        let OpKind::Login {
            tag,
            user,
            digest: Some(digest),
            ..
        } = &op.kind
        else {
            self.phase = Phase::Busy(op);
            return;
        };
        let shown = printable(user.as_bytes(), 64);
        match found {
            Some(parked) => {
                let conn = parked.conn;
                self.note(format!(
                    "session cache: hit (user {shown}): be#{conn}, no back-end LOGIN"
                ));
                self.write(format!("{tag} {}\r\n", parked.ok_text).as_bytes());
                self.user = Some(user.clone());
                self.keep = Some(Keep::new(
                    KeepAs::Park {
                        user: user.clone(),
                        digest: digest.clone(),
                        ok_text: parked.ok_text,
                    },
                    true,
                    Reset::Needed,
                ));
                self.be(
                    conn,
                    "..",
                    format!("leased to the client session (user {shown})"),
                );
                self.backend_out.push_back(BackendIo::Lease { conn });
                self.phase = Phase::Leased { conn };
                self.resume();
            }
            None => {
                self.note(format!("session cache: miss (user {shown})"));
                self.phase = Phase::Busy(Op {
                    step: Step::Acquiring,
                    ..op
                });
                self.backend_out.push_back(BackendIo::Acquire);
            }
        }
    }

    /// The adapter handed out a connection for the request asked with `Acquire` (a fresh
    /// or reset one: [`FrontendSession::handle_backend_grant`] with `reset` false).
    pub fn handle_backend_granted(&mut self, conn: ConnId) {
        self.handle_backend_grant(conn, false);
    }

    /// The adapter handed out a connection for the request asked with `Acquire`. `reset`:
    /// the pool recycled it still authenticated, and `FE.RESET UNAUTHENTICATE` (RFC 8437)
    /// goes ahead of the request in the same write; everything up to its reply is the
    /// earlier session's and is swallowed.
    pub fn handle_backend_grant(&mut self, conn: ConnId, reset: bool) {
        let sasl_ir = self.features.imap_sasl_ir;
        let protocol = self.protocol;
        let op = match &mut self.phase {
            Phase::Busy(op) if matches!(op.step, Step::Acquiring) => op,
            _ if reset => {
                // Not wanted (any more), and still authenticated: not back unreset.
                self.discard(conn);
                return;
            }
            _ => {
                // Not wanted (any more): give it back untouched.
                self.release(conn);
                return;
            }
        };
        op.conn = Some(conn);
        let mut finding = None;
        let (bytes, text, step) = match &op.kind {
            OpKind::Login {
                tag, user, pass, ..
            } => (
                format!("{tag} LOGIN {} {}\r\n", quote(user), quote(pass)).into_bytes(),
                format!("{tag} LOGIN {} <password>", printable(user.as_bytes(), 64)),
                Step::AwaitResult,
            ),
            OpKind::UserPass { user, .. } => (
                format!("USER {user}\r\n").into_bytes(),
                format!("USER {}", printable(user.as_bytes(), 64)),
                Step::AwaitUser,
            ),
            OpKind::Sasl { ctx, data } => {
                if let Some(first) = ctx.prev.filter(|p| *p != conn) {
                    finding = Some(Finding::ContextSplit { first, then: conn });
                }
                let desc = describe_sasl(ctx.mech, data);
                let mech = ctx.mech.name();
                let b64 = if data.is_empty() {
                    "=".to_string()
                } else {
                    encode_base64(data)
                };
                let tag = &ctx.tag;
                match protocol {
                    Protocol::Imap if sasl_ir => (
                        format!("{tag} AUTHENTICATE {mech} {b64}\r\n").into_bytes(),
                        format!("{tag} AUTHENTICATE {mech} {desc}"),
                        Step::AwaitResult,
                    ),
                    Protocol::Imap => (
                        format!("{tag} AUTHENTICATE {mech}\r\n").into_bytes(),
                        format!("{tag} AUTHENTICATE {mech}"),
                        Step::AwaitContinuation,
                    ),
                    Protocol::Pop3 => (
                        format!("AUTH {mech} {b64}\r\n").into_bytes(),
                        format!("AUTH {mech} {desc}"),
                        Step::AwaitResult,
                    ),
                }
            }
            OpKind::Reset { .. } => (
                b"*\r\n".to_vec(),
                "* (reset)".to_string(),
                Step::AwaitReset {
                    then: AfterReset::PreAuth,
                },
            ),
        };
        op.step = step;
        let mut bytes = bytes;
        if reset && protocol == Protocol::Imap {
            let mut line = format!("{RESET_TAG} UNAUTHENTICATE\r\n").into_bytes();
            line.append(&mut bytes);
            bytes = line;
            self.unauthenticating = Some(conn);
            self.be(
                conn,
                "<-",
                format!("{RESET_TAG} UNAUTHENTICATE (reset of the recycled connection, ahead of the request)"),
            );
        }
        if let Some(Finding::ContextSplit { first, then }) = finding {
            self.note(format!(
                "!! context split: this NTLM step went to be#{then}, the previous one to be#{first}"
            ));
            self.findings.push(Finding::ContextSplit { first, then });
        }
        self.send(conn, bytes, text);
    }

    /// Bytes a back-end connection sent.
    pub fn handle_backend_input(&mut self, conn: ConnId, bytes: &[u8]) {
        match &self.phase {
            Phase::Leased { conn: c } if *c == conn => {
                if self.keep.is_some() {
                    self.kept_backend_input(conn, bytes);
                } else {
                    self.be(conn, "->", format!("relay {} bytes", bytes.len()));
                    self.write(bytes);
                }
                return;
            }
            Phase::Returning { conn: c, .. } if *c == conn => {
                self.kept_backend_input(conn, bytes);
                self.finish_return(conn);
                return;
            }
            Phase::Busy(Op { conn: Some(c), .. }) if *c == conn => {}
            _ => {
                self.be(
                    conn,
                    "->",
                    format!("{} bytes ignored (nothing asked)", bytes.len()),
                );
                return;
            }
        }
        match &mut self.reader {
            Reader::Imap(r) => r.push(bytes),
            Reader::Pop3(r) => r.push(bytes),
        }
        loop {
            let resetting = self.unauthenticating == Some(conn);
            let tag = match &self.phase {
                Phase::Busy(_) if resetting => RESET_TAG.to_string(),
                Phase::Busy(op) if op.conn == Some(conn) => op_tag(&op.kind),
                _ => break,
            };
            let event = match &mut self.reader {
                Reader::Imap(r) => r.next_event(&tag),
                Reader::Pop3(r) => r.next_event(),
            };
            match event {
                Ok(None) => return,
                Ok(Some(ev)) if resetting => self.on_reset_event(conn, ev),
                Ok(Some(ev)) => self.on_event(conn, ev),
                Err(e) => {
                    self.unauthenticating = None;
                    self.backend_failed(conn, e)
                }
            }
        }
        self.resume();
    }

    /// The back-end's output before the reply to `FE.RESET UNAUTHENTICATE`: the earlier
    /// session's, swallowed. An OK reply leaves the connection not authenticated and the
    /// request's own reply follows; anything else closes it, and the request goes to
    /// another connection.
    fn on_reset_event(&mut self, conn: ConnId, event: BackendEvent) {
        let refused = match event {
            BackendEvent::Untagged(raw) => {
                self.be(
                    conn,
                    "->",
                    format!("{} (swallowed)", printable(&raw, TRACE_TEXT)),
                );
                return;
            }
            BackendEvent::Done { ok: true, raw } => {
                self.be(
                    conn,
                    "->",
                    format!("{} (swallowed)", printable(&raw, TRACE_TEXT)),
                );
                self.unauthenticating = None;
                self.reset_failures = 0;
                return;
            }
            BackendEvent::Done { raw, .. } | BackendEvent::Continuation { raw, .. } => raw,
        };
        self.unauthenticating = None;
        self.be(
            conn,
            "!!",
            format!("reset refused: {}", printable(&refused, TRACE_TEXT)),
        );
        self.reset_failures = self.reset_failures.saturating_add(1);
        if self.reset_failures > MAX_RESET_FAILURES {
            // This request fails; the client's next one may try again.
            self.reset_failures = 0;
            self.backend_failed(conn, BackendError::Invalid("reset refused".into()));
            return;
        }
        self.discard(conn);
        let Phase::Busy(op) = &mut self.phase else {
            return;
        };
        // The request (sent behind the reset) dies with the connection: again, elsewhere.
        op.conn = None;
        op.step = Step::Acquiring;
        self.reader = new_reader(self.protocol);
        self.backend_out.push_back(BackendIo::Acquire);
    }

    /// A back-end connection closed (or broke).
    pub fn handle_backend_closed(&mut self, conn: ConnId) {
        match &self.phase {
            Phase::Leased { conn: c } | Phase::Returning { conn: c, .. } if *c == conn => {
                self.be(conn, "->", "closed; ending the client session");
                if let Phase::Returning { client_tag, .. } =
                    std::mem::replace(&mut self.phase, Phase::Leased { conn })
                {
                    // The client asked to log out: it is answered all the same.
                    self.write(b"* BYE Microsoft Exchange 2000 IMAP4rev1 server signing off.\r\n");
                    self.imap_tagged(&client_tag, "OK", "LOGOUT completed.");
                }
                self.close();
            }
            Phase::Busy(Op { conn: Some(c), .. }) if *c == conn => {
                self.backend_failed(conn, BackendError::Closed);
                self.resume();
            }
            Phase::ClientSasl(SaslCtx {
                pinned: Some(c),
                tag,
                ..
            }) if *c == conn => {
                let tag = tag.clone();
                self.discard(conn);
                self.client_fail(&tag, "NO", "[UNAVAILABLE] Back-end connection lost.");
                self.phase = Phase::PreAuth;
            }
            _ => {}
        }
    }

    pub(super) fn backend_failed(&mut self, conn: ConnId, error: BackendError) {
        self.unauthenticating = None;
        self.be(conn, "!!", error.to_string());
        self.discard(conn);
        let Phase::Busy(op) = std::mem::replace(&mut self.phase, Phase::PreAuth) else {
            return;
        };
        match (op.kind, op.step) {
            // The client's exchange does not need this connection any more.
            (
                _,
                Step::AwaitReset {
                    then: AfterReset::ClientSasl(ctx),
                },
            ) => self.phase = Phase::ClientSasl(ctx),
            // The client was answered before the reset.
            (_, Step::AwaitReset { .. }) => {}
            (kind, _) => {
                let tag = op_tag(&kind);
                let text = match self.protocol {
                    Protocol::Imap => "[UNAVAILABLE] Back-end connection failed.",
                    Protocol::Pop3 => "[SYS/TEMP] Back-end connection failed.",
                };
                self.client_fail(&tag, "NO", text);
            }
        }
    }

    pub(super) fn on_event(&mut self, conn: ConnId, event: BackendEvent) {
        let Phase::Busy(mut op) = std::mem::replace(&mut self.phase, Phase::PreAuth) else {
            return;
        };
        match event {
            BackendEvent::Untagged(raw) => {
                self.be(conn, "->", printable(&raw, TRACE_TEXT));
                self.phase = Phase::Busy(op);
            }
            BackendEvent::Done { ok, raw } => {
                let shown = printable(&raw, TRACE_TEXT);
                match op.step {
                    Step::AwaitReset { then } => {
                        self.be(conn, "->", format!("{shown} (swallowed)"));
                        self.release(conn);
                        self.phase = match then {
                            AfterReset::ClientSasl(ctx) => Phase::ClientSasl(ctx),
                            AfterReset::PreAuth => Phase::PreAuth,
                        };
                    }
                    Step::AwaitUser if ok => {
                        self.be(conn, "->", shown);
                        if let OpKind::UserPass { pass, .. } = &op.kind {
                            let line = format!("PASS {pass}\r\n").into_bytes();
                            op.step = Step::AwaitResult;
                            self.phase = Phase::Busy(op);
                            self.send(conn, line, "PASS <password>".into());
                        }
                    }
                    Step::AwaitResult if ok => {
                        self.be(conn, "->", shown);
                        self.write(&raw);
                        self.user = op_user(&op.kind);
                        let rest = match &mut self.reader {
                            Reader::Imap(r) => r.take_rest(),
                            Reader::Pop3(r) => r.take_rest(),
                        };
                        self.write(&rest);
                        let keep = match op.kind {
                            OpKind::Login {
                                tag,
                                user,
                                digest: Some(digest),
                                ..
                            } => {
                                let ok_text = String::from_utf8_lossy(
                                    raw.get(tag.len() + 1..).unwrap_or_default(),
                                )
                                .trim_end_matches(['\r', '\n'])
                                .to_string();
                                let unselect = self.features.imap_unselect
                                    || line_has_capability(&raw, "UNSELECT");
                                let target = KeepAs::Park {
                                    user,
                                    digest,
                                    ok_text,
                                };
                                Some(Keep::new(target, unselect, Reset::Done))
                            }
                            // RFC 8437 3: the capability may show up only after login.
                            _ if self.protocol == Protocol::Imap
                                && self.profile.pool.unauthenticate =>
                            {
                                let unauthenticate = self.features.imap_unauthenticate
                                    || line_has_capability(&raw, "UNAUTHENTICATE");
                                Some(Keep::new(KeepAs::Recycle, unauthenticate, Reset::Done))
                            }
                            _ => None,
                        };
                        if let Some(mut keep) = keep {
                            keep.backend.push(&rest, &mut Vec::new());
                            self.keep = Some(keep);
                        }
                        self.be(
                            conn,
                            "..",
                            format!(
                                "leased to the client session (user {})",
                                self.user.as_deref().unwrap_or("?")
                            ),
                        );
                        self.backend_out.push_back(BackendIo::Lease { conn });
                        self.phase = Phase::Leased { conn };
                    }
                    _ => {
                        // A refusal: the back-end's own words go to the client.
                        self.be(conn, "->", shown);
                        self.write(&raw);
                        self.release(conn);
                    }
                }
            }
            BackendEvent::Continuation { raw, data } => {
                let shown = match (&data, &op.kind) {
                    (Some(d), OpKind::Sasl { ctx, .. }) if !d.is_empty() => {
                        format!("+ {}", describe_sasl(ctx.mech, d))
                    }
                    _ => printable(&raw, TRACE_TEXT),
                };
                self.be(conn, "->", shown);
                match (op.step, op.kind) {
                    (Step::AwaitContinuation, OpKind::Sasl { ctx, data }) => {
                        self.send_sasl_step(conn, ctx, data);
                    }
                    (Step::AwaitResult, OpKind::Sasl { mut ctx, .. }) => {
                        // The challenge goes to the client as the back-end wrote it.
                        self.write(&raw);
                        ctx.prev = Some(conn);
                        match self.profile.sasl_routing {
                            SaslRouting::Pinned => {
                                ctx.pinned = Some(conn);
                                self.phase = Phase::ClientSasl(ctx);
                            }
                            SaslRouting::PerStep => {
                                ctx.pinned = None;
                                let tag = ctx.tag.clone();
                                self.phase = Phase::Busy(Op {
                                    conn: Some(conn),
                                    kind: OpKind::Reset { tag },
                                    step: Step::AwaitReset {
                                        then: AfterReset::ClientSasl(ctx),
                                    },
                                });
                                self.send(
                                    conn,
                                    b"*\r\n".to_vec(),
                                    "* (reset before returning to the pool)".into(),
                                );
                            }
                        }
                    }
                    (step, kind) => {
                        self.phase = Phase::Busy(Op {
                            conn: Some(conn),
                            kind,
                            step,
                        });
                        self.backend_failed(
                            conn,
                            BackendError::Invalid("unexpected continuation request".into()),
                        );
                    }
                }
            }
        }
    }
}

/// The tag a request's reply carries (IMAP), empty for POP3.
fn op_tag(kind: &OpKind) -> String {
    match kind {
        OpKind::Login { tag, .. } | OpKind::Reset { tag } => tag.clone(),
        OpKind::Sasl { ctx, .. } => ctx.tag.clone(),
        OpKind::UserPass { .. } => String::new(),
    }
}

/// The user a successful request authenticated, as the client named it.
fn op_user(kind: &OpKind) -> Option<String> {
    match kind {
        OpKind::Login { user, .. } | OpKind::UserPass { user, .. } => Some(user.clone()),
        OpKind::Sasl { ctx, data } => match ctx.mech {
            Mechanism::Ntlm => match crate::ntlm::Message::decode(data) {
                Ok(crate::ntlm::Message::Authenticate(a)) => Some(a.user),
                _ => None,
            },
            _ => data
                .split(|&b| b == 0)
                .nth(1)
                .map(|u| String::from_utf8_lossy(u).into_owned()),
        },
        OpKind::Reset { .. } => None,
    }
}
