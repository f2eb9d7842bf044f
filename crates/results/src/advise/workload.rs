//! What `chatbench advise` is asked about: a workload (clients, rooms,
//! messages, the network), the transports' settings, and the limits an
//! answer must keep.

use crate::scenario::{Scenario, ScenarioError};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// A workload to advise on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Clients, every one a receiver in one room.
    pub clients: u64,
    /// Rooms the clients are spread over evenly.
    pub rooms: u64,
    /// Messages per second into each room, all its senders together.
    pub rate: f64,
    /// Clients of each room that send.
    pub senders: u64,
    /// Round-trip time between a client and the server.
    #[serde(with = "humantime_serde")]
    pub rtt: Duration,
    /// Packet loss each way, a fraction (0.01 for 1%).
    pub loss: f64,
    /// The clients are phones on LTE: the answer adds radio energy.
    pub mobile: bool,
    /// Short polling's interval.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// A long poll's longest wait.
    #[serde(with = "humantime_serde")]
    pub long_poll_wait: Duration,
    /// The server's SSE keep-alive interval.
    #[serde(with = "humantime_serde")]
    pub sse_keepalive: Duration,
    /// The server's WebSocket ping interval.
    #[serde(with = "humantime_serde")]
    pub ws_ping: Duration,
    /// The highest p99 delivery latency a transport may have to fit.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_p99: Option<Duration>,
    /// The most server CPU a transport may need to fit, in cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_server_cpu: Option<f64>,
}

impl Default for Workload {
    /// A room of 100 on a 50 ms round trip, a message a second, with the
    /// server's and the scenario format's default intervals.
    fn default() -> Workload {
        Workload {
            clients: 100,
            rooms: 1,
            rate: 1.0,
            senders: 1,
            rtt: Duration::from_millis(50),
            loss: 0.0,
            mobile: false,
            poll_interval: Duration::from_secs(1),
            long_poll_wait: Duration::from_secs(30),
            sse_keepalive: Duration::from_secs(15),
            ws_ping: Duration::from_secs(30),
            max_p99: None,
            max_server_cpu: None,
        }
    }
}

impl Workload {
    /// Clients per room.
    pub fn room_size(&self) -> f64 {
        self.clients as f64 / self.rooms.max(1) as f64
    }

    /// Messages per second into all rooms.
    pub fn publishes_per_s(&self) -> f64 {
        self.rate * self.rooms as f64
    }

    /// Deliveries per second: every message to every client of its room.
    pub fn deliveries_per_s(&self) -> f64 {
        self.rate * self.clients as f64
    }

    /// Each client's own messages per second.
    pub fn sends_per_client_s(&self) -> f64 {
        self.publishes_per_s() / self.clients.max(1) as f64
    }

