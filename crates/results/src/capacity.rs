//! A capacity search (`[search]` in a scenario, `chatbench capacity`): per
//! transport, ordinary transport runs at rising offered load until a
//! stated limit breaks, then a few steps between the last load that held
//! and the first that broke, to narrow in on the knee.
//!
//! Each step is judged on its own run ([`judge`]): it **breaks** when the
//! server's CPU passes the scenario's `[limits] server_cpu` (the run's
//! `saturated` flag on the server's side), its p99 passes `max_p99`, it
//! lost more than `max_lost` messages, or not every client got ready; it is
//! **limited by the load generator** when the load generator's CPU or send
//! lag passed their limits, and then the search of that transport stops
//! there with that reason, since nothing beyond it would measure the
//! server. [`Walk`] decides the next load: `start`, then × `factor` while
//! the steps hold (at most `steps` of them), then `refine` geometric
//! midpoints between the highest that held and the lowest that broke.

use crate::measurement::{cpu_share, LOADGEN_SIDE, SEND_LAG, SERVER_SIDE};
use crate::run_file::{TransportRun, TransportSummary};
use crate::search::Search;
use crate::Transport;
use serde::{Deserialize, Serialize};

/// How one step went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "why", rename_all = "snake_case")]
pub enum Verdict {
    /// Every limit held.
    Holds,
    /// A limit broke: which, with the figure.
    Breaks(String),
    /// The load generator ran out first: the step says nothing of the
    /// server, and the search stops.
    LoadgenLimited(String),
    /// The run did not finish.
    Failed(String),
}

/// The verdict on one transport run of a step.
pub fn judge(run: &TransportRun, sum: &TransportSummary, search: &Search) -> Verdict {
    if !run.complete {
        return Verdict::Failed("the run did not finish".into());
    }
    if let Some(v) = blame(&run.saturation) {
        return v;
    }
    let p99 = sum.p99_us.median;
    let max = search.max_p99.as_micros() as f64;
    if p99 > max {
        return Verdict::Breaks(format!(
            "p99 {} over max_p99 {}",
            crate::fmt::fmt_us(p99 as u64),
            crate::fmt::fmt_us(max as u64)
        ));
    }
    if sum.lost > search.max_lost {
        return Verdict::Breaks(format!(
            "{} lost, over max_lost {}",
            sum.lost, search.max_lost
        ));
    }
    if run.flags.iter().any(|f| f == "not_ready") {
        return Verdict::Breaks("not every client got ready".into());
    }
    Verdict::Holds
}

/// Which side a run's `saturation` reasons blame, if any: the load
/// generator (the step then says nothing about the server) or the server.
/// Send lag alone, while the server ran out and the load generator's CPU
/// did not, is the server's: an HTTP sender waits for the answer to its
/// last publish, which a saturated server is slow to give.
fn blame(saturation: &[String]) -> Option<Verdict> {
    let ours: Vec<&str> = saturation
        .iter()
        .filter(|s| s.starts_with(LOADGEN_SIDE))
        .map(String::as_str)
        .collect();
    let server = saturation.iter().find(|s| s.starts_with(SERVER_SIDE));
    let lag_only = ours
        .iter()
        .all(|s| s[LOADGEN_SIDE.len()..].starts_with(SEND_LAG));
    match server {
        Some(s) if lag_only && !ours.is_empty() => Some(Verdict::Breaks(format!(
            "{s}; its publishes waited ({})",
            ours.join("; ")
        ))),
        _ if !ours.is_empty() => Some(Verdict::LoadgenLimited(ours.join("; "))),
        Some(s) => Some(Verdict::Breaks(s.clone())),
        None => None,
    }
}

/// The search over one transport: which load to run next.
#[derive(Debug, Clone)]
pub struct Walk {
    search: Search,
    good: Option<f64>,
    bad: Option<f64>,
    grown: u32,
    refined: u32,
    stopped: Option<String>,
}

impl Walk {
    /// A walk that starts at `search.start`.
    pub fn new(search: &Search) -> Walk {
        Walk {
            search: search.clone(),
            good: None,
            bad: None,
            grown: 0,
            refined: 0,
            stopped: None,
        }
    }

    /// The first step's value.
    pub fn first(&self) -> f64 {
        self.search.round(self.search.start)
    }

