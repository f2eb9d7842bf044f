//! Simulated chat clients: one receive driver per transport, one open-loop
//! send loop, and the [`Inbox`] every driver hands messages to.
//!
//! A client is a tokio task. Receivers read the room from `after=0` until
//! they see the control message that ends the run; senders follow their
//! [`SendSchedule`] and publish by POST on a second keep-alive connection, or
//! over the WebSocket itself.

use crate::clock::{unix_now_us, RunClock, SendThread, SendTimer};
use crate::connect::{Connector, Handles, Stream};
use crate::drops::{Away, AwaySpans, DropSchedule};
use crate::h1::H1Conn;
use crate::h2::H2Conn;
use crate::profile::{Headers, Kind};
use crate::record::{Delivery, Metric, Parts, Receipt, Recorder, SeqTracker};
use crate::scenario::Scenario;
use crate::schedule::SendSchedule;
use crate::wire::{WireCounter, WireStats};
use crate::ws::{self, Frame, WsReader, WsWriter};
use crate::Transport;
use bytes::Bytes;
use chatbench_proto::{Message, Notice, PollResponse, PublishRequest};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// `from` of the control message that tells receivers the run is over.
pub const STOP_FROM: &str = "chatbench-stop";

/// Everything the clients of one transport run share.
#[derive(Debug)]
pub struct RunCtx {
    /// The server process that owns each room, by room index.
    pub room_servers: Vec<SocketAddr>,
    /// Transport under test.
    pub transport: Transport,
    /// The scenario.
    pub scenario: Arc<Scenario>,
    /// Room names, by room index.
    pub rooms: Vec<String>,
    /// Start of traffic, set by the engine once every client is ready;
    /// intended send times are offsets from it.
    pub clock: OnceLock<RunClock>,
    /// Tells waiting clients that [`RunCtx::clock`] is set.
    pub start: watch::Sender<bool>,
    /// Clients connected and subscribed so far.
    pub ready: AtomicU64,
    /// Notified when a client becomes ready.
    pub ready_changed: Notify,
    /// Wakes senders and short pollers at their intended times.
    pub timer: SendTimer,
    /// Where sender tasks run.
    pub sends: SendThread,
    /// Client-side counters.
    pub wire: Arc<WireStats>,
    /// Histograms and audit counters.
    pub rec: Arc<Recorder>,
    /// Fired when the run must end now (server died, or teardown timed out).
    pub abort: CancellationToken,
    /// Message body, shared by all senders.
    pub body: String,
    /// How connections are made: plain or TLS, HTTP/1.1 or HTTP/2.
    pub connector: Connector,
    /// The request headers of `protocol.headers`, for each server.
    pub headers: Vec<(SocketAddr, Arc<Headers>)>,
}

impl RunCtx {
    /// A counted connection for client `key` to `addr`, from its source
    /// address, through the scenario's emulated link when it has one.
    pub async fn connect(&self, key: u64, addr: SocketAddr) -> std::io::Result<WireCounter> {
        WireCounter::connect_over(
            addr,
            self.source_of(key, addr),
            crate::link::LinkSpec::of(&self.scenario.network),
            self.wire.clone(),
        )
        .await
    }

    /// A connection for client `key` to its room's server, through the
    /// run's [`Connector`]: TCP, then TLS when the scenario asks. With the
    /// server's address.
    pub async fn open(&self, key: u64) -> std::io::Result<(Stream, SocketAddr)> {
        let addr = self.server_of(key);
        let start = Instant::now();
        let tcp = self.connect(key, addr).await?;
        let stream = self.connector.secure(tcp, addr, start, &self.wire).await?;
        Ok((stream, addr))
    }

    /// An HTTP/2 connection for client `key` ([`RunCtx::open`], then
    /// HTTP/2's preface and settings); with `extended_connect`, once the
    /// server allows WebSocket over it. Its connect time is recorded.
    pub async fn open_h2(&self, key: u64, extended_connect: bool) -> std::io::Result<Arc<H2Conn>> {
        let start = Instant::now();
        let (stream, addr) = self.open(key).await?;
        let base = format!("{}://{addr}", self.connector.scheme());
        let conn = H2Conn::handshake(stream, base, extended_connect).await?;
        self.rec
            .record(key, Metric::Connect, start.elapsed().as_micros() as u64);
        Ok(conn)
    }

    /// The request headers for requests to `server`.
    pub fn headers_for(&self, server: SocketAddr) -> Arc<Headers> {
        self.headers
            .iter()
            .find(|(a, _)| *a == server)
            .map(|(_, h)| h.clone())
            .unwrap_or_default()
    }

    /// The run clock (zero at a far-future instant before the start).
    pub fn run_clock(&self) -> RunClock {
        self.clock
            .get()
            .copied()
            .unwrap_or(RunClock::starting_at(u64::MAX))
    }

    /// The server process that client `id`'s room lives on.
    pub fn server_of(&self, id: u64) -> SocketAddr {
        let room = id / self.scenario.clients.clients_per_room.max(1) as u64;
        self.room_servers[room as usize]
    }

    /// The local address client `id` connects from: with
    /// `clients.source_addresses = N` above 1 and a loopback server,
    /// 127.0.0.(1 + id % N); otherwise the kernel's choice.
    pub fn source_of(&self, id: u64, server: SocketAddr) -> Option<std::net::IpAddr> {
        let n = self.scenario.clients.source_addresses as u64;
        (n > 1 && server.ip().is_loopback() && server.is_ipv4())
            .then(|| std::net::IpAddr::from([127, 0, 0, 1 + (id % n) as u8]))
    }

    /// Marks one client as connected and subscribed.
    fn client_ready(&self) {
        self.ready.fetch_add(1, Relaxed);
        self.ready_changed.notify_one();
    }

    /// Waits for the start of traffic; None when the run aborted first.
    async fn started(&self) -> Option<RunClock> {
        let mut rx = self.start.subscribe();
        tokio::select! {
            r = rx.wait_for(|s| *s) => r.ok().and_then(|_| self.clock.get().copied()),
            _ = self.abort.cancelled() => None,
        }
    }

    fn window_us(&self) -> (u64, u64) {
        let start = self.scenario.warmup.as_micros() as u64;
        (start, start + self.scenario.duration.as_micros() as u64)
    }

    fn in_window(&self, at_us: u64) -> bool {
        let (a, b) = self.window_us();
        at_us >= a && at_us < b
    }

    /// End of sending, as an offset from `t0`.
    pub fn send_end(&self) -> Duration {
        self.scenario.warmup + self.scenario.duration
    }

    fn count_error(&self, what: &str, e: impl std::fmt::Display) {
        let why = e.to_string();
        tracing::debug!("{} {what}: {why}", self.transport.as_str());
        self.rec.audit.error(what, &why);
    }

    /// Waits until a client cut by a drop is back online (at once when it
    /// was not cut); false when the run aborted first.
    async fn back_online(&self, clock: &RunClock, away: &Away) -> bool {
        let back = away.back_at_us();
        if back > clock.now_us() {
            tokio::select! {
                _ = self.timer.wait_until(clock, back) => {}
                _ = self.abort.cancelled() => return false,
            }
        }
        !self.abort.is_cancelled()
    }

