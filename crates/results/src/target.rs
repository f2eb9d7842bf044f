//! `[target]`: which chat stack a run measures and how its clients speak
//! to it. A *profile* is a protocol on the wire (chatbench's own contract,
//! Socket.IO, or one the scenario describes); a *server* is the process
//! chatbench spawns for it. The engine, the audit and the recorder are the
//! same whichever runs; the format is in `docs/targets.md`.

use crate::Transport;
use serde::{Deserialize, Serialize};

/// `[target]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The protocol the clients speak.
    #[serde(default)]
    pub profile: Profile,
    /// The server chatbench spawns for each transport run (ignored with
    /// `--server`, which names a running one).
    #[serde(default)]
    pub server: ServerKind,
    /// Socket.IO only: the `websocket` runs start on Engine.IO polling
    /// and upgrade, as the official client does in a browser.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub upgrade: bool,
    /// The transports run at this target, replacing the scenario's own
    /// list (a sweep over targets names what each stack serves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transports: Option<Vec<Transport>>,
    /// The `generic` profile's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic: Option<Generic>,
}

/// The protocol a target's clients speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// chatbench's contract (`docs/protocol.md`), with its sequence
    /// numbers, resumes and end-of-run message.
    #[default]
    Chatbench,
    /// Engine.IO 4 and Socket.IO 5, with the chat convention of
    /// `docs/targets.md` (`join`, `chat`).
    Socketio,
    /// A server of the user's own, described in `[target.generic]`.
    Generic,
}

/// The server process chatbench spawns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    /// `chatbench-server`.
    #[default]
    Chatbench,
    /// `peers/socketio-node`: Socket.IO 4.8 on Node.js.
    SocketioNode,
    /// `peers/ws-node`: the `ws` package on Node.js.
    WsNode,
}

impl ServerKind {
    /// The name used in scenarios, labels and `peers/`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerKind::Chatbench => "chatbench",
            ServerKind::SocketioNode => "socketio-node",
            ServerKind::WsNode => "ws-node",
        }
    }
}

/// `[target.generic]`: a chat server of the user's own. Paths and the
/// message are templates: `{room}`, `{from}`, `{body}`, `{sent_at}` (µs
/// from the start of traffic) and `{id}` (the sender's message number,
/// from 1) are replaced. Received messages are JSON; the pointers
/// (RFC 6901) say where their sender, send time and number are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generic {
    /// The WebSocket to subscribe with (transport `websocket`), a path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe_websocket: Option<String>,
    /// The SSE stream to subscribe with (transport `sse`), a path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe_sse: Option<String>,
    /// Where to POST a message; without it, messages go as text frames on
    /// the subscription's WebSocket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_post: Option<String>,
    /// The message sent, a template.
    pub message: String,
    /// Pointer to the sender's name in a received message.
    pub from: String,
    /// Pointer to the send time.
    pub sent_at: String,
    /// Pointer to a number that grows with each of a sender's messages
    /// (`{id}` sent back, or a number of the server's own); without it,
    /// duplicates and reordering cannot be told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 5] = ["room", "from", "body", "sent_at", "id"];

/// A validation failure: the field (below `target`) and why.
pub type Invalid = (&'static str, String);

impl Target {
    /// True for `[target]` left out (chatbench on its own server).
    pub fn is_default(&self) -> bool {
        *self == Target::default()
    }

    /// The transports a target runs when the scenario lists `listed`.
    pub fn transports<'a>(&'a self, listed: &'a [Transport]) -> &'a [Transport] {
        self.transports.as_deref().unwrap_or(listed)
    }

    /// True for chatbench's own contract on its own server.
    pub fn is_chatbench(&self) -> bool {
        self.profile == Profile::Chatbench
    }

    /// A short name: the server, then the profile when it is not the
    /// server's own, then ` upgrade`.
    pub fn label(&self) -> String {
        let mut l = self.server.as_str().to_owned();
        let natural = match self.server {
            ServerKind::Chatbench => Profile::Chatbench,
            ServerKind::SocketioNode => Profile::Socketio,
            ServerKind::WsNode => Profile::Generic,
        };
        if self.profile != natural {
            l.push_str(match self.profile {
                Profile::Chatbench => " chatbench",
                Profile::Socketio => " socketio",
                Profile::Generic => " generic",
            });
        }
        if self.upgrade {
            l.push_str(" upgrade");
        }
        l
    }

    /// Checks the target against the scenario's transports (`listed`)
    /// and whether it asks for HTTP/2, TLS, drops or several server
    /// processes, which only chatbench's profile and server do.
    pub fn validate(
        &self,
        listed: &[Transport],
        chatbench_only: Option<&str>,
    ) -> Result<(), Invalid> {
        let ts = self.transports(listed);
        if ts.is_empty() {
            return Err((
                "target.transports",
                "must name at least one transport".into(),
            ));
        }
        if let Some(what) = chatbench_only {
            if !self.is_chatbench() || self.server != ServerKind::Chatbench {
                return Err((
                    "target",
                    format!(
                        "{what} is chatbench's own; target `{}` runs without it",
                        self.label()
                    ),
                ));
            }
        }
        let allowed: &[Transport] = match self.profile {
            Profile::Chatbench => &Transport::ALL,
            Profile::Socketio => &[Transport::LongPoll, Transport::WebSocket],
            Profile::Generic => &[Transport::Sse, Transport::WebSocket],
        };
        if let Some(t) = ts.iter().find(|t| !allowed.contains(t)) {
            let names: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
            return Err((
                "target.transports",
                format!(
                    "profile {} runs {} only, not {}",
                    self.profile_name(),
                    names.join(" and "),
                    t.as_str()
                ),
            ));
        }
        if self.upgrade && self.profile != Profile::Socketio {
            return Err(("target.upgrade", "is for profile socketio only".into()));
        }
        match (&self.generic, self.profile) {
            (Some(g), Profile::Generic) => g.validate(ts),
            (None, Profile::Generic) => Err((
                "target.generic",
                "profile generic needs a [target.generic] table (docs/targets.md)".into(),
            )),
            (Some(_), p) => Err((
                "target.generic",
                format!("is for profile generic, not {}", profile_name(p)),
            )),
            (None, _) => Ok(()),
        }
    }

    fn profile_name(&self) -> &'static str {
        profile_name(self.profile)
    }
}

