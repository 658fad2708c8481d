//! The Exchange WebDAV store on the network (`harness serve --webdav`, `--webdav-tls`):
//! hyper, HTTP/1.1, each request authenticated as the web tier's are (Negotiate, NTLM,
//! Basic, bound to the TCP connection), then answered by the sans-IO store in
//! `harness_core::webdav` as that user. The body is read first, at most
//! [`webdav::MAX_BODY`] octets of it, so an NTLM or Negotiate leg that carries one keeps
//! its connection.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use harness_core::http_auth::{ConnectionAuth, HttpAuthenticator};
use harness_core::webdav::{self, DavRequest, DavResponse};
use harness_core::World;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::http::{accept_authenticated, authenticate, Body, Ends};

/// What every connection of the store shares.
pub struct DavShared {
    auth: Mutex<HttpAuthenticator>,
    world: Arc<World>,
}

impl DavShared {
    pub fn new(auth: HttpAuthenticator, world: Arc<World>) -> Arc<DavShared> {
        Arc::new(DavShared {
            auth: Mutex::new(auth),
            world,
        })
    }
}

/// The hyper response of the store's answer; `close` ends the connection after it.
fn response(answer: DavResponse, close: bool) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(answer.body)).boxed());
    *r.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in answer.headers {
        if let Ok(value) = value.parse() {
            r.headers_mut().append(name, value);
        }
    }
    if close {
        r.headers_mut().insert(
            hyper::header::CONNECTION,
            "close".parse().expect("static header"),
        );
    }
    r
}

async fn serve_request(
    shared: Arc<DavShared>,
    conn: Arc<Mutex<ConnectionAuth>>,
    ends: Ends,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    // A length over the bound is refused before a byte of the body is read; a body that
    // runs over it while read (chunked) is cut there. The rest is never read, so the
    // connection closes.
    let claimed = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if claimed.is_some_and(|n| n > webdav::MAX_BODY as u64) {
        return Ok(response(DavResponse::body_too_large(), true));
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, webdav::MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Ok(response(DavResponse::body_too_large(), true))
        }
        Err(e) => {
            tracing::debug!(%e, "webdav body");
            return Ok(response(
                DavResponse {
                    status: 400,
                    headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
                    body: format!("the request body could not be read: {e}\r\n").into_bytes(),
                },
                true,
            ));
        }
    };
    let req = Request::from_parts(parts, ());
    let principal = match authenticate(&shared.auth, &conn, &req) {
        Ok(p) => p,
        Err(refused) => return Ok(*refused),
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let answer = webdav::handle(
        &DavRequest {
            method: req.method().as_str(),
            path: req.uri().path(),
            depth: header("depth"),
            brief: header("brief"),
            host: header("host"),
            tls: ends.tls,
            body: &body,
        },
        &principal.user,
        &shared.world,
    );
    tracing::debug!(method = %req.method(), path = req.uri().path(), status = answer.status, "webdav");
    let r = response(answer, false);
    Ok(super::http::with_mutual(r, principal.mutual))
}

/// Accepts and serves the store's connections on `listener` until shutdown.
pub async fn accept_loop(
    listener: TcpListener,
    shared: Arc<DavShared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    max_connections: usize,
    shutdown: watch::Receiver<bool>,
) {
    let handler = move |conn, ends, req| serve_request(shared.clone(), conn, ends, req);
    accept_authenticated(listener, tls, max_connections, shutdown, handler).await;
}
