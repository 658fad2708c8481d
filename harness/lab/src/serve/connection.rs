//! Drives one sans-IO server session over a socket: reads feed `handle_input`, polled
//! outputs are written, STARTTLS upgrades the stream in place, timers and shutdown are
//! delivered. All protocol decisions stay in the session.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use harness_core::{Output, ServerSession};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer size per connection.
const READ_CHUNK: usize = 4096;

/// A connection that may start plain and become TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// An in-memory pipe: a tier of the lab that reaches a session without a socket
    /// (the RPC proxy's in-process back-end).
    Pipe(tokio::io::DuplexStream),
    /// Only while an upgrade is under way.
    Upgrading,
}

impl Conn {
    async fn upgrade(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        match std::mem::replace(self, Conn::Upgrading) {
            Conn::Plain(tcp) => {
                let tls = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                    .await
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                    })??;
                *self = Conn::Tls(Box::new(tls));
                Ok(())
            }
            other => {
                *self = other;
                Err(io::Error::other(
                    "STARTTLS on a connection that is not plain TCP",
                ))
            }
        }
    }

    /// Wraps a fresh TCP connection, doing the handshake first for implicit TLS.
    pub async fn accept(tcp: TcpStream, implicit_tls: Option<&TlsAcceptor>) -> io::Result<Conn> {
        let mut conn = Conn::Plain(tcp);
        if let Some(acceptor) = implicit_tls {
            conn.upgrade(acceptor).await?;
        }
        Ok(conn)
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Pipe(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Upgrading => Poll::Ready(Err(io::Error::other("connection is upgrading"))),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Pipe(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Upgrading => Poll::Ready(Err(io::Error::other("connection is upgrading"))),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Pipe(s) => Pin::new(s).poll_flush(cx),
            Conn::Upgrading => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Pipe(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

/// Why a connection ended, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The session asked to close (LOGOUT, QUIT, BYE, timeout).
    SessionClosed,
    /// The peer went away.
    PeerGone,
    /// A write could not complete in time (a peer that does not read).
    WriteStalled,
    /// The TLS upgrade failed.
    TlsFailed,
    /// The lab shut down.
    ShutDown,
}

/// Runs `session` on `conn` until it ends. `write_timeout` bounds every write so a peer
/// that never reads cannot pin the task.
pub async fn drive(
    conn: Conn,
    session: Box<dyn ServerSession>,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
    write_timeout: Duration,
) -> Ended {
    drive_woken(conn, session, tls, shutdown, write_timeout, None).await
}

/// The waker a session hands to what it waits on (the notification hub): it wakes the
/// task of [`drive_woken`], which then calls `handle_wake`.
#[derive(Debug, Default)]
pub struct NotifyWaker(pub tokio::sync::Notify);

impl harness_core::notify::Waker for NotifyWaker {
    fn wake(&self) {
        // A wake before the task waits is kept (one permit): none is lost.
        self.0.notify_one();
    }
}

/// [`drive`] for a session that can be woken: `wake` is the [`NotifyWaker`] it was
/// given.
pub async fn drive_woken(
    mut conn: Conn,
    mut session: Box<dyn ServerSession>,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
    write_timeout: Duration,
    wake: Option<Arc<NotifyWaker>>,
) -> Ended {
    let started = Instant::now();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut shutting_down = *shutdown.borrow();
    if shutting_down {
        session.handle_shutdown(Duration::ZERO);
    }
    loop {
        // Everything the session wants done, in order.
        while let Some(out) = session.poll_output() {
            match out {
                Output::Write(bytes) => {
                    match tokio::time::timeout(write_timeout, conn.write_all(&bytes)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return Ended::PeerGone,
                        Err(_) => return Ended::WriteStalled,
                    }
                }
                Output::StartTls => {
                    if tokio::time::timeout(write_timeout, conn.flush())
                        .await
                        .is_err()
                    {
                        return Ended::WriteStalled;
                    }
                    let Some(acceptor) = tls.as_ref() else {
                        return Ended::TlsFailed;
                    };
                    if conn.upgrade(acceptor).await.is_err() {
                        return Ended::TlsFailed;
                    }
                    session.handle_tls_established(started.elapsed());
                }
                Output::Close => {
                    let _ = tokio::time::timeout(write_timeout, async {
                        let _ = conn.flush().await;
                        let _ = conn.shutdown().await;
                    })
                    .await;
                    return Ended::SessionClosed;
                }
            }
        }
        if session.is_closed() {
            return Ended::SessionClosed;
        }
        if shutting_down {
            // The session has said its goodbye (if it has one); the lab closes regardless.
            let _ = tokio::time::timeout(write_timeout, async {
                let _ = conn.flush().await;
                let _ = conn.shutdown().await;
            })
            .await;
            return Ended::ShutDown;
        }
        if tokio::time::timeout(write_timeout, conn.flush())
            .await
            .is_err()
        {
            return Ended::WriteStalled;
        }
        let deadline = session.poll_timeout().map(|d| started + d);
        tokio::select! {
            read = conn.read(&mut buf) => {
                let now = started.elapsed();
                match read {
                    Ok(0) | Err(_) => {
                        session.handle_eof(now);
                        // Let the session tidy up (release locks); nothing more can be sent.
                        while session.poll_output().is_some() {}
                        return Ended::PeerGone;
                    }
                    Ok(n) => session.handle_input(now, &buf[..n]),
                }
            }
            _ = sleep_until_opt(deadline) => {
                session.handle_timeout(started.elapsed());
            }
            _ = wait_for_wake(wake.as_deref()) => {
                session.handle_wake(started.elapsed());
            }
            changed = shutdown.changed(), if !shutting_down => {
                shutting_down = true;
                if changed.is_ok() {
                    session.handle_shutdown(started.elapsed());
                }
            }
        }
    }
}

async fn wait_for_wake(wake: Option<&NotifyWaker>) {
    match wake {
        Some(w) => w.0.notified().await,
        None => std::future::pending::<()>().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending::<()>().await,
    }
}
