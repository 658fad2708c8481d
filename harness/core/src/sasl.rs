//! Server side of the SASL mechanisms the mail endpoints offer (PLAIN RFC 4616, LOGIN,
//! NTLM [MS-NLMP]), independent of how IMAP or POP3 frame them. The framing layers do the
//! base64 and the `*` cancel; this module sees raw bytes.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::ntlm::{self, AcceptorConfig, NtlmAcceptor, NtlmError};
use crate::rng::SeededRng;
use crate::world::World;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Mechanism {
    Plain,
    Login,
    Ntlm,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::Ntlm => "NTLM",
        }
    }

    /// Case-insensitive, as SASL mechanism names are (RFC 4422 3.1).
    pub fn parse(name: &str) -> Option<Mechanism> {
        [Mechanism::Plain, Mechanism::Login, Mechanism::Ntlm]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

crate::text::display_by_name!(Mechanism);

/// Why an exchange failed. The framing layer turns it into `NO` / `-ERR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("client response is not valid base64")]
    InvalidBase64,
    #[error("malformed {mechanism} response: {reason}")]
    Malformed {
        mechanism: Mechanism,
        reason: &'static str,
    },
    #[error("invalid credentials")]
    BadCredentials,
    #[error("authorization identity {0:?} differs from the authenticated user")]
    AuthzRefused(String),
    #[error("NTLM: {0}")]
    Ntlm(#[from] NtlmError),
    #[error("the exchange is already finished")]
    Finished,
}

/// What the server does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Send this challenge (possibly empty) and wait for the next client response.
    Challenge(Vec<u8>),
    /// Authenticated as this directory user (the directory's spelling of the name).
    Success {
        user: String,
    },
    Failure(SaslError),
}

enum State {
    Plain,
    LoginUser,
    LoginPassword { user: String },
    Ntlm(Box<NtlmAcceptor>),
    Done,
}

/// One server-side SASL exchange.
pub struct SaslServer {
    mechanism: Mechanism,
    state: State,
}

impl fmt::Debug for SaslServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslServer")
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

/// Windows FILETIME (100 ns ticks since 1601-01-01) for a Unix time in seconds.
pub fn filetime_from_unix(secs: u64) -> u64 {
    (secs + 11_644_473_600) * 10_000_000
}

/// Unix time in seconds for a Windows FILETIME (0 for times before 1970).
pub fn unix_from_filetime(filetime: u64) -> i64 {
    (filetime / 10_000_000).saturating_sub(11_644_473_600) as i64
}

