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
    /// Rooms at most; publishing to a new room past it gets `503`.
    pub max_rooms: usize,
    /// Bytes of messages held at most, counted until a message's last
    /// reference drops (`--max-memory`).
    pub max_memory: usize,
    /// How long a client may take to send a request body.
    pub body_read_timeout: Duration,
    /// A connection whose writes have made no progress for this long is
    /// closed (a client that stopped reading).
    pub write_stall_timeout: Duration,
    /// Origins allowed besides the server's own (`--allow-origin`); `*`
    /// allows every origin.
    pub allow_origins: Vec<String>,
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
    /// The rooms this process serves, when several processes share them
    /// (`--room-shard I/K`); others get `421`.
    pub room_shard: Option<chatbench_proto::RoomOwner>,
    /// TLS on the same port as plain HTTP, when set ([`crate::tls`]).
    pub tls: Option<crate::tls::Tls>,
    /// With TLS, HTTP/3 over QUIC on the same port number over UDP,
    /// advertised by `Alt-Svc` on every answer over TCP.
    pub http3: bool,
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
    /// Largest POST body or WebSocket publish message, in bytes (64 to 16 MiB).
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u64).range(64..=16 << 20))]
    pub body_limit: u64,
    /// Open connections at most; more get 503. At most the open-file limit
    /// (RLIMIT_NOFILE) less 64 descriptors kept for the process itself.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Rooms at most; more get 503.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_rooms: u64,
    /// Bytes of messages held at most (suffixes K, M, G = KiB, MiB, GiB).
    /// Past it, a publish evicts the oldest messages of the largest rooms
    /// (readers get `missed`), or gets 503 when readers still hold them.
    #[arg(long, default_value = "1G", value_parser = parse_bytes)]
    pub max_memory: u64,
    /// Time allowed to send a request body; slower bodies get 408.
    #[arg(long, default_value = "10s", value_parser = nonzero_duration)]
    pub body_read_timeout: Duration,
    /// Close a connection whose writes made no progress for this long: a
    /// streaming client that stopped reading.
    #[arg(long, default_value = "10s", value_parser = nonzero_duration)]
    pub write_stall_timeout: Duration,
    /// Also allow this origin (`http://host:port`), for CORS and the
    /// WebSocket `Origin` check; `*` allows every origin. Repeatable.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// Time allowed to send a request's headers. hyper starts this clock when
    /// it waits for the next request, so it is also how long a keep-alive
    /// connection may sit idle between requests.
    #[arg(long, default_value = "30s", value_parser = nonzero_duration)]
    pub header_read_timeout: Duration,
    /// Close a connection after this long without any bytes in or out.
    #[arg(long, default_value = "5m", value_parser = nonzero_duration)]
    pub idle_timeout: Duration,
    /// Interval of SSE keep-alive comments.
    #[arg(long, default_value = "15s", value_parser = nonzero_duration)]
    pub sse_keepalive: Duration,
    /// Interval of WebSocket pings.
    #[arg(long, default_value = "30s", value_parser = nonzero_duration)]
    pub ws_ping_interval: Duration,
    /// Largest wait_ms a long poll may ask for (at most 1h).
    #[arg(long, default_value = "120s", value_parser = nonzero_duration)]
    pub long_poll_max_wait: Duration,
    /// Largest batch of one poll answer (the `limit` query parameter).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_batch: u64,
    /// Time shutdown waits for open connections to finish.
    #[arg(long, default_value = "5s", value_parser = nonzero_duration)]
    pub shutdown_grace: Duration,
    /// Serve only the rooms that process I of K owns: those whose CRC-32
    /// (zlib's crc32) of the name modulo K is I. Other rooms get 421
    /// Misdirected Request, naming their owner. For several server
    /// processes that share the rooms, as `[server] processes` starts them.
    #[arg(long, value_name = "I/K")]
    pub room_shard: Option<chatbench_proto::RoomOwner>,
    /// Pin the server to these CPUs (Linux), e.g. `0` or `0-1`.
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// Also answer TLS (`https://`, `wss://`) on the listening port, with
    /// ALPN `h2` and `http/1.1`. Without `--tls-cert`, a CA and a
    /// certificate for localhost, 127.0.0.1 and ::1 are made at start and
    /// the CA is written to `--tls-ca-out`.
    #[arg(long)]
    pub tls: bool,
    /// The certificate chain (PEM) for TLS; implies `--tls`.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM); implies `--tls`.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Where to write the generated CA certificate (PEM) that clients
    /// trust [default: chatbench-ca-<pid>.pem in the temporary directory].
    #[arg(long, value_name = "PEM", conflicts_with = "tls_cert")]
    pub tls_ca_out: Option<std::path::PathBuf>,
    /// Another name for the generated certificate (a host name or an IP
    /// address), besides localhost, 127.0.0.1 and ::1. Repeatable.
    #[arg(long = "tls-name", value_name = "NAME", conflicts_with = "tls_cert")]
    pub tls_names: Vec<String>,
    /// Also serve HTTP/3 over QUIC on the same port number over UDP (needs
    /// TLS), and advertise it with `Alt-Svc: h3=":PORT"` on every answer
    /// over TCP.
    #[arg(long)]
    pub http3: bool,
}

