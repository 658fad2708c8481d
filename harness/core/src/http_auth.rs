//! HTTP authentication as IIS does it for the RPC proxy (Outlook Anywhere) and the web
//! tier, sans-IO: the adapter hands over each request's `Authorization` header and the
//! TCP connection it came on, and gets back a verdict: authenticated, a `401` with the
//! `WWW-Authenticate` values to send, or a `400`.
//!
//! - **Basic** (RFC 7617): `user:password` in base64, checked against the directory on
//!   every request (it is not connection-bound). A `DOMAIN\user` name is taken as
//!   `user` in the lab's one domain.
//! - **Negotiate** (RFC 4559; SPNEGO, RFC 4178, with the Kerberos mechanism): the AP-REQ
//!   in the NegTokenInit is checked by a [`gss::Acceptor`] holding the tier's service key;
//!   the `200` carries the AP-REP of mutual authentication in a NegTokenResp, and a
//!   delegated TGT (the 0x8003 checksum's KRB-CRED) reaches the application in the
//!   principal. Offered only with [`HttpAuthenticator::with_kerberos`]. Like NTLM it then
//!   holds for the connection (IIS's default, `authPersistSingleRequest` off).
//! - **NTLM** (the `NTLM` scheme of [MS-NTHT] 2.2): NEGOTIATE, then a `401` carrying the
//!   CHALLENGE, then AUTHENTICATE, **on one TCP connection**: the acceptor that issued the
//!   challenge lives in that connection's [`ConnectionAuth`]. An AUTHENTICATE on a
//!   connection that did not carry its NEGOTIATE (a client or proxy that splits the
//!   handshake over two connections) cannot be verified and gets a fresh `401`, as IIS
//!   answers it; the refusal says so. Once NTLM succeeds the connection stays
//!   authenticated for the requests after it ([MS-NTHT] 3.2.5.1.2: connection-based).

use base64::Engine as _;

use crate::kerberos::client::Credentials as KerberosCredentials;
use crate::kerberos::gss::{self, Acceptor as GssAcceptor, KRB5_OID, MS_KRB5_OID};
use crate::kerberos::{spnego, Seconds};
use crate::ntlm::{AcceptorConfig, NtlmAcceptor, NtlmError};
use crate::rng::SeededRng;

/// An `Authorization` value longer than this is refused with `400` before it is decoded
/// (an NTLM AUTHENTICATE in base64 is a few KiB; NTLM messages stop at 64 KiB).
pub const MAX_AUTHORIZATION: usize = 96 * 1024;

/// A scheme the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpScheme {
    Basic,
    Ntlm,
    Negotiate,
}

impl HttpScheme {
    pub fn name(self) -> &'static str {
        match self {
            HttpScheme::Basic => "Basic",
            HttpScheme::Ntlm => "NTLM",
            HttpScheme::Negotiate => "Negotiate",
        }
    }
}

impl std::str::FromStr for HttpScheme {
    type Err = String;

    /// `negotiate`, `ntlm` or `basic`, in any case (command-line flags).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [HttpScheme::Negotiate, HttpScheme::Ntlm, HttpScheme::Basic]
            .into_iter()
            .find(|h| h.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("{s:?}: negotiate, ntlm or basic"))
    }
}

/// What the server offers and how it names itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAuthConfig {
    /// In the order of the `WWW-Authenticate` headers (IIS lists Negotiate and NTLM before
    /// Basic).
    pub schemes: Vec<HttpScheme>,
    /// The Basic realm.
    pub realm: String,
    /// The names the NTLM CHALLENGE announces.
    pub ntlm: AcceptorConfig,
}

/// Who a request was authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPrincipal {
    pub scheme: HttpScheme,
    pub user: String,
    /// The NetBIOS domain a Basic or NTLM user gave, or the Kerberos realm.
    pub domain: String,
    /// Negotiate: the TGT the client delegated (forwarded), if it did.
    pub delegated: Option<Box<KerberosCredentials>>,
    /// Negotiate: the `WWW-Authenticate` value the success response carries (the AP-REP
    /// of mutual authentication in a NegTokenResp).
    pub mutual: Option<String>,
}

impl HttpPrincipal {
    fn new(scheme: HttpScheme, user: String, domain: String) -> HttpPrincipal {
        HttpPrincipal {
            scheme,
            user,
            domain,
            delegated: None,
            mutual: None,
        }
    }
}