fn profile_name(p: Profile) -> &'static str {
    match p {
        Profile::Chatbench => "chatbench",
        Profile::Socketio => "socketio",
        Profile::Generic => "generic",
    }
}

impl Generic {
    fn validate(&self, ts: &[Transport]) -> Result<(), Invalid> {
        if ts.contains(&Transport::WebSocket) && self.subscribe_websocket.is_none() {
            return Err((
                "target.generic.subscribe_websocket",
                "is needed to run websocket".into(),
            ));
        }
        if ts.contains(&Transport::Sse) {
            if self.subscribe_sse.is_none() {
                return Err((
                    "target.generic.subscribe_sse",
                    "is needed to run sse".into(),
                ));
            }
            if self.publish_post.is_none() {
                return Err((
                    "target.generic.publish_post",
                    "is needed to run sse: an SSE stream carries nothing up".into(),
                ));
            }
        }
        for (field, path) in [
            (
                "target.generic.subscribe_websocket",
                &self.subscribe_websocket,
            ),
            ("target.generic.subscribe_sse", &self.subscribe_sse),
            ("target.generic.publish_post", &self.publish_post),
        ] {
            if let Some(p) = path {
                if !p.starts_with('/') {
                    return Err((
                        field,
                        format!("must be a path starting with '/', got {p:?}"),
                    ));
                }
                check_template(field, p)?;
            }
        }
        check_template("target.generic.message", &self.message)?;
        for needed in ["{from}", "{sent_at}"] {
            if !self.message.contains(needed) {
                return Err((
                    "target.generic.message",
                    format!("must carry {needed}, which the pointers read back"),
                ));
            }
        }
        for (field, p) in [
            ("target.generic.from", Some(&self.from)),
            ("target.generic.sent_at", Some(&self.sent_at)),
            ("target.generic.id", self.id.as_ref()),
        ] {
            if let Some(p) = p {
                if !p.starts_with('/') {
                    return Err((
                        field,
                        format!("must be a JSON pointer starting with '/', got {p:?}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Refuses a template with a `{name}` that is not a placeholder, or a
/// brace left open.
fn check_template(field: &'static str, t: &str) -> Result<(), Invalid> {
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            break;
        };
        let name = &after[..close];
        // JSON's own braces hold quotes, colons or spaces; a placeholder
        // is a bare word.
        let word = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if word && !PLACEHOLDERS.contains(&name) {
            return Err((
                field,
                format!(
                    "has {{{name}}}, which is not one of {{{}}}",
                    PLACEHOLDERS.join("}, {")
                ),
            ));
        }
        rest = &after[if word { close + 1 } else { 0 }..];
    }
    Ok(())
}

/// Fills a template: each `{name}` of [`PLACEHOLDERS`] by `value(name)`.
pub fn fill(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}').map(|c| (c, &after[..c])) {
            Some((c, name)) if PLACEHOLDERS.contains(&name) => {
                out.push_str(&value(name).unwrap_or_default());
                rest = &after[c + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_placeholders_and_keep_json_braces() {
        let t = r#"{"from":"{from}","n":{id},"x":{"y":1}}"#;
        let out = fill(t, |n| match n {
            "from" => Some("c1".into()),
            "id" => Some("7".into()),
            _ => None,
        });
        assert_eq!(out, r#"{"from":"c1","n":7,"x":{"y":1}}"#);
        assert_eq!(check_template("f", t), Ok(()));
        assert_eq!(
            check_template("f", "/rooms/{rom}"),
            Err((
                "f",
                "has {rom}, which is not one of {room}, {from}, {body}, {sent_at}, {id}".into()
            ))
        );
    }

    #[test]
    fn labels_name_the_server_then_what_differs() {
        let mut t = Target::default();
        assert_eq!(t.label(), "chatbench");
        t.server = ServerKind::SocketioNode;
        t.profile = Profile::Socketio;
        t.upgrade = true;
        assert_eq!(t.label(), "socketio-node upgrade");
        let t = Target {
            profile: Profile::Generic,
            ..Target::default()
        };
        assert_eq!(t.label(), "chatbench generic");
    }

    proptest::proptest! {
        /// Whatever a template holds, filling it never panics, and text
        /// without a brace comes back as it was.
        #[test]
        fn fill_is_total(t in "[ -~]{0,40}") {
            let out = fill(&t, |_| Some("v".into()));
            if !t.contains('{') {
                proptest::prop_assert_eq!(out, t);
            }
        }
    }
}
