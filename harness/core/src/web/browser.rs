//! The browser of the double hop, sans-IO: the `Authorization` headers a browser sends to
//! the web tier for integrated Kerberos (a ticket for the tier's `HTTP/` service with the
//! TGT forwarded in the authenticator checksum, RFC 4121 4.1.1, as a browser does for an
//! ok-as-delegate service), integrated NTLM (NEGOTIATE, then AUTHENTICATE for the 401's
//! CHALLENGE, both on one connection) or Basic. The caller carries the headers: in
//! process to the tier's authenticator, or over HTTP.

use base64::Engine as _;

use super::double_hop::BrowserAuth;
use crate::kerberos::client::{self, Credentials as Ticket, Exchange, Request};
use crate::kerberos::flags::{FORWARDABLE, FORWARDED, OK_AS_DELEGATE};
use crate::kerberos::gss::{self, gss_flags, KRB5_OID};
use crate::kerberos::{spnego, Name, NT_SRV_HST};
use crate::ntlm::{Credentials, InitiatorOptions, NtlmInitiator, ResponseKind};
use crate::rng::SeededRng;

/// The web tier's host name (its `HTTP/` principal's instance; ok-as-delegate).
pub const WEB_HOST: &str = "web.example.test";

pub struct Browser {
    user: String,
    password: String,
    domain: String,
    auth: BrowserAuth,
    rng: SeededRng,
    ntlm: Option<NtlmInitiator>,
    /// The service ticket, and the forwarded TGT when the browser delegates (Kerberos,
    /// once `get_tickets` ran).
    tickets: Option<(Ticket, Option<Ticket>)>,
    delegate: bool,
    steps: Vec<String>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Browser {
    pub fn new(user: &str, password: &str, domain: &str, auth: BrowserAuth, seed: u64) -> Self {
        Browser {
            user: user.into(),
            password: password.into(),
            domain: domain.into(),
            auth,
            rng: SeededRng::new(seed ^ 0x4252_4f57),
            ntlm: None,
            tickets: None,
            delegate: true,
            steps: Vec::new(),
        }
    }

    /// Kerberos without forwarding the TGT (a service the browser does not trust for
    /// delegation).
    pub fn without_delegation(mut self) -> Self {
        self.delegate = false;
        self
    }

    /// What the browser did, one line per exchange.
    pub fn steps(&self) -> &[String] {
        &self.steps
    }

    pub fn step(&mut self, line: impl Into<String>) {
        self.steps.push(line.into());
    }

    /// Kerberos: the TGT (forwardable), a ticket for the web tier and the forwarded TGT
    /// from the KDC `exchange` reaches. Nothing for the other schemes.
    pub fn get_tickets(
        &mut self,
        exchange: &mut Exchange<'_>,
        realm: &str,
        now: i64,
    ) -> Result<(), String> {
        if self.auth != BrowserAuth::Kerberos {
            return Ok(());
        }
        let forwardable = Request {
            options: FORWARDABLE,
            ..Request::default()
        };
        let web = Name {
            kind: NT_SRV_HST,
            components: vec!["HTTP".into(), WEB_HOST.into()],
        };
        let rng = &mut self.rng;
        let got = client::login(
            exchange,
            &self.user,
            realm,
            &self.password,
            &forwardable,
            now,
            rng,
        )
        .and_then(|tgt| {
            let ticket = client::ticket(exchange, &tgt, &web, &forwardable, now, rng)?;
            if !self.delegate {
                return Ok((ticket, None));
            }
            let forwarded = Request {
                options: FORWARDABLE | FORWARDED,
                ..Request::default()
            };
            let tgs = Name::tgs(realm);
            let fwd = client::ticket(exchange, &tgt, &tgs, &forwarded, now, rng)?;
            Ok((ticket, Some(fwd)))
        });
        match got {
            Ok((ticket, forwarded)) => {
                self.steps.push(format!(
                    "browser: KDC: TGT (forwardable), ticket for {web} (ok-as-delegate: {}){}",
                    ticket.flags & OK_AS_DELEGATE != 0,
                    if forwarded.is_some() {
                        ", forwarded TGT"
                    } else {
                        ""
                    }
                ));
                self.tickets = Some((ticket, forwarded));
                Ok(())
            }
            Err(e) => {
                let why = format!("browser: KDC: {e}");
                self.steps.push(why.clone());
                Err(why)
            }
        }
    }

    /// The first request's `Authorization` value.
    pub fn first(&mut self, path: &str, now: i64) -> Result<String, String> {
        match self.auth {
            BrowserAuth::Basic | BrowserAuth::BasicTls => {
                self.step(format!(
                    "browser: GET {path}, Authorization: Basic (user:password)"
                ));
                Ok(format!(
                    "Basic {}",
                    b64(format!("{}:{}", self.user, self.password).as_bytes())
                ))
            }
            BrowserAuth::Ntlm => {
                let seed = self.rng.next_u64().to_le_bytes();
                let mut ntlm = NtlmInitiator::new(
                    Credentials {
                        user: self.user.clone(),
                        password: self.password.clone(),
                        domain: self.domain.clone(),
                        workstation: "BROWSER".into(),
                    },
                    InitiatorOptions::fixed(seed[0], seed[1], ResponseKind::V2, true),
                );
                self.step(format!(
                    "browser: GET {path}, Authorization: NTLM (NEGOTIATE)"
                ));
                let negotiate = ntlm.negotiate();
                self.ntlm = Some(ntlm);
                Ok(format!("NTLM {}", b64(&negotiate)))
            }
            BrowserAuth::Kerberos => {
                let Some((ticket, forwarded)) = &self.tickets else {
                    return Err("browser: no Kerberos tickets".into());
                };
                let (token, _) = gss::initiate(
                    ticket,
                    gss_flags::MUTUAL,
                    forwarded.as_ref(),
                    false,
                    now,
                    &mut self.rng,
                );
                self.step(format!(
                    "browser: GET {path}, Authorization: Negotiate (AP-REQ{})",
                    if forwarded.is_some() {
                        ", delegated TGT in the checksum"
                    } else {
                        ""
                    }
                ));
                let init = spnego::write_init(&spnego::NegTokenInit {
                    mech_types: vec![KRB5_OID.to_vec()],
                    mech_token: Some(token),
                });
                Ok(format!("Negotiate {}", b64(&init)))
            }
        }
    }

    /// After a 401 with these `WWW-Authenticate` values: the next request's
    /// `Authorization` (NTLM's AUTHENTICATE for its CHALLENGE), or why there is none.
    pub fn challenged(
        &mut self,
        path: &str,
        www_authenticate: &[String],
    ) -> Result<String, String> {
        let Some(ntlm) = self.ntlm.as_mut() else {
            return Err("web tier: 401".into());
        };
        let challenge = crate::http_auth::ntlm_challenge(www_authenticate);
        let Some(challenge) = challenge else {
            return Err("web tier: 401 without an NTLM CHALLENGE".into());
        };
        let authenticate = ntlm
            .handle_challenge(&challenge)
            .map_err(|e| format!("browser: the CHALLENGE does not read: {e}"))?;
        self.step("web tier: 401, WWW-Authenticate: NTLM (CHALLENGE)");
        self.step(format!(
            "browser: GET {path}, Authorization: NTLM (AUTHENTICATE)"
        ));
        Ok(format!("NTLM {}", b64(&authenticate)))
    }
}
