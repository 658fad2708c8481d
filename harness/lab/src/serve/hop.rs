//! The hop between a front-end and its back-end: a TCP connection, passed through stages
//! that play the network between them: a delay (an emulated round-trip time). TLS, when the
//! hop has it, runs on top of the stages, so its handshake crosses the delay like every
//! other byte.
//!
//! [`FaultHop`] is the same relay as a listener in front of a server, with faults a
//! timeline changes while it runs (issue #19's directory timelines): a delay that can be
//! set at any time, and a reset of every connection through it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

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
    tokio::spawn(relay(tcp_read, far_write, move || one_way, server_accepts));
    tokio::spawn(relay(far_read, tcp_write, move || one_way, Instant::now()));
    near
}

/// One direction: reading stamps each chunk with its due time (arrival + delay) and queues
/// it; delivering waits for each chunk's own due time. Both run at once, so bytes that
/// arrive while an earlier chunk waits are already on their way: the delay adds latency,
/// not a cap on throughput. An end of input is delivered as a shutdown, after the delay.
async fn relay(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    one_way: impl Fn() -> Duration,
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
            let due = Instant::now().max(sent_from) + one_way();
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

/// The faults of a [`FaultHop`], changed while it relays.
#[derive(Debug)]
pub struct HopFaults {
    one_way_us: AtomicU64,
    /// Bumped by [`HopFaults::reset`]: every connection through the hop ends with a reset.
    resets: watch::Sender<u64>,
}

impl Default for HopFaults {
    fn default() -> Self {
        HopFaults {
            one_way_us: AtomicU64::new(0),
            resets: watch::channel(0).0,
        }
    }
}

impl HopFaults {
    /// Every chunk from now on crosses the hop half `rtt` later each way.
    pub fn set_round_trip(&self, rtt: Duration) {
        let one_way = u64::try_from((rtt / 2).as_micros()).unwrap_or(u64::MAX);
        self.one_way_us.store(one_way, Ordering::Relaxed);
    }

    pub fn round_trip(&self) -> Duration {
        Duration::from_micros(self.one_way_us.load(Ordering::Relaxed)) * 2
    }

    /// Resets every connection through the hop (both ends get an RST).
    pub fn reset(&self) {
        self.resets.send_modify(|n| *n += 1);
    }

    fn one_way(&self) -> Duration {
        Duration::from_micros(self.one_way_us.load(Ordering::Relaxed))
    }
}

/// A listening relay in front of `target`: each accepted connection is joined to a new
/// connection to `target` through the hop's [`HopFaults`], until `stop` changes (then the
/// listener closes; relayed connections get a moment to end with their server's close).
pub struct FaultHop;

impl FaultHop {
    pub async fn serve(
        listener: TcpListener,
        target: SocketAddr,
        faults: Arc<HopFaults>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut relays = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((client, _)) = accepted else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    relays.spawn(fault_relay(client, target, faults.clone()));
                    while relays.try_join_next().is_some() {}
                }
                _ = stop.changed() => break,
            }
        }
        drop(listener);
        // The server behind stops first: its connections end and so do their relays.
        let drain = async { while relays.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_GRACE, drain).await.is_err() {
            relays.abort_all();
        }
    }
}

/// How long a stopped hop waits for its connections to end.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// One connection through a [`FaultHop`]: both directions delayed by the hop's current
/// delay, cut with an RST on both sides when the hop resets; otherwise it ends when both
/// directions have ended.
async fn fault_relay(client: TcpStream, target: SocketAddr, faults: Arc<HopFaults>) {
    let Ok(server) = TcpStream::connect(target).await else {
        // The server behind is gone: the client sees its connection reset.
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut resets = faults.resets.subscribe();
    resets.mark_unchanged();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let reset = {
        let up_faults = faults.clone();
        let up = relay(
            &mut client_read,
            &mut server_write,
            move || up_faults.one_way(),
            Instant::now(),
        );
        let down = relay(
            &mut server_read,
            &mut client_write,
            move || faults.one_way(),
            Instant::now(),
        );
        // A reset signalled before the relay next runs wins over the bytes it would move.
        tokio::select! {
            biased;
            _ = resets.changed() => true,
            _ = async { tokio::join!(up, down) } => false,
        }
    };
    if reset {
        // Closed with linger 0, both sockets send an RST, as when a device between the
        // two resets the connection.
        let _ = client_read.as_ref().set_zero_linger();
        let _ = server_read.as_ref().set_zero_linger();
    }
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
