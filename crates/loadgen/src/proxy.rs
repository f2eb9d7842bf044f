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

use chatbench_results::path::{Path as ProxyPath, Proxy, ProxyConfig};
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
    format!(
        "# Written by chatbench for [path] proxy = \"nginx\", config = \"{config}\".\n{user}worker_processes 1;\nworker_rlimit_nofile {files};\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/proxy-error.log warn;\nevents {{\n    worker_connections {conns};\n}}\nhttp {{\n    access_log off;\n    client_body_temp_path {dir}/body;\n    proxy_temp_path {dir}/proxy;\n    fastcgi_temp_path {dir}/fastcgi;\n    uwsgi_temp_path {dir}/uwsgi;\n    scgi_temp_path {dir}/scgi;\n    map $http_upgrade $connection_upgrade {{\n        default upgrade;\n        '' '';\n    }}\n    upstream chat {{\n        server {up};\n{keepalive}    }}\n    server {{\n        listen {listen};\n        location / {{\n{location}        }}\n    }}\n}}\n",
        config = spec.path.config.as_str(),
        files = conns + 64,
        up = spec.upstream,
        listen = spec.listen,
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
    format!(
        "# Written by chatbench for [path] proxy = \"haproxy\", config = \"{config}\".\nglobal\n    maxconn {conns}\n    nbthread 1\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client {client}s\n    timeout server {server}s\n{tunnel}{extra}frontend chat\n    bind {listen}\n    default_backend server\nbackend server\n    server chatbench {up} maxconn {conns}\n",
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
    format!(
        "# Written by chatbench for [path] proxy = \"caddy\", config = \"{config}\".\n{{\n    admin off\n    auto_https off\n}}\nhttp://{listen} {{\n    reverse_proxy {up}{block}\n}}\n",
        config = spec.path.config.as_str(),
        listen = spec.listen,
        up = spec.upstream,
    )
}

/// A running proxy.
#[derive(Debug)]
pub struct RunningProxy {
    child: Child,
    /// Where clients reach it.
    pub addr: SocketAddr,
    /// Its processes (nginx: the master and its worker).
    pub pids: Vec<u32>,
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
    /// It did not route to the server in time.
    #[error("{0} did not route to the server within 10 s; see {1}")]
    NotListening(String, String),
}

impl RunningProxy {
    /// Writes the configuration into `spec.dir` (kept: it is the run's
    /// record of the proxy's settings), starts the proxy (under `taskset`
    /// on `cpus` when given), and waits until it accepts connections.
    pub async fn start(spec: &ProxySpec, cpus: Option<&str>) -> Result<RunningProxy, ProxyError> {
        let write = |path: &Path, text: &str| {
            std::fs::write(path, text).map_err(|source| ProxyError::Write {
                path: path.to_owned(),
                source,
            })
        };
        let dir_error = |source| ProxyError::Write {
            path: spec.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&spec.dir).map_err(dir_error)?;
        // nginx reads relative paths from its own prefix: every path it
        // is given is absolute.
        let spec = &ProxySpec {
            dir: std::fs::canonicalize(&spec.dir).map_err(dir_error)?,
            ..spec.clone()
        };
        let name = spec.path.proxy.as_str();
        let conf = spec.dir.join(match spec.path.proxy {
            Proxy::Caddy => "Caddyfile".to_owned(),
            _ => format!("{name}.conf"),
        });
        write(&conf, &config(spec))?;
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
        let mut cmd = match cpus {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", c, exe]);
                cmd
            }
            None => Command::new(exe),
        };
        let log = std::fs::File::create(spec.dir.join("proxy.log")).map_err(|source| {
            ProxyError::Write {
                path: spec.dir.join("proxy.log"),
                source,
            }
        })?;
        let log2 = log.try_clone().map_err(|source| ProxyError::Write {
            path: spec.dir.join("proxy.log"),
            source,
        })?;
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
        let mut proxy = RunningProxy {
            child,
            addr: spec.listen,
            pids: vec![pid],
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            // Ready once it routes: the server's health through it.
            if let Ok((200, _)) = crate::server::control(spec.listen, "GET", "/healthz", None).await
            {
                break;
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
        proxy.pids.extend(children_of(pid));
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
}
