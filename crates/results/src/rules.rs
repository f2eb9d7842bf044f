//! The `[[expect]]` rule grammar of scenario files (evaluated by
//! `chatbench check`).
//!
//! A rule names a `metric` and is one of three kinds:
//! - **order**: `order = ["websocket", "sse", "short_poll"]`: the metric's
//!   median strictly increases along the list.
//! - **bounds**: `min` and/or `max`, for one `transport` or, without it, for
//!   every transport in the run.
//! - **ratio**: `ratio = ["short_poll", "websocket"]` with `min` and/or
//!   `max`: the first transport's median divided by the second's.
//!
//! Latency bounds may be durations (`"200ms"`); bare numbers are µs.

use crate::Transport;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A metric a rule can test: the median over repetitions, or for the audit
/// counters the sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Median latency, µs.
    P50Latency,
    /// 90th percentile latency, µs.
    P90Latency,
    /// 99th percentile latency, µs.
    P99Latency,
    /// 99.9th percentile latency, µs.
    P999Latency,
    /// Largest latency, µs.
    MaxLatency,
    /// Bytes per delivered message, both directions.
    BytesPerMsg,
    /// Client-to-server bytes per message.
    BytesUpPerMsg,
    /// Server-to-client bytes per message.
    BytesDownPerMsg,
    /// HTTP requests per delivered message.
    RequestsPerMsg,
    /// TCP segments per delivered message.
    SegmentsPerMsg,
    /// Deliveries per second.
    DeliveredPerS,
    /// Server CPU ms per 1,000 delivered messages. Spelled as run.json's
    /// `server_cpu_ms_per_1k` (snake_case alone would say `per1k`).
    #[serde(rename = "server_cpu_ms_per_1k")]
    ServerCpuMsPer1k,
    /// Server RSS per idle connection, bytes.
    RssPerConnection,
    /// How far the measured p50 is from the analytic model's, relative to
    /// the model's, after 2 ms of processing the model leaves out
    /// (`TransportSummary::p50_model_error`): 0.15 is 15%.
    P50ModelError,
    /// With connection drops: bytes per drop (sent into cut connections,
    /// and to resume).
    BytesPerDrop,
    /// With connection drops: TCP handshakes per drop.
    HandshakesPerDrop,
    /// With connection drops: p50 latency of the messages sent while their
    /// receiver was away, µs.
    AwayP50Latency,
    /// Lost messages.
    Lost,
    /// Duplicated messages.
    Duplicated,
    /// Reordered messages.
    Reordered,
    /// Client errors.
    Errors,
}

impl Metric {
    /// True for the latency metrics (whose bounds may be durations).
    pub fn is_latency(self) -> bool {
        matches!(
            self,
            Metric::P50Latency
                | Metric::P90Latency
                | Metric::P99Latency
                | Metric::P999Latency
                | Metric::MaxLatency
                | Metric::AwayP50Latency
        )
    }

    /// The name used in scenario files.
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// A bound: a number, or a duration for latency metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bound {
    /// A plain number (µs for latencies).
    Number(f64),
    /// A duration such as `"200ms"`.
    Duration(String),
}

/// One `[[expect]]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// What is tested.
    pub metric: Metric,
    /// For a bounds rule: the one transport (else all).
    #[serde(default)]
    pub transport: Option<Transport>,
    /// For an order rule: transports whose values strictly increase.
    #[serde(default)]
    pub order: Option<Vec<Transport>>,
    /// For a ratio rule: numerator and denominator transports.
    #[serde(default)]
    pub ratio: Option<[Transport; 2]>,
    /// Lower bound (inclusive).
    #[serde(default)]
    pub min: Option<Bound>,
    /// Upper bound (inclusive).
    #[serde(default)]
    pub max: Option<Bound>,
}

/// A rule of a known kind, with bounds as numbers.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// Strictly increasing along the transports.
    Order(Vec<Transport>),
    /// Within bounds, for one transport or every one (None).
    Bounds(Option<Transport>, Option<f64>, Option<f64>),
    /// `a / b` within bounds.
    Ratio(Transport, Transport, Option<f64>, Option<f64>),
}

impl Rule {
    /// Parses one `[[expect]]` table; the error names the field at fault.
    pub fn from_table(t: &toml::Table) -> Result<Rule, (String, String)> {
        let rule: Rule = serde_path_to_error::deserialize(toml::Value::Table(t.clone()))
            .map_err(|e| (e.path().to_string(), e.inner().message().trim().to_owned()))?;
        rule.kind()?;
        Ok(rule)
    }