/// Why a request gets a `401` (for the adapter's trace and the snapshots).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no Authorization header")]
    Missing,
    #[error("the {0} scheme is not offered")]
    SchemeNotOffered(String),
    #[error("Basic: unknown user or wrong password")]
    BasicWrongPassword,
    #[error("NTLM: CHALLENGE sent, AUTHENTICATE awaited on this connection")]
    NtlmChallenged,
    #[error(
        "NTLM: AUTHENTICATE on a connection that did not carry its NEGOTIATE (NTLM over HTTP \
         is bound to one TCP connection; the challenge it answers is unknown here)"
    )]
    NtlmWrongConnection,
    #[error("NTLM: {0}")]
    NtlmFailed(String),
    #[error("Negotiate: {0}")]
    NegotiateFailed(String),
}

/// Why a request gets a `400`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadAuthorization {
    #[error("Authorization of {0} octets is over the limit")]
    TooLong(usize),
    #[error("Authorization: {0}")]
    Malformed(&'static str),
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Authenticated(HttpPrincipal),
    /// `401 Unauthorized` with one `WWW-Authenticate` header per value.
    Unauthorized {
        www_authenticate: Vec<String>,
        refusal: Refusal,
    },
    /// `400 Bad Request`.
    BadRequest(BadAuthorization),
}

/// The NTLM CHALLENGE a 401's `WWW-Authenticate` values carry, if any (`NTLM <base64>`).
pub fn ntlm_challenge(www_authenticate: &[String]) -> Option<Vec<u8>> {
    www_authenticate
        .iter()
        .find_map(|h| h.strip_prefix("NTLM "))
        .and_then(|c| {
            base64::engine::general_purpose::STANDARD
                .decode(c.trim())
                .ok()
        })
}

/// The authentication state of one TCP connection.
#[derive(Debug, Default)]
pub struct ConnectionAuth {
    /// The NTLM exchange in progress: the CHALLENGE went out on this connection.
    pending: Option<NtlmAcceptor>,
    /// NTLM or Negotiate succeeded on this connection: later requests need no header.
    authenticated: Option<HttpPrincipal>,
}

/// The cleartext password of a user of the directory (None: no such user).
type PasswordOf = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The server side: configuration, the directory, and the randomness of challenges.
pub struct HttpAuthenticator {
    config: HttpAuthConfig,
    passwords: PasswordOf,
    rng: SeededRng,
    filetime: u64,
    kerberos: Option<GssAcceptor>,
}

impl HttpAuthenticator {
    /// `password_of(user)`: the cleartext password of a user of the directory.
    /// `filetime`: the CHALLENGE's timestamp (100 ns ticks since 1601).
    pub fn new(
        config: HttpAuthConfig,
        password_of: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
        seed: u64,
        filetime: u64,
    ) -> Self {
        HttpAuthenticator {
            config,
            passwords: Box::new(password_of),
            rng: SeededRng::new(seed),
            filetime,
            kerberos: None,
        }
    }

    /// Offers Negotiate (first, as IIS lists it) with `acceptor`: a keytab of the tier's
    /// `HTTP/<host>` principal(s).
    pub fn with_kerberos(mut self, acceptor: GssAcceptor) -> Self {
        if !self.config.schemes.contains(&HttpScheme::Negotiate) {
            self.config.schemes.insert(0, HttpScheme::Negotiate);
        }
        self.kerberos = Some(acceptor);
        self
    }

    /// The RPC proxy's authenticator for a lab's world: `schemes` in that order, the
    /// host name as the Basic realm, the world's names in the NTLM CHALLENGE, its users'
    /// passwords. `unix_now` is the CHALLENGE's timestamp.
    pub fn for_world(
        world: &std::sync::Arc<crate::world::World>,
        schemes: Vec<HttpScheme>,
        seed: u64,
        unix_now: u64,
    ) -> Self {
        let directory = std::sync::Arc::clone(world);
        HttpAuthenticator::new(
            HttpAuthConfig {
                schemes,
                realm: world.hostname.clone(),
                ntlm: AcceptorConfig::for_world(world),
            },
            move |user| directory.directory.password(user),
            seed ^ 0x5250_4348,
            crate::sasl::filetime_from_unix(unix_now),
        )
    }

    pub fn config(&self) -> &HttpAuthConfig {
        &self.config
    }