    async fn backoff(&self) {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = self.abort.cancelled() => {}
        }
    }
}

/// One client: `id` is global, its room is `id / clients_per_room`.
#[derive(Debug, Clone, Copy)]
pub struct ClientSpec {
    /// Global client number.
    pub id: u64,
    /// Room index.
    pub room: usize,
    /// Global sender number (its schedule stream), when the client sends.
    pub sender: Option<u64>,
}

impl ClientSpec {
    /// The `id`-th client of `s`.
    pub fn nth(s: &Scenario, id: u64) -> ClientSpec {
        let cpr = s.clients.clients_per_room as u64;
        let room = id / cpr;
        let i = id % cpr;
        ClientSpec {
            id,
            room: room as usize,
            sender: (i < s.clients.senders_per_room as u64)
                .then_some(room * s.clients.senders_per_room as u64 + i),
        }
    }
}

/// Takes a receiver's messages: latency, audit, and the end-of-run signal.
struct Inbox {
    ctx: Arc<RunCtx>,
    key: u64,
    seqs: SeqTracker,
    stopped: bool,
    /// The current connection's last-read stamp ([`WireCounter::read_at`]).
    read_at: Option<Arc<AtomicU64>>,
    /// When the client was away (connection drops); while it is, what
    /// arrives came on a cut connection and is thrown away.
    spans: AwaySpans,
}

impl Inbox {
    fn new(ctx: Arc<RunCtx>, key: u64) -> Inbox {
        Inbox {
            ctx,
            key,
            seqs: SeqTracker::starting_at(1),
            stopped: false,
            read_at: None,
            spans: AwaySpans::default(),
        }
    }

    /// The sequence number a resuming client asks to continue after: the
    /// last one it has seen with none missing before it.
    fn resume_after(&self) -> u64 {
        self.seqs.seen_through()
    }

    /// Takes a message fetched by a poll sent at `poll_at` (run clock, µs),
    /// or pushed on a stream (`None`).
    fn message(&mut self, m: &Message<'_>, poll_at: Option<u64>) {
        let unix_now = unix_now_us();
        let clock = self.ctx.run_clock();
        // A delivery ends when its bytes reach the client's socket (the
        // kernel's receive stamp): the load generator simulates many clients
        // on one CPU, and the time this one waited for the others to be
        // handled is the instrument's, reported apart as its receive time.
        let stamped = self
            .read_at
            .as_ref()
            .map(|r| r.load(Relaxed))
            .filter(|&at| at > 0 && at <= unix_now);
        let arrived = stamped.unwrap_or(unix_now).saturating_sub(clock.t0_unix_us);
        let audit = &self.ctx.rec.audit;
        audit.receipts.fetch_add(1, Relaxed);
        if self.spans.is_away() {
            // On a cut connection: fetched again after the resume.
            self.ctx.rec.drops.discarded.fetch_add(1, Relaxed);
            return;
        }
        if m.from == STOP_FROM {
            self.stopped = true;
            return;
        }
        match self.seqs.see(m.seq) {
            Receipt::Duplicate => {
                audit.duplicated.fetch_add(1, Relaxed);
                return;
            }
            Receipt::Reordered => {
                audit.reordered.fetch_add(1, Relaxed);
            }
            Receipt::InOrder => {}
        }
        let Some(sent) = m.sent_at else { return };
        let (start, end) = self.ctx.window_us();
        if sent >= end {
            return;
        }
        // The timeline counts seconds from the start of traffic, warm-up
        // included; the histograms only take the measured window.
        let measured = sent >= start;
        let parts = clock
            .from_unix(m.server_at)
            .and_then(|server| Parts::split(sent, server, poll_at, arrived));
        if measured {
            audit.delivered.fetch_add(1, Relaxed);
            audit.live_delivered.fetch_add(1, Relaxed);
            if parts.is_none() {
                audit.clock_skewed.fetch_add(1, Relaxed);
            }
        }
        let receive = stamped.map(|at| unix_now - at);
        if measured && self.spans.covers(sent) {
            self.ctx.rec.away(self.key, arrived.saturating_sub(sent));
        }
        self.ctx.rec.delivery(
            self.key,
            &Delivery {
                latency: arrived.saturating_sub(sent),
                sent_second: (sent / 1_000_000) as usize,
                received_second: (arrived / 1_000_000) as usize,
                measured,
                parts,
                receive,
            },
        );
    }

    fn missed(&mut self, n: &Notice) {
        if self.spans.is_away() {
            return;
        }
        self.ctx.rec.audit.missed.fetch_add(n.missed, Relaxed);
        self.seqs.skip_to(n.next);
    }

    fn payload(&self, bytes: u64, count: u64) {
        let a = &self.ctx.rec.audit;
        a.payload_bytes.fetch_add(bytes, Relaxed);
        a.payload_count.fetch_add(count, Relaxed);
    }

    fn json(&mut self, text: &[u8]) {
        if let Ok(m) = serde_json::from_slice::<Message<'_>>(text) {
            if m.from != STOP_FROM && !self.spans.is_away() {
                self.payload(text.len() as u64, 1);
            }
            self.message(&m, None);
        } else if let Ok(n) = serde_json::from_slice::<Notice>(text) {
            self.missed(&n);
        } else {
            self.ctx
                .count_error("unparseable message", String::from_utf8_lossy(text));
        }
    }

    fn done(&self) -> bool {
        self.stopped || self.ctx.abort.is_cancelled()
    }
}

/// A client's HTTP connection, made through the run's [`Connector`]:
/// HTTP/1.1 through the load generator's own client ([`H1Conn`]: why it is
/// not hyper's is there), or HTTP/2 through hyper's ([`H2Conn`]), which a
/// client's sender and receiver share as a browser's tab does.
struct HttpConn {
    http: Http,
    ctx: Arc<RunCtx>,
    handles: Handles,
    /// The extra request headers (`protocol.headers`).
    headers: Arc<Headers>,
}

enum Http {
    H1(H1Conn<Stream>),
    H2 {
        conn: Arc<H2Conn>,
        /// The body of the last answer, while it is read a piece at a time.
        body: Option<hyper::body::Incoming>,
    },
}

type HttpResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A client's one HTTP/2 connection, which its sender and its receiver
/// both use; made by whichever needs it first. (Connection drops are not
/// run over HTTP/2: see `Scenario::validate`.)
#[derive(Debug, Default)]
pub struct SharedH2 {
    slot: tokio::sync::Mutex<Option<Arc<H2Conn>>>,
}