impl ServerArgs {
    /// The [`Config`] these flags describe; flag values are checked one by
    /// one when parsed, and together here.
    pub fn config(&self) -> Config {
        Config {
            retention: self.retention as usize,
            body_limit: self.body_limit as usize,
            max_connections: self.max_connections as usize,
            max_rooms: self.max_rooms as usize,
            max_memory: self.max_memory as usize,
            body_read_timeout: self.body_read_timeout,
            write_stall_timeout: self.write_stall_timeout,
            allow_origins: self.allow_origins.clone(),
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            sse_keepalive: self.sse_keepalive,
            ws_ping_interval: self.ws_ping_interval,
            long_poll_max_wait: self.long_poll_max_wait,
            max_batch: self.max_batch as usize,
            shutdown_grace: self.shutdown_grace,
            room_shard: self.room_shard,
            tls: None,
            http3: self.http3,
        }
    }

    /// True when the flags ask for TLS.
    pub fn wants_tls(&self) -> bool {
        self.tls
            || self.tls_cert.is_some()
            || self.tls_ca_out.is_some()
            || !self.tls_names.is_empty()
    }

    /// The TLS setup the flags ask for: loaded from `--tls-cert` and
    /// `--tls-key`, or generated (writing the CA file); None without TLS.
    pub fn tls_setup(&self) -> Result<Option<crate::tls::Tls>, String> {
        if !self.wants_tls() {
            return Ok(None);
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => crate::tls::from_files(cert, key).map(Some),
            _ => crate::tls::self_signed(self.tls_ca_out.as_deref(), &self.tls_names).map(Some),
        }
    }
}

/// The flags checked against each other and against the process: the
/// connection limit must fit the open-file limit, and the memory budget must
/// hold at least one largest message.
pub fn check(args: &ServerArgs) -> Result<(), String> {
    let nofile = open_file_limit();
    if let Some(limit) = nofile {
        let cap = limit.saturating_sub(FD_RESERVE);
        if args.max_connections > cap {
            return Err(format!(
                "--max-connections {} is above what this process can open: the open-file limit (RLIMIT_NOFILE) is {limit}, so at most {cap} connections ({FD_RESERVE} descriptors are kept for the server itself)",
                args.max_connections
            ));
        }
    }
    let smallest = args.body_limit.saturating_mul(2) + crate::room::MESSAGE_OVERHEAD as u64;
    if args.max_memory < smallest {
        return Err(format!(
            "--max-memory {} is below twice the body limit plus overhead ({smallest} bytes), so a largest message could not be stored",
            args.max_memory
        ));
    }
    if args.http3 && !args.wants_tls() {
        return Err(
            "--http3 needs --tls (or --tls-cert and --tls-key): QUIC is always encrypted".into(),
        );
    }
    if args.long_poll_max_wait > Duration::from_secs(3600) {
        return Err(format!(
            "--long-poll-max-wait {} is above 1h",
            humantime::format_duration(args.long_poll_max_wait)
        ));
    }
    for origin in &args.allow_origins {
        if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
            return Err(format!(
                "--allow-origin {origin:?} is not an origin: give `*` or `http(s)://host[:port]`"
            ));
        }
    }
    Ok(())
}

/// Descriptors kept below the open-file limit for the listener, the
/// runtime, logs and `/proc` reads.
pub const FD_RESERVE: u64 = 64;

/// The soft open-file limit of this process, when it can be read.
pub fn open_file_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    let (soft, _hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    (soft != RLIM_INFINITY).then_some(soft)
}

fn nonzero_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be longer than 0s".into());
    }
    if d > Duration::from_secs(365 * 86_400) {
        return Err("must be at most a year".into());
    }
    Ok(d)
}

/// A byte count: digits with an optional K, M or G suffix (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count such as 1048576, 512M or 1G"))?;
    let scale: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} in {s:?}; use K, M or G")),
    };
    n.checked_mul(scale)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("{s:?} must be above 0 and fit in 64 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<ServerArgs, String> {
        let mut all = vec!["chatbench-server"];
        all.extend_from_slice(args);
        ServerArgs::try_parse_from(all).map_err(|e| e.to_string())
    }

    #[test]
    fn zero_and_absurd_values_are_refused_when_parsed() {
        for bad in [
            &["--sse-keepalive", "0s"][..],
            &["--ws-ping-interval", "0s"],
            &["--max-connections", "0"],
            &["--max-rooms", "0"],
            &["--max-memory", "0"],
            &["--max-memory", "12X"],
            &["--body-limit", "10"],
            &["--idle-timeout", "400000000000y"],
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(bad[0]), "{bad:?}: {e}");
        }
        let e = parse(&["--sse-keepalive", "0s"]).unwrap_err();
        assert!(e.contains("must be longer than 0s"), "{e}");
    }

    #[test]
    fn flags_are_checked_together() {
        let args = parse(&["--max-connections", "100000000"]).unwrap();
        let e = check(&args).unwrap_err();
        assert!(e.contains("open-file limit (RLIMIT_NOFILE) is"), "{e}");
        let args = parse(&["--max-memory", "100K"]).unwrap();
        assert!(check(&args)
            .unwrap_err()
            .starts_with("--max-memory 102400 is below"));
        let args = parse(&["--allow-origin", "example.com"]).unwrap();
        assert!(check(&args).unwrap_err().contains("is not an origin"));
        check(&parse(&[]).unwrap()).unwrap();
    }

    #[test]
    fn byte_counts() {
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("64k"), Ok(64 << 10));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("99999999999G").is_err());
        assert!(parse_bytes("G").is_err());
    }
}