impl SaslServer {
    /// Starts an exchange. `initial` is the client's initial response (SASL-IR, or POP3
    /// `AUTH mech resp`), already base64-decoded; `Some(vec![])` is the explicit empty one.
    /// `unix_now` feeds NTLM's timestamp.
    pub fn start(
        mechanism: Mechanism,
        world: &World,
        rng: &mut SeededRng,
        unix_now: u64,
        initial: Option<&[u8]>,
    ) -> (SaslServer, SaslStep) {
        let state = match mechanism {
            Mechanism::Plain => State::Plain,
            Mechanism::Login => State::LoginUser,
            Mechanism::Ntlm => {
                let config = AcceptorConfig::for_world(world);
                let challenge: [u8; 8] = rng.bytes();
                State::Ntlm(Box::new(NtlmAcceptor::new(
                    config,
                    challenge,
                    filetime_from_unix(unix_now),
                )))
            }
        };
        let mut server = SaslServer { mechanism, state };
        let step = match initial {
            Some(data) => server.step(world, data),
            None => match mechanism {
                Mechanism::Login => Challenge(b"Username:".to_vec()),
                _ => Challenge(Vec::new()),
            },
        };
        (server, step)
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Feeds one (decoded) client response.
    pub fn step(&mut self, world: &World, response: &[u8]) -> SaslStep {
        let state = std::mem::replace(&mut self.state, State::Done);
        match state {
            State::Plain => plain(world, response),
            State::LoginUser => match std::str::from_utf8(response) {
                Ok(user) if !user.is_empty() => {
                    self.state = State::LoginPassword {
                        user: user.to_string(),
                    };
                    Challenge(b"Password:".to_vec())
                }
                _ => Failure(SaslError::Malformed {
                    mechanism: Mechanism::Login,
                    reason: "user name is empty or not UTF-8",
                }),
            },
            State::LoginPassword { user } => match std::str::from_utf8(response) {
                Ok(password) => match world.directory.verify_password(&user, password) {
                    Some(p) => Success {
                        user: p.name.clone(),
                    },
                    None => Failure(SaslError::BadCredentials),
                },
                Err(_) => Failure(SaslError::Malformed {
                    mechanism: Mechanism::Login,
                    reason: "password is not UTF-8",
                }),
            },
            State::Ntlm(mut acceptor) => {
                if !acceptor.has_negotiated() {
                    match acceptor.handle_negotiate(response) {
                        Ok(challenge) => {
                            self.state = State::Ntlm(acceptor);
                            Challenge(challenge)
                        }
                        Err(e) => Failure(e.into()),
                    }
                } else {
                    let lookup = |user: &str, domain: &str| -> Option<String> {
                        if !domain_is_ours(world, domain) {
                            return None;
                        }
                        world.directory.password(user)
                    };
                    match acceptor.handle_authenticate(response, &lookup) {
                        Ok(auth) => match world.directory.lookup(&auth.user) {
                            Some(p) => Success {
                                user: p.name.clone(),
                            },
                            None => Failure(SaslError::BadCredentials),
                        },
                        Err(e) => Failure(e.into()),
                    }
                }
            }
            State::Done => Failure(SaslError::Finished),
        }
    }
}

use SaslStep::{Challenge, Failure, Success};

/// NTLM clients send the domain they think they are in: empty, the NetBIOS name, the DNS
/// name, or the server's own name for a local account.
fn domain_is_ours(world: &World, domain: &str) -> bool {
    domain.is_empty()
        || domain.eq_ignore_ascii_case(&world.domain)
        || domain.eq_ignore_ascii_case(&world.dns_domain)
        || domain.eq_ignore_ascii_case(&world.hostname)
        || world
            .hostname
            .split('.')
            .next()
            .is_some_and(|h| domain.eq_ignore_ascii_case(h))
}

/// RFC 4616 2: `[authzid] NUL authcid NUL passwd`.
fn plain(world: &World, response: &[u8]) -> SaslStep {
    let malformed = |reason| {
        Failure(SaslError::Malformed {
            mechanism: Mechanism::Plain,
            reason,
        })
    };
    let mut parts = response.split(|&b| b == 0);
    let (Some(authz), Some(authc), Some(passwd), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return malformed("expected authzid NUL authcid NUL passwd");
    };
    let (Ok(authz), Ok(authc), Ok(passwd)) = (
        std::str::from_utf8(authz),
        std::str::from_utf8(authc),
        std::str::from_utf8(passwd),
    ) else {
        return malformed("not UTF-8");
    };
    if authc.is_empty() {
        return malformed("empty authentication identity");
    }
    match world.directory.verify_password(authc, passwd) {
        Some(p) if authz.is_empty() || authz.eq_ignore_ascii_case(&p.name) => Success {
            user: p.name.clone(),
        },
        Some(_) => Failure(SaslError::AuthzRefused(authz.to_string())),
        None => Failure(SaslError::BadCredentials),
    }
}

/// Decodes one base64 client line (without CRLF). Whitespace is not allowed inside.
pub fn decode_base64(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    base64::engine::general_purpose::STANDARD
        .decode(line)
        .map_err(|_| SaslError::InvalidBase64)
}

pub fn encode_base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Re-exported so framing layers can name NTLM's errors without reaching into the module.
pub use ntlm::NtlmError as NtlmFailure;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::LabFile;

    fn world() -> World {
        LabFile::default_lab().build().unwrap()
    }

    #[test]
    fn plain_accepts_right_password_only() {
        let w = world();
        let mut rng = SeededRng::new(1);
        let (_, step) =
            SaslServer::start(Mechanism::Plain, &w, &mut rng, 0, Some(b"\0alice\0secret"));
        assert_eq!(
            step,
            Success {
                user: "alice".into()
            }
        );
        let (_, step) =
            SaslServer::start(Mechanism::Plain, &w, &mut rng, 0, Some(b"\0alice\0Secret"));
        assert_eq!(step, Failure(SaslError::BadCredentials));
        let (_, step) = SaslServer::start(
            Mechanism::Plain,
            &w,
            &mut rng,
            0,
            Some(b"bob\0alice\0secret"),
        );
        assert!(matches!(step, Failure(SaslError::AuthzRefused(_))));
        let (_, step) = SaslServer::start(Mechanism::Plain, &w, &mut rng, 0, Some(b"alice secret"));
        assert!(matches!(step, Failure(SaslError::Malformed { .. })));
    }

    #[test]
    fn plain_without_initial_response_asks_first() {
        let w = world();
        let mut rng = SeededRng::new(1);
        let (mut s, step) = SaslServer::start(Mechanism::Plain, &w, &mut rng, 0, None);
        assert_eq!(step, Challenge(vec![]));
        assert_eq!(
            s.step(&w, b"\0user\0pass"),
            Success {
                user: "user".into()
            }
        );
        assert_eq!(s.step(&w, b"\0user\0pass"), Failure(SaslError::Finished));
    }