    /// The `WWW-Authenticate` values of a bare `401`: every scheme offered.
    pub fn challenges(&self) -> Vec<String> {
        self.config
            .schemes
            .iter()
            .map(|s| match s {
                HttpScheme::Basic => format!("Basic realm=\"{}\"", self.config.realm),
                HttpScheme::Ntlm => "NTLM".to_string(),
                HttpScheme::Negotiate => "Negotiate".to_string(),
            })
            .collect()
    }

    fn unauthorized(&self, refusal: Refusal) -> Verdict {
        Verdict::Unauthorized {
            www_authenticate: self.challenges(),
            refusal,
        }
    }

    fn offers(&self, scheme: HttpScheme) -> bool {
        self.config.schemes.contains(&scheme)
    }

    /// Checks one request that came on `conn` with `authorization` (the header's value,
    /// if any), at the time of the NTLM challenge's timestamp (Negotiate needs
    /// [`HttpAuthenticator::check_at`] with the real time).
    pub fn check(&mut self, conn: &mut ConnectionAuth, authorization: Option<&str>) -> Verdict {
        let now = crate::sasl::unix_from_filetime(self.filetime);
        self.check_at(conn, authorization, now)
    }

    /// [`HttpAuthenticator::check`] at `now` (seconds since the Unix epoch): the time a
    /// Kerberos authenticator is checked against.
    pub fn check_at(
        &mut self,
        conn: &mut ConnectionAuth,
        authorization: Option<&str>,
        now: Seconds,
    ) -> Verdict {
        let Some(value) = authorization else {
            return match (&conn.authenticated, conn.pending.is_some()) {
                (Some(p), false) => Verdict::Authenticated(p.clone()),
                _ => self.unauthorized(Refusal::Missing),
            };
        };
        if value.len() > MAX_AUTHORIZATION {
            return Verdict::BadRequest(BadAuthorization::TooLong(value.len()));
        }
        let (scheme, token) = match value.trim().split_once(' ') {
            Some((s, t)) => (s, t.trim()),
            None => (value.trim(), ""),
        };
        let decoded = || {
            base64::engine::general_purpose::STANDARD
                .decode(token)
                .map_err(|_| BadAuthorization::Malformed("credentials are not base64"))
        };
        if scheme.eq_ignore_ascii_case("Basic") && self.offers(HttpScheme::Basic) {
            let bytes = match decoded() {
                Ok(b) => b,
                Err(e) => return Verdict::BadRequest(e),
            };
            self.basic(&bytes)
        } else if scheme.eq_ignore_ascii_case("NTLM") && self.offers(HttpScheme::Ntlm) {
            let bytes = match decoded() {
                Ok(b) if !b.is_empty() => b,
                Ok(_) => {
                    return Verdict::BadRequest(BadAuthorization::Malformed("empty NTLM token"))
                }
                Err(e) => return Verdict::BadRequest(e),
            };
            self.ntlm(conn, &bytes)
        } else if scheme.eq_ignore_ascii_case("Negotiate") && self.kerberos.is_some() {
            let bytes = match decoded() {
                Ok(b) if !b.is_empty() => b,
                Ok(_) => {
                    return Verdict::BadRequest(BadAuthorization::Malformed(
                        "empty Negotiate token",
                    ))
                }
                Err(e) => return Verdict::BadRequest(e),
            };
            self.negotiate(conn, &bytes, now)
        } else {
            self.unauthorized(Refusal::SchemeNotOffered(scheme.to_string()))
        }
    }

    fn basic(&self, credentials: &[u8]) -> Verdict {
        let text = String::from_utf8_lossy(credentials);
        let Some((name, password)) = text.split_once(':') else {
            return Verdict::BadRequest(BadAuthorization::Malformed("Basic credentials lack ':'"));
        };
        let (domain, user) = match name.split_once('\\') {
            Some((d, u)) => (d, u),
            None => ("", name),
        };
        // Compared as fixed-length digests in constant time, against a digest of nothing
        // for an unknown user: neither the password's length nor the user's existence
        // shows in the time taken.
        use crate::ntlm::crypto::{ct_eq, ntowf_v1};
        let known = (self.passwords)(user);
        let expected = ntowf_v1(known.as_deref().unwrap_or(""));
        let right = ct_eq(&expected, &ntowf_v1(password)) && known.is_some();
        if !right {
            return self.unauthorized(Refusal::BasicWrongPassword);
        }
        Verdict::Authenticated(HttpPrincipal::new(
            HttpScheme::Basic,
            user.to_string(),
            domain.to_string(),
        ))
    }