impl HttpConn {
    async fn connect(ctx: &Arc<RunCtx>, key: u64, shared: &SharedH2) -> HttpResult<HttpConn> {
        if !ctx.connector.is_http2() {
            let start = Instant::now();
            let (stream, addr) = ctx.open(key).await?;
            ctx.rec
                .record(key, Metric::Connect, start.elapsed().as_micros() as u64);
            return Ok(HttpConn {
                handles: Handles::of(&stream),
                http: Http::H1(H1Conn::new(stream, addr.to_string())),
                ctx: ctx.clone(),
                headers: ctx.headers_for(addr),
            });
        }
        let mut slot = shared.slot.lock().await;
        let conn = match slot.as_ref().filter(|c| !c.is_closed()) {
            Some(c) => c.clone(),
            None => {
                let c = ctx.open_h2(key, false).await?;
                *slot = Some(c.clone());
                c
            }
        };
        Ok(HttpConn {
            handles: conn.handles.clone(),
            http: Http::H2 { conn, body: None },
            ctx: ctx.clone(),
            headers: ctx.headers_for(ctx.server_of(key)),
        })
    }

    /// Sends a request and reads the response head; the body follows from
    /// [`HttpConn::body_chunk`] or [`HttpConn::body`].
    async fn send_with(
        &mut self,
        kind: Kind,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> HttpResult<StatusCode> {
        self.ctx.wire.requests.fetch_add(1, Relaxed);
        let profile = self.headers.of(kind);
        match &mut self.http {
            Http::H1(c) => {
                let own: Vec<String> = headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                let lines: Vec<&str> = own
                    .iter()
                    .chain(self.headers.lines(kind))
                    .map(String::as_str)
                    .collect();
                Ok(c.send_with(method, target, &lines, b"").await?)
            }
            Http::H2 { conn, body } => {
                let m = Method::from_bytes(method.as_bytes())?;
                let req = conn.request(m, target, headers, profile, Bytes::new())?;
                let (_, resp) = conn.send(req).await?;
                let status = resp.status();
                *body = Some(resp.into_body());
                Ok(status)
            }
        }
    }

    /// The next piece of the answer's body; None at its end.
    async fn body_chunk(&mut self) -> std::io::Result<Option<Bytes>> {
        match &mut self.http {
            Http::H1(c) => c.body_chunk().await,
            Http::H2 { body, .. } => match body {
                Some(b) => crate::h2::body_chunk(b).await,
                None => Ok(None),
            },
        }
    }

    /// The rest of the answer's body.
    async fn body(&mut self) -> std::io::Result<Bytes> {
        match &mut self.http {
            Http::H1(c) => c.body().await,
            Http::H2 { body, .. } => match body.take() {
                Some(b) => Ok(b.collect().await.map_err(std::io::Error::other)?.to_bytes()),
                None => Ok(Bytes::new()),
            },
        }
    }

    /// A whole exchange: the status, the body, and the bytes it cost both
    /// ways (over HTTP/1.1 the socket's, TLS records included; over
    /// HTTP/2 its stream's frames).
    async fn call(
        &mut self,
        kind: Kind,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> HttpResult<(StatusCode, Bytes, u64)> {
        self.ctx.wire.requests.fetch_add(1, Relaxed);
        let profile = self.headers.of(kind);
        match &mut self.http {
            Http::H1(c) => {
                let (up0, down0) = self.handles.cut.bytes();
                let (status, b) = if profile.is_empty() {
                    c.call(method, target, body).await?
                } else {
                    let lines: Vec<&str> = self
                        .headers
                        .lines(kind)
                        .iter()
                        .map(String::as_str)
                        .collect();
                    let status = c.send_with(method, target, &lines, body).await?;
                    (status, c.body().await?)
                };
                let (up, down) = self.handles.cut.bytes();
                Ok((status, b, (up + down) - (up0 + down0)))
            }
            Http::H2 { conn, .. } => {
                let m = Method::from_bytes(method.as_bytes())?;
                let json = [("content-type", "application/json")];
                let headers: &[(&str, &str)] = if body.is_empty() { &[] } else { &json };
                Ok(conn
                    .call(m, target, headers, profile, Bytes::copy_from_slice(body))
                    .await?)
            }
        }
    }

    /// True once the connection can take no request (see
    /// [`H1Conn::is_closed`]).
    fn is_closed(&mut self) -> bool {
        match &mut self.http {
            Http::H1(c) => c.is_closed(),
            Http::H2 { conn, .. } => conn.is_closed(),
        }
    }

    /// Closes the connection; its segment counts are in once this returns
    /// ([`WireCounter`]'s drop). Over TLS, reads until the server's own
    /// close. An HTTP/2 connection closes when its last user lets go.
    async fn close(self) {
        match self.http {
            Http::H1(c) if c.get_ref().is_tls() => c.into_io().close().await,
            Http::H1(c) => c.close().await,
            Http::H2 { conn, .. } => conn.close().await,
        }
    }

    /// Reads a cut connection to its end.
    async fn drain(self) {
        match self.http {
            Http::H1(c) => c.drain().await,
            // The connection's task reads it to its end.
            Http::H2 { conn, .. } => conn.finished().await,
        }
    }

    /// Bytes of the request just answered and its response head, when it
    /// was the connection's first: `body` bytes of the answer were read.
    fn first_exchange_bytes(&self, body: usize) -> u64 {
        let (up, down) = self.handles.cut.bytes();
        let buffered = match &self.http {
            Http::H1(c) => c.buffered(),
            Http::H2 { .. } => 0,
        };
        up + down.saturating_sub((body + buffered) as u64)
    }
}

/// A client's connection drops (`network.drop_every`), made by its
/// receiver on the client's [`DropSchedule`].
struct Dropper {
    schedule: Option<DropSchedule>,
    next_us: Option<u64>,
    away: Arc<Away>,
}

impl Dropper {
    fn new(ctx: &RunCtx, id: u64, away: Arc<Away>) -> Dropper {
        let mut schedule = ctx
            .scenario
            .network
            .drop_every
            .map(|every| DropSchedule::new(ctx.scenario.seed, id, every, ctx.send_end()));
        let next_us = schedule.as_mut().and_then(Iterator::next);
        Dropper {
            schedule,
            next_us,
            away,
        }
    }

    /// Waits for the next drop; never ends without one.
    async fn due(&self, ctx: &RunCtx) {
        let Some(at) = self.next_us else {
            return std::future::pending().await;
        };
        let clock = match ctx.clock.get() {
            Some(c) => *c,
            None => match ctx.started().await {
                Some(c) => c,
                None => return std::future::pending().await,
            },
        };
        ctx.timer.wait_until(&clock, at).await
    }

    /// Drops the client now, cutting `conn` when it has one. A drop that
    /// comes while the client is still away from the last one is skipped.
    fn drop_now(&mut self, ctx: &RunCtx, inbox: &mut Inbox, conn: Option<&crate::wire::CutHandle>) {
        let now = ctx.run_clock().now_us();
        while self.next_us.is_some_and(|at| at <= now) {
            self.next_us = self.schedule.as_mut().and_then(Iterator::next);
        }
        if inbox.spans.is_away() {
            return;
        }
        if let Some(c) = conn {
            c.cut();
        }
        inbox.spans.cut(now);
        self.away.dropped(now, ctx.scenario.network.drop_for);
        ctx.rec.drops.drops.fetch_add(1, Relaxed);
    }
}

/// Reads a cut connection to its end (the server closes it on the
/// client's FIN) and counts the bytes that came after the cut.
async fn finish_cut(ctx: &RunCtx, c: HttpConn) {
    let cut = c.handles.cut.clone();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.drain()).await;
    ctx.rec
        .drops
        .bytes_after_cut
        .fetch_add(cut.bytes_after_cut(), Relaxed);
}

/// Runs one client until the run ends.
pub async fn run_client(ctx: Arc<RunCtx>, spec: ClientSpec) {
    let t = ctx.transport;
    let room = ctx.rooms[spec.room].clone();
    // The receiver makes the client's drops; the sender follows them.
    let away = Arc::new(Away::default());
    // Over HTTP/2, the sender's publishes and the receiver's polls or
    // stream share one connection.
    let h2 = Arc::new(SharedH2::default());
    match t {
        Transport::WebSocket => websocket_client(ctx, spec, &room).await,
        Transport::ShortPoll | Transport::LongPoll | Transport::Sse => {
            let sender = spec.sender.map(|s| {
                let ctx = ctx.clone();
                let room = room.clone();
                let away = away.clone();
                let h2 = h2.clone();
                let sends = ctx.sends.handle().clone();
                sends.spawn(async move { http_sender(ctx, spec.id, s, &room, &away, &h2).await })
            });
            match t {
                Transport::Sse => sse_receiver(ctx.clone(), spec, &room, away, &h2).await,
                _ => poll_receiver(ctx.clone(), spec, &room, away, &h2).await,
            }
            if let Some(s) = sender {
                // Sending ended before the drain, unless the run was aborted.
                let _ = s.await;
            }
            // The sender and receiver are done with the HTTP/2 connection.
            let shared = h2.slot.lock().await.take();
            if let Some(c) = shared {
                c.close().await;
            }
        }
    }
}

fn publish_body(ctx: &RunCtx, id: u64, at_us: u64) -> String {
    serde_json::to_string(&PublishRequest {
        from: format!("c{id}").into(),
        body: ctx.body.as_str().into(),
        sent_at: Some(at_us),
    })
    .unwrap_or_default()
}

/// Counts a publish the server accepted.
fn sent_ok(ctx: &RunCtx, at_us: u64) {
    if ctx.in_window(at_us) {
        let a = &ctx.rec.audit;
        a.sent.fetch_add(1, Relaxed);
        a.expected
            .fetch_add(ctx.scenario.clients.clients_per_room as u64, Relaxed);
    }
}

/// Waits for `at_us` on the run clock, spinning the last microseconds
/// ([`SendTimer::wait_until_spinning`]): for tasks on the send thread.
/// False when the run aborted first.
async fn wait_until_spinning(ctx: &RunCtx, clock: &RunClock, at_us: u64) -> bool {
    tokio::select! {
        _ = ctx.timer.wait_until_spinning(clock, at_us) => !ctx.abort.is_cancelled(),
        _ = ctx.abort.cancelled() => false,
    }
}

/// Waits for the next intended send time; returns it (µs after the start
/// of traffic) and records the lag of the actual send behind it, or None
/// when the schedule is over or the run aborted.
///
/// `resumed_us` is when the sender last got its connection back after a
/// drop (0 without drops): a message due while it was offline is late by
/// the network's doing, so its lag counts from then.
async fn next_send(
    ctx: &RunCtx,
    clock: &RunClock,
    key: u64,
    schedule: &mut SendSchedule,
    resumed_us: u64,
) -> Option<u64> {
    let at_us = schedule.next()?.as_micros() as u64;
    if !wait_until_spinning(ctx, clock, at_us).await {
        return None;
    }
    let lag = clock.now_us().saturating_sub(at_us.max(resumed_us));
    if ctx.in_window(at_us) {
        ctx.rec.record(key, Metric::SendLag, lag);
    }
    Some(at_us)
}

fn schedule_for(ctx: &RunCtx, sender: u64) -> SendSchedule {
    SendSchedule::new(
        ctx.scenario.seed,
        sender,
        &ctx.scenario.messages,
        ctx.send_end(),
    )
}

/// Connects, retrying until it works or the run aborts.
async fn connect_retrying(ctx: &Arc<RunCtx>, key: u64, h2: &SharedH2) -> Option<HttpConn> {
    loop {
        match HttpConn::connect(ctx, key, h2).await {
            Ok(c) => return Some(c),
            Err(e) => {
                ctx.count_error("connect", e);
                if ctx.abort.is_cancelled() {
                    return None;
                }
                ctx.backoff().await;
            }
        }
    }
}

/// Connects (retrying), reports ready, and waits for the start of traffic;
/// None when the run aborted first.
async fn connect_then_start(
    ctx: &Arc<RunCtx>,
    key: u64,
    h2: &SharedH2,
) -> Option<(HttpConn, RunClock)> {
    let c = connect_retrying(ctx, key, h2).await?;
    ctx.client_ready();
    match ctx.started().await {
        Some(clock) => Some((c, clock)),
        None => {
            c.close().await;
            None
        }
    }
}

async fn http_sender(
    ctx: Arc<RunCtx>,
    id: u64,
    sender: u64,
    room: &str,
    away: &Away,
    h2: &SharedH2,
) {
    let target = format!("/rooms/{room}/messages");
    let mut schedule = schedule_for(&ctx, sender);
    // Connected before the start, as a browser's page is: the first send
    // must not pay a connect.
    let Some((c, clock)) = connect_then_start(&ctx, id, h2).await else {
        return;
    };
    let mut conn = Some(c);
    // The client's drops when the connection was opened: a later drop cut
    // it (noticed here, before the next publish).
    let mut opened_at_drop = 0;
    let mut resumed_us = 0;
    while let Some(at_us) = next_send(&ctx, &clock, id, &mut schedule, resumed_us).await {
        let dropped = away.drops() > opened_at_drop;
        if let Some(cut) = conn.take_if(|_| dropped) {
            cut.handles.cut.cut();
            finish_cut(&ctx, cut).await;
        }
        if let Some(stale) = conn.take_if(|c| c.is_closed()) {
            stale.close().await;
        }
        let mut c = match conn.take() {
            Some(c) => c,
            None => {
                if dropped && !ctx.back_online(&clock, away).await {
                    break;
                }
                opened_at_drop = away.drops();
                match HttpConn::connect(&ctx, id, h2).await {
                    Ok(c) => {
                        if dropped {
                            ctx.rec.drops.reconnects.fetch_add(1, Relaxed);
                            resumed_us = clock.now_us();
                        }
                        c
                    }
                    Err(e) => {
                        ctx.count_error("connect", e);
                        continue;
                    }
                }
            }
        };
        let body = publish_body(&ctx, id, at_us);
        match c
            .call(Kind::Publish, "POST", &target, body.as_bytes())
            .await
        {
            Ok((StatusCode::CREATED, _, _)) => {
                sent_ok(&ctx, at_us);
                conn = Some(c);
            }
            Ok((status, b, _)) => {
                ctx.count_error(
                    "publish",
                    format!("{status} {}", String::from_utf8_lossy(&b)),
                );
                conn = Some(c);
            }
            Err(e) => {
                ctx.count_error("publish", e);
                c.close().await;
            }
        }
    }
    if let Some(c) = conn {
        c.close().await;
    }
}

async fn poll_receiver(
    ctx: Arc<RunCtx>,
    spec: ClientSpec,
    room: &str,
    away: Arc<Away>,
    h2: &SharedH2,
) {
    let long = ctx.transport == Transport::LongPoll;
    let mut dropper = Dropper::new(&ctx, spec.id, away.clone());
    let wait_ms = ctx.scenario.long_poll.wait.as_millis();
    let interval = ctx.scenario.short_poll.interval;
    let mut inbox = Inbox::new(ctx.clone(), spec.id);
    let mut cursor = 0u64;
    // Short pollers keep a fixed schedule with a per-client phase, as
    // browsers on independent timers would, on the precise timer.
    let interval_us = (interval.as_micros() as u64).max(1);
    let phase_us = (interval_us as f64 * (spec.id as f64 * 0.618_033_988_75).fract()) as u64;
    let Some((c, clock)) = connect_then_start(&ctx, spec.id, h2).await else {
        return;
    };
    let mut conn = Some(c);
    let mut tick_us = phase_us;
    let mut target: Option<(u64, String)> = None;
    // One cancellation future for the client's life: a new one per request
    // locked the token's shared mutex twice per poll.
    let cancelled = ctx.abort.cancelled();
    tokio::pin!(cancelled);
    // An interval of 0 polls back to back: a closed loop, as wrk runs.
    let paced = !long && !interval.is_zero();
    while !inbox.done() {
        if paced {
            tokio::select! {
                _ = ctx.timer.wait_until(&clock, tick_us) => {}
                _ = dropper.due(&ctx) => {
                    // A drop between polls: the idle connection goes.
                    let cut = conn.as_ref().map(|c| c.handles.cut.clone());
                    dropper.drop_now(&ctx, &mut inbox, cut.as_ref());
                    if let Some(c) = conn.take_if(|_| cut.is_some_and(|h| h.is_cut())) {
                        finish_cut(&ctx, c).await;
                    }
                    continue;
                }
                _ = &mut cancelled => break,
            }
            // The next tick; ticks missed while a poll was out are skipped,
            // as a browser's setInterval does.
            let now = clock.now_us();
            if ctx.in_window(tick_us) {
                ctx.rec
                    .record(spec.id, Metric::PollLag, now.saturating_sub(tick_us));
            }
            tick_us += interval_us;
            if tick_us <= now {
                tick_us += (now - tick_us) / interval_us * interval_us + interval_us;
            }
        }
        if let Some(stale) = conn.take_if(|c| c.is_closed()) {
            stale.close().await;
        }
        let resuming = inbox.spans.is_away();
        let mut c = match conn.take() {
            Some(c) => c,
            None => {
                if resuming && !ctx.back_online(&clock, &away).await {
                    break;
                }
                match HttpConn::connect(&ctx, spec.id, h2).await {
                    Ok(c) => {
                        if resuming {
                            ctx.rec.drops.reconnects.fetch_add(1, Relaxed);
                        }
                        c
                    }
                    Err(e) => {
                        ctx.count_error("connect", e);
                        ctx.backoff().await;
                        continue;
                    }
                }
            }
        };
        if !inbox
            .read_at
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &c.handles.read_at))
        {
            inbox.read_at = Some(c.handles.read_at.clone());
        }
        // The target is written again only when the cursor moved: an
        // empty short poll repeats the last one.
        if target.as_ref().is_none_or(|(at, _)| *at != cursor) {
            target = Some((
                cursor,
                if long {
                    format!("/rooms/{room}/messages?after={cursor}&wait_ms={wait_ms}")
                } else {
                    format!("/rooms/{room}/messages?after={cursor}")
                },
            ));
        }
        let Some((_, this_target)) = &target else {
            break;
        };
        let start = Instant::now();
        let poll_at = clock.now_us();
        if resuming {
            inbox.spans.resumed(poll_at);
        }
        let cut = c.handles.cut.clone();
        let result = {
            let call = c.call(Kind::Poll, "GET", this_target, b"");
            tokio::pin!(call);
            loop {
                tokio::select! {
                    r = &mut call => break Some(r),
                    // A drop with the poll out: its answer, if it comes,
                    // is read and thrown away.
                    _ = dropper.due(&ctx) => {
                        dropper.drop_now(&ctx, &mut inbox, Some(&cut));
                    }
                    _ = &mut cancelled => break None,
                }
            }
        };
        let Some(result) = result else { break };
        if resuming {
            if let Ok((_, body, _)) = &result {
                ctx.rec
                    .drops
                    .resume_bytes
                    .fetch_add(c.first_exchange_bytes(body.len()), Relaxed);
            }
        }
        let away_now = inbox.spans.is_away();
        match result {
            Ok((StatusCode::OK, body, exchange)) => {
                ctx.rec
                    .record(spec.id, Metric::Request, start.elapsed().as_micros() as u64);
                match serde_json::from_slice::<PollResponse<'_>>(&body) {
                    Ok(p) => {
                        if p.messages.is_empty() {
                            ctx.wire.empty_polls.fetch_add(1, Relaxed);
                        }
                        // The answer is `{"messages":[m1,..,mn],"next":N,"missed":K}`:
                        // what the poll costs besides its messages is the
                        // exchange less what is between the brackets.
                        let envelope = envelope_len(p.next, p.missed);
                        let inside = (body.len() as u64).saturating_sub(envelope);
                        ctx.wire.answered_polls.fetch_add(1, Relaxed);
                        ctx.wire
                            .poll_overhead_bytes
                            .fetch_add(exchange.saturating_sub(inside), Relaxed);
                        if p.missed > 0 {
                            inbox.missed(&Notice {
                                missed: p.missed,
                                next: p.next - p.messages.len() as u64,
                            });
                        }
                        // Around the messages' own bytes: what is left after
                        // the envelope and commas is their exact size.
                        let chat = p.messages.iter().filter(|m| m.from != STOP_FROM).count() as u64;
                        if chat == p.messages.len() as u64 && chat > 0 && !away_now {
                            inbox.payload(inside - (chat - 1), chat);
                        }
                        for m in &p.messages {
                            inbox.message(m, Some(poll_at));
                        }
                        if !away_now {
                            cursor = p.next;
                        }
                    }
                    Err(e) => ctx.count_error("poll answer", e),
                }
                conn = Some(c);
            }
            Ok((status, b, _)) => {
                ctx.count_error("poll", format!("{status} {}", String::from_utf8_lossy(&b)));
                conn = Some(c);
                ctx.backoff().await;
            }
            // The server closed the connection it saw cut.
            Err(_) if cut.is_cut() => finish_cut(&ctx, c).await,
            Err(e) => {
                ctx.count_error("poll", e);
                c.close().await;
                ctx.backoff().await;
            }
        }
        if let Some(c) = conn.take_if(|_| cut.is_cut()) {
            finish_cut(&ctx, c).await;
        }
    }
    if let Some(c) = conn {
        c.close().await;
    }
}