    #[test]
    fn login_two_steps() {
        let w = world();
        let mut rng = SeededRng::new(1);
        let (mut s, step) = SaslServer::start(Mechanism::Login, &w, &mut rng, 0, None);
        assert_eq!(step, Challenge(b"Username:".to_vec()));
        assert_eq!(s.step(&w, b"bob"), Challenge(b"Password:".to_vec()));
        assert_eq!(s.step(&w, b"hunter2"), Success { user: "bob".into() });
        let (mut s, _) = SaslServer::start(Mechanism::Login, &w, &mut rng, 0, Some(b"bob"));
        assert_eq!(s.step(&w, b"wrong"), Failure(SaslError::BadCredentials));
    }

    fn ntlm_client(password: &str, prefer: ntlm::ResponseKind) -> ntlm::NtlmInitiator {
        ntlm::NtlmInitiator::new(
            ntlm::Credentials::example("alice", password),
            ntlm::InitiatorOptions::fixed(1, 2, prefer, prefer == ntlm::ResponseKind::V2),
        )
    }

    #[test]
    fn ntlm_initiator_through_sasl_server() {
        use ntlm::ResponseKind::*;
        let w = world();
        for prefer in [V1, V1ExtendedSessionSecurity, V2] {
            for (password, succeeds) in [("secret", true), ("Secret", false)] {
                let mut rng = SeededRng::new(3);
                let mut client = ntlm_client(password, prefer);
                let (mut s, step) =
                    SaslServer::start(Mechanism::Ntlm, &w, &mut rng, 1_700_000_000, None);
                assert_eq!(step, Challenge(vec![]));
                let Challenge(chal) = s.step(&w, &client.negotiate()) else {
                    panic!("no CHALLENGE");
                };
                let c = ntlm::ChallengeMessage::decode(&chal).unwrap();
                assert_eq!(c.target_name, "EXAMPLE");
                let ts = c
                    .target_info
                    .as_deref()
                    .and_then(|p| ntlm::messages::find_av(p, ntlm::AvId::TIMESTAMP))
                    .and_then(ntlm::AvPair::as_u64);
                assert_eq!(ts, Some(filetime_from_unix(1_700_000_000)));
                let auth = client.handle_challenge(&chal).unwrap();
                let step = s.step(&w, &auth);
                if succeeds {
                    assert_eq!(
                        step,
                        Success {
                            user: "alice".into()
                        },
                        "{prefer:?}"
                    );
                } else {
                    assert_eq!(
                        step,
                        Failure(SaslError::Ntlm(NtlmError::WrongPassword)),
                        "{prefer:?}"
                    );
                }
                assert_eq!(s.step(&w, &auth), Failure(SaslError::Finished));
            }
        }
    }

    #[test]
    fn ntlm_with_initial_response_and_foreign_domain() {
        let w = world();
        let mut rng = SeededRng::new(4);
        let mut client = ntlm_client("secret", ntlm::ResponseKind::V2);
        let neg = client.negotiate();
        let (mut s, step) = SaslServer::start(Mechanism::Ntlm, &w, &mut rng, 0, Some(&neg));
        let Challenge(chal) = step else {
            panic!("no CHALLENGE");
        };
        let auth = client.handle_challenge(&chal).unwrap();
        assert_eq!(
            s.step(&w, &auth),
            Success {
                user: "alice".into()
            }
        );
        // A domain that is not ours is an unknown account.
        let mut client = ntlm::NtlmInitiator::new(
            ntlm::Credentials {
                domain: "ELSEWHERE".into(),
                workstation: String::new(),
                ..ntlm::Credentials::example("alice", "secret")
            },
            ntlm::InitiatorOptions::fixed(1, 2, ntlm::ResponseKind::V2, false),
        );
        let (mut s, _) = SaslServer::start(Mechanism::Ntlm, &w, &mut rng, 0, None);
        let Challenge(chal) = s.step(&w, &client.negotiate()) else {
            panic!("no CHALLENGE");
        };
        let auth = client.handle_challenge(&chal).unwrap();
        assert_eq!(
            s.step(&w, &auth),
            Failure(SaslError::Ntlm(NtlmError::UnknownUser))
        );
        // Garbage instead of NEGOTIATE.
        let (_, step) = SaslServer::start(Mechanism::Ntlm, &w, &mut rng, 0, Some(b"hello"));
        assert_eq!(step, Failure(SaslError::Ntlm(NtlmError::BadSignature)));
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(Mechanism::parse("ntlm"), Some(Mechanism::Ntlm));
        assert_eq!(Mechanism::parse("CRAM-MD5"), None);
        assert!(decode_base64(b"!!").is_err());
        assert_eq!(decode_base64(b"").unwrap(), Vec::<u8>::new());
    }
}
