//! What the lab's HTTP listeners share (the RPC proxy, the web tier): hyper's HTTP/1.1
//! with the limits IIS has in spirit, TLS in front or not, and the lab's connection limit.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use harness_core::http_auth::{ConnectionAuth, HttpAuthenticator, HttpPrincipal, Verdict};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::listener::{accept_connections, Admission};

/// A client that has not sent its request head (or finished its TLS handshake) in this
/// long is closed: IIS's header wait is of this order.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection's two ends and whether TLS wraps it.
#[derive(Debug, Clone, Copy)]
pub struct Ends {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
}

/// A byte stream a connection is served over: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Serves HTTP/1.1 on `io` with `service` until the connection ends or the lab stops.
pub async fn serve_http1<S, B>(io: Box<dyn Io>, service: S, mut shutdown: watch::Receiver<bool>)
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let http = hyper::server::conn::http1::Builder::new()
        // Room for the longest Authorization (an NTLM message of 64 KiB in base64) and the
        // rest of a head.
        .max_buf_size(128 * 1024)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(http);
    tokio::select! {
        _ = &mut http => {}
        _ = shutdown.changed() => {}
    }
}

/// Accepts connections on `listener` until shutdown, at most `max_connections` at once
/// (one over it is closed at once); `tls` wraps each in TLS first (the handshake bounded
/// by [`HEAD_TIMEOUT`]); `serve` then has it.
pub async fn accept_http<F, Fut>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    max_connections: usize,
    shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(Box<dyn Io>, Ends, watch::Receiver<bool>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handle = move |tcp: TcpStream, admission: Admission| {
        let tls = tls.clone();
        let serve = serve.clone();
        async move {
            let Admission::Admitted { shutdown, place } = admission else {
                return;
            };
            let (Ok(peer), Ok(local)) = (tcp.peer_addr(), tcp.local_addr()) else {
                return;
            };
            let ends = Ends {
                peer,
                local,
                tls: tls.is_some(),
            };
            match tls {
                None => serve(Box::new(tcp), ends, shutdown).await,
                Some(acceptor) => {
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(tcp)).await
                    {
                        serve(Box::new(stream), ends, shutdown).await;
                    }
                }
            }
            drop(place);
        }
    };
    accept_connections(listener, max_connections, shutdown, handle).await;
}

/// A response body of the lab's HTTP listeners.
pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// [`accept_http`] with one [`ConnectionAuth`] per connection (NTLM and Negotiate are
/// bound to it), each request handed to `handler` with it and the connection's ends.
pub async fn accept_authenticated<H, Fut>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    max_connections: usize,
    shutdown: watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(Arc<Mutex<ConnectionAuth>>, Ends, Request<Incoming>) -> Fut
        + Clone
        + Send
        + Sync
        + 'static,
    Fut: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let serve = move |io, ends, shutdown| {
        let handler = handler.clone();
        async move {
            let conn = Arc::new(Mutex::new(ConnectionAuth::default()));
            let service = hyper::service::service_fn(move |req| handler(conn.clone(), ends, req));
            serve_http1(io, service, shutdown).await;
        }
    };
    accept_http(listener, tls, max_connections, shutdown, serve).await;
}

/// A `text/plain` response.
pub fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("static header"),
    );
    r
}

/// Authenticates `req` on its connection's `conn` now: who it is, or the response to send
/// instead (a `401` with the `WWW-Authenticate` values and a body saying why, as IIS's 401
/// page does in its own words; a `400` that closes the connection).
pub fn authenticate<B>(
    auth: &Mutex<HttpAuthenticator>,
    conn: &Mutex<ConnectionAuth>,
    req: &Request<B>,
) -> Result<HttpPrincipal, Box<Response<Body>>> {
    let authorization = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let verdict = {
        let mut auth = auth.lock().unwrap_or_else(|e| e.into_inner());
        let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
        auth.check_at(&mut conn, authorization, now)
    };
    match verdict {
        Verdict::Authenticated(p) => Ok(p),
        Verdict::Unauthorized {
            www_authenticate,
            refusal,
        } => {
            tracing::debug!(%refusal, "401");
            let mut r = text(StatusCode::UNAUTHORIZED, format!("{refusal}\r\n"));
            for v in www_authenticate {
                if let Ok(v) = v.parse() {
                    r.headers_mut().append(hyper::header::WWW_AUTHENTICATE, v);
                }
            }
            Err(Box::new(r))
        }
        Verdict::BadRequest(e) => {
            tracing::debug!(%e, "400");
            let mut r = text(StatusCode::BAD_REQUEST, format!("{e}\r\n"));
            r.headers_mut().insert(
                hyper::header::CONNECTION,
                "close".parse().expect("static header"),
            );
            Err(Box::new(r))
        }
    }
}

/// A client's reading of a response head (the text before the blank line): the status
/// line, its code, the WWW-Authenticate values and the Content-Length (0 without one).
pub(crate) struct ResponseHead {
    pub(crate) line: String,
    pub(crate) code: u16,
    pub(crate) www_authenticate: Vec<String>,
    pub(crate) length: usize,
}

/// Reads `head`; None when the status line is not HTTP's.
pub(crate) fn parse_response_head(head: &str) -> Option<ResponseHead> {
    let mut lines = head.lines();
    let line = lines.next().unwrap_or_default().to_string();
    let code = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut www_authenticate = Vec::new();
    let mut length = 0usize;
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("www-authenticate") {
            www_authenticate.push(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().unwrap_or(0);
        }
    }
    Some(ResponseHead {
        line,
        code,
        www_authenticate,
        length,
    })
}

/// `r` with the Negotiate mutual-authentication token (RFC 4559 4.2), when the principal
/// has one, in its WWW-Authenticate header.
pub(crate) fn with_mutual(mut r: Response<Body>, mutual: Option<String>) -> Response<Body> {
    if let Some(value) = mutual.and_then(|m| m.parse().ok()) {
        r.headers_mut()
            .insert(hyper::header::WWW_AUTHENTICATE, value);
    }
    r
}