async fn sse_receiver(
    ctx: Arc<RunCtx>,
    spec: ClientSpec,
    room: &str,
    away: Arc<Away>,
    h2: &SharedH2,
) {
    let mut inbox = Inbox::new(ctx.clone(), spec.id);
    let mut dropper = Dropper::new(&ctx, spec.id, away.clone());
    let mut last_id: Option<u64> = None;
    let mut ready = false;
    // Resume as EventSource does: the same URL, plus Last-Event-ID.
    let target = format!("/rooms/{room}/events?after=0");
    while !inbox.done() {
        let resuming = inbox.spans.is_away();
        if resuming && !ctx.back_online(&ctx.run_clock(), &away).await {
            break;
        }
        let mut c = match HttpConn::connect(&ctx, spec.id, h2).await {
            Ok(c) => c,
            Err(e) => {
                ctx.count_error("connect", e);
                ctx.backoff().await;
                continue;
            }
        };
        if resuming {
            ctx.rec.drops.reconnects.fetch_add(1, Relaxed);
            inbox.spans.resumed(ctx.run_clock().now_us());
        }
        let last_event_id = last_id.map(|id| id.to_string());
        let headers: Vec<(&str, &str)> = last_event_id
            .iter()
            .map(|id| ("last-event-id", id.as_str()))
            .collect();
        let resp = tokio::select! {
            r = c.send_with(Kind::Sse, "GET", &target, &headers) => r,
            _ = ctx.abort.cancelled() => { c.close().await; break }
        };
        match resp {
            Ok(StatusCode::OK) => {}
            Ok(status) => {
                // The error's reason is in its body.
                let why = tokio::select! {
                    b = c.body() => b.unwrap_or_default(),
                    _ = ctx.abort.cancelled() => Bytes::new(),
                };
                ctx.count_error("sse", format!("{status} {}", String::from_utf8_lossy(&why)));
                c.close().await;
                ctx.backoff().await;
                continue;
            }
            Err(e) => {
                ctx.count_error("sse", e);
                c.close().await;
                ctx.backoff().await;
                continue;
            }
        }
        // The 200 came after the server set the stream's cursor: subscribed.
        if !ready {
            ready = true;
            ctx.client_ready();
        }
        if resuming {
            ctx.rec
                .drops
                .resume_bytes
                .fetch_add(c.first_exchange_bytes(0), Relaxed);
        }
        inbox.read_at = Some(c.handles.read_at.clone());
        let cut = c.handles.cut.clone();
        let mut parser = SseParser::default();
        // One cancellation future for the whole stream: a new one per frame
        // locked the token's shared mutex for every message.
        let cancelled = ctx.abort.cancelled();
        tokio::pin!(cancelled);
        while !inbox.done() {
            let piece = tokio::select! {
                p = c.body_chunk() => p,
                // A drop: the stream is read to its end and thrown away.
                _ = dropper.due(&ctx) => {
                    dropper.drop_now(&ctx, &mut inbox, Some(&cut));
                    continue;
                }
                _ = &mut cancelled => break,
            };
            match piece {
                Ok(Some(data)) => {
                    parser.feed(&data, |ev| {
                        if let Some(id) = ev.id.filter(|_| !inbox.spans.is_away()) {
                            last_id = Some(id);
                        }
                        inbox.json(ev.data);
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    if !cut.is_cut() {
                        ctx.count_error("sse stream", e);
                    }
                    break;
                }
            }
        }
        if cut.is_cut() {
            finish_cut(&ctx, c).await;
        } else {
            c.close().await;
        }
        // Reconnect as EventSource does: after the stream's `retry:` time.
        if let Some(ms) = parser.retry_ms() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms.min(60_000))) => {}
                _ = ctx.abort.cancelled() => {}
            }
        }
    }
}

