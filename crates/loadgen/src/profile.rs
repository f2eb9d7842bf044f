//! Request header profiles (`protocol.headers`): `minimal`, the few headers
//! a request needs, or `browser`, the headers headless Chromium sends for
//! `fetch`, `EventSource` and the WebSocket handshake, as captured by
//! `scripts/capture-browser-headers.py` into `profiles/chromium.txt`.
//!
//! The capture is used as it stands, with three changes: the headers every
//! client writes for itself (the request line, `Host`, `Connection`,
//! `Content-Length`, `Content-Type`, and the WebSocket handshake's
//! `Upgrade`, key and version) are left to it; `Origin` and `Referer` name
//! the server the client talks to, with its scheme; and the cookie is
//! `protocol.cookie_bytes` bytes long (none at 0).

use chatbench_results::scenario::{HeaderProfile, Protocol};

/// The capture, compiled in.
pub const CHROMIUM: &str = include_str!("../profiles/chromium.txt");

/// Headers the client writes for itself, whatever the profile.
const OWN: [&str; 8] = [
    "host",
    "connection",
    "content-length",
    "content-type",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "transfer-encoding",
];

/// The kinds of request a chat client makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A short or long poll (`fetch` GET).
    Poll,
    /// A publish (`fetch` POST of JSON).
    Publish,
    /// An SSE stream (`EventSource`).
    Sse,
    /// A WebSocket handshake.
    WebSocket,
}

impl Kind {
    fn section(self) -> &'static str {
        match self {
            Kind::Poll => "poll",
            Kind::Publish => "publish",
            Kind::Sse => "sse",
            Kind::WebSocket => "websocket",
        }
    }
}

/// The extra headers of each kind of request, for one server: as (name,
/// value) for HTTP/2, and written out as `Name: value` lines once, for
/// HTTP/1.1, so a request does not format them again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    poll: Vec<(String, String)>,
    publish: Vec<(String, String)>,
    sse: Vec<(String, String)>,
    websocket: Vec<(String, String)>,
    /// The same, as lines, by [`Kind`] in declaration order.
    lines: [Vec<String>; 4],
}

impl Headers {
    /// The headers `protocol` asks for, for requests to `authority` over
    /// `scheme` (`http` or `https`).
    pub fn new(protocol: &Protocol, scheme: &str, authority: &str) -> Result<Headers, String> {
        match protocol.headers {
            HeaderProfile::Minimal => Ok(Headers::default()),
            HeaderProfile::Browser => {
                Headers::from_capture(CHROMIUM, scheme, authority, protocol.cookie_bytes as usize)
            }
        }
    }

    /// Reads a capture: `[kind]` sections, each a request head.
    pub fn from_capture(
        text: &str,
        scheme: &str,
        authority: &str,
        cookie_bytes: usize,
    ) -> Result<Headers, String> {
        let mut h = Headers::default();
        for kind in [Kind::Poll, Kind::Publish, Kind::Sse, Kind::WebSocket] {
            let start = format!("[{}]\n", kind.section());
            let at = text
                .find(&start)
                .ok_or_else(|| format!("the capture has no {start:?} section"))?;
            let body = &text[at + start.len()..];
            let end = body.find("\n[").unwrap_or(body.len());
            let mut lines = body[..end].lines().filter(|l| !l.trim().is_empty());
            // The request line.
            lines
                .next()
                .filter(|l| l.ends_with(" HTTP/1.1"))
                .ok_or_else(|| {
                    format!(
                        "section [{}] does not start with a request line",
                        kind.section()
                    )
                })?;
            let list = h.of_mut(kind);
            for line in lines {
                let (name, value) = line
                    .split_once(':')
                    .ok_or_else(|| format!("[{}]: {line:?} is not a header", kind.section()))?;
                let value = value.trim();
                if OWN.iter().any(|o| o.eq_ignore_ascii_case(name)) {
                    continue;
                }
                let value = if name.eq_ignore_ascii_case("cookie") {
                    if cookie_bytes == 0 {
                        continue;
                    }
                    cookie(cookie_bytes)
                } else {
                    value
                        .replace("http://{authority}", &format!("{scheme}://{authority}"))
                        .replace("{authority}", authority)
                };
                list.push((name.to_owned(), value));
            }
        }
        for kind in [Kind::Poll, Kind::Publish, Kind::Sse, Kind::WebSocket] {
            h.lines[kind as usize] = h
                .of(kind)
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
        }
        Ok(h)
    }

