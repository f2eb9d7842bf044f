//! `[path]`: what stands between the clients and the server. Today a
//! reverse proxy that chatbench spawns in front of the server it spawns
//! (nginx, HAProxy or Caddy), with a configuration it writes: the
//! package's defaults plus the minimum to route (`default`), or the
//! settings each proxy's documentation gives for WebSocket, SSE and long
//! polling (`streaming`). The format is in `docs/proxies.md`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[path]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Path {
    /// The reverse proxy in front of the server.
    #[serde(default)]
    pub proxy: Proxy,
    /// Which configuration it gets.
    #[serde(default)]
    pub config: ProxyConfig,
    /// Replaces the proxy's idle timeouts in the generated configuration
    /// (nginx's `proxy_read_timeout`, HAProxy's `timeout client`,
    /// `server` and `tunnel`, Caddy's upstream `read_timeout`), so that a
    /// test can show in seconds what the defaults do after a minute.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
}

/// A reverse proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proxy {
    /// Clients reach the server directly.
    #[default]
    None,
    /// nginx (`proxy_pass`).
    Nginx,
    /// HAProxy (`mode http`).
    Haproxy,
    /// Caddy (`reverse_proxy`).
    Caddy,
}

/// Which configuration the proxy gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyConfig {
    /// The package's defaults plus the minimum to route to the server.
    #[default]
    Default,
    /// What the proxy's documentation gives for WebSocket, SSE and long
    /// polling.
    Streaming,
}

impl Proxy {
    /// Its name in scenarios, labels and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Proxy::None => "none",
            Proxy::Nginx => "nginx",
            Proxy::Haproxy => "haproxy",
            Proxy::Caddy => "caddy",
        }
    }
}

impl ProxyConfig {
    /// Its name in scenarios and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyConfig::Default => "default",
            ProxyConfig::Streaming => "streaming",
        }
    }
}

impl Path {
    /// True without a proxy.
    pub fn is_direct(&self) -> bool {
        self.proxy == Proxy::None
    }

    /// A short name: `direct`, or the proxy and its configuration
    /// (`nginx streaming`), with the timeout when it is set.
    pub fn label(&self) -> String {
        if self.is_direct() {
            return "direct".into();
        }
        let mut l = format!("{} {}", self.proxy.as_str(), self.config.as_str());
        if let Some(t) = self.timeout {
            l.push_str(&format!(" timeout {}", humantime::format_duration(t)));
        }
        l
    }
}
