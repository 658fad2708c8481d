//! The web tier on the network (`harness serve --web`, `--web-tls`): hyper, HTTP/1.1, each
//! request authenticated by [`HttpAuthenticator`] with its TCP connection's
//! [`ConnectionAuth`] (Negotiate, NTLM, Basic, as IIS offers them), then answered by the
//! sans-IO site in `harness_core::web` under the logon token that made. A client on the
//! listener's own address is "on the web tier's host"; one from another loopback address
//! (`curl --interface 127.0.0.2`) is on another host.
//!
//! `/mailbox?provider=exchange|outlook|webdav` opens the user's mailbox on the lab's store
//! as the application would (`harness_core::web::provider`): the hop goes over the network
//! to the lab's KDC (TCP) and Exchange RPC listener, on a blocking thread that drives the
//! sans-IO MAPI client with the same driver as every other client.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness_core::driver::ClientSession;
use harness_core::http_auth::{ConnectionAuth, HttpAuthenticator};
use harness_core::kerberos::frame;
use harness_core::web::provider::{self, AppHost, DavReply, StoreProvider, StoreReach, StoreSite};
use harness_core::web::{self, token::LogonToken, WebRequest};
use harness_core::webdav::client::DavCall;
use harness_core::world::World;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::http::{accept_authenticated, authenticate, text, Body, Ends};

/// What every connection of the web tier shares.
pub struct WebShared {
    auth: Mutex<HttpAuthenticator>,
    store: StoreAccess,
}

/// Where the application finds the store and the KDC, and which host it runs on.
#[derive(Clone)]
pub struct StoreAccess {
    pub world: Arc<World>,
    pub site: StoreSite,
    pub host: AppHost,
    /// The Exchange RPC listener.
    pub rpc: Option<SocketAddr>,
    /// The KDC (its TCP side).
    pub kdc: Option<SocketAddr>,
    /// The store's WebDAV listener (plain HTTP).
    pub webdav: Option<SocketAddr>,
}

impl WebShared {
    pub fn new(auth: HttpAuthenticator, store: StoreAccess) -> Arc<WebShared> {
        Arc::new(WebShared {
            auth: Mutex::new(auth),
            store,
        })
    }
}

/// How long one KDC exchange or the MAPI session may take.
const HOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The store over sockets, from a blocking thread of the web tier.
struct NetworkReach {
    rpc: Option<SocketAddr>,
    kdc: Option<SocketAddr>,
    webdav: Option<SocketAddr>,
    host: String,
    /// The application's connection to the WebDAV store.
    dav: Option<std::net::TcpStream>,
    runtime: tokio::runtime::Handle,
}

/// The largest response head and body the application reads from the WebDAV store.
const MAX_DAV_HEAD: usize = 64 * 1024;
const MAX_DAV_BODY: usize = 4 * 1024 * 1024;

