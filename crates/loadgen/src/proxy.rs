//! The reverse proxy of `[path] proxy`: its configuration, written for the
//! run (and saved in the run folder), and the process, spawned in front of
//! the server chatbench spawned, on loopback, pinned to the server's CPUs,
//! its pids measured like the server's.
//!
//! `default` is the package's defaults plus the minimum to route to the
//! server; `streaming` is what each proxy's documentation gives for
//! WebSocket, SSE and long polling: nginx's "WebSocket proxying" page and
//! `proxy_buffering`; HAProxy's `timeout tunnel` and `option
//! http-no-delay`; Caddy's `flush_interval -1`.
//!
//! With `protocol.tls` the proxy terminates TLS (a certificate made for the
//! run, its CA trusted by the clients; the key is deleted when the proxy
//! stops) and offers HTTP/2 by ALPN when the scenario speaks it; it speaks
//! HTTP/1.1 to the server, as most deployments do.

use crate::server::Front;
use chatbench_results::path::{Path as ProxyPath, Proxy, ProxyConfig};
use chatbench_results::scenario::Protocol;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// What a proxy's configuration is made from.
#[derive(Debug, Clone)]
pub struct ProxySpec {
    /// The proxy and its configuration.
    pub path: ProxyPath,
    /// Where it listens (loopback).
    pub listen: SocketAddr,
    /// The server behind it.
    pub upstream: SocketAddr,
    /// The most client connections it must hold.
    pub max_connections: u64,
    /// Its working folder: the configuration, nginx's temporary files and
    /// its error log.
    pub dir: PathBuf,
    /// Whether the process runs as root (nginx then keeps its workers as
    /// root, so that they can write the run folder).
    pub root: bool,
    /// What the clients speak to it: with TLS, it terminates TLS, and
    /// offers HTTP/2 when the protocol is HTTP/2.
    pub protocol: Protocol,
}

impl ProxySpec {
    /// The folder of its TLS files (certificate and key), when it
    /// terminates TLS.
    fn tls_dir(&self) -> Option<PathBuf> {
        self.protocol.tls.then(|| self.dir.join("tls"))
    }

    /// A TLS file's path, as the configuration names it.
    fn tls_file(&self, name: &str) -> String {
        self.dir.join("tls").join(name).display().to_string()
    }
}

