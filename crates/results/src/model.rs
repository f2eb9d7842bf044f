//! What theory expects of each transport's delivery latency on a link of
//! round-trip time `rtt`, from the scenario alone, to set beside the
//! measurement (REPORT.md "Against the model").
//!
//! The model counts only the network and the transport's own waiting: a
//! message goes up in half a round trip, waits at the server for a way
//! down, and comes down in the other half. What it leaves out is the
//! server's and the load generator's processing (the whole latency at a
//! round trip of 0, about a millisecond on loopback here), bandwidth, and
//! queueing behind a sender's previous request.
//!
//! - **short poll**: polls reach the server every `P = interval ×
//!   ceil(rtt / interval)` (a poll that is still out when its tick comes
//!   makes the next one wait for the tick after its answer), so a message
//!   waits uniformly over `[0, P)`: latency `rtt + U(0, P)`, p50 and mean
//!   `rtt + P/2`.
//! - **long poll**: a poll is armed at the server except for one round trip
//!   after each answer (down half a round trip, the next request up the
//!   other half). With messages reaching a room at `λ` per second (Poisson:
//!   the senders' schedules together), the share of messages that find it
//!   re-arming is `q = λ·rtt / (1 + λ·rtt)` (for evenly spaced senders see
//!   [`rearm_share`]); they wait the rest of the re-arm, `U(0, rtt)`. Latency is `rtt` with probability `1 − q`, else
//!   `rtt + U(0, rtt)`: mean `rtt (1 + q/2)`, p50 `rtt` while `q ≤ ½`. One
//!   sender of evenly spaced messages further apart than `rtt` never finds
//!   it re-arming (`q = 0`).
//! - **SSE, WebSocket**: `rtt`, half up and half down.

use crate::scenario::{Arrival, Scenario};
use crate::Transport;

/// The model's expectation for one transport, µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Median latency.
    pub p50_us: f64,
    /// Mean latency.
    pub mean_us: f64,
    /// Long polling: the share of messages that find the poll re-arming.
    pub rearm_share: Option<f64>,
}

/// Messages per second reaching one room.
pub fn room_rate(s: &Scenario) -> f64 {
    s.clients.senders_per_room as f64 * s.messages.rate
}

/// The share of messages that reach a room's long poll while it re-arms,
/// `rtt` in seconds. Poisson (and bursty) arrivals at `λ` into the room:
/// `λ·rtt / (1 + λ·rtt)`. Evenly spaced senders, each with its own random
/// phase: a message finds the poll re-arming when another sender's message
/// came less than `rtt` before it, `1 − (1 − rate·rtt)^(senders − 1)`
/// (0 for one sender whose messages are further apart than `rtt`).
pub fn rearm_share(s: &Scenario, rtt: f64) -> f64 {
    if rtt <= 0.0 {
        return 0.0;
    }
    match s.messages.arrival {
        Arrival::Constant => {
            let n = s.clients.senders_per_room.max(1) as i32;
            let own = s.messages.rate * rtt;
            if own >= 1.0 {
                // A sender's own messages come closer than a round trip.
                let x = room_rate(s) * rtt;
                return x / (1.0 + x);
            }
            1.0 - (1.0 - own).powi(n - 1)
        }
        Arrival::Poisson | Arrival::Burst => {
            let x = room_rate(s) * rtt;
            x / (1.0 + x)
        }
    }
}

/// How often polls reach the server, µs: `interval × ceil(rtt /
/// interval)` (a poll still out at its tick makes the next wait for the
/// tick after its answer), or the round trip for back-to-back polls.
fn poll_period_us(s: &Scenario) -> f64 {
    let rtt = s.network.rtt.as_micros() as f64;
    let interval = s.short_poll.interval.as_micros() as f64;
    if interval <= 0.0 {
        rtt
    } else {
        interval * (rtt / interval).ceil().max(1.0)
    }
}

/// The model's expectation for `t` in scenario `s` (at one sweep point).
pub fn predict(s: &Scenario, t: Transport) -> Prediction {
    let rtt = s.network.rtt.as_micros() as f64;
    let p50_us = quantile_us(s, t, 0.5);
    match t {
        Transport::ShortPoll => Prediction {
            p50_us,
            mean_us: rtt + poll_period_us(s) / 2.0,
            rearm_share: None,
        },
        Transport::LongPoll => {
            let q = rearm_share(s, rtt / 1e6);
            Prediction {
                p50_us,
                mean_us: rtt * (1.0 + q / 2.0),
                rearm_share: Some(q),
            }
        }
        Transport::Sse | Transport::WebSocket | Transport::WebTransport => Prediction {
            p50_us,
            mean_us: rtt,
            rearm_share: None,
        },
    }
}