    fn ntlm(&mut self, conn: &mut ConnectionAuth, token: &[u8]) -> Verdict {
        // Message type: octets 8..12 of an NTLMSSP message ([MS-NLMP] 2.2.1).
        let kind = token
            .get(8..12)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        match kind {
            Some(1) => {
                conn.authenticated = None;
                let challenge: [u8; 8] = self.rng.bytes();
                let mut acceptor =
                    NtlmAcceptor::new(self.config.ntlm.clone(), challenge, self.filetime);
                match acceptor.handle_negotiate(token) {
                    Ok(message) => {
                        conn.pending = Some(acceptor);
                        let b64 = base64::engine::general_purpose::STANDARD.encode(message);
                        Verdict::Unauthorized {
                            www_authenticate: vec![format!("NTLM {b64}")],
                            refusal: Refusal::NtlmChallenged,
                        }
                    }
                    Err(e) => self.ntlm_failed(conn, e),
                }
            }
            Some(3) => {
                let Some(mut acceptor) = conn.pending.take() else {
                    return self.unauthorized(Refusal::NtlmWrongConnection);
                };
                let passwords = &self.passwords;
                match acceptor.handle_authenticate(token, &|user, _domain| passwords(user)) {
                    Ok(done) => {
                        let principal =
                            HttpPrincipal::new(HttpScheme::Ntlm, done.user, done.domain);
                        conn.authenticated = Some(principal.clone());
                        Verdict::Authenticated(principal)
                    }
                    Err(e) => self.ntlm_failed(conn, e),
                }
            }
            _ => Verdict::BadRequest(BadAuthorization::Malformed(
                "NTLM token is neither NEGOTIATE nor AUTHENTICATE",
            )),
        }
    }

    /// SPNEGO with the Kerberos mechanism's optimistic token, or a bare Kerberos token.
    fn negotiate(&mut self, conn: &mut ConnectionAuth, token: &[u8], now: Seconds) -> Verdict {
        conn.authenticated = None;
        let (mech_token, spnego) = match spnego::read_init(token) {
            Ok(init) => {
                let krb5 = init
                    .mech_types
                    .first()
                    .is_some_and(|m| m[..] == KRB5_OID || m[..] == MS_KRB5_OID);
                match (krb5, init.mech_token) {
                    (true, Some(t)) => (t, true),
                    _ => return self.unauthorized(Refusal::NegotiateFailed(
                        "no Kerberos token first in the NegTokenInit (only Kerberos is offered)"
                            .into(),
                    )),
                }
            }
            Err(_) if gss::unframe(token).is_some() => (token.to_vec(), false),
            Err(e) => {
                return Verdict::BadRequest(BadAuthorization::Malformed(match e {
                    spnego::SpnegoError::Malformed(why) => why,
                }))
            }
        };
        let Some(acceptor) = self.kerberos.as_mut() else {
            return self.unauthorized(Refusal::SchemeNotOffered("Negotiate".into()));
        };
        match acceptor.accept(&mech_token, now) {
            Ok(accepted) => {
                let mutual = accepted.reply.map(|reply| {
                    let token = if spnego {
                        spnego::write_resp(&spnego::NegTokenResp {
                            state: Some(spnego::ACCEPT_COMPLETED),
                            supported_mech: Some(KRB5_OID.to_vec()),
                            response_token: Some(reply),
                        })
                    } else {
                        reply
                    };
                    format!(
                        "Negotiate {}",
                        base64::engine::general_purpose::STANDARD.encode(token)
                    )
                });
                let principal = HttpPrincipal {
                    scheme: HttpScheme::Negotiate,
                    user: accepted.client.text(),
                    domain: accepted.realm,
                    delegated: accepted.delegated.map(Box::new),
                    mutual,
                };
                conn.authenticated = Some(principal.clone());
                Verdict::Authenticated(principal)
            }
            Err(e) => self.unauthorized(Refusal::NegotiateFailed(e.to_string())),
        }
    }