/// The length of a poll answer's JSON without its messages,
/// `{"messages":[],"next":N,"missed":K}`, counted rather than written: it
/// is on the per-poll path.
fn envelope_len(next: u64, missed: u64) -> u64 {
    let digits = |v: u64| v.checked_ilog10().map_or(1, |d| d as u64 + 1);
    r#"{"messages":[],"next":,"missed":}"#.len() as u64 + digits(next) + digits(missed)
}

/// One parsed SSE event.
#[derive(Debug)]
pub struct SseEvent<'a> {
    /// The last event id seen on the stream (`id:`), when it is a number
    /// (the server's ids are sequence numbers); it persists across events,
    /// as EventSource's last event ID does.
    pub id: Option<u64>,
    /// The event type (`event:`), `message` when none was given.
    pub event: &'a str,
    /// The data: the `data:` lines joined with `\n`.
    pub data: &'a [u8],
}

/// An incremental `text/event-stream` parser, as the HTML standard's
/// "interpret an event stream" section describes it: lines end with CRLF,
/// LF or CR (a CRLF may be split between two reads); a line starting with
/// `:` is a comment; `field: value` loses one space after the colon, and a
/// line without a colon is a field with an empty value; `data` lines add up
/// (joined with `\n`), `id` (without NUL) and `retry` (digits only) persist,
/// `event` names the next event; a blank line dispatches the event if it
/// has data. Hand-written on memchr rather than taken from a crate: it is
/// on the load generator's per-message path (`benches/receive_paths.rs`).
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    /// The previous chunk ended in CR: a LF starting this one is its pair.
    after_cr: bool,
    data: Vec<u8>,
    event: String,
    last_id: Option<u64>,
    retry_ms: Option<u64>,
}