/// The model's `q` quantile (0 < q < 1) of `t`'s latency in `s`, µs:
/// short polling `rtt + q·P`; long polling `rtt` for the `1 − share`
/// that find the poll armed (P(L ≤ rtt + y) = (1 − share) + share·y/rtt
/// for y in [0, rtt]), and above that the re-arm's uniform wait; SSE and
/// WebSocket `rtt`. [`predict`]'s median is its 0.5. `chatbench advise` sets the p99 beside the
/// measurement with it.
pub fn quantile_us(s: &Scenario, t: Transport, q: f64) -> f64 {
    let rtt = s.network.rtt.as_micros() as f64;
    match t {
        Transport::ShortPoll => rtt + q * poll_period_us(s),
        Transport::LongPoll => {
            let share = rearm_share(s, rtt / 1e6);
            if q <= 1.0 - share || share <= 0.0 {
                rtt
            } else {
                rtt + rtt * (q - (1.0 - share)) / share
            }
        }
        Transport::Sse | Transport::WebSocket | Transport::WebTransport => rtt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn scenario(extra: &str) -> Scenario {
        let src = format!(
            "name='m'\ntransports=['short_poll','long_poll','sse','websocket']\nduration='2s'\n\
             [clients]\nrooms=1\nclients_per_room=10\nsenders_per_room=2\n\
             [messages]\nrate=2.5\n{extra}"
        );
        Scenario::parse(&src, Path::new("m.toml")).unwrap()
    }

    #[test]
    fn quantiles_follow_each_transports_wait() {
        // Polls every 1 s over 100 ms: p99 is 100 + 990 ms.
        let s = scenario("[short_poll]\ninterval='1s'\n[network]\nrtt='100ms'\n");
        assert!((quantile_us(&s, Transport::ShortPoll, 0.99) - 1_090_000.0).abs() < 1e-6);
        assert_eq!(quantile_us(&s, Transport::Sse, 0.99), 100_000.0);
        // 5 msg/s over 200 ms: half re-arm, p99 = 200 + 200·0.49/0.5.
        let s = scenario("[network]\nrtt='200ms'\n");
        let p99 = quantile_us(&s, Transport::LongPoll, 0.99);
        assert!(
            (p99 - (200_000.0 + 200_000.0 * 0.49 / 0.5)).abs() < 1e-6,
            "{p99}"
        );
        // The median agrees with `predict`.
        assert_eq!(
            quantile_us(&s, Transport::LongPoll, 0.5),
            predict(&s, Transport::LongPoll).p50_us
        );
    }

    #[test]
    fn push_transports_cost_one_round_trip() {
        let s = scenario("[network]\nrtt='100ms'\n");
        for t in [Transport::Sse, Transport::WebSocket] {
            let p = predict(&s, t);
            assert_eq!((p.p50_us, p.mean_us), (100_000.0, 100_000.0));
        }
    }

    #[test]
    fn short_polls_wait_half_a_period_that_the_round_trip_can_stretch() {
        // 1 s interval, 100 ms RTT: 100 + 500 ms.
        let s = scenario("[short_poll]\ninterval='1s'\n[network]\nrtt='100ms'\n");
        assert_eq!(predict(&s, Transport::ShortPoll).mean_us, 600_000.0);
        // 100 ms interval, 250 ms RTT: a poll every 300 ms, 250 + 150.
        let s = scenario("[short_poll]\ninterval='100ms'\n[network]\nrtt='250ms'\n");
        assert_eq!(predict(&s, Transport::ShortPoll).p50_us, 400_000.0);
        // On loopback: half the interval.
        let s = scenario("[short_poll]\ninterval='500ms'\n");
        assert_eq!(predict(&s, Transport::ShortPoll).p50_us, 250_000.0);
    }

    #[test]
    fn long_polls_pay_the_re_arm_in_proportion_to_the_message_rate() {
        // 5 msg/s into the room, 200 ms: λ·rtt = 1, half the messages find
        // the poll re-arming and wait 100 ms more on average.
        let s = scenario("[network]\nrtt='200ms'\n");
        let p = predict(&s, Transport::LongPoll);
        assert_eq!(p.rearm_share, Some(0.5));
        assert_eq!(p.mean_us, 250_000.0);
        assert_eq!(p.p50_us, 200_000.0);
        // 4 times the rate: q = 0.8, the median moves into the re-arm.
        let s = Scenario {
            messages: crate::scenario::Messages {
                rate: 10.0,
                ..s.messages.clone()
            },
            ..s
        };
        let p = predict(&s, Transport::LongPoll);
        assert!((p.rearm_share.unwrap() - 0.8).abs() < 1e-12);
        assert!((p.p50_us - (200_000.0 + 200_000.0 * 0.3 / 0.8)).abs() < 1e-6);
        // One evenly spaced sender, 1 s apart, 200 ms round trips: the poll
        // is always back in time.
        let mut one = s.clone();
        one.clients.senders_per_room = 1;
        one.messages.rate = 1.0;
        one.messages.arrival = Arrival::Constant;
        assert_eq!(predict(&one, Transport::LongPoll).rearm_share, Some(0.0));
        assert_eq!(predict(&one, Transport::LongPoll).mean_us, 200_000.0);
        // Two such senders, each every 2 s: the other's message came within
        // the 200 ms before with a chance of 0.1.
        let mut two = one.clone();
        two.clients.senders_per_room = 2;
        two.messages.rate = 0.5;
        let q = predict(&two, Transport::LongPoll).rearm_share.unwrap();
        assert!((q - 0.1).abs() < 1e-12, "{q}");
    }
}