    fn ntlm_failed(&self, conn: &mut ConnectionAuth, e: NtlmError) -> Verdict {
        conn.pending = None;
        conn.authenticated = None;
        // One text for both, as for Basic: the refusal must not tell which users exist.
        let why = match e {
            NtlmError::UnknownUser | NtlmError::WrongPassword => {
                "unknown user or wrong password".to_string()
            }
            other => other.to_string(),
        };
        self.unauthorized(Refusal::NtlmFailed(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntlm::{Credentials, InitiatorOptions, NtlmInitiator, ResponseKind};

    fn server(schemes: &[HttpScheme]) -> HttpAuthenticator {
        HttpAuthenticator::new(
            HttpAuthConfig {
                schemes: schemes.to_vec(),
                realm: "mail.example.test".into(),
                ntlm: AcceptorConfig {
                    nb_domain: "EXAMPLE".into(),
                    nb_computer: "MAIL".into(),
                    dns_domain: "example.test".into(),
                    dns_computer: "mail.example.test".into(),
                },
            },
            |user| (user == "alice").then(|| "secret".to_string()),
            5,
            0x01d9_0000_0000_0000,
        )
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", b64(format!("{user}:{password}").as_bytes()))
    }

    fn client(password: &str) -> NtlmInitiator {
        NtlmInitiator::new(
            Credentials::example("alice", password),
            InitiatorOptions::fixed(1, 2, ResponseKind::V2, true),
        )
    }

    /// The CHALLENGE a 401 carries.
    fn challenge_of(v: &Verdict) -> Vec<u8> {
        let Verdict::Unauthorized {
            www_authenticate, ..
        } = v
        else {
            panic!("{v:?}")
        };
        let token = www_authenticate[0]
            .strip_prefix("NTLM ")
            .expect("NTLM token");
        base64::engine::general_purpose::STANDARD
            .decode(token)
            .unwrap()
    }

    #[test]
    fn basic_is_checked_on_every_request() {
        let mut s = server(&[HttpScheme::Ntlm, HttpScheme::Basic]);
        let mut conn = ConnectionAuth::default();
        let v = s.check(&mut conn, None);
        assert_eq!(
            v,
            Verdict::Unauthorized {
                www_authenticate: vec!["NTLM".into(), "Basic realm=\"mail.example.test\"".into()],
                refusal: Refusal::Missing,
            }
        );
        let ok = s.check(&mut conn, Some(&basic("EXAMPLE\\alice", "secret")));
        assert_eq!(
            ok,
            Verdict::Authenticated(HttpPrincipal::new(
                HttpScheme::Basic,
                "alice".into(),
                "EXAMPLE".into()
            ))
        );
        // Not remembered: the next request without a header is challenged again.
        assert!(matches!(
            s.check(&mut conn, None),
            Verdict::Unauthorized { .. }
        ));
        // An unknown user with an empty password must not match the digest of nothing.
        for (user, password) in [
            ("alice", "Secret"),
            ("alice", "secre"),
            ("bob", "secret"),
            ("nobody", ""),
            ("alice", ""),
        ] {
            assert!(matches!(
                s.check(&mut conn, Some(&basic(user, password))),
                Verdict::Unauthorized {
                    refusal: Refusal::BasicWrongPassword,
                    ..
                }
            ));
        }
        assert!(matches!(
            s.check(&mut conn, Some("Basic !!!")),
            Verdict::BadRequest(BadAuthorization::Malformed(_))
        ));
        assert!(matches!(
            s.check(&mut conn, Some(&format!("Basic {}", b64(b"no-colon")))),
            Verdict::BadRequest(_)
        ));
    }

    #[test]
    fn ntlm_on_one_connection_authenticates_it() {
        let mut s = server(&[HttpScheme::Ntlm]);
        let mut conn = ConnectionAuth::default();
        let mut c = client("secret");
        let v = s.check(&mut conn, Some(&format!("NTLM {}", b64(&c.negotiate()))));
        let auth = c.handle_challenge(&challenge_of(&v)).unwrap();
        let v = s.check(&mut conn, Some(&format!("NTLM {}", b64(&auth))));
        assert!(
            matches!(&v, Verdict::Authenticated(p) if p.user == "alice" && p.scheme == HttpScheme::Ntlm)
        );
        // Connection-based: later requests on it need no header.
        assert_eq!(s.check(&mut conn, None), v);
        // Another connection is not authenticated.
        assert!(matches!(
            s.check(&mut ConnectionAuth::default(), None),
            Verdict::Unauthorized { .. }
        ));
    }

    #[test]
    fn an_ntlm_handshake_split_over_two_connections_gets_401_and_says_why() {
        let mut s = server(&[HttpScheme::Ntlm, HttpScheme::Basic]);
        let (mut first, mut second) = (ConnectionAuth::default(), ConnectionAuth::default());
        let mut c = client("secret");
        let v = s.check(&mut first, Some(&format!("NTLM {}", b64(&c.negotiate()))));
        let auth = c.handle_challenge(&challenge_of(&v)).unwrap();
        let v = s.check(&mut second, Some(&format!("NTLM {}", b64(&auth))));
        assert_eq!(
            v,
            Verdict::Unauthorized {
                www_authenticate: vec!["NTLM".into(), "Basic realm=\"mail.example.test\"".into()],
                refusal: Refusal::NtlmWrongConnection,
            }
        );
        assert!(Refusal::NtlmWrongConnection
            .to_string()
            .contains("bound to one TCP connection"));
    }

    #[test]
    fn a_wrong_ntlm_password_and_out_of_order_tokens_are_refused() {
        let mut s = server(&[HttpScheme::Ntlm]);
        let mut conn = ConnectionAuth::default();
        let mut c = client("wrong");
        let v = s.check(&mut conn, Some(&format!("NTLM {}", b64(&c.negotiate()))));
        let auth = c.handle_challenge(&challenge_of(&v)).unwrap();
        assert_eq!(
            s.check(&mut conn, Some(&format!("NTLM {}", b64(&auth)))),
            Verdict::Unauthorized {
                www_authenticate: vec!["NTLM".into()],
                refusal: Refusal::NtlmFailed("unknown user or wrong password".into()),
            }
        );
        assert!(matches!(
            s.check(&mut conn, None),
            Verdict::Unauthorized { .. }
        ));
        // The same AUTHENTICATE again: the exchange is over.
        assert!(matches!(
            s.check(&mut conn, Some(&format!("NTLM {}", b64(&auth)))),
            Verdict::Unauthorized {
                refusal: Refusal::NtlmWrongConnection,
                ..
            }
        ));
        // A CHALLENGE from the client, or garbage, is a bad request.
        let mut bogus = auth.clone();
        bogus[8] = 2;
        assert!(matches!(
            s.check(&mut conn, Some(&format!("NTLM {}", b64(&bogus)))),
            Verdict::BadRequest(_)
        ));
        assert_eq!(
            s.check(&mut conn, Some("NTLM")),
            Verdict::BadRequest(BadAuthorization::Malformed("empty NTLM token"))
        );
    }

    #[test]
    fn schemes_not_offered_and_oversized_headers() {
        let mut s = server(&[HttpScheme::Ntlm]);
        let mut conn = ConnectionAuth::default();
        assert!(matches!(
            s.check(&mut conn, Some(&basic("alice", "secret"))),
            Verdict::Unauthorized {
                refusal: Refusal::SchemeNotOffered(_),
                ..
            }
        ));
        assert!(matches!(
            s.check(&mut conn, Some("Negotiate YIIB")),
            Verdict::Unauthorized { .. }
        ));
        let long = format!("NTLM {}", "A".repeat(MAX_AUTHORIZATION));
        assert_eq!(
            s.check(&mut conn, Some(&long)),
            Verdict::BadRequest(BadAuthorization::TooLong(long.len()))
        );
        // Up to the limit the header is read: an NTLM message may be 64 KiB, 87,384
        // characters in base64 after "NTLM ".
        let at_limit = format!("NTLM {}", "A".repeat(MAX_AUTHORIZATION - 5));
        let biggest = format!("NTLM {}", "A".repeat(87_384));
        for value in [&at_limit, &biggest] {
            assert!(
                !matches!(
                    s.check(&mut conn, Some(value)),
                    Verdict::BadRequest(BadAuthorization::TooLong(_))
                ),
                "{} characters",
                value.len()
            );
        }
        assert_eq!(
            (HttpScheme::Basic.name(), HttpScheme::Ntlm.name()),
            ("Basic", "NTLM")
        );
        assert_eq!("ntlm".parse::<HttpScheme>(), Ok(HttpScheme::Ntlm));
        assert_eq!("BASIC".parse::<HttpScheme>(), Ok(HttpScheme::Basic));
        assert_eq!("negotiate".parse::<HttpScheme>(), Ok(HttpScheme::Negotiate));
        assert!("kerberos".parse::<HttpScheme>().is_err());
    }
}

#[cfg(test)]
mod negotiate_tests {
    use super::*;
    use crate::kerberos::client::{self, Credentials, Request};
    use crate::kerberos::flags::{FORWARDABLE, FORWARDED};
    use crate::kerberos::gss::gss_flags;
    use crate::kerberos::{Kdc, KdcConfig, Name, RealmDb, NT_SRV_HST};
    use crate::LabFile;

    const NOW: Seconds = 1_704_067_200;

    struct Setup {
        kdc: Kdc,
        rng: SeededRng,
    }

    impl Setup {
        fn new() -> Setup {
            let world = LabFile::default_lab().build().expect("lab");
            Setup {
                kdc: Kdc::new(RealmDb::for_world(&world), KdcConfig::default(), 2),
                rng: SeededRng::new(8),
            }
        }

        fn tickets(
            &mut self,
            user: &str,
            password: &str,
            service: &str,
        ) -> (Credentials, Credentials) {
            let kdc = &mut self.kdc;
            let fwd = Request {
                options: FORWARDABLE,
                ..Request::default()
            };
            let mut exchange = |r: &[u8]| Ok(kdc.handle(r, NOW).bytes);
            let tgt = client::login(
                &mut exchange,
                user,
                "EXAMPLE.TEST",
                password,
                &fwd,
                NOW,
                &mut self.rng,
            )
            .expect("TGT");
            let server = Name::parse(service, NT_SRV_HST);
            let ticket = client::ticket(&mut exchange, &tgt, &server, &fwd, NOW, &mut self.rng)
                .expect("ticket");
            let forwarded = client::ticket(
                &mut exchange,
                &tgt,
                &Name::tgs("EXAMPLE.TEST"),
                &Request {
                    options: FORWARDABLE | FORWARDED,
                    ..Request::default()
                },
                NOW,
                &mut self.rng,
            )
            .expect("forwarded TGT");
            (ticket, forwarded)
        }

        fn web_server(&self) -> HttpAuthenticator {
            let web = self
                .kdc
                .db()
                .entry("HTTP/web.example.test")
                .cloned()
                .expect("web");
            HttpAuthenticator::new(
                HttpAuthConfig {
                    schemes: vec![HttpScheme::Ntlm, HttpScheme::Basic],
                    realm: "web.example.test".into(),
                    ntlm: AcceptorConfig {
                        nb_domain: "EXAMPLE".into(),
                        nb_computer: "WEB".into(),
                        dns_domain: "example.test".into(),
                        dns_computer: "web.example.test".into(),
                    },
                },
                |_| None,
                1,
                crate::sasl::filetime_from_unix(NOW as u64),
            )
            .with_kerberos(GssAcceptor::new("EXAMPLE.TEST", vec![web], 3))
        }
    }

    fn negotiate(token: &[u8]) -> String {
        let init = spnego::write_init(&spnego::NegTokenInit {
            mech_types: vec![KRB5_OID.to_vec()],
            mech_token: Some(token.to_vec()),
        });
        format!(
            "Negotiate {}",
            base64::engine::general_purpose::STANDARD.encode(init)
        )
    }

    #[test]
    fn negotiate_is_offered_first_and_accepts_a_delegating_client() {
        let mut setup = Setup::new();
        let (ticket, forwarded) = setup.tickets("alice", "secret", "HTTP/web.example.test");
        let mut server = setup.web_server();
        assert_eq!(
            server.challenges(),
            ["Negotiate", "NTLM", "Basic realm=\"web.example.test\""]
        );
        let flags = gss_flags::MUTUAL | gss_flags::REPLAY;
        let (token, ctx) =
            gss::initiate(&ticket, flags, Some(&forwarded), false, NOW, &mut setup.rng);
        let mut conn = ConnectionAuth::default();
        let Verdict::Authenticated(p) = server.check_at(&mut conn, Some(&negotiate(&token)), NOW)
        else {
            panic!("not authenticated");
        };
        assert_eq!(
            (p.scheme, p.user.as_str(), p.domain.as_str()),
            (HttpScheme::Negotiate, "alice", "EXAMPLE.TEST")
        );
        assert_eq!(
            p.delegated.as_ref().map(|d| d.server.text()),
            Some("krbtgt/EXAMPLE.TEST".into())
        );
        // The mutual token: a NegTokenResp, accept-completed, with an AP-REP the client takes.
        let mutual = p
            .mutual
            .as_deref()
            .and_then(|m| m.strip_prefix("Negotiate "))
            .expect("mutual");
        let resp = spnego::read_resp(
            &base64::engine::general_purpose::STANDARD
                .decode(mutual)
                .expect("b64"),
        )
        .expect("NegTokenResp");
        assert_eq!(resp.state, Some(spnego::ACCEPT_COMPLETED));
        assert_eq!(resp.supported_mech.as_deref(), Some(&KRB5_OID[..]));
        assert!(ctx
            .read_reply(&resp.response_token.expect("AP-REP"))
            .is_ok());
        // The connection stays authenticated; the same token again is a replay.
        assert!(matches!(
            server.check_at(&mut conn, None, NOW),
            Verdict::Authenticated(_)
        ));
        let mut other = ConnectionAuth::default();
        let replay = server.check_at(&mut other, Some(&negotiate(&token)), NOW);
        assert!(
            matches!(&replay, Verdict::Unauthorized { refusal: Refusal::NegotiateFailed(why), .. } if why.contains("replayed")),
            "{replay:?}"
        );
    }

    #[test]
    fn negotiate_refuses_other_services_tickets_and_non_kerberos_tokens() {
        let mut setup = Setup::new();
        let (plain, _) = setup.tickets("bob", "hunter2", "HTTP/plain.example.test");
        let mut server = setup.web_server();
        let (token, _) = gss::initiate(&plain, 0, None, false, NOW, &mut setup.rng);
        let mut conn = ConnectionAuth::default();
        let v = server.check_at(&mut conn, Some(&negotiate(&token)), NOW);
        assert!(
            matches!(&v, Verdict::Unauthorized { www_authenticate, refusal: Refusal::NegotiateFailed(why) }
                if www_authenticate[0] == "Negotiate" && why.contains("no key for HTTP/plain.example.test")),
            "{v:?}"
        );
        // SPNEGO offering only NTLMSSP.
        let ntlm_only = spnego::write_init(&spnego::NegTokenInit {
            mech_types: vec![spnego::NTLMSSP_OID.to_vec()],
            mech_token: Some(b"NTLMSSP\0".to_vec()),
        });
        let v = server.check_at(
            &mut conn,
            Some(&format!(
                "Negotiate {}",
                base64::engine::general_purpose::STANDARD.encode(ntlm_only)
            )),
            NOW,
        );
        assert!(
            matches!(
                v,
                Verdict::Unauthorized {
                    refusal: Refusal::NegotiateFailed(_),
                    ..
                }
            ),
            "{v:?}"
        );
        // Garbage: 400.
        let v = server.check_at(&mut conn, Some("Negotiate AAAA"), NOW);
        assert!(matches!(v, Verdict::BadRequest(_)), "{v:?}");
        // A bare Kerberos token (no SPNEGO) is accepted, and its reply is bare too.
        let (web, _) = setup.tickets("alice", "secret", "HTTP/web.example.test");
        let (token, ctx) = gss::initiate(&web, gss_flags::MUTUAL, None, false, NOW, &mut setup.rng);
        let header = format!(
            "Negotiate {}",
            base64::engine::general_purpose::STANDARD.encode(&token)
        );
        let Verdict::Authenticated(p) = server.check_at(&mut conn, Some(&header), NOW) else {
            panic!("bare token")
        };
        assert_eq!(p.delegated, None);
        let reply = base64::engine::general_purpose::STANDARD
            .decode(p.mutual.expect("mutual").trim_start_matches("Negotiate "))
            .expect("b64");
        assert!(ctx.read_reply(&reply).is_ok());
        // Without with_kerberos, Negotiate is not offered at all.
        let mut no_krb = HttpAuthenticator::new(server.config().clone(), |_| None, 1, 0);
        no_krb
            .config
            .schemes
            .retain(|s| *s != HttpScheme::Negotiate);
        let v = no_krb.check_at(&mut ConnectionAuth::default(), Some(&header), NOW);
        assert!(
            matches!(
                v,
                Verdict::Unauthorized {
                    refusal: Refusal::SchemeNotOffered(_),
                    ..
                }
            ),
            "{v:?}"
        );
    }
}