impl SseParser {
    /// Adds bytes and calls `on_event` for every complete event.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_event: impl FnMut(SseEvent<'_>)) {
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = memchr::memchr2(b'\n', b'\r', &self.buf[start..]) {
            let line_end = start + end;
            let mut next = line_end + 1;
            if self.buf[line_end] == b'\r' {
                match self.buf.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    // Maybe half of a CRLF: the next chunk says.
                    None => self.after_cr = true,
                }
            }
            let line = std::mem::take(&mut self.buf);
            self.line(&line[start..line_end], &mut on_event);
            self.buf = line;
            start = next;
        }
        self.buf.drain(..start);
    }

    /// The reconnection time the stream asked for (`retry:`), ms.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) {
        if line.is_empty() {
            if !self.data.is_empty() {
                // Every data line added a LF; the last one goes.
                self.data.pop();
                on_event(SseEvent {
                    id: self.last_id,
                    event: if self.event.is_empty() {
                        "message"
                    } else {
                        &self.event
                    },
                    data: &self.data,
                });
            }
            self.data.clear();
            self.event.clear();
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let v = &line[colon + 1..];
                (&line[..colon], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"id" if !value.contains(&0) => {
                self.last_id = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            b"event" => {
                self.event.clear();
                self.event.push_str(&String::from_utf8_lossy(value));
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry_ms = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            _ => {}
        }
    }
}

/// A WebSocket's writing half, shared by its sender (on the send thread)
/// and its reader (pongs, and the closing handshake).
type WsOut = Arc<tokio::sync::Mutex<WsWrite>>;

/// The read half of a client's WebSocket, whatever carries it: the counted
/// socket itself, a TLS stream's half, or an HTTP/2 stream's.
type WsRead = WsReader<Box<dyn tokio::io::AsyncRead + Send + Unpin>>;

/// Its write half: over plain TCP the socket's own writer
/// ([`WireCounter::writer`], no lock), else the other half of a split.
type WsWrite = WsWriter<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>;

/// A WebSocket's connection: its halves, its socket's handles, and the
/// bytes its opening handshake cost (for a resume's cost).
struct WsConn {
    reader: WsRead,
    writer: WsWrite,
    handles: Handles,
    setup: u64,
    /// Over HTTP/2, the connection the WebSocket's stream lives on.
    _h2: Option<Arc<H2Conn>>,
    /// Over TLS or HTTP/2, the socket is read to its end after the close,
    /// so that both sides count the same bytes.
    drain_after_close: bool,
}

async fn websocket_client(ctx: Arc<RunCtx>, spec: ClientSpec, room: &str) {
    let mut inbox = Inbox::new(ctx.clone(), spec.id);
    let away = Arc::new(Away::default());
    let mut dropper = Dropper::new(&ctx, spec.id, away.clone());
    let start = Instant::now();
    let Some(ws) = ws_connect(&ctx, spec.id, room, 0).await else {
        return;
    };
    let WsConn {
        mut reader,
        writer,
        mut handles,
        mut _h2,
        drain_after_close,
        ..
    } = ws;
    inbox.read_at = Some(handles.read_at.clone());
    ctx.rec
        .record(spec.id, Metric::Connect, start.elapsed().as_micros() as u64);
    // The 101 came after the server set the socket's cursor: subscribed.
    ctx.client_ready();
    let out: WsOut = Arc::new(tokio::sync::Mutex::new(writer));
    // Bumped each time a drop's reconnect puts a new socket into `out`.
    let (reconnected, mut sockets) = watch::channel(0u64);
    // A sender publishes from the send thread.
    let send_task = spec.sender.map(|sender| {
        let ctx = ctx.clone();
        let out = out.clone();
        ctx.sends.handle().clone().spawn(async move {
            let Some(clock) = ctx.started().await else {
                return;
            };
            let mut schedule = schedule_for(&ctx, sender);
            let mut resumed_us = 0;
            'sends: while let Some(at_us) =
                next_send(&ctx, &clock, spec.id, &mut schedule, resumed_us).await
            {
                let body = publish_body(&ctx, spec.id, at_us);
                loop {
                    let socket = *sockets.borrow_and_update();
                    // The lock is let go before a wait for the next socket,
                    // which the receiver puts in under it.
                    let sent = out.lock().await.text(&body).await;
                    match sent {
                        Ok(()) => {
                            sent_ok(&ctx, at_us);
                            break;
                        }
                        // Cut by a drop: the message goes on the next
                        // socket, as an app queues what its user typed
                        // while offline.
                        Err(_) if ctx.scenario.network.drop_every.is_some() => {
                            let next = tokio::select! {
                                r = sockets.wait_for(|s| *s > socket) => r.is_ok(),
                                _ = ctx.abort.cancelled() => false,
                            };
                            if !next {
                                break 'sends;
                            }
                            resumed_us = clock.now_us();
                        }
                        Err(e) => {
                            ctx.count_error("publish", e);
                            break 'sends;
                        }
                    }
                }
            }
        })
    });
    loop {
        ws_receive(&ctx, &mut inbox, &mut reader, &handles, &out, &mut dropper).await;
        if inbox.done() || !inbox.spans.is_away() {
            break;
        }
        // Dropped, and the cut socket read to its end: come back, and ask
        // for what came after the last message seen.
        ctx.rec
            .drops
            .bytes_after_cut
            .fetch_add(handles.cut.bytes_after_cut(), Relaxed);
        if !ctx.back_online(&ctx.run_clock(), &away).await {
            break;
        }
        let after = inbox.resume_after();
        inbox.spans.resumed(ctx.run_clock().now_us());
        let Some(ws) = ws_connect(&ctx, spec.id, room, after).await else {
            break;
        };
        ctx.rec.drops.reconnects.fetch_add(1, Relaxed);
        ctx.rec.drops.resume_bytes.fetch_add(ws.setup, Relaxed);
        reader = ws.reader;
        handles = ws.handles;
        _h2 = ws._h2;
        inbox.read_at = Some(handles.read_at.clone());
        *out.lock().await = ws.writer;
        reconnected.send_modify(|n| *n += 1);
    }
    if let Some(task) = send_task {
        // Sending ended before the drain, unless the run was aborted.
        let _ = task.await;
    }
    // A clean close: send ours, read until the server's reply.
    if out.lock().await.close().await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(Some(f)) = reader.next().await {
                if matches!(f, Frame::Close(_)) {
                    break;
                }
            }
            if drain_after_close {
                let mut w = out.lock().await;
                let _ = w.shutdown().await;
                while let Ok(Some(_)) = reader.next().await {}
            }
        })
        .await;
    }
    drop(reader);
    drop(out);
    if let Some(c) = _h2 {
        c.close().await;
    }
}