    fn bound(&self, b: &Option<Bound>, field: &str) -> Result<Option<f64>, (String, String)> {
        match b {
            None => Ok(None),
            Some(Bound::Number(n)) => Ok(Some(*n)),
            Some(Bound::Duration(s)) if self.metric.is_latency() => crate::fmt::parse_duration(s)
                .map(|d: Duration| Some(d.as_micros() as f64))
                .map_err(|e| (field.into(), e)),
            Some(Bound::Duration(s)) => Err((
                field.into(),
                format!(
                    "{s:?} is a duration, but {} is not a latency",
                    self.metric.as_str()
                ),
            )),
        }
    }

    /// What kind of rule this is, with its bounds resolved.
    pub fn kind(&self) -> Result<RuleKind, (String, String)> {
        let min = self.bound(&self.min, "min")?;
        let max = self.bound(&self.max, "max")?;
        match (&self.order, &self.ratio) {
            (Some(_), Some(_)) => Err((
                "order".into(),
                "a rule has either `order` or `ratio`, not both".into(),
            )),
            (Some(order), None) => {
                if order.len() < 2 {
                    return Err(("order".into(), "must list at least two transports".into()));
                }
                if self.min.is_some() || self.max.is_some() || self.transport.is_some() {
                    return Err((
                        "order".into(),
                        "an order rule takes no `min`, `max` or `transport`".into(),
                    ));
                }
                Ok(RuleKind::Order(order.clone()))
            }
            (None, Some([a, b])) => {
                if min.is_none() && max.is_none() {
                    return Err(("ratio".into(), "a ratio rule needs `min` or `max`".into()));
                }
                Ok(RuleKind::Ratio(*a, *b, min, max))
            }
            (None, None) => {
                if min.is_none() && max.is_none() {
                    return Err((
                        "metric".into(),
                        "a rule needs `order`, `ratio`, `min` or `max`".into(),
                    ));
                }
                Ok(RuleKind::Bounds(self.transport, min, max))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(src: &str) -> Result<RuleKind, String> {
        let t: toml::Table = toml::from_str(src).unwrap();
        Rule::from_table(&t)
            .and_then(|r| r.kind())
            .map_err(|(f, m)| format!("{f}: {m}"))
    }

    #[test]
    fn the_three_kinds() {
        assert_eq!(
            rule("metric = \"bytes_per_msg\"\norder = [\"websocket\", \"sse\"]").unwrap(),
            RuleKind::Order(vec![Transport::WebSocket, Transport::Sse])
        );
        assert_eq!(
            rule("metric = \"lost\"\nmax = 0").unwrap(),
            RuleKind::Bounds(None, None, Some(0.0))
        );
        assert_eq!(
            rule("metric = \"p50_latency\"\ntransport = \"short_poll\"\nmin = \"200ms\"").unwrap(),
            RuleKind::Bounds(Some(Transport::ShortPoll), Some(200_000.0), None)
        );
        assert_eq!(
            rule(
                "metric = \"requests_per_msg\"\nratio = [\"short_poll\", \"websocket\"]\nmin = 10"
            )
            .unwrap(),
            RuleKind::Ratio(Transport::ShortPoll, Transport::WebSocket, Some(10.0), None)
        );
    }

    #[test]
    fn bad_rules_name_the_field() {
        assert_eq!(
            rule("metric = \"speed\"\nmax = 1")
                .unwrap_err()
                .split(", expected")
                .next()
                .unwrap(),
            "metric: unknown variant `speed`"
        );
        assert_eq!(
            rule("metric = \"lost\"").unwrap_err(),
            "metric: a rule needs `order`, `ratio`, `min` or `max`"
        );
        assert_eq!(
            rule("metric = \"lost\"\nmax = \"1s\"").unwrap_err(),
            "max: \"1s\" is a duration, but lost is not a latency"
        );
        assert_eq!(
            rule("metric = \"lost\"\nmax = 0\nsmax = 1")
                .unwrap_err()
                .split(", expected")
                .next()
                .unwrap(),
            "smax: unknown field `smax`"
        );
        assert_eq!(
            rule("metric = \"lost\"\nratio = [\"sse\"]\nmin = 1").unwrap_err(),
            "ratio: invalid length 1, expected an array of length 2"
        );
    }

    #[test]
    fn every_metric_named_in_the_scenario_docs_parses_and_the_list_is_whole() {
        let doc = include_str!("../../../docs/scenario-format.md");
        let list = doc
            .split("\nMetrics: ")
            .nth(1)
            .and_then(|rest| rest.split(". A rule").next())
            .expect("docs/scenario-format.md lists the metrics");
        let named: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
        assert_eq!(named.len(), 21, "{named:?}");
        for name in &named {
            let m: Metric = serde_json::from_value(serde_json::Value::from(*name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(m.as_str(), *name);
        }
        // The summary key in run.json has the same spelling.
        let summary_key = "server_cpu_ms_per_1k";
        assert!(named.contains(&summary_key));
        assert_eq!(Metric::ServerCpuMsPer1k.as_str(), summary_key);
    }
}
