//! Drives one sans-IO client machine (`harness_core::driver::ClientSession`) over TCP:
//! reads feed `handle_input`, polled writes are sent, timers fire on the real clock, and
//! reconnects open a new connection. The mirror of [`crate::serve::connection`]; the
//! scenario runner over sockets and the load generator both run their clients here.

use std::net::SocketAddr;

use harness_core::driver::{ClientOutput, ClientSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A connection to `addr` with Nagle off (clients send short commands and wait for the
/// reply), or `None` when it cannot be opened.
async fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let _ = tcp.set_nodelay(true);
    Some(tcp)
}

/// Connects to `addr` and shuttles a client's bytes over TCP until it is done;
/// reconnects when it asks to.
pub async fn drive_client(client: &mut dyn ClientSession, addr: SocketAddr) {
    let tcp = connect(addr).await;
    drive_connected(client, addr, tcp).await;
}

/// [`drive_client`] on a connection the caller opened (`None`: the connect failed, which
/// the client is told as an end of connection). Reconnects go to `addr`.
pub async fn drive_connected(
    client: &mut dyn ClientSession,
    addr: SocketAddr,
    mut tcp: Option<TcpStream>,
) {
    let started = Instant::now();
    if tcp.is_none() {
        client.handle_eof(started.elapsed());
    }
    let mut buf = vec![0u8; 8192];
    loop {
        while let Some(out) = client.poll_output() {
            let now = started.elapsed();
            match out {
                ClientOutput::Write(bytes) => {
                    let ok = match tcp.as_mut() {
                        Some(t) => t.write_all(&bytes).await.is_ok(),
                        None => false,
                    };
                    if !ok {
                        tcp = None;
                        client.handle_eof(now);
                    }
                }
                // The scenario clients do not ask for TLS; refuse rather than pretend.
                ClientOutput::StartTls => {
                    tcp = None;
                    client.handle_eof(now);
                }
                ClientOutput::Close => {
                    if let Some(mut t) = tcp.take() {
                        let _ = t.shutdown().await;
                    }
                }
                ClientOutput::Reconnect => {
                    tcp = connect(addr).await;
                    if tcp.is_none() {
                        client.handle_eof(started.elapsed());
                    }
                }
            }
        }
        if client.is_done() {
            return;
        }
        let deadline = client.poll_timeout().map(|d| started + d);
        tokio::select! {
            read = async {
                match tcp.as_mut() {
                    Some(t) => t.read(&mut buf).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = started.elapsed();
                match read {
                    Ok(0) | Err(_) => {
                        tcp = None;
                        client.handle_eof(now);
                    }
                    Ok(n) => client.handle_input(now, &buf[..n]),
                }
            }
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending::<()>().await,
                }
            } => client.handle_timeout(started.elapsed()),
        }
        if tcp.is_none() && client.poll_timeout().is_none() && !client.is_done() {
            // Nothing can move any more: no connection and no timer.
            client.handle_eof(started.elapsed());
            if client.poll_timeout().is_none() && !client.is_done() {
                return;
            }
        }
    }
}
