//! The client side of the SASL mechanisms (PLAIN RFC 4616, LOGIN, NTLM [MS-NLMP]), framing
//! free: it turns server challenges (already base64-decoded) into client responses, and
//! says in a few words what each response is, for the step lines.

use crate::ntlm::{Credentials, InitiatorOptions, NtlmError, NtlmInitiator, ResponseKind};
use crate::rng::SeededRng;
use crate::sasl::Mechanism;

/// A response to send, and what it is (no secrets in the description).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub data: Vec<u8>,
    pub describe: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MechError {
    #[error("server sent a challenge after the exchange was complete")]
    UnexpectedChallenge,
    #[error("bad NTLM CHALLENGE: {0}")]
    Ntlm(#[from] NtlmError),
}

enum State {
    Start,
    /// PLAIN sent, or LOGIN user and password sent: nothing more to say.
    Finished,
    LoginUserSent,
    NtlmNegotiateSent(Box<NtlmInitiator>),
}

pub struct MechClient {
    mechanism: Mechanism,
    creds: Credentials,
    rng: SeededRng,
    state: State,
}

impl std::fmt::Debug for MechClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MechClient")
            .field("mechanism", &self.mechanism)
            .field("user", &self.creds.user)
            .finish_non_exhaustive()
    }
}

fn kind_name(kind: Option<ResponseKind>) -> &'static str {
    match kind {
        Some(ResponseKind::V1) => "v1",
        Some(ResponseKind::V1ExtendedSessionSecurity) => "v1-ess",
        Some(ResponseKind::V2) => "v2",
        None => "?",
    }
}

impl MechClient {
    /// `seed` gives the NTLM client challenge and random session key.
    pub fn new(mechanism: Mechanism, creds: Credentials, seed: u64) -> Self {
        MechClient {
            mechanism,
            creds,
            rng: SeededRng::new(seed),
            state: State::Start,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The first client message (sent as an initial response, or after an empty
    /// challenge).
    pub fn initial(&mut self) -> Response {
        match self.mechanism {
            Mechanism::Plain => {
                self.state = State::Finished;
                // RFC 4616 2: [authzid] NUL authcid NUL passwd (no authzid here).
                let mut data = vec![0];
                data.extend_from_slice(self.creds.user.as_bytes());
                data.push(0);
                data.extend_from_slice(self.creds.password.as_bytes());
                Response {
                    data,
                    describe: format!("<PLAIN {} ****>", self.creds.user),
                }
            }
            Mechanism::Login => {
                self.state = State::LoginUserSent;
                Response {
                    data: self.creds.user.as_bytes().to_vec(),
                    describe: format!("<LOGIN user {}>", self.creds.user),
                }
            }
            Mechanism::Ntlm => {
                let opts = InitiatorOptions {
                    client_challenge: self.rng.bytes(),
                    random_session_key: self.rng.bytes(),
                    prefer: ResponseKind::V2,
                    send_mic: false,
                };
                let mut ntlm = NtlmInitiator::new(self.creds.clone(), opts);
                let data = ntlm.negotiate();
                self.state = State::NtlmNegotiateSent(Box::new(ntlm));
                Response {
                    data,
                    describe: "<NTLM NEGOTIATE>".into(),
                }
            }
        }
    }

    /// Answers a server challenge.
    pub fn respond(&mut self, challenge: &[u8]) -> Result<Response, MechError> {
        match std::mem::replace(&mut self.state, State::Finished) {
            // PLAIN and NTLM start on the empty challenge; LOGIN's first prompt asks for
            // the user name whatever it says.
            State::Start => Ok(self.initial()),
            State::LoginUserSent => Ok(Response {
                data: self.creds.password.as_bytes().to_vec(),
                describe: "<LOGIN password ****>".into(),
            }),
            State::NtlmNegotiateSent(mut ntlm) => {
                let data = ntlm.handle_challenge(challenge)?;
                Ok(Response {
                    data,
                    describe: format!(
                        "<NTLM AUTHENTICATE user={} {}>",
                        self.creds.user,
                        kind_name(ntlm.kind())
                    ),
                })
            }
            State::Finished => Err(MechError::UnexpectedChallenge),
        }
    }

    /// How a server challenge reads in a step line.
    pub fn describe_challenge(&self, challenge: &[u8]) -> String {
        match (&self.state, self.mechanism) {
            (State::NtlmNegotiateSent(_), _) => "<NTLM CHALLENGE>".into(),
            _ if challenge.is_empty() => String::new(),
            (_, Mechanism::Login) => {
                format!("<{:?}>", super::outcome::printable(challenge, 40))
            }
            _ => format!("<{} bytes>", challenge.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            user: "alice".into(),
            password: "secret".into(),
            domain: "EXAMPLE".into(),
            workstation: "WS".into(),
        }
    }

    #[test]
    fn plain_and_login_responses() {
        let mut p = MechClient::new(Mechanism::Plain, creds(), 1);
        let r = p.respond(b"").unwrap();
        assert_eq!(r.data, b"\0alice\0secret");
        assert_eq!(r.describe, "<PLAIN alice ****>");
        assert_eq!(p.respond(b""), Err(MechError::UnexpectedChallenge));
        let mut l = MechClient::new(Mechanism::Login, creds(), 1);
        assert_eq!(l.describe_challenge(b"Username:"), "<\"Username:\">");
        assert_eq!(l.respond(b"Username:").unwrap().data, b"alice");
        let r = l.respond(b"Password:").unwrap();
        assert_eq!(
            (r.data.as_slice(), r.describe.as_str()),
            (b"secret".as_slice(), "<LOGIN password ****>")
        );
    }

    #[test]
    fn ntlm_garbage_challenge_is_a_typed_error() {
        let mut n = MechClient::new(Mechanism::Ntlm, creds(), 1);
        let neg = n.initial();
        assert!(neg.data.starts_with(b"NTLMSSP\0"));
        assert_eq!(n.describe_challenge(b"x"), "<NTLM CHALLENGE>");
        assert!(matches!(n.respond(b"garbage"), Err(MechError::Ntlm(_))));
        assert_eq!(n.respond(b""), Err(MechError::UnexpectedChallenge));
    }
}