    /// Why the walk ended, once it has.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    fn stop(&mut self, why: String) -> Option<f64> {
        self.stopped = Some(why);
        None
    }

    /// The value after a step at `value` that ended in `verdict`; None when
    /// the walk is over ([`Walk::stopped`] says why).
    pub fn next(&mut self, value: f64, verdict: &Verdict) -> Option<f64> {
        match verdict {
            Verdict::Holds => {
                self.good = Some(self.good.map_or(value, |g| g.max(value)));
                if self.bad.is_none() {
                    self.grown += 1;
                    if self.grown >= self.search.steps {
                        return self.stop(format!(
                            "no limit broke in {} steps, up to {}",
                            self.search.steps, value
                        ));
                    }
                    let mut next = self.search.round(value * self.search.factor);
                    if next <= value {
                        next = value + 1.0;
                    }
                    return Some(next);
                }
            }
            Verdict::Breaks(why) => {
                self.bad = Some(self.bad.map_or(value, |b| b.min(value)));
                if self.good.is_none() {
                    return self.stop(format!("the first step, {value}, broke a limit: {why}"));
                }
            }
            Verdict::LoadgenLimited(why) => {
                return self.stop(format!("the load generator ran out at {value}: {why}"));
            }
            Verdict::Failed(why) => return self.stop(format!("the step at {value} failed: {why}")),
        }
        let (good, bad) = (self.good.unwrap_or(value), self.bad.unwrap_or(value));
        let between = format!("the knee lies between {good} (held) and {bad} (broke)");
        if self.refined >= self.search.refine {
            return self.stop(between);
        }
        let mid = self.search.round((good * bad).sqrt());
        if mid <= good || mid >= bad {
            return self.stop(between);
        }
        self.refined += 1;
        Some(mid)
    }
}

/// One step of a search, as `capacity.json` keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The parameter's value.
    pub value: f64,
    /// The step's run folder, relative to the search's.
    pub run: String,
    /// How it went.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Messages published per second.
    pub sent_per_s: f64,
    /// Deliveries per second.
    pub delivered_per_s: f64,
    /// Latency p50, µs.
    pub p50_us: f64,
    /// Latency p99, µs.
    pub p99_us: f64,
    /// The server's CPU over its CPUs, 0 to 1 (None with no server figure).
    pub server_cpu_share: Option<f64>,
    /// The server's CPUs (its pinning's, or its `server.cpu_quota`).
    pub server_cpus: Option<f64>,
    /// Under `server.cpu_quota`: the share of the quota's periods in
    /// which the server used it up and waited, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_share: Option<f64>,
    /// The load generator's CPU over its CPUs.
    pub loadgen_cpu_share: f64,
    /// Messages lost.
    pub lost: u64,
    /// Connections opened.
    pub connections: u64,
    /// Server RSS per connection, bytes.
    pub rss_per_connection: Option<f64>,
}

impl Step {
    /// The figures of a step's transport run.
    pub fn of(
        value: f64,
        run_dir: String,
        verdict: Verdict,
        run: &TransportRun,
        sum: &TransportSummary,
        server_cpus: Option<f64>,
    ) -> Step {
        let secs = run.measured_seconds.max(1e-9);
        Step {
            value,
            run: run_dir,
            verdict,
            sent_per_s: run.audit.sent as f64 / secs,
            delivered_per_s: sum.delivered_per_s.median,
            p50_us: sum.p50_us.median,
            p99_us: sum.p99_us.median,
            server_cpu_share: run
                .server
                .as_ref()
                .zip(server_cpus)
                .map(|(c, n)| cpu_share(c.cpu_ms_measured, secs, n)),
            server_cpus,
            throttled_share: run
                .server
                .as_ref()
                .and_then(|c| c.quota_periods)
                .map(|p| p.share()),
            loadgen_cpu_share: run.loadgen.cpu_share,
            lost: sum.lost,
            connections: run.connections,
            rss_per_connection: sum.rss_per_connection.as_ref().map(|r| r.median),
        }
    }
}

/// What a transport's search found at its knee: the highest load that held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knee {
    /// The parameter's value there.
    pub value: f64,
    /// Deliveries per second there.
    pub delivered_per_s: f64,
    /// Deliveries per second per server CPU the server had.
    pub per_server_core: Option<f64>,
    /// Deliveries per CPU-second the server spent (what a fully used core
    /// would deliver at this cost).
    pub per_cpu_second: Option<f64>,
    /// Latency p50 there, µs.
    pub p50_us: f64,
    /// Latency p99 there, µs.
    pub p99_us: f64,
    /// Connections per GiB of server memory, from RSS per connection.
    pub connections_per_gib: Option<f64>,
}

impl Knee {
    /// The knee of `steps`: the highest value that held.
    pub fn of(steps: &[Step]) -> Option<Knee> {
        let s = steps
            .iter()
            .filter(|s| s.verdict == Verdict::Holds)
            .max_by(|a, b| a.value.total_cmp(&b.value))?;
        Some(Knee {
            value: s.value,
            delivered_per_s: s.delivered_per_s,
            per_server_core: s
                .server_cpus
                .filter(|&n| n > 0.0)
                .map(|n| s.delivered_per_s / n),
            per_cpu_second: s.server_cpu_share.zip(s.server_cpus).and_then(|(c, n)| {
                let cores = c * n;
                (cores > 0.0).then(|| s.delivered_per_s / cores)
            }),
            p50_us: s.p50_us,
            p99_us: s.p99_us,
            connections_per_gib: s
                .rss_per_connection
                .filter(|r| *r > 0.0)
                .map(|r| (1u64 << 30) as f64 / r),
        })
    }
}

