//! The hop between a front-end and its back-end: a TCP connection, passed through stages
//! that play the network between them. Today the only stage is a delay (an emulated
//! round-trip time); the same relay is where fault injection goes later (a reset, a black
//! hole) for the RPC and directory timelines of issue #14. TLS, when the hop has it, runs on
//! top of the stages, so its handshake crosses the delay like every other byte.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// Bytes the relay reads at once.
const RELAY_CHUNK: usize = 16 * 1024;
/// Chunks in flight per direction before the relay stops reading (back-pressure).
const RELAY_CHUNKS_IN_FLIGHT: usize = 64;
/// Buffer of the in-memory pipe between the relay and the hop's user.
const PIPE_BUFFER: usize = 64 * 1024;

/// What the hop's user reads and writes: a socket, the pipe of a relay, or TLS over either.
pub trait HopIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> HopIo for T {}
pub type HopStream = Box<dyn HopIo>;

/// One stage of the hop. Only `Delay` is implemented; resets and black holes (fault
/// injection) are to join it as further kinds, applied by the same relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopStage {
    /// Every chunk is delivered `one_way` after it arrived, in each direction; chunks keep
    /// their order and overlap in flight (a chunk's delay does not hold up the next).
    Delay { one_way: Duration },
}

impl HopStage {
    /// A delay of half `rtt` each way.
    pub fn round_trip(rtt: Duration) -> HopStage {
        HopStage::Delay { one_way: rtt / 2 }
    }
}

/// The delay of all stages together, one way.
pub fn one_way_delay(stages: &[HopStage]) -> Duration {
    stages
        .iter()
        .map(|stage| match stage {
            HopStage::Delay { one_way } => *one_way,
        })
        .sum()
}

/// Connects to `addr` through `stages`. Without a delay the socket is returned as is.
pub async fn connect(addr: SocketAddr, stages: &[HopStage]) -> io::Result<HopStream> {
    let started = Instant::now();
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let one_way = one_way_delay(stages);
    if one_way.is_zero() {
        return Ok(Box::new(tcp));
    }
    // TCP's handshake over the hop (RFC 9293 3.5): the SYN and the SYN-ACK cross it before
    // connect() returns; the server accepts when the client's ACK arrives, half a round
    // trip later, so what it sends at once (a greeting) leaves then.
    let server_accepts = started + one_way * 3;
    let pipe = delayed(tcp, one_way, server_accepts);
    sleep_precisely(started + one_way * 2).await;
    Ok(Box::new(pipe))
}

/// Relays between `tcp` and the returned pipe, each chunk delivered `one_way` after it
/// was read (and what the server sends counted as sent no earlier than
/// `server_accepts`). The relay ends when both directions have ended.
pub fn delayed(
    tcp: TcpStream,
    one_way: Duration,
    server_accepts: Instant,
) -> tokio::io::DuplexStream {
    let (near, far) = tokio::io::duplex(PIPE_BUFFER);
    let (tcp_read, tcp_write) = tcp.into_split();
    let (far_read, far_write) = tokio::io::split(far);
    tokio::spawn(relay(tcp_read, far_write, one_way, server_accepts));
    tokio::spawn(relay(far_read, tcp_write, one_way, Instant::now()));
    near
}

/// One direction: reading stamps each chunk with its due time (arrival + delay) and queues
/// it; delivering waits for each chunk's own due time. Both run at once, so bytes that
/// arrive while an earlier chunk waits are already on their way: the delay adds latency,
/// not a cap on throughput. An end of input is delivered as a shutdown, after the delay.
async fn relay(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    one_way: Duration,
    sent_from: Instant,
) {
    let (queue, mut due_chunks) =
        mpsc::channel::<(Instant, Option<Vec<u8>>)>(RELAY_CHUNKS_IN_FLIGHT);
    let read = async move {
        let mut buf = vec![0u8; RELAY_CHUNK];
        loop {
            let n = tokio::select! {
                r = from.read(&mut buf) => r.unwrap_or(0),
                // The delivering side gave up (its peer is gone): stop reading.
                _ = queue.closed() => return,
            };
            let chunk = (n > 0).then(|| buf[..n].to_vec());
            let due = Instant::now().max(sent_from) + one_way;
            if queue.send((due, chunk)).await.is_err() || n == 0 {
                return;
            }
        }
    };
    let deliver = async move {
        while let Some((due, chunk)) = due_chunks.recv().await {
            sleep_precisely(due).await;
            let Some(bytes) = chunk else {
                let _ = to.shutdown().await;
                return;
            };
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(read, deliver);
}

/// Sleeps until `due` with sub-millisecond precision. Tokio's timers tick in whole
/// milliseconds, which would turn a 0.5 ms round trip into 1 to 3 ms; one thread with a
/// heap of deadlines wakes each sleeper instead (its precision is the kernel's timer
/// slack, about 50 µs).
pub async fn sleep_precisely(due: Instant) {
    if due <= Instant::now() {
        return;
    }
    let (wake, woken) = oneshot::channel();
    if timer().send((due, wake)).is_err() {
        // No timer thread (it could not be started): fall back to tokio's timer.
        tokio::time::sleep_until(due.into()).await;
        return;
    }
    let _ = woken.await;
}

type TimerRequest = (Instant, oneshot::Sender<()>);

fn timer() -> &'static std_mpsc::Sender<TimerRequest> {
    static TIMER: OnceLock<std_mpsc::Sender<TimerRequest>> = OnceLock::new();
    TIMER.get_or_init(|| {
        let (requests, incoming) = std_mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("hop-timer".into())
            .spawn(move || run_timer(incoming));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no hop timer thread; delays use tokio's timer");
        }
        requests
    })
}

fn run_timer(incoming: std_mpsc::Receiver<TimerRequest>) {
    // Ordered by due time; the sequence number breaks ties (senders are not comparable).
    let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut sleepers: std::collections::HashMap<u64, oneshot::Sender<()>> =
        std::collections::HashMap::new();
    let mut next_seq = 0u64;
    loop {
        let now = Instant::now();
        while let Some(Reverse((due, seq))) = heap.peek().copied() {
            if due > now {
                break;
            }
            heap.pop();
            if let Some(wake) = sleepers.remove(&seq) {
                let _ = wake.send(());
            }
        }
        let request = match heap.peek() {
            Some(Reverse((due, _))) => {
                match incoming.recv_timeout(due.saturating_duration_since(now)) {
                    Ok(request) => request,
                    Err(std_mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
            None => match incoming.recv() {
                Ok(request) => request,
                Err(_) => return,
            },
        };
        let (due, wake) = request;
        heap.push(Reverse((due, next_seq)));
        sleepers.insert(next_seq, wake);
        next_seq = next_seq.wrapping_add(1);
    }
}