/// Connects client `key`'s WebSocket to `room` from message `after`,
/// retrying until it works or the run aborts: over HTTP/1.1 by Upgrade
/// (plain or TLS), over HTTP/2 by extended CONNECT (RFC 8441) on a
/// connection of its own.
async fn ws_connect(ctx: &RunCtx, key: u64, room: &str, after: u64) -> Option<WsConn> {
    let target = format!("/rooms/{room}/ws?after={after}");
    loop {
        let attempt = async {
            if ctx.connector.is_http2() {
                return ws_connect_h2(ctx, key, &target).await;
            }
            let (mut io, addr) = ctx.open(key).await?;
            ctx.wire.requests.fetch_add(1, Relaxed);
            let profile = ctx.headers_for(addr);
            let lines = profile.lines(Kind::WebSocket);
            let leftover = ws::handshake(&mut io, &addr.to_string(), &target, lines).await?;
            let handles = Handles::of(&io);
            let (up, down) = handles.cut.bytes();
            let setup = up + down.saturating_sub(leftover.len() as u64);
            let drain_after_close = io.is_tls();
            let (r, w): (
                Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
            ) = match io {
                Stream::Plain(c) => {
                    let w = c.writer();
                    (Box::new(c), Box::new(w))
                }
                Stream::Tls(t) => {
                    let (r, w) = tokio::io::split(*t);
                    (Box::new(r), Box::new(w))
                }
            };
            Ok::<_, std::io::Error>(WsConn {
                reader: WsReader::new(r, leftover),
                writer: WsWriter::new(w),
                handles,
                setup,
                _h2: None,
                drain_after_close,
            })
        };
        match attempt.await {
            Ok(conn) => return Some(conn),
            Err(e) => {
                ctx.count_error("connect", e);
                if ctx.abort.is_cancelled() {
                    return None;
                }
                ctx.backoff().await;
            }
        }
    }
}