/// One HTTP/1.1 exchange on `tcp` (blocking, bounded by the socket's timeouts and the
/// sizes above): the status, the WWW-Authenticate values and the Content-Length body.
fn http_exchange(tcp: &mut std::net::TcpStream, request: &[u8]) -> Result<DavReply, String> {
    // Each read is bounded by the socket's timeout; the whole answer by this.
    let deadline = std::time::Instant::now() + HOP_TIMEOUT;
    tcp.write_all(request).map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buf.len() > MAX_DAV_HEAD {
            return Err("response head over 64 KiB".into());
        }
        if std::time::Instant::now() > deadline {
            return Err("no whole answer in time".into());
        }
        match tcp.read(&mut chunk) {
            Ok(0) => return Err("closed before the response".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let super::http::ResponseHead {
        code: status,
        www_authenticate,
        length,
        ..
    } = super::http::parse_response_head(&head).ok_or("not an HTTP response")?;
    if length > MAX_DAV_BODY {
        return Err(format!("a body of {length} octets"));
    }
    let mut body = buf[end + 4..].to_vec();
    while body.len() < length {
        if std::time::Instant::now() > deadline {
            return Err("no whole answer in time".into());
        }
        match tcp.read(&mut chunk) {
            Ok(0) => return Err("closed within the body".into()),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    body.truncate(length);
    Ok(DavReply {
        status,
        www_authenticate,
        body,
    })
}

impl StoreReach for NetworkReach {
    fn kdc(&mut self, request: &[u8]) -> Result<Vec<u8>, String> {
        let addr = self.kdc.ok_or("this lab has no KDC")?;
        kdc_over_tcp(addr, request)
    }

    fn webdav(
        &mut self,
        call: &DavCall,
        authorization: Option<&str>,
        new_connection: bool,
    ) -> Result<DavReply, String> {
        let addr = self.webdav.ok_or("this lab has no WebDAV store")?;
        if new_connection || self.dav.is_none() {
            let tcp = std::net::TcpStream::connect_timeout(&addr, HOP_TIMEOUT)
                .map_err(|e| format!("WebDAV {addr}: {e}"))?;
            tcp.set_read_timeout(Some(HOP_TIMEOUT))
                .and_then(|()| tcp.set_write_timeout(Some(HOP_TIMEOUT)))
                .map_err(|e| format!("WebDAV {addr}: {e}"))?;
            self.dav = Some(tcp);
        }
        let Some(tcp) = self.dav.as_mut() else {
            return Err("no connection".into());
        };
        let mut request = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            call.method, call.path, self.host
        );
        for (name, value) in &call.headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(a) = authorization {
            request.push_str(&format!("Authorization: {a}\r\n"));
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n", call.body.len()));
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(&call.body);
        http_exchange(tcp, &bytes).map_err(|e| format!("WebDAV {addr}: {e}"))
    }

    fn run_mapi(&mut self, client: &mut dyn ClientSession) {
        let Some(addr) = self.rpc else {
            // Nothing listens: the client's connection is refused, as on a network.
            client.handle_eof(Duration::ZERO);
            return;
        };
        let drive = crate::tools::client_driver::drive_client(client, addr);
        let _ = self
            .runtime
            .block_on(async { tokio::time::timeout(HOP_TIMEOUT, drive).await });
    }

    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// One KDC exchange over TCP (RFC 4120 7.2.2), blocking, each read and the whole exchange
/// bounded by `HOP_TIMEOUT`.
pub(crate) fn kdc_over_tcp(addr: SocketAddr, request: &[u8]) -> Result<Vec<u8>, String> {
    let deadline = std::time::Instant::now() + HOP_TIMEOUT;
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, HOP_TIMEOUT)
        .map_err(|e| format!("KDC {addr}: {e}"))?;
    tcp.set_read_timeout(Some(HOP_TIMEOUT))
        .and_then(|()| tcp.set_write_timeout(Some(HOP_TIMEOUT)))
        .and_then(|()| tcp.write_all(&frame::record(request)))
        .map_err(|e| format!("KDC {addr}: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match frame::take_record(&mut buf) {
            frame::Record::Message(reply) => return Ok(reply),
            frame::Record::TooLong(n) => return Err(format!("KDC {addr}: record of {n}")),
            frame::Record::Incomplete => {}
        }
        if std::time::Instant::now() > deadline {
            return Err("no whole answer in time".into());
        }
        match tcp.read(&mut chunk) {
            Ok(0) => return Err(format!("KDC {addr}: closed before its reply")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("KDC {addr}: {e}")),
        }
    }
}

/// `/mailbox`: the application opens the token's mailbox with the provider the query
/// names.
async fn mailbox_page(
    store: &StoreAccess,
    token: &LogonToken,
    query: Option<&str>,
) -> web::WebResponse {
    let key = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("provider="))
        .unwrap_or("exchange");
    let Some(chosen) = StoreProvider::parse(key) else {
        return web::WebResponse {
            status: 400,
            body: format!("no provider {key:?}: exchange, outlook or webdav\n"),
        };
    };
    let password = provider::session_password(token, &store.world);
    let store = store.clone();
    let token = token.clone();
    let runtime = tokio::runtime::Handle::current();
    let answer = tokio::task::spawn_blocking(move || {
        let mut reach = NetworkReach {
            rpc: store.rpc,
            kdc: store.kdc,
            webdav: store.webdav,
            host: store.world.hostname.clone(),
            dav: None,
            runtime,
        };
        let answer = provider::open_mailbox(
            &token,
            password.as_deref(),
            chosen,
            store.host,
            &store.site,
            &store.world,
            &mut reach,
        );
        provider::render(&token, &answer)
    })
    .await;
    answer.unwrap_or_else(|e| web::WebResponse {
        status: 500,
        body: format!("the application failed: {e}\n"),
    })
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
    let page = match req.uri().path() {
        "/mailbox" if req.method() == hyper::Method::GET => {
            mailbox_page(&shared.store, &token, req.uri().query()).await
        }
        path => web::handle(&WebRequest {
            method: req.method().as_str(),
            path,
            token: &token,
            client: &client,
        }),
    };
    let status = StatusCode::from_u16(page.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let r = text(status, page.body);
    Ok(super::http::with_mutual(r, principal.mutual))
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