    /// Whether the workload can be answered: the flag and the reason when
    /// not.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.clients == 0 {
            return Err(("--clients", "must be at least 1".into()));
        }
        if self.rooms == 0 || self.rooms > self.clients {
            return Err((
                "--rooms",
                format!(
                    "must be between 1 and --clients ({}), got {}",
                    self.clients, self.rooms
                ),
            ));
        }
        if self.clients > u64::from(u32::MAX) {
            return Err(("--clients", format!("must be at most {}", u32::MAX)));
        }
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 1e6) {
            return Err((
                "--rate",
                format!(
                    "must be a number of messages per second above 0 and at most 1000000, got {}",
                    self.rate
                ),
            ));
        }
        let size = self.clients / self.rooms;
        if self.senders == 0 || self.senders > size {
            return Err((
                "--senders",
                format!(
                    "must be between 1 and the room size ({size}), got {}",
                    self.senders
                ),
            ));
        }
        if !(0.0..0.5).contains(&self.loss) {
            return Err((
                "--loss",
                format!(
                    "must be at least 0% and below 50%, got {}%",
                    self.loss * 100.0
                ),
            ));
        }
        if self.rtt > Duration::from_secs(10) {
            return Err(("--rtt", format!("must be at most 10s, got {:?}", self.rtt)));
        }
        for (flag, d) in [
            ("--poll-interval", self.poll_interval),
            ("--long-poll-wait", self.long_poll_wait),
            ("--sse-keepalive", self.sse_keepalive),
            ("--ws-ping", self.ws_ping),
        ] {
            if d.is_zero() || d > Duration::from_secs(3600) {
                return Err((flag, format!("must be above 0 and at most 1h, got {d:?}")));
            }
        }
        if let Some(c) = self.max_server_cpu {
            if !(c.is_finite() && c > 0.0) {
                return Err((
                    "--max-server-cpu",
                    format!("must be a number of cores above 0, got {c}"),
                ));
            }
        }
        Ok(())
    }

    /// The workload as a scenario named `name` of `clients` clients at
    /// most (rooms dropped, or one room shrunk, to fit; the rate per room
    /// kept), measured for `duration`: what the model reads, and what
    /// `--measure` runs.
    pub fn scenario(
        &self,
        name: &str,
        clients: u64,
        duration: Duration,
    ) -> Result<Scenario, ScenarioError> {
        let src = self.scenario_toml(name, clients, duration);
        Scenario::parse(&src, Path::new(&format!("{name}.toml")))
    }

    /// [`Workload::scenario`]'s TOML text.
    pub fn scenario_toml(&self, name: &str, clients: u64, duration: Duration) -> String {
        let size = (self.clients / self.rooms).max(1);
        let (rooms, size) = if self.clients <= clients {
            (self.rooms, size)
        } else if size <= clients {
            ((clients / size).max(1), size)
        } else {
            (1, clients.max(1))
        };
        let senders = self.senders.min(size);
        let network = if self.loss > 0.0 {
            format!(
                "rtt = \"{}ms\"\nmode = \"packet\"\nloss = {}\n",
                self.rtt.as_millis(),
                self.loss
            )
        } else {
            format!("rtt = \"{}ms\"\n", self.rtt.as_millis())
        };
        let secs = |d: Duration| format!("{}ms", d.as_millis());
        format!(
            "name = \"{name}\"\n\
             description = \"chatbench advise: {} clients in {} rooms at {} msg/s a room\"\n\
             transports = [\"short_poll\", \"long_poll\", \"sse\", \"websocket\"]\n\
             duration = \"{}\"\nwarmup = \"2s\"\ngrace = \"2s\"\n\
             [clients]\nrooms = {rooms}\nclients_per_room = {size}\nsenders_per_room = {senders}\n\
             [messages]\nrate = {}\n\
             [short_poll]\ninterval = \"{}\"\n[long_poll]\nwait = \"{}\"\n\
             [server]\nsse_keepalive = \"{}\"\nws_ping_interval = \"{}\"\n\
             [network]\n{network}\
             [limits]\nsend_lag_p99 = \"{}ms\"\n",
            self.clients,
            self.rooms,
            self.rate,
            secs(duration),
            self.rate / senders as f64,
            secs(self.poll_interval),
            secs(self.long_poll_wait),
            secs(self.sse_keepalive),
            secs(self.ws_ping),
            // An HTTP sender's publish waits for its previous answer, and a
            // calibration shares the machine with whatever else runs.
            (self.rtt.as_millis() * 2).max(250),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_follow_from_rooms_and_clients() {
        let w = Workload {
            clients: 1000,
            rooms: 100,
            rate: 0.5,
            ..Workload::default()
        };
        assert_eq!(w.room_size(), 10.0);
        assert_eq!(w.publishes_per_s(), 50.0);
        assert_eq!(w.deliveries_per_s(), 500.0);
        assert_eq!(w.sends_per_client_s(), 0.05);
    }

    #[test]
    fn bad_workloads_name_the_flag() {
        let bad = |w: Workload| w.check().unwrap_err();
        let d = Workload::default;
        assert_eq!(bad(Workload { clients: 0, ..d() }).0, "--clients");
        assert_eq!(
            bad(Workload { rooms: 200, ..d() }),
            (
                "--rooms",
                "must be between 1 and --clients (100), got 200".into()
            )
        );
        assert_eq!(bad(Workload { rate: 0.0, ..d() }).0, "--rate");
        assert_eq!(
            bad(Workload {
                rate: f64::NAN,
                ..d()
            })
            .0,
            "--rate"
        );
        assert_eq!(
            bad(Workload {
                senders: 101,
                ..d()
            }),
            (
                "--senders",
                "must be between 1 and the room size (100), got 101".into()
            )
        );
        assert_eq!(bad(Workload { loss: 0.5, ..d() }).0, "--loss");
        assert_eq!(
            bad(Workload {
                ws_ping: Duration::ZERO,
                ..d()
            }),
            (
                "--ws-ping",
                "must be above 0 and at most 1h, got 0ns".into()
            )
        );
        assert_eq!(
            bad(Workload {
                max_server_cpu: Some(-1.0),
                ..d()
            })
            .0,
            "--max-server-cpu"
        );
        assert!(d().check().is_ok());
    }

    #[test]
    fn a_scenario_keeps_the_room_and_its_rate_within_the_client_cap() {
        let w = Workload {
            clients: 10_000,
            rooms: 1000,
            rate: 2.0,
            senders: 2,
            loss: 0.01,
            ..Workload::default()
        };
        let s = w.scenario("cal", 200, Duration::from_secs(5)).unwrap();
        assert_eq!((s.clients.rooms, s.clients.clients_per_room), (20, 10));
        assert_eq!((s.clients.senders_per_room, s.messages.rate), (2, 1.0));
        assert_eq!(s.network.loss, 0.01);
        assert_eq!(s.network.rtt, Duration::from_millis(50));
        // One room larger than the cap shrinks to it.
        let fan = Workload {
            clients: 5000,
            rooms: 1,
            ..Workload::default()
        };
        let s = fan.scenario("cal", 200, Duration::from_secs(5)).unwrap();
        assert_eq!((s.clients.rooms, s.clients.clients_per_room), (1, 200));
        // Under the cap it is the workload itself.
        let s = Workload::default()
            .scenario("m", 1000, Duration::from_secs(5))
            .unwrap();
        assert_eq!((s.clients.rooms, s.clients.clients_per_room), (1, 100));
    }
}