    /// The extra headers of a `kind` request as `Name: value` lines.
    pub fn lines(&self, kind: Kind) -> &[String] {
        &self.lines[kind as usize]
    }

    fn of_mut(&mut self, kind: Kind) -> &mut Vec<(String, String)> {
        match kind {
            Kind::Poll => &mut self.poll,
            Kind::Publish => &mut self.publish,
            Kind::Sse => &mut self.sse,
            Kind::WebSocket => &mut self.websocket,
        }
    }

    /// The extra headers of a `kind` request, as (name, value).
    pub fn of(&self, kind: Kind) -> &[(String, String)] {
        match kind {
            Kind::Poll => &self.poll,
            Kind::Publish => &self.publish,
            Kind::Sse => &self.sse,
            Kind::WebSocket => &self.websocket,
        }
    }
}

/// A `Cookie` value of exactly `n` bytes: `session=` and letters.
pub fn cookie(n: usize) -> String {
    let name = "session=";
    let mut v = String::with_capacity(n.max(name.len()));
    v.push_str(&name[..n.min(name.len())]);
    v.extend((0..n.saturating_sub(name.len())).map(|i| (b'a' + (i % 26) as u8) as char));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capture_becomes_each_kinds_own_headers() {
        let h = Headers::from_capture(CHROMIUM, "https", "127.0.0.1:9", 40).unwrap();
        for kind in [Kind::Poll, Kind::Publish, Kind::Sse, Kind::WebSocket] {
            let names: Vec<String> = h
                .of(kind)
                .iter()
                .map(|(n, _)| n.to_ascii_lowercase())
                .collect();
            for own in OWN {
                assert!(!names.iter().any(|n| n == own), "{kind:?} keeps {own}");
            }
            assert!(
                names.iter().any(|n| n == "user-agent"),
                "{kind:?}: {names:?}"
            );
            assert!(names.iter().any(|n| n == "accept-language"), "{kind:?}");
            let cookie = h.of(kind).iter().find(|(n, _)| n == "Cookie").unwrap();
            assert_eq!(cookie.1.len(), 40, "{kind:?}");
            for (n, v) in h.of(kind) {
                assert!(!v.contains("{authority}"), "{kind:?} {n}: {v}");
                if n == "Origin" || n == "Referer" {
                    assert!(v.starts_with("https://127.0.0.1:9"), "{kind:?} {n}: {v}");
                }
            }
        }
        let accept = |k| {
            h.of(k)
                .iter()
                .find(|(n, _)| n == "Accept")
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(accept(Kind::Sse), Some("text/event-stream"));
        assert_eq!(accept(Kind::Poll), Some("*/*"));
        let names = |k: Kind| h.of(k).iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>();
        assert!(names(Kind::Publish).contains(&"Origin"));
        assert!(names(Kind::WebSocket).contains(&"Sec-WebSocket-Extensions"));
        // No cookie at 0 bytes.
        let h = Headers::from_capture(CHROMIUM, "http", "a:1", 0).unwrap();
        assert!(h.of(Kind::Poll).iter().all(|(n, _)| n != "Cookie"));
    }

    #[test]
    fn cookies_have_the_size_asked_for() {
        for n in [1, 7, 8, 9, 100, 4096] {
            let c = cookie(n);
            assert_eq!(c.len(), n);
            assert!(c.is_ascii());
        }
        assert_eq!(cookie(12), "session=abcd");
        let h = Headers::from_capture(CHROMIUM, "http", "a:1", 12).unwrap();
        let lines = h.lines(Kind::Poll);
        assert_eq!(lines.len(), h.of(Kind::Poll).len());
        assert!(
            lines.contains(&"Cookie: session=abcd".to_owned()),
            "{lines:?}"
        );
    }

    #[test]
    fn a_broken_capture_is_refused_with_the_section() {
        let e = Headers::from_capture("[poll]\nGET / HTTP/1.1\nUser-Agent x\n", "http", "a", 0)
            .unwrap_err();
        assert_eq!(e, "[poll]: \"User-Agent x\" is not a header");
        let e = Headers::from_capture("[poll]\nGET / HTTP/1.1\n", "http", "a", 0).unwrap_err();
        assert_eq!(e, "the capture has no \"[publish]\\n\" section");
    }
}
