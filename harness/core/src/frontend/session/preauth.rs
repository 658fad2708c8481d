//! What the front-end answers by itself before authentication: IMAP commands, POP3
//! lines, the client's SASL lines; and how a back-end exchange is reset.

use super::*;

impl FrontendSession {
    // ---- IMAP, before authentication ----

    pub(super) fn imap_command(&mut self, msg: &[u8]) {
        let codec = CommandCodec::default();
        let cmd = match codec.decode(msg) {
            Ok((&[], cmd)) => cmd,
            _ => {
                let error = crate::imap::diagnose(msg);
                match crate::imap::framer::first_tag(msg) {
                    Some(tag) => self.imap_tagged(&tag, "BAD", &error.to_string()),
                    None => self.write(format!("* BAD {error}\r\n").as_bytes()),
                }
                return;
            }
        };
        let tag = cmd.tag.as_ref().to_string();
        match cmd.body {
            CommandBody::Capability => {
                let mut caps = String::from("* CAPABILITY IMAP4rev1 IMAP4 IDLE LITERAL+");
                if self.profile.advertise_ntlm {
                    caps.push_str(" AUTH=NTLM");
                }
                caps.push_str("\r\n");
                self.write(caps.as_bytes());
                self.imap_tagged(&tag, "OK", "CAPABILITY completed.");
            }
            CommandBody::Noop => self.imap_tagged(&tag, "OK", "NOOP completed."),
            CommandBody::Logout => {
                self.write(b"* BYE Microsoft Exchange 2000 IMAP4rev1 server signing off.\r\n");
                self.imap_tagged(&tag, "OK", "LOGOUT completed.");
                self.close();
            }
            CommandBody::Login { username, password } => {
                let user = std::str::from_utf8(username.as_ref()).ok();
                let pass = std::str::from_utf8(password.declassify().as_ref()).ok();
                match (user.filter(|u| quotable(u)), pass.filter(|p| quotable(p))) {
                    (Some(u), Some(p)) => {
                        let digest = self.cache_key.as_ref().map(|k| k.digest(u, p));
                        let kind = OpKind::Login {
                            tag: tag.clone(),
                            user: u.to_string(),
                            pass: p.to_string(),
                            digest,
                        };
                        self.start(kind);
                    }
                    _ => self.imap_tagged(&tag, "NO", "LOGIN failed."),
                }
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                let Some(mech) = Mechanism::parse(mechanism.as_ref())
                    .filter(|m| matches!(m, Mechanism::Plain | Mechanism::Ntlm))
                else {
                    self.imap_tagged(&tag, "NO", "Unsupported authentication mechanism.");
                    return;
                };
                let ctx = SaslCtx {
                    tag: tag.clone(),
                    mech,
                    pinned: None,
                    prev: None,
                };
                match initial_response {
                    Some(ir) => {
                        let data = ir.declassify().to_vec();
                        self.start(OpKind::Sasl { ctx, data });
                    }
                    None => {
                        // [MS-OXIMAP4] 2.2.1 prints the empty continuation as a bare `+`.
                        self.write(b"+\r\n");
                        self.phase = Phase::ClientSasl(ctx);
                    }
                }
            }
            CommandBody::StartTLS => {
                self.imap_tagged(&tag, "BAD", "STARTTLS is not offered by this front-end.")
            }
            _ => self.imap_tagged(&tag, "BAD", "Command received in Invalid state."),
        }
    }

    // ---- POP3, before authentication ----

    pub(super) fn pop3_line(&mut self, line: &[u8]) {
        let cmd = match PopCommand::decode(line) {
            Ok(c) => c,
            Err(e) => {
                self.pending_user = None;
                self.pop_err(&format!("Protocol error: {e}"));
                return;
            }
        };
        let pending_user = self.pending_user.take();
        match cmd {
            PopCommand::Capa => self.pop_list(
                b"+OK Capability list follows\r\nUSER\r\nTOP\r\nUIDL\r\n",
                b"SASL NTLM\r\n",
            ),
            // [MS-POP3] 2.2.1: AUTH alone lists the mechanisms.
            PopCommand::Auth {
                mechanism: None, ..
            } => self.pop_list(b"+OK\r\n", b"NTLM\r\n"),
            PopCommand::Auth {
                mechanism: Some(name),
                initial,
            } => {
                let Some(mech) = Mechanism::parse(&name)
                    .filter(|m| matches!(m, Mechanism::Plain | Mechanism::Ntlm))
                else {
                    self.pop_err("Unrecognized authentication type.");
                    return;
                };
                let ctx = SaslCtx {
                    tag: String::new(),
                    mech,
                    pinned: None,
                    prev: None,
                };
                match initial {
                    None => {
                        // [MS-OXPOP3] 2.2.1: the empty continuation is `+` SP.
                        self.write(b"+ \r\n");
                        self.phase = Phase::ClientSasl(ctx);
                    }
                    Some(InitialResponse::Empty) => self.start(OpKind::Sasl {
                        ctx,
                        data: Vec::new(),
                    }),
                    Some(InitialResponse::Base64(text)) => match decode_base64(text.as_bytes()) {
                        Ok(data) => self.start(OpKind::Sasl { ctx, data }),
                        Err(e) => self.pop_err(&e.to_string()),
                    },
                }
            }
            PopCommand::User(name) => {
                self.pending_user = Some(name);
                self.pop_ok("");
            }
            PopCommand::Pass(pass) => match pending_user {
                Some(user) => self.start(OpKind::UserPass { user, pass }),
                None => self.pop_err("Command is not valid in this state."),
            },
            PopCommand::Quit => {
                self.pop_ok("Microsoft Exchange 2000 POP3 server signing off.");
                self.close();
            }
            PopCommand::Unknown(_) => self.pop_err("Protocol error."),
            _ => self.pop_err("Command is not valid in this state."),
        }
    }

    // ---- the client's SASL lines ----

    pub(super) fn sasl_line(&mut self, ctx: SaslCtx, line: &[u8]) {
        let trimmed = line.strip_suffix(b" ").unwrap_or(line);
        if trimmed == b"*" {
            self.abandon_sasl(
                ctx,
                "NO",
                "The AUTH protocol exchange was canceled by the client.",
            );
            return;
        }
        match decode_base64(line) {
            Ok(data) => self.start(OpKind::Sasl { ctx, data }),
            Err(e) => self.abandon_sasl(ctx, "BAD", &e.to_string()),
        }
    }

    /// Ends the client's exchange with a failure answered by the front-end; a pinned
    /// back-end exchange is reset first.
    pub(super) fn abandon_sasl(&mut self, ctx: SaslCtx, status: &str, text: &str) {
        self.client_fail(&ctx.tag, status, text);
        match ctx.pinned {
            Some(conn) => self.reset(conn, ctx.tag, "the client's exchange ended"),
            None => self.phase = Phase::PreAuth,
        }
    }

    /// Sends `*` to end the back-end's exchange; its reply is swallowed.
    pub(super) fn reset(&mut self, conn: ConnId, tag: String, why: &str) {
        self.phase = Phase::Busy(Op {
            conn: Some(conn),
            kind: OpKind::Reset { tag },
            step: Step::AwaitReset {
                then: AfterReset::PreAuth,
            },
        });
        self.send(conn, b"*\r\n".to_vec(), format!("* ({why})"));
    }
}

/// Fits an RFC 3501 quoted string: 7-bit printable (CR, LF, NUL and 8-bit are not).
fn quotable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// RFC 3501 4.3: a quoted string, `"` and `\` escaped.
pub(super) fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}
