//! `harness load --target krb5://HOST[:PORT]`: AS and TGS exchanges against a KDC (the
//! lab's, or MIT's krb5kdc beside it), over UDP as MIT's client sends them, through the
//! same sans-IO client the driver uses (`harness_core::kerberos::client`).
//!
//! - `kdc-as`: kinit, as MIT's client does it with a principal that requires
//!   pre-authentication: an AS-REQ, KRB-ERROR 25 with ETYPE-INFO2, the AS-REQ again with
//!   PA-ENC-TIMESTAMP, the AS-REP (two round trips, one PBKDF2 string-to-key, cached).
//! - `kdc-tgs`: each client logs in once; every session is then one TGS exchange for the
//!   service (kvno without a cache).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness_core::kerberos::client::{self, ClientError, Credentials, Request};
use harness_core::kerberos::{err, Key, Name, NT_SRV_HST};
use harness_core::rng::SeededRng;
use tokio::net::UdpSocket;

use super::load::{ErrorKind, SessionError, UserSpec};

/// What a Kerberos load asks of the KDC.
#[derive(Debug, Clone)]
pub struct KdcLoad {
    pub realm: String,
    /// The service of `kdc-tgs` (`HTTP/web.example.test`).
    pub service: String,
}

/// A client's UDP socket, its randomness, and its TGT once it has one.
pub struct KdcClient {
    socket: UdpSocket,
    rng: SeededRng,
    tgt: Option<Credentials>,
    buf: Vec<u8>,
    /// The last authenticator's time: the next is always later (MIT's client does the
    /// same when its clock has not moved).
    last_authenticator: Option<(i64, u32)>,
}

fn now() -> i64 {
    now_us().0
}

/// The wall clock with its microseconds (an authenticator's ctime and cusec).
fn now_us() -> (i64, u32) {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or((0, 0), |d| (d.as_secs() as i64, d.subsec_micros()))
}

fn fail(kind: ErrorKind, detail: impl Into<String>) -> SessionError {
    SessionError {
        kind,
        detail: detail.into(),
    }
}

fn classify(e: ClientError) -> SessionError {
    let kind = match &e {
        ClientError::Krb { .. } | ClientError::Integrity(_) => ErrorKind::Refused,
        ClientError::Transport(_) => ErrorKind::Timeout,
        _ => ErrorKind::Protocol,
    };
    fail(kind, e.to_string())
}

impl KdcClient {
    /// A client bound to loopback, sending to `kdc`.
    pub async fn new(kdc: SocketAddr, seed: u64) -> Result<KdcClient, SessionError> {
        let local: SocketAddr = if kdc.is_ipv4() {
            ([127, 0, 0, 1], 0).into()
        } else {
            (std::net::Ipv6Addr::LOCALHOST, 0).into()
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|e| fail(ErrorKind::Connect, e.to_string()))?;
        socket
            .connect(kdc)
            .await
            .map_err(|e| fail(ErrorKind::Connect, e.to_string()))?;
        Ok(KdcClient {
            socket,
            rng: SeededRng::new(seed),
            tgt: None,
            buf: vec![0; 65_536],
            last_authenticator: None,
        })
    }

    /// One request, its reply (a datagram each way, bounded by `op_timeout`).
    async fn exchange(
        &mut self,
        request: &[u8],
        op_timeout: Duration,
    ) -> Result<Vec<u8>, SessionError> {
        self.socket
            .send(request)
            .await
            .map_err(|e| fail(ErrorKind::Connect, e.to_string()))?;
        let n = tokio::time::timeout(op_timeout, self.socket.recv(&mut self.buf))
            .await
            .map_err(|_| fail(ErrorKind::Timeout, format!("no reply in {op_timeout:?}")))?
            .map_err(|e| fail(ErrorKind::Connect, e.to_string()))?;
        Ok(self.buf[..n].to_vec())
    }

    /// kinit: AS-REQ, the KDC's PREAUTH_REQUIRED, AS-REQ with PA-ENC-TIMESTAMP, AS-REP.
    pub async fn kinit(
        &mut self,
        load: &KdcLoad,
        user: &UserSpec,
        op_timeout: Duration,
    ) -> Result<Credentials, SessionError> {
        let request = Request::default();
        let client = Name::user(&user.user);
        let tgs = Name::tgs(&load.realm);
        let t = now();
        let nonce = (self.rng.next_u64() & 0x7FFF_FFFF) as u32;
        let first = client::as_req(&client, &load.realm, &tgs, &request, nonce, t, Vec::new());
        let reply = self.exchange(&first, op_timeout).await?;
        let (etype, salt) = match client::read_error(&reply) {
            Some((err::PREAUTH_REQUIRED, _, Some(e_data))) => client::preauth_hint(&e_data)
                .ok_or_else(|| fail(ErrorKind::Protocol, "PREAUTH_REQUIRED without ETYPE-INFO2"))?,
            Some((code, text, _)) => {
                return Err(fail(
                    ErrorKind::Refused,
                    format!("KRB-ERROR {code}: {text}"),
                ))
            }
            None => {
                return Err(fail(
                    ErrorKind::Protocol,
                    "an AS-REP without pre-authentication",
                ))
            }
        };
        let key = Key::from_password(etype, &user.password, &salt);
        let nonce = (self.rng.next_u64() & 0x7FFF_FFFF) as u32;
        let padata = vec![client::enc_timestamp(&key, t)];
        let second = client::as_req(&client, &load.realm, &tgs, &request, nonce, t, padata);
        let reply = self.exchange(&second, op_timeout).await?;
        client::read_as_rep(&reply, &key, nonce, &tgs).map_err(classify)
    }

    /// kvno: a TGS exchange for `load.service` with this client's TGT (got first if it
    /// has none).
    pub async fn kvno(
        &mut self,
        load: &KdcLoad,
        user: &UserSpec,
        op_timeout: Duration,
    ) -> Result<Credentials, SessionError> {
        let tgt = match self.tgt.take() {
            Some(tgt) => tgt,
            None => self.kinit(load, user, op_timeout).await?,
        };
        let server = Name::parse(&load.service, NT_SRV_HST);
        let nonce = (self.rng.next_u64() & 0x7FFF_FFFF) as u32;
        // The clock's microseconds, as MIT's client sends them: two requests in one
        // second must not look like a replay.
        let mut at = now_us();
        if Some(at) <= self.last_authenticator {
            at = self.last_authenticator.map_or(at, |(s, us)| {
                if us >= 999_999 {
                    (s + 1, 0)
                } else {
                    (s, us + 1)
                }
            });
        }
        self.last_authenticator = Some(at);
        let (request, subkey) =
            client::tgs_req_at(&tgt, &server, &Request::default(), nonce, at, &mut self.rng);
        let result = self.exchange(&request, op_timeout).await;
        self.tgt = Some(tgt);
        client::read_tgs_rep(&result?, &subkey, nonce, &server).map_err(classify)
    }
}