/// The configuration file's text.
pub fn config(spec: &ProxySpec) -> String {
    match spec.path.proxy {
        Proxy::None => String::new(),
        Proxy::Nginx => nginx(spec),
        Proxy::Haproxy => haproxy(spec),
        Proxy::Caddy => caddy(spec),
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

fn nginx(spec: &ProxySpec) -> String {
    let dir = spec.dir.display();
    let conns = 2 * spec.max_connections + 64;
    let user = if spec.root { "user root;\n" } else { "" };
    let location = match spec.path.config {
        // `proxy_pass` alone: HTTP/1.0 to the server, responses buffered,
        // no Upgrade forwarded, 60 s read timeout.
        ProxyConfig::Default => {
            let timeout = spec
                .path
                .timeout
                .map(|t| format!("            proxy_read_timeout {}s;\n", secs(t)))
                .unwrap_or_default();
            format!("            proxy_pass http://chat;\n{timeout}")
        }
        ProxyConfig::Streaming => {
            let t = spec.path.timeout.map_or(3600, secs);
            format!(
                "            proxy_pass http://chat;\n            proxy_http_version 1.1;\n            proxy_set_header Upgrade $http_upgrade;\n            proxy_set_header Connection $connection_upgrade;\n            proxy_set_header Host $host;\n            proxy_buffering off;\n            proxy_cache off;\n            proxy_read_timeout {t}s;\n            proxy_send_timeout {t}s;\n"
            )
        }
    };
    let keepalive = match spec.path.config {
        ProxyConfig::Default => "",
        ProxyConfig::Streaming => "        keepalive 64;\n",
    };
    let (listen, tls) = match (spec.protocol.tls, spec.protocol.is_http2()) {
        (false, _) => (spec.listen.to_string(), String::new()),
        (true, h2) => (
            format!("{} ssl{}", spec.listen, if h2 { " http2" } else { "" }),
            format!(
                "        ssl_certificate {};\n        ssl_certificate_key {};\n",
                spec.tls_file("cert.pem"),
                spec.tls_file("key.pem")
            ),
        ),
    };
    format!(
        "# Written by chatbench for [path] proxy = \"nginx\", config = \"{config}\".\n{user}worker_processes 1;\nworker_rlimit_nofile {files};\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/proxy-error.log warn;\nevents {{\n    worker_connections {conns};\n}}\nhttp {{\n    access_log off;\n    client_body_temp_path {dir}/body;\n    proxy_temp_path {dir}/proxy;\n    fastcgi_temp_path {dir}/fastcgi;\n    uwsgi_temp_path {dir}/uwsgi;\n    scgi_temp_path {dir}/scgi;\n    map $http_upgrade $connection_upgrade {{\n        default upgrade;\n        '' '';\n    }}\n    upstream chat {{\n        server {up};\n{keepalive}    }}\n    server {{\n        listen {listen};\n{tls}        location / {{\n{location}        }}\n    }}\n}}\n",
        config = spec.path.config.as_str(),
        files = conns + 64,
        up = spec.upstream,
    )
}

fn haproxy(spec: &ProxySpec) -> String {
    // Debian's haproxy.cfg: connect 5 s, client and server 50 s, no
    // tunnel timeout (a WebSocket then lives by the client and server ones).
    let (client, server, tunnel, extra) = match (spec.path.config, spec.path.timeout) {
        (ProxyConfig::Default, None) => (50, 50, None, ""),
        (ProxyConfig::Default, Some(t)) => (secs(t), secs(t), None, ""),
        (ProxyConfig::Streaming, t) => {
            let t = t.map_or(3600, secs);
            (t, t, Some(t), "    option http-no-delay\n")
        }
    };
    let tunnel = tunnel
        .map(|t| format!("    timeout tunnel {t}s\n"))
        .unwrap_or_default();
    let tls = match (spec.protocol.tls, spec.protocol.is_http2()) {
        (false, _) => String::new(),
        (true, h2) => format!(
            " ssl crt {} alpn {}",
            spec.tls_file("haproxy.pem"),
            if h2 { "h2,http/1.1" } else { "http/1.1" }
        ),
    };
    format!(
        "# Written by chatbench for [path] proxy = \"haproxy\", config = \"{config}\".\nglobal\n    maxconn {conns}\n    nbthread 1\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client {client}s\n    timeout server {server}s\n{tunnel}{extra}frontend chat\n    bind {listen}{tls}\n    default_backend server\nbackend server\n    server chatbench {up} maxconn {conns}\n",
        config = spec.path.config.as_str(),
        conns = spec.max_connections + 64,
        listen = spec.listen,
        up = spec.upstream,
    )
}

fn caddy(spec: &ProxySpec) -> String {
    let mut inner = String::new();
    if spec.path.config == ProxyConfig::Streaming {
        inner.push_str("        flush_interval -1\n");
    }
    if let Some(t) = spec.path.timeout {
        inner.push_str(&format!(
            "        transport http {{\n            read_timeout {}s\n        }}\n",
            secs(t)
        ));
    }
    let block = if inner.is_empty() {
        String::new()
    } else {
        format!(" {{\n{inner}    }}")
    };
    // Over TLS: the run's certificate, the HTTP versions the scenario
    // speaks (no HTTP/3), and a name for clients that send no SNI (an
    // IP address is never sent as one).
    let (scheme, servers, tls) = match (spec.protocol.tls, spec.protocol.is_http2()) {
        (false, _) => ("http", String::new(), String::new()),
        (true, h2) => (
            "https",
            format!(
                "    default_sni {ip}\n    servers {{\n        protocols h1{h2}\n    }}\n",
                ip = spec.listen.ip(),
                h2 = if h2 { " h2" } else { "" }
            ),
            format!(
                "    tls {} {}\n",
                spec.tls_file("cert.pem"),
                spec.tls_file("key.pem")
            ),
        ),
    };
    format!(
        "# Written by chatbench for [path] proxy = \"caddy\", config = \"{config}\".\n{{\n    admin off\n    auto_https off\n{servers}}}\n{scheme}://{listen} {{\n{tls}    reverse_proxy {up}{block}\n}}\n",
        config = spec.path.config.as_str(),
        listen = spec.listen,
        up = spec.upstream,
    )
}

/// A running proxy.
#[derive(Debug)]
pub struct RunningProxy {
    child: Child,
    /// What the clients and the engine see of it: its address, its
    /// processes (nginx: the master and its worker), its CA when it
    /// terminates TLS, and whether a WebSocket falls back to HTTP/1.1
    /// (its HTTP/2 settings do not allow extended CONNECT).
    pub front: Front,
    /// Its TLS files, deleted when it stops.
    tls_dir: Option<PathBuf>,
}

/// Why a proxy did not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The executable could not be started.
    #[error(
        "cannot start {exe} (install it: nginx-light, haproxy or caddy from Debian): {source}"
    )]
    Spawn {
        /// The executable.
        exe: String,
        /// Why.
        source: std::io::Error,
    },
    /// Its folder or configuration could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The run's certificate could not be made or trusted.
    #[error("the proxy's TLS certificate: {0}")]
    Tls(String),
    /// It did not route to the server in time.
    #[error("{0} did not route to the server within 10 s; see {1}")]
    NotListening(String, String),
}