/// A WebSocket over HTTP/2: a connection, then an extended CONNECT with
/// `:protocol websocket` answered 200; the stream then carries the frames.
async fn ws_connect_h2(ctx: &RunCtx, key: u64, target: &str) -> std::io::Result<WsConn> {
    let conn = ctx.open_h2(key, true).await?;
    ctx.wire.requests.fetch_add(1, Relaxed);
    let profile = ctx.headers_for(ctx.server_of(key));
    let mut req = conn.request(
        Method::CONNECT,
        target,
        &[("sec-websocket-version", "13")],
        profile.of(Kind::WebSocket),
        Bytes::new(),
    )?;
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let (_, resp) = conn.send(req).await?;
    if resp.status() != StatusCode::OK {
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(std::io::Error::other(format!(
            "the server refused the extended CONNECT: {status} {}",
            String::from_utf8_lossy(&body)
        )));
    }
    let upgraded = hyper::upgrade::on(resp)
        .await
        .map_err(std::io::Error::other)?;
    let (r, w) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
    let handles = conn.handles.clone();
    let (up, down) = handles.cut.bytes();
    Ok(WsConn {
        reader: WsReader::new(Box::new(r), bytes::BytesMut::new()),
        writer: WsWriter::new(Box::new(w)),
        handles,
        setup: up + down,
        _h2: Some(conn),
        drain_after_close: true,
    })
}

/// Reads WebSocket frames into `inbox` until the run's end, answering
/// pings, or until the socket ends; a drop cuts it, and what arrives after
/// is read to the end and thrown away.
async fn ws_receive(
    ctx: &RunCtx,
    inbox: &mut Inbox,
    reader: &mut WsRead,
    handles: &Handles,
    out: &WsOut,
    dropper: &mut Dropper,
) {
    let cut = handles.cut.clone();
    let cancelled = ctx.abort.cancelled();
    tokio::pin!(cancelled);
    while !inbox.done() {
        let next = tokio::select! {
            n = reader.next() => n,
            _ = dropper.due(ctx) => {
                dropper.drop_now(ctx, inbox, Some(&cut));
                continue;
            }
            _ = &mut cancelled => break,
        };
        match next {
            Ok(Some(Frame::Text(t))) => inbox.json(&t),
            Ok(Some(Frame::Ping(p))) if !cut.is_cut() => {
                if let Err(e) = out.lock().await.pong(&p).await {
                    ctx.count_error("websocket", e);
                    break;
                }
            }
            Ok(Some(Frame::Close(_))) | Ok(None) => break,
            Ok(Some(Frame::Binary(_) | Frame::Pong(_) | Frame::Ping(_))) => {}
            Err(_) if cut.is_cut() => break,
            Err(e) => {
                ctx.count_error("websocket", e);
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event of `stream` fed in pieces of `sizes` (cycled).
    fn events(stream: &[u8], sizes: &[usize]) -> Vec<(Option<u64>, String, String)> {
        let mut p = SseParser::default();
        let mut got = Vec::new();
        let mut rest = stream;
        for &n in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (a, b) = rest.split_at(n.clamp(1, rest.len()));
            p.feed(a, |ev| {
                got.push((
                    ev.id,
                    ev.event.to_owned(),
                    String::from_utf8(ev.data.to_vec()).unwrap(),
                ))
            });
            rest = b;
        }
        got
    }

    #[test]
    fn sse_parser_handles_split_frames_and_comments() {
        let got = events(
            b": keep-alive\n\nid: 1\ndata: {\"a\":1}\n\nid: 2\ndata: x\n\nevent: missed\ndata: {\"missed\":3,\"next\":5}\n\n",
            &[32, 7],
        );
        assert_eq!(
            got,
            vec![
                (Some(1), "message".to_owned(), "{\"a\":1}".to_owned()),
                (Some(2), "message".to_owned(), "x".to_owned()),
                // The last event ID persists, as EventSource's does.
                (
                    Some(2),
                    "missed".to_owned(),
                    "{\"missed\":3,\"next\":5}".to_owned()
                ),
            ]
        );
    }

    /// The HTML standard's examples and edge cases: CRLF and CR line ends
    /// (also split between reads), multi-line data, no space after the
    /// colon, a field without a colon, `retry`, ids with NUL ignored, an
    /// event without data not dispatched.
    #[test]
    fn sse_parser_follows_the_event_stream_format() {
        let stream = b"data:first\r\ndata:  second\r\n\r\nid:7\revent:custom\rdata\r\rretry: 2500\ndata: x\n\nevent: lonely\n\nid: 9\0\ndata: y\n\nretry: soon\ndata: z\n\n";
        let want = vec![
            (None, "message".to_owned(), "first\n second".to_owned()),
            (Some(7), "custom".to_owned(), "".to_owned()),
            (Some(7), "message".to_owned(), "x".to_owned()),
            (Some(7), "message".to_owned(), "y".to_owned()),
            (Some(7), "message".to_owned(), "z".to_owned()),
        ];
        for sizes in [&[1000][..], &[1], &[2], &[3, 5], &[20, 1]] {
            assert_eq!(events(stream, sizes), want, "pieces of {sizes:?}");
        }
        let mut p = SseParser::default();
        p.feed(b"retry: 2500\n", |_| {});
        p.feed(b"retry: soon\n", |_| {});
        assert_eq!(p.retry_ms(), Some(2500));
    }

    proptest::proptest! {
        /// However a stream is cut into reads, the events are the same.
        #[test]
        fn sse_events_do_not_depend_on_how_reads_split_the_stream(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "data: a", "data:b", "data", "id: 3", "id:4", "event: e", "retry: 5",
                    ": c", "", "\r", "\n", "\r\n", ":", " ", "x",
                ]),
                0..60,
            ),
            sizes in proptest::collection::vec(1usize..9, 1..8),
        ) {
            let stream = parts.concat();
            let whole = events(stream.as_bytes(), &[stream.len().max(1)]);
            proptest::prop_assert_eq!(events(stream.as_bytes(), &sizes), whole);
        }
    }

    #[test]
    fn a_poll_answers_envelope_is_counted_as_it_would_be_written() {
        for (next, missed) in [(0, 0), (9, 10), (10, 99), (123_456, 0), (u64::MAX, 7)] {
            let written = format!("{{\"messages\":[],\"next\":{next},\"missed\":{missed}}}");
            assert_eq!(
                envelope_len(next, missed),
                written.len() as u64,
                "{written}"
            );
        }
    }

    #[test]
    fn client_specs_split_rooms_and_senders() {
        let s = crate::scenario::Scenario::parse(
            "name='t'\ntransports=['sse']\nduration='1s'\n[clients]\nrooms=2\nclients_per_room=3\nsenders_per_room=2\n[messages]\nrate=1.0\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let specs: Vec<_> = (0..6).map(|i| ClientSpec::nth(&s, i)).collect();
        assert_eq!(
            specs.iter().map(|c| c.room).collect::<Vec<_>>(),
            vec![0, 0, 0, 1, 1, 1]
        );
        assert_eq!(
            specs.iter().map(|c| c.sender).collect::<Vec<_>>(),
            vec![Some(0), Some(1), None, Some(2), Some(3), None]
        );
    }
}
