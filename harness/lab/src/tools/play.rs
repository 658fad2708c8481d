//! Playing transcript scripts over real sockets, against the lab or a live server.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use harness_core::script::{ReadLine, ScriptTransport};
use harness_core::Protocol;

/// Longest line read from a server before the read gives up on it.
const MAX_READ_LINE: u64 = 1024 * 1024;

/// A target given as `imap://host:port` or `pop3://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub protocol: Protocol,
    pub addr: SocketAddr,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("target {0:?} must look like imap://HOST:PORT or pop3://HOST:PORT")]
    Syntax(String),
    #[error("cannot resolve {0:?}")]
    Resolve(String),
    #[error("{0} is not a loopback address; pass --allow-remote to play against it")]
    NotLoopback(SocketAddr),
}

impl Target {
    pub fn parse(url: &str, allow_remote: bool) -> Result<Target, TargetError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| TargetError::Syntax(url.to_string()))?;
        let protocol =
            Protocol::parse(scheme).ok_or_else(|| TargetError::Syntax(url.to_string()))?;
        let addr =
            parse_host_port(rest, protocol.default_port(), allow_remote).map_err(|e| match e {
                TargetError::Syntax(_) => TargetError::Syntax(url.to_string()),
                other => other,
            })?;
        Ok(Target { protocol, addr })
    }
}

/// `HOST[:PORT][/]` (the part of a target URL after `scheme://`) resolved to one address,
/// `default_port` when none is given; loopback only unless `allow_remote`.
pub fn parse_host_port(
    rest: &str,
    default_port: u16,
    allow_remote: bool,
) -> Result<SocketAddr, TargetError> {
    let hostport = rest.trim_end_matches('/');
    if hostport.is_empty() || hostport.contains('/') {
        return Err(TargetError::Syntax(rest.to_string()));
    }
    let with_port = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_string()
    } else {
        format!("{hostport}:{default_port}")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|_| TargetError::Resolve(with_port.clone()))?
        .next()
        .ok_or_else(|| TargetError::Resolve(with_port.clone()))?;
    if !allow_remote && !addr.ip().is_loopback() {
        return Err(TargetError::NotLoopback(addr));
    }
    Ok(addr)
}

/// Blocking sockets, one per script connection. A read that sees nothing for `silence`
/// reports the server as silent.
pub struct SocketTransport {
    addr: SocketAddr,
    silence: Duration,
    conns: BTreeMap<usize, BufReader<TcpStream>>,
}

impl SocketTransport {
    pub fn new(addr: SocketAddr, silence: Duration) -> Self {
        SocketTransport {
            addr,
            silence,
            conns: BTreeMap::new(),
        }
    }
}

impl ScriptTransport for SocketTransport {
    fn connect(&mut self, conn: usize) -> Result<(), String> {
        let tcp = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .map_err(|e| format!("connect to {}: {e}", self.addr))?;
        tcp.set_read_timeout(Some(self.silence))
            .and_then(|_| tcp.set_write_timeout(Some(Duration::from_secs(10))))
            .and_then(|_| tcp.set_nodelay(true))
            .map_err(|e| e.to_string())?;
        self.conns.insert(conn, BufReader::new(tcp));
        Ok(())
    }

    fn send(&mut self, conn: usize, bytes: &[u8]) -> Result<(), String> {
        let c = self.conns.get_mut(&conn).ok_or("not connected")?;
        c.get_mut()
            .write_all(bytes)
            .map_err(|e| format!("write: {e}"))
    }

    fn read_line(&mut self, conn: usize) -> Result<ReadLine, String> {
        let c = self.conns.get_mut(&conn).ok_or("not connected")?;
        let mut line = Vec::new();
        match Read::by_ref(c)
            .take(MAX_READ_LINE)
            .read_until(b'\n', &mut line)
        {
            Ok(0) => Ok(ReadLine::Closed),
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                Ok(ReadLine::Line(line))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // Whatever arrived before the silence is still a (partial) line.
                if line.is_empty() {
                    Ok(ReadLine::Silent)
                } else {
                    Ok(ReadLine::Line(line))
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(ReadLine::Closed),
            Err(e) => Err(format!("read: {e}")),
        }
    }

    fn close(&mut self, conn: usize) {
        if let Some(c) = self.conns.remove(&conn) {
            let _ = c.get_ref().shutdown(std::net::Shutdown::Both);
        }
    }

    fn pause(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("imap://127.0.0.1:1143", false).unwrap();
        assert_eq!((t.protocol, t.addr.port()), (Protocol::Imap, 1143));
        assert_eq!(
            Target::parse("pop3://127.0.0.1", false)
                .unwrap()
                .addr
                .port(),
            110
        );
        assert!(matches!(
            Target::parse("http://x", false),
            Err(TargetError::Syntax(_))
        ));
        assert!(matches!(
            Target::parse("imap://127.0.0.1:1/x", false),
            Err(TargetError::Syntax(_))
        ));
        assert!(matches!(
            Target::parse("imap://192.0.2.1:143", false),
            Err(TargetError::NotLoopback(_))
        ));
        assert!(Target::parse("imap://192.0.2.1:143", true).is_ok());
    }
}
