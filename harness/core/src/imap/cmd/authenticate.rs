//! AUTHENTICATE (RFC 3501 6.2.2), with SASL-IR (RFC 4959): the SASL exchange over
//! continuation lines, and its cancel (`*`, which [MS-OXIMAP4] 2.2.1 prints as `*` SP).

use std::sync::Arc;

use imap_codec::imap_types::auth::AuthMechanism;

use crate::imap::server::{ImapServer, Mode, Reply};
use crate::sasl::{self, Mechanism, SaslError, SaslServer, SaslStep};

impl ImapServer {
    pub(in crate::imap) fn authenticate(
        &mut self,
        tag: &str,
        mechanism: &AuthMechanism<'_>,
        initial: Option<Vec<u8>>,
    ) -> Option<Reply> {
        let Some(mech) = Mechanism::parse(mechanism.as_ref())
            .filter(|m| self.ctx.profile.imap.auth_mechanisms.contains(m))
        else {
            return Reply::no("Unsupported authentication mechanism");
        };
        if initial.is_some() && !self.has_capability("SASL-IR") {
            return Reply::bad("Initial response given, but SASL-IR is not advertised");
        }
        let world = Arc::clone(&self.ctx.world);
        let unix_now = self.ctx.epoch_secs.saturating_add(self.now.as_secs());
        let (sasl, step) =
            SaslServer::start(mech, &world, &mut self.rng, unix_now, initial.as_deref());
        self.auth_step(tag.to_string(), Box::new(sasl), step)
    }

    fn auth_step(&mut self, tag: String, sasl: Box<SaslServer>, step: SaslStep) -> Option<Reply> {
        match step {
            SaslStep::Challenge(data) => {
                if data.is_empty() {
                    let line = self.ctx.profile.imap.auth_continuation.empty_line();
                    self.write(line);
                } else {
                    let line = format!("+ {}\r\n", sasl::encode_base64(&data));
                    self.write(line.as_bytes());
                }
                self.mode = Mode::Auth { tag, sasl };
                None
            }
            SaslStep::Success { user } => {
                self.auth_mechanism = Some(sasl.mechanism());
                self.user = Some(user);
                Reply::ok(self.ctx.profile.imap.auth_ok_text.clone())
            }
            SaslStep::Failure(SaslError::InvalidBase64) => {
                Reply::bad(SaslError::InvalidBase64.to_string())
            }
            SaslStep::Failure(_) => Reply::no(self.ctx.profile.imap.auth_failed_text.clone()),
        }
    }

    pub(in crate::imap) fn auth_line(
        &mut self,
        tag: String,
        mut sasl: Box<SaslServer>,
        line: &[u8],
    ) {
        // RFC 3501 6.2.2: `*` cancels; [MS-OXIMAP4] 2.2.1 prints it as `*` SP.
        let trimmed = line.strip_suffix(b" ").unwrap_or(line);
        if trimmed == b"*" {
            let p = &self.ctx.profile.imap;
            let reply = Reply {
                status: p.auth_cancel_status,
                text: p.auth_cancel_text.clone(),
            };
            self.tagged(&tag, reply);
            return;
        }
        let reply = match sasl::decode_base64(line) {
            Err(e) => Reply::bad(e.to_string()),
            Ok(data) => {
                let world = Arc::clone(&self.ctx.world);
                let step = sasl.step(&world, &data);
                self.auth_step(tag.clone(), sasl, step)
            }
        };
        if let Some(reply) = reply {
            self.tagged(&tag, reply);
        }
    }
}