impl RunningProxy {
    /// Writes the configuration into `spec.dir` (kept: it is the run's
    /// record of the proxy's settings), starts the proxy (under `taskset`
    /// on `cpus` when given), and waits until it accepts connections.
    pub async fn start(spec: &ProxySpec, cpus: Option<&str>) -> Result<RunningProxy, ProxyError> {
        std::fs::create_dir_all(&spec.dir).map_err(writing(&spec.dir))?;
        // nginx reads relative paths from its own prefix: every path it
        // is given is absolute.
        let spec = &ProxySpec {
            dir: std::fs::canonicalize(&spec.dir).map_err(writing(&spec.dir))?,
            ..spec.clone()
        };
        let name = spec.path.proxy.as_str();
        let conf = spec.dir.join(match spec.path.proxy {
            Proxy::Caddy => "Caddyfile".to_owned(),
            _ => format!("{name}.conf"),
        });
        let ca_pem = match spec.tls_dir() {
            None => None,
            Some(tls) => Some(write_tls_files(&tls)?),
        };
        std::fs::write(&conf, config(spec)).map_err(writing(&conf))?;
        let conf_s = conf.display().to_string();
        let (exe, args): (&str, Vec<String>) = match spec.path.proxy {
            Proxy::None => unreachable!("no proxy to start"),
            Proxy::Nginx => (
                "nginx",
                vec![
                    "-c".into(),
                    conf_s,
                    "-e".into(),
                    spec.dir.join("proxy-error.log").display().to_string(),
                ],
            ),
            Proxy::Haproxy => ("haproxy", vec!["-f".into(), conf_s, "-db".into()]),
            Proxy::Caddy => (
                "caddy",
                vec![
                    "run".into(),
                    "--config".into(),
                    conf_s,
                    "--adapter".into(),
                    "caddyfile".into(),
                ],
            ),
        };
        let (program, args) = crate::server::pinned(cpus, exe, args);
        let log_path = spec.dir.join("proxy.log");
        let log = std::fs::File::create(&log_path).map_err(writing(&log_path))?;
        let log2 = log.try_clone().map_err(writing(&log_path))?;
        let mut cmd = Command::new(program);
        cmd.args(&args)
            // Caddy's Go runtime on the one CPU it is pinned to.
            .env("GOMAXPROCS", "1")
            .env("HOME", &spec.dir)
            .env("XDG_DATA_HOME", &spec.dir)
            .env("XDG_CONFIG_HOME", &spec.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| ProxyError::Spawn {
            exe: exe.into(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        let connector = match &ca_pem {
            Some(ca) => Some(
                crate::dial::Connector::new(&spec.protocol, std::slice::from_ref(ca))
                    .map_err(|e| ProxyError::Tls(e.to_string()))?,
            ),
            None => None,
        };
        let mut proxy = RunningProxy {
            child,
            front: Front {
                addr: spec.listen,
                pids: vec![pid],
                ca_pem,
                websocket_h1: false,
            },
            tls_dir: spec.tls_dir(),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            // Ready once it routes: the server's health through it.
            match &connector {
                None => {
                    if let Ok((200, _)) =
                        crate::server::control(spec.listen, "GET", "/healthz", None).await
                    {
                        break;
                    }
                }
                Some(c) => {
                    if let Ok(p) = crate::dial::probe::front(spec.listen, c).await {
                        if p.status == 200 {
                            proxy.front.websocket_h1 = c.is_http2() && !p.extended_connect;
                            break;
                        }
                    }
                }
            }
            if tokio::time::Instant::now() > deadline || !matches!(proxy.child.try_wait(), Ok(None))
            {
                proxy.stop().await;
                return Err(ProxyError::NotListening(
                    name.into(),
                    spec.dir.join("proxy.log").display().to_string(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        proxy.front.pids.extend(children_of(pid));
        Ok(proxy)
    }

    /// Stops it: SIGTERM, then SIGKILL after 5 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        if let Some(dir) = &self.tls_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Makes the run's certificate (a CA and a leaf for 127.0.0.1, as the
/// spawned server makes its own) and writes the leaf and key to `dir`:
/// `cert.pem` and `key.pem` (nginx, Caddy) and `haproxy.pem` (both in
/// one, as HAProxy reads them). Returns the CA, PEM.
fn write_tls_files(dir: &Path) -> Result<String, ProxyError> {
    let g = chatbench_server::tls::generate(&[]).map_err(ProxyError::Tls)?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(writing(&path))
    };
    std::fs::create_dir_all(dir).map_err(writing(dir))?;
    write("cert.pem", &g.leaf_pem)?;
    write("key.pem", &g.key_pem)?;
    write("haproxy.pem", &format!("{}{}", g.leaf_pem, g.key_pem))?;
    Ok(g.ca_pem)
}

/// The error of a failed write (or folder) at `path`.
fn writing(path: &Path) -> impl FnOnce(std::io::Error) -> ProxyError + '_ {
    move |source| ProxyError::Write {
        path: path.to_owned(),
        source,
    }
}

/// A free port on loopback for the proxy to listen on (the kernel's
/// choice, let go just before the proxy binds it).
pub fn free_loopback_port() -> std::io::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    l.local_addr()
}

/// The processes `pid` started (nginx's worker), from `/proc`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(proxy: Proxy, config: ProxyConfig, timeout: Option<Duration>) -> ProxySpec {
        ProxySpec {
            path: ProxyPath {
                proxy,
                config,
                timeout,
            },
            listen: "127.0.0.1:8443".parse().unwrap(),
            upstream: "127.0.0.1:9000".parse().unwrap(),
            max_connections: 100,
            dir: "/run/x".into(),
            root: false,
            protocol: Protocol::default(),
        }
    }

    #[test]
    fn nginx_streams_only_when_told() {
        let d = config(&spec(Proxy::Nginx, ProxyConfig::Default, None));
        assert!(d.contains("proxy_pass http://chat;") && d.contains("server 127.0.0.1:9000;"));
        assert!(!d.contains("proxy_buffering") && !d.contains("proxy_set_header Upgrade"));
        assert!(d.contains("listen 127.0.0.1:8443;") && d.contains("worker_connections 264;"));
        let s = config(&spec(Proxy::Nginx, ProxyConfig::Streaming, None));
        for line in [
            "proxy_http_version 1.1;",
            "proxy_set_header Upgrade $http_upgrade;",
            "proxy_set_header Connection $connection_upgrade;",
            "proxy_buffering off;",
            "proxy_read_timeout 3600s;",
            "keepalive 64;",
        ] {
            assert!(s.contains(line), "{line} in {s}");
        }
        let t = config(&spec(
            Proxy::Nginx,
            ProxyConfig::Default,
            Some(Duration::from_secs(3)),
        ));
        assert!(t.contains("proxy_read_timeout 3s;"), "{t}");
    }

    #[test]
    fn haproxy_and_caddy_keep_their_defaults_unless_streaming() {
        let d = config(&spec(Proxy::Haproxy, ProxyConfig::Default, None));
        assert!(d.contains("timeout client 50s") && !d.contains("timeout tunnel"));
        let s = config(&spec(Proxy::Haproxy, ProxyConfig::Streaming, None));
        assert!(s.contains("timeout tunnel 3600s") && s.contains("option http-no-delay"));
        let c = config(&spec(Proxy::Caddy, ProxyConfig::Default, None));
        assert!(
            c.contains("reverse_proxy 127.0.0.1:9000\n") && c.contains("http://127.0.0.1:8443 {")
        );
        let c = config(&spec(
            Proxy::Caddy,
            ProxyConfig::Streaming,
            Some(Duration::from_secs(2)),
        ));
        assert!(
            c.contains("flush_interval -1") && c.contains("read_timeout 2s"),
            "{c}"
        );
    }

    #[test]
    fn over_tls_each_proxy_names_the_runs_certificate_and_the_http_versions() {
        let tls = |proxy, http2: bool| {
            let mut s = spec(proxy, ProxyConfig::Streaming, None);
            s.protocol.tls = true;
            if http2 {
                s.protocol.http = chatbench_results::scenario::HttpVersion::Http2;
            }
            config(&s)
        };
        let n = tls(Proxy::Nginx, true);
        for line in [
            "listen 127.0.0.1:8443 ssl http2;",
            "ssl_certificate /run/x/tls/cert.pem;",
            "ssl_certificate_key /run/x/tls/key.pem;",
        ] {
            assert!(n.contains(line), "{line} in {n}");
        }
        assert!(tls(Proxy::Nginx, false).contains("listen 127.0.0.1:8443 ssl;"));
        assert!(tls(Proxy::Haproxy, true)
            .contains("bind 127.0.0.1:8443 ssl crt /run/x/tls/haproxy.pem alpn h2,http/1.1\n"));
        assert!(tls(Proxy::Haproxy, false).contains("alpn http/1.1\n"));
        let c = tls(Proxy::Caddy, true);
        for line in [
            "default_sni 127.0.0.1\n",
            "protocols h1 h2\n",
            "https://127.0.0.1:8443 {\n    tls /run/x/tls/cert.pem /run/x/tls/key.pem\n",
        ] {
            assert!(c.contains(line), "{line} in {c}");
        }
        assert!(tls(Proxy::Caddy, false).contains("protocols h1\n"));
        // Without TLS nothing of it is written.
        let plain = config(&spec(Proxy::Caddy, ProxyConfig::Streaming, None));
        assert!(
            !plain.contains("tls") && !plain.contains("protocols"),
            "{plain}"
        );
    }
}
