//! The double hop's browser over sockets: the sans-IO [`Browser`] gets its tickets from
//! the lab's KDC over TCP and sends its `Authorization` headers to the web tier over
//! HTTP/1.1 (TLS for `basic-tls`), from 127.0.0.1 (the web tier's own host) or 127.0.0.2
//! (another host), NTLM's two requests on one connection. The `/mailbox` page it gets
//! is read back into the outcome the in-process run makes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use harness_core::web::browser::{Browser, WEB_HOST};
use harness_core::web::double_hop::{run_from_page, BrowserAuth, DoubleHopCase, DoubleHopRun};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::dcerpc_client::read_page;

/// How long the page may take (the application's hop to the store included).
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the browser goes.
pub struct WebTarget {
    pub web: SocketAddr,
    /// Trusts the lab's certificate, for `basic-tls`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub kdc: Option<SocketAddr>,
    pub realm: String,
    pub domain: String,
}

/// Plays `case` for `user`: the browser's request to `/mailbox?provider=…` and the page.
pub async fn browse(
    target: &WebTarget,
    user: &str,
    password: &str,
    case: &DoubleHopCase,
    seed: u64,
) -> DoubleHopRun {
    let mut browser = Browser::new(user, password, &target.domain, case.auth, seed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    // The KDC exchanges are blocking (the sans-IO client takes a closure).
    let (kdc, realm) = (target.kdc, target.realm.clone());
    let tickets = tokio::task::spawn_blocking(move || {
        let mut exchange = |req: &[u8]| match kdc {
            Some(addr) => crate::serve::web::kdc_over_tcp(addr, req),
            None => Err("this lab has no KDC".to_string()),
        };
        let got = browser.get_tickets(&mut exchange, &realm, now);
        (browser, got)
    })
    .await;
    let (mut browser, got) = match tickets {
        Ok(done) => done,
        Err(e) => return run_from_page(user, case, &[], Err(format!("browser: {e}"))),
    };
    let page = match got {
        Ok(()) => request(target, &mut browser, case, now).await,
        Err(why) => Err(why),
    };
    run_from_page(user, case, browser.steps(), page)
}

/// The request (and NTLM's second) on one connection from the case's host.
async fn request(
    target: &WebTarget,
    browser: &mut Browser,
    case: &DoubleHopCase,
    now: i64,
) -> Result<(u16, String), String> {
    let from: std::net::IpAddr = if case.browser_on_web_host {
        target.web.ip()
    } else {
        [127, 0, 0, 2].into()
    };
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(from, 0))
        .map_err(|e| format!("browser: bind {from}: {e}"))?;
    let tcp = tokio::time::timeout(PAGE_TIMEOUT, socket.connect(target.web))
        .await
        .map_err(|_| "browser: connect timed out".to_string())?
        .map_err(|e| format!("browser: connect: {e}"))?;
    let path = format!("/mailbox?provider={}", case.provider.key());
    match (&target.tls, case.auth) {
        (Some(config), BrowserAuth::BasicTls) => {
            let name =
                rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("browser: TLS: {e}"))?;
            exchange(tls, browser, &path, now).await
        }
        _ => exchange(tcp, browser, &path, now).await,
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    browser: &mut Browser,
    path: &str,
    now: i64,
) -> Result<(u16, String), String> {
    let deadline = Instant::now() + PAGE_TIMEOUT;
    let mut authorization = browser.first("/mailbox", now)?;
    // NTLM takes two requests; nothing takes more.
    for _ in 0..2 {
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {WEB_HOST}\r\nAuthorization: {authorization}\r\n\r\n"
        );
        tokio::time::timeout_at(deadline, stream.write_all(head.as_bytes()))
            .await
            .map_err(|_| "browser: write timed out".to_string())?
            .map_err(|e| format!("browser: write: {e}"))?;
        let (status, authenticate, body) = read_page(&mut stream, deadline, PAGE_TIMEOUT)
            .await
            .map_err(|e| format!("browser: {e}"))?;
        if status.code != 401 {
            return Ok((status.code, String::from_utf8_lossy(&body).into_owned()));
        }
        match browser.challenged("/mailbox", &authenticate) {
            Ok(next) => authorization = next,
            Err(_) => return Ok((401, String::new())),
        }
    }
    Ok((401, String::new()))
}
