//! Server limits and intervals, and the command-line flags that set them.

use std::net::SocketAddr;
use std::time::Duration;

/// Limits and intervals of a running server. [`Config::default`] gives the
/// values documented in `--help`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Messages kept per room; older ones are reported to readers as `missed`.
    pub retention: usize,
    /// Largest accepted POST body or WebSocket publish frame, in bytes.
    pub body_limit: usize,
    /// Open TCP connections at most; the next one gets `503`.
    pub max_connections: usize,
    /// Rooms at most; publishing to or reading a new room past it gets `503`.
    pub max_rooms: usize,
    /// How long a client may take to send a request's headers (slowloris);
    /// also how long a keep-alive connection may idle between requests.
    pub header_read_timeout: Duration,
    /// A connection with no bytes read or written for this long is closed.
    pub idle_timeout: Duration,
    /// Interval of SSE keep-alive comments.
    pub sse_keepalive: Duration,
    /// Interval of WebSocket pings.
    pub ws_ping_interval: Duration,
    /// Largest `wait_ms` a long poll may ask for.
    pub long_poll_max_wait: Duration,
    /// Largest `limit` of one poll answer, and the batch size of streams.
    pub max_batch: usize,
    /// How long shutdown waits for open connections before giving up on them.
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Config {
        let args = <ServerArgs as clap::Parser>::parse_from(["chatbench-server"]);
        args.config()
    }
}

/// The flags of `chatbench-server` (and of `chatbench serve`).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "chatbench-server",
    version,
    about = "Chat rooms over HTTP short polling, long polling, SSE and WebSocket, from one message log per room."
)]
pub struct ServerArgs {
    /// Address to listen on. Port 0 picks a free port; the chosen address is
    /// printed as the first line on stdout.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Messages kept per room.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub retention: u64,
    /// Largest POST body or WebSocket publish frame, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub body_limit: usize,
    /// Open connections at most; more get 503.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Rooms at most; more get 503.
    #[arg(long, default_value_t = 100_000)]
    pub max_rooms: usize,
    /// Time allowed to send a request's headers. hyper starts this clock when
    /// it waits for the next request, so it is also how long a keep-alive
    /// connection may sit idle between requests.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,
    /// Close a connection after this long without any bytes in or out.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Interval of SSE keep-alive comments.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub sse_keepalive: Duration,
    /// Interval of WebSocket pings.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub ws_ping_interval: Duration,
    /// Largest wait_ms a long poll may ask for.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub long_poll_max_wait: Duration,
    /// Largest batch of one poll answer (the `limit` query parameter).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_batch: u64,
    /// Time shutdown waits for open connections to finish.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Pin the server to these CPUs (Linux), e.g. `0` or `0-1`.
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
}

impl ServerArgs {
    /// The [`Config`] these flags describe.
    pub fn config(&self) -> Config {
        Config {
            retention: self.retention as usize,
            body_limit: self.body_limit,
            max_connections: self.max_connections,
            max_rooms: self.max_rooms,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            sse_keepalive: self.sse_keepalive,
            ws_ping_interval: self.ws_ping_interval,
            long_poll_max_wait: self.long_poll_max_wait,
            max_batch: self.max_batch as usize,
            shutdown_grace: self.shutdown_grace,
        }
    }
}