/// One transport's search in `capacity.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransportSearch {
    /// The transport.
    pub transport: Transport,
    /// Its steps, in the order they ran.
    pub steps: Vec<Step>,
    /// Why the search ended.
    pub stopped: String,
    /// The knee, when a step held.
    pub knee: Option<Knee>,
}

/// `capacity.json`'s schema name.
pub const SCHEMA: &str = "chatbench-capacity/1";

/// A capacity search's file, `capacity.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityFile {
    /// [`SCHEMA`].
    pub schema: String,
    /// The search's id (its folder's name).
    pub run_id: String,
    /// The command line.
    pub command: Vec<String>,
    /// The machine and build, from the first step's run.
    pub environment: Option<crate::machine::Environment>,
    /// The scenario, with its `[search]`.
    pub scenario: crate::scenario::Scenario,
    /// False while running, and when a search was interrupted or a step
    /// failed.
    pub complete: bool,
    /// What went wrong.
    pub problems: Vec<String>,
    /// Each transport's search.
    pub transports: Vec<TransportSearch>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::example as search;

    fn walk(breaks_above: f64, s: &Search) -> (Vec<f64>, String) {
        let mut w = Walk::new(s);
        let mut v = Some(w.first());
        let mut seen = Vec::new();
        while let Some(x) = v {
            seen.push(x);
            let verdict = if x > breaks_above {
                Verdict::Breaks("p99".into())
            } else {
                Verdict::Holds
            };
            v = w.next(x, &verdict);
        }
        (seen, w.stopped().unwrap().to_owned())
    }

    #[test]
    fn a_walk_doubles_until_a_limit_breaks_then_narrows_in() {
        // Breaks above 100: 10 20 40 80 hold, 160 breaks; then sqrt(80·160)
        // = 113 breaks, sqrt(80·113) = 95.1 holds; two refinements.
        let (seen, why) = walk(100.0, &search());
        assert_eq!(seen, [10.0, 20.0, 40.0, 80.0, 160.0, 113.1, 95.12]);
        assert_eq!(why, "the knee lies between 95.12 (held) and 113.1 (broke)");
    }

    #[test]
    fn a_walk_ends_when_nothing_breaks_or_the_first_step_does() {
        let s = Search {
            steps: 3,
            ..search()
        };
        let (seen, why) = walk(1e9, &s);
        assert_eq!(seen, [10.0, 20.0, 40.0]);
        assert_eq!(why, "no limit broke in 3 steps, up to 40");
        let (seen, why) = walk(1.0, &search());
        assert_eq!(seen, [10.0]);
        assert_eq!(why, "the first step, 10, broke a limit: p99");
    }

    #[test]
    fn a_walk_stops_where_the_load_generator_runs_out() {
        let mut w = Walk::new(&search());
        assert_eq!(w.next(10.0, &Verdict::Holds), Some(20.0));
        let limited = Verdict::LoadgenLimited("load generator: CPU 95%".into());
        assert_eq!(w.next(20.0, &limited), None);
        assert_eq!(
            w.stopped(),
            Some("the load generator ran out at 20: load generator: CPU 95%")
        );
    }

    #[test]
    fn send_lag_while_the_server_ran_out_is_the_servers() {
        let v = |r: &[&str]| blame(&r.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let lag = "load generator: send lag p99 778.2ms over the limit of 20.0ms";
        let cpu = "load generator: CPU 95% of its 1 CPU over the limit of 90%";
        let server = "server: CPU 100% of its 0.25 CPU (its quota) over the limit of 90%";
        assert_eq!(v(&[]), None);
        assert_eq!(v(&[server]), Some(Verdict::Breaks(server.into())));
        assert_eq!(v(&[lag]), Some(Verdict::LoadgenLimited(lag.into())));
        assert_eq!(
            v(&[lag, server]),
            Some(Verdict::Breaks(format!(
                "{server}; its publishes waited ({lag})"
            )))
        );
        // The load generator's own CPU ran out too: nothing is said of the
        // server.
        assert_eq!(
            v(&[lag, cpu, server]),
            Some(Verdict::LoadgenLimited(format!("{lag}; {cpu}")))
        );
    }

    #[test]
    fn counts_stay_whole_and_a_refinement_needs_room() {
        let s = Search {
            parameter: "clients.rooms".into(),
            start: 1.0,
            factor: 1.5,
            ..search()
        };
        // 1 → 1.5 rounds to 2; rooms 3 breaks; sqrt(2·3) = 2.4 rounds to 2:
        // no room between them.
        let (seen, why) = walk(2.0, &s);
        assert_eq!(seen, [1.0, 2.0, 3.0]);
        assert_eq!(why, "the knee lies between 2 (held) and 3 (broke)");
    }
}
