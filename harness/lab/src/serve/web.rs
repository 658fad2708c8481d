//! The web tier on the network (`harness serve --web`, `--web-tls`): hyper, HTTP/1.1, each
//! request authenticated by [`HttpAuthenticator`] with its TCP connection's
//! [`ConnectionAuth`] (Negotiate, NTLM, Basic, as IIS offers them), then answered by the
//! sans-IO site in `harness_core::web` under the logon token that made. A client on the
//! listener's own address is "on the web tier's host"; one from another loopback address
//! (`curl --interface 127.0.0.2`) is on another host.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use harness_core::http_auth::{ConnectionAuth, HttpAuthenticator};
use harness_core::web::{self, token::LogonToken, WebRequest};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::http::{accept_authenticated, authenticate, text, Body, Ends};

/// What every connection of the web tier shares.
pub struct WebShared {
    auth: Mutex<HttpAuthenticator>,
}

impl WebShared {
    pub fn new(auth: HttpAuthenticator) -> Arc<WebShared> {
        Arc::new(WebShared {
            auth: Mutex::new(auth),
        })
    }
}

async fn serve_request(
    shared: Arc<WebShared>,
    conn: Arc<Mutex<ConnectionAuth>>,
    ends: Ends,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let principal = match authenticate(&shared.auth, &conn, &req) {
        Ok(p) => p,
        Err(refused) => return Ok(*refused),
    };
    let same_host = ends.peer.ip() == ends.local.ip();
    let token = LogonToken::from_principal(&principal, same_host, ends.tls);
    let client = if same_host {
        format!("this host ({})", ends.peer.ip())
    } else {
        format!("another host ({})", ends.peer.ip())
    };
    let page = web::handle(&WebRequest {
        method: req.method().as_str(),
        path: req.uri().path(),
        token: &token,
        client: &client,
    });
    let status = StatusCode::from_u16(page.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = text(status, page.body);
    if let Some(mutual) = principal.mutual.and_then(|m| m.parse().ok()) {
        r.headers_mut()
            .insert(hyper::header::WWW_AUTHENTICATE, mutual);
    }
    Ok(r)
}

/// Accepts and serves the web tier's connections on `listener` until shutdown.
pub async fn accept_loop(
    listener: TcpListener,
    shared: Arc<WebShared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    max_connections: usize,
    shutdown: watch::Receiver<bool>,
) {
    let handler = move |conn, ends, req| serve_request(shared.clone(), conn, ends, req);
    accept_authenticated(listener, tls, max_connections, shutdown, handler).await;
}
