//! One transport's figures for a workload, each with where it came from.
//!
//! - **Latency**: the model's p50 and p99 for the workload
//!   ([`crate::model::quantile_us`]) plus what the model leaves out, as
//!   measured in the reference nearest in loss and round trip: the
//!   server's and the clients' processing, and on a lossy link TCP's
//!   retransmissions (whose timeout, at least 200 ms on Linux, does not
//!   scale with a short round trip).
//! - **Bytes and requests per message**: polling by the break-even model
//!   (`polls·C/D + r`, [`crate::break_even`]): the workload's polls a
//!   second (`N/P` for short polling, the model of its cycle for long
//!   polling), a poll's own bytes `C` and the rest `r` per delivery of the
//!   nearest reference; SSE and WebSocket as measured, with the
//!   keep-alives' or pings' share set to the workload's.
//! - **Server CPU**: the nearest reference's CPU per delivery (push) or
//!   per request (polling), times the workload's deliveries or requests a
//!   second, in cores.
//! - **Memory**: the reference with the most clients near the workload
//!   gives RSS per connection.
//! - **Radio energy** (`--mobile`): the LTE model of [`crate::energy`]
//!   over an hour of one client's packets as the transport would send
//!   them, with messages arriving as a Poisson process; the nearest
//!   reference that measured radio energy is named beside it.

use super::reference::Reference;
use super::workload::Workload;
use crate::break_even::long_poll_requests_per_s;
use crate::energy::{radio_time, Packet, Radio, RadioModel};
use crate::fmt::sig3;
use crate::model;
use crate::scenario::Scenario;
use crate::Transport;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// A figure and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// The value, in the unit its field names.
    pub value: f64,
    /// Which run or which model, and how it was scaled.
    pub source: String,
    /// The reference the source names ([`key`]), when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// What a phone's radio would spend on one client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RadioEstimate {
    /// J per client-hour.
    pub j_per_client_hour: f64,
    /// The share of the time the radio is on.
    pub on_share: f64,
    /// Promotions from idle per client-hour.
    pub promotions_per_client_hour: f64,
    /// The share of the energy the transport's own traffic causes.
    pub overhead_share: f64,
    /// The messages alone, J per client-hour.
    pub messages_only_j_per_client_hour: f64,
    /// The model and the timeline it ran over.
    pub source: String,
    /// The nearest reference's measured J per client-hour, when one has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<Figure>,
}

/// One transport's figures for a workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// The transport.
    pub transport: Transport,
    /// Delivery latency p50, ms.
    pub p50_ms: Figure,
    /// Delivery latency p99, ms.
    pub p99_ms: Figure,
    /// Bytes per delivered message, both directions, above TCP.
    pub bytes_per_msg: Figure,
    /// HTTP requests per delivered message.
    pub requests_per_msg: Figure,
    /// Server CPU for the whole workload, cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_cores: Option<Figure>,
    /// Server memory per connection, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_per_connection_kib: Option<Figure>,
    /// Server memory for the workload's connections, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_memory_mib: Option<Figure>,
    /// Radio energy, with `--mobile`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub radio: Option<RadioEstimate>,
}

/// How much each way a reference differs from the workload matters when
/// choosing one for a figure.
#[derive(Debug, Clone, Copy)]
struct Weights {
    /// Room rate and room size.
    load: f64,
    /// Clients.
    clients: f64,
    /// Round trip.
    rtt: f64,
    /// Loss.
    loss: f64,
    /// Short polling's interval.
    interval: f64,
}

const LATENCY: Weights = Weights {
    load: 0.5,
    clients: 0.25,
    rtt: 2.0,
    loss: 4.0,
    interval: 0.5,
};
const BYTES: Weights = Weights {
    load: 1.0,
    clients: 0.25,
    rtt: 0.25,
    loss: 0.25,
    interval: 1.0,
};
const CPU: Weights = Weights {
    load: 1.0,
    clients: 0.5,
    rtt: 0.25,
    loss: 0.5,
    interval: 0.5,
};
const MEMORY: Weights = Weights {
    load: 0.1,
    clients: 1.0,
    rtt: 0.1,
    loss: 0.1,
    interval: 0.0,
};

/// `|ln(a/b)|`: how many times apart two positive figures are.
fn apart(a: f64, b: f64) -> f64 {
    (a.max(1e-9) / b.max(1e-9)).ln().abs()
}

fn distance(w: &Workload, r: &Reference, k: Weights) -> f64 {
    let rtt_ms = w.rtt.as_secs_f64() * 1e3;
    let interval = if r.transport == Transport::ShortPoll {
        k.interval * apart(w.poll_interval.as_secs_f64(), r.poll_interval_s)
    } else {
        0.0
    };
    k.load * (apart(w.rate, r.room_rate) + apart(w.room_size(), r.room_size))
        + k.clients * apart(w.clients as f64, r.clients as f64)
        + k.rtt * apart(1.0 + rtt_ms, 1.0 + r.rtt_s * 1e3)
        + k.loss * apart(0.001 + w.loss, 0.001 + r.loss)
        + interval
}

/// The reference of `t` nearest to `w` under `k` among those `keep`
/// takes (the first of equals, so the answer does not depend on luck).
fn nearest<'a>(
    w: &Workload,
    t: Transport,
    refs: &'a [Reference],
    k: Weights,
    keep: impl Fn(&Reference) -> bool,
) -> Option<&'a Reference> {
    refs.iter()
        .filter(|r| r.transport == t && keep(r))
        .map(|r| (distance(w, r, k), r))
        .fold(None, |best: Option<(f64, &Reference)>, (d, r)| match best {
            Some((bd, _)) if bd <= d => best,
            _ => Some((d, r)),
        })
        .map(|(_, r)| r)
}

/// A reference's short name in sources: its folder and sweep point.
pub fn key(r: &Reference) -> String {
    match &r.point {
        Some(p) => format!("{} point {p}", r.run),
        None => r.run.clone(),
    }
}

/// What a reference ran: the commit and the workload.
pub fn describe(r: &Reference) -> String {
    let loss = if r.loss > 0.0 {
        format!(", {}% loss", sig3(r.loss * 100.0))
    } else {
        String::new()
    };
    format!(
        "commit {}: {} clients, rooms of {}, {} msg/s a room, rtt {} ms{loss}, polls every {} s, keep-alives every {} s, pings every {} s",
        r.commit.get(..7).unwrap_or(&r.commit),
        sig3(r.clients as f64),
        sig3(r.room_size),
        sig3(r.room_rate),
        sig3(r.rtt_s * 1e3),
        sig3(r.poll_interval_s),
        sig3(r.sse_keepalive_s),
        sig3(r.ws_ping_s),
    )
}

/// Bytes of one keep-alive or ping, above TCP: SSE's `: keep-alive\n\n`
/// in an HTTP/1.1 chunk (14 + 5); a WebSocket ping with no payload (2) and
/// the client's masked pong (6).
fn keepalive_bytes(t: Transport) -> f64 {
    match t {
        Transport::Sse => 19.0,
        Transport::WebSocket => 8.0,
        _ => 0.0,
    }
}

/// The keep-alive interval of `t` in the workload and in a reference, s.
fn keepalive_intervals(w: &Workload, r: &Reference) -> (f64, f64) {
    match r.transport {
        Transport::Sse => (w.sse_keepalive.as_secs_f64(), r.sse_keepalive_s),
        _ => (w.ws_ping.as_secs_f64(), r.ws_ping_s),
    }
}

/// The workload's polls per second, all clients, by the model.
fn polls_per_s(w: &Workload, t: Transport) -> f64 {
    let n = w.clients as f64;
    match t {
        Transport::ShortPoll => n / w.poll_interval.as_secs_f64(),
        Transport::LongPoll => {
            n * long_poll_requests_per_s(
                w.rate,
                w.rtt.as_secs_f64(),
                w.long_poll_wait.as_secs_f64(),
            )
        }
        _ => 0.0,
    }
}

/// The workload's requests per second (polls and publishes), by the model.
fn requests_per_s(w: &Workload, t: Transport) -> f64 {
    match t {
        Transport::WebSocket | Transport::WebTransport => 0.0,
        _ => polls_per_s(w, t) + w.publishes_per_s(),
    }
}

fn latency(w: &Workload, s: &Scenario, t: Transport, refs: &[Reference], q: f64) -> Option<Figure> {
    let model_us = model::quantile_us(s, t, q);
    let r = nearest(w, t, refs, LATENCY, |_| true)?;
    let (measured, its_model) = if q <= 0.5 {
        (r.p50_us, r.model_p50_us)
    } else {
        (r.p99_us, r.model_p99_us)
    };
    let extra = measured - its_model;
    Some(Figure {
        value: (model_us + extra).max(0.0) / 1e3,
        source: format!(
            "model {} ms (rtt {} ms{}) {} {} ms the model leaves out, measured in {}",
            sig3(model_us / 1e3),
            sig3(w.rtt.as_secs_f64() * 1e3),
            if t == Transport::ShortPoll {
                format!(", polls every {} s", sig3(w.poll_interval.as_secs_f64()))
            } else {
                String::new()
            },
            if extra >= 0.0 { "+" } else { "−" },
            sig3(extra.abs() / 1e3),
            key(r)
        ),
        reference: Some(key(r)),
    })
}

/// The reference `t`'s bytes and requests for `w` come from.
pub fn bytes_reference<'a>(
    w: &Workload,
    t: Transport,
    refs: &'a [Reference],
) -> Option<&'a Reference> {
    nearest(w, t, refs, BYTES, |r| t.is_push() || r.poll_bytes.is_some())
}

fn wire(w: &Workload, t: Transport, refs: &[Reference]) -> Option<(Figure, Figure)> {
    let d = w.deliveries_per_s();
    let requests = requests_per_s(w, t) / d;
    let r = bytes_reference(w, t, refs)?;
    let from = key(r);
    let (bytes, how) = match t {
        Transport::ShortPoll | Transport::LongPoll => {
            let (c, rest) = (r.poll_bytes?, r.rest_per_delivery?);
            let polls = polls_per_s(w, t);
            (
                polls * c / d + rest,
                format!(
                    "{} polls a second × a poll's {} B / {} deliveries a second + {} B a delivery besides, measured in {from}",
                    sig3(polls),
                    sig3(c),
                    sig3(d),
                    sig3(rest)
                ),
            )
        }
        _ => {
            let (wk, rk) = keepalive_intervals(w, r);
            let ka = keepalive_bytes(t);
            let theirs = ka * r.clients as f64 / (rk * r.delivered_per_s.max(1e-9));
            let ours = ka * w.clients as f64 / (wk * d);
            (
                (r.bytes_per_msg - theirs).max(0.0) + ours,
                if wk == rk {
                    format!("measured in {from}")
                } else {
                    format!(
                        "measured in {from}, with {} every {} s instead of {} s",
                        if t == Transport::Sse {
                            "keep-alives"
                        } else {
                            "pings"
                        },
                        sig3(wk),
                        sig3(rk)
                    )
                },
            )
        }
    };
    let req_source = match t {
        Transport::WebSocket => "none: publishes and messages are frames".to_owned(),
        Transport::Sse => "the workload's publishes, one request each".to_owned(),
        Transport::ShortPoll => format!(
            "model: {} polls a second and the publishes",
            sig3(w.clients as f64 / w.poll_interval.as_secs_f64())
        ),
        _ => "model of the long poll's cycle (re-arm one round trip, answered at the first message or the wait) and the publishes".to_owned(),
    };
    Some((
        Figure {
            value: bytes,
            source: how,
            reference: Some(key(r)),
        },
        Figure {
            value: requests,
            source: req_source,
            reference: None,
        },
    ))
}

fn cpu(w: &Workload, t: Transport, refs: &[Reference]) -> Option<Figure> {
    let r = nearest(w, t, refs, CPU, |r| r.cpu_us_per_delivery.is_some())?;
    let per_delivery = r.cpu_us_per_delivery?;
    let (per, unit, units, count) = if !t.is_push() {
        let per_request = per_delivery / r.requests_per_msg.max(1e-9);
        (per_request, "request", "requests", requests_per_s(w, t))
    } else {
        (per_delivery, "delivery", "deliveries", w.deliveries_per_s())
    };
    Some(Figure {
        value: per * count / 1e6,
        source: format!(
            "{} µs of server CPU a {unit}, measured in {}, × {} {units} a second",
            sig3(per),
            key(r),
            sig3(count)
        ),
        reference: Some(key(r)),
    })
}

fn memory(w: &Workload, t: Transport, refs: &[Reference]) -> Option<(Figure, Figure)> {
    let big = refs
        .iter()
        .any(|r| r.transport == t && r.rss_per_connection.is_some() && r.clients >= 1000);
    let r = nearest(w, t, refs, MEMORY, |r| {
        r.rss_per_connection.is_some() && (!big || r.clients >= 1000)
    })?;
    let per = r.rss_per_connection?;
    let connections = w.clients as f64 * r.connections_per_client.max(1.0);
    Some((
        Figure {
            value: per / 1024.0,
            source: format!("measured in {}", key(r)),
            reference: Some(key(r)),
        },
        Figure {
            value: per * connections / (1024.0 * 1024.0),
            source: format!(
                "{} KiB a connection × {} connections ({} a client, as in that run)",
                sig3(per / 1024.0),
                sig3(connections),
                sig3(r.connections_per_client.max(1.0))
            ),
            reference: None,
        },
    ))
}

/// One hour, µs.
const HOUR_US: u64 = 3_600_000_000;

/// Poisson arrivals at `rate` per second over an hour, µs.
fn poisson(rng: &mut ChaCha8Rng, rate: f64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut t = 0.0;
    loop {
        t += -(1.0 - rng.random::<f64>()).ln() / rate * 1e6;
        if t >= HOUR_US as f64 {
            return out;
        }
        out.push(t as u64);
    }
}

/// Every `period` µs from `period` to the hour's end.
fn ticks(period: u64) -> impl Iterator<Item = u64> {
    (1..).map(move |k| k * period).take_while(|t| *t < HOUR_US)
}

/// One client's packets over an hour as `t` would send and receive them,
/// and its messages alone, for the workload (seeded: the same workload
/// gives the same answer).
pub fn timeline(w: &Workload, t: Transport) -> (Vec<Packet>, Vec<Packet>, u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let received = poisson(&mut rng, w.rate);
    let sent = poisson(&mut rng, w.sends_per_client_s());
    let p = |at: u64, up: u64, down: u64| Packet { at, up, down };
    let mut msgs: Vec<Packet> = received.iter().map(|&a| p(a, 0, 200)).collect();
    msgs.extend(sent.iter().map(|&a| p(a, 250, 0)));
    let mut all: Vec<Packet> = sent.iter().map(|&a| p(a, 250, 150)).collect();
    let us = |d: std::time::Duration| (d.as_micros() as u64).max(1);
    match t {
        Transport::ShortPoll => all.extend(ticks(us(w.poll_interval)).map(|a| p(a, 150, 250))),
        Transport::LongPoll => {
            let (wait, rtt) = (us(w.long_poll_wait), w.rtt.as_micros() as u64);
            let mut armed = 0u64;
            for &a in &received {
                while armed + wait < a {
                    armed += wait;
                    all.push(p(armed, 150, 150));
                }
                // Answered now, or when the re-arming poll is back.
                let at = a.max(armed);
                all.push(p(at, 150, 350));
                armed = at + rtt;
            }
            while armed + wait < HOUR_US {
                armed += wait;
                all.push(p(armed, 150, 150));
            }
        }
        _ => {
            all.extend(received.iter().map(|&a| p(a, 0, 200)));
            let (period, up, down) = if t == Transport::Sse {
                (us(w.sse_keepalive), 0, 19)
            } else {
                (us(w.ws_ping), 6, 2)
            };
            all.extend(ticks(period).map(|a| p(a, up, down)));
        }
    }
    all.sort_by_key(|x| x.at);
    msgs.sort_by_key(|x| x.at);
    (all, msgs, received.len() as u64)
}

fn radio(w: &Workload, t: Transport, refs: &[Reference]) -> RadioEstimate {
    let model = RadioModel::default();
    let (all, msgs, delivered) = timeline(w, t);
    let window = (0, HOUR_US);
    let r = Radio::of(
        &model,
        radio_time(&model, &all, window),
        radio_time(&model, &msgs, window),
        delivered,
    );
    let measured =
        nearest(w, t, refs, BYTES, |r| r.radio_j_per_client_hour.is_some()).map(|r| Figure {
            value: r.radio_j_per_client_hour.unwrap_or_default(),
            source: format!("measured in {}", key(r)),
            reference: Some(key(r)),
        });
    RadioEstimate {
        j_per_client_hour: r.j_per_client_hour,
        on_share: r.on_share,
        promotions_per_client_hour: r.promotions_per_client_hour,
        overhead_share: r.overhead_share,
        messages_only_j_per_client_hour: r.messages_only_j_per_client_hour,
        source: format!(
            "{} over an hour of one client's packets: messages arriving at {} a second (Poisson), {}",
            RadioModel::NAME,
            sig3(w.rate),
            match t {
                Transport::ShortPoll => format!("a poll every {} s", sig3(w.poll_interval.as_secs_f64())),
                Transport::LongPoll => format!(
                    "a long poll answered at each message or after {} s",
                    sig3(w.long_poll_wait.as_secs_f64())
                ),
                Transport::Sse => format!("a keep-alive every {} s", sig3(w.sse_keepalive.as_secs_f64())),
                _ => format!("a ping every {} s", sig3(w.ws_ping.as_secs_f64())),
            }
        ),
        measured,
    }
}

/// `t`'s figures for `w` from `refs`; None when no reference measured
/// `t`.
pub fn estimate(w: &Workload, t: Transport, refs: &[Reference]) -> Option<Estimate> {
    let (bytes, requests) = wire(w, t, refs)?;
    // The model reads the room's rate, senders, round trip and intervals,
    // not its size: a scenario of a few rooms stands for any workload.
    let s = w
        .scenario(
            "advise",
            w.clients.min(1000),
            std::time::Duration::from_secs(1),
        )
        .ok()?;
    let memory = memory(w, t, refs);
    Some(Estimate {
        transport: t,
        p50_ms: latency(w, &s, t, refs, 0.5)?,
        p99_ms: latency(w, &s, t, refs, 0.99)?,
        bytes_per_msg: bytes,
        requests_per_msg: requests,
        server_cpu_cores: cpu(w, t, refs),
        memory_per_connection_kib: memory.as_ref().map(|m| m.0.clone()),
        server_memory_mib: memory.map(|m| m.1),
        radio: w.mobile.then(|| radio(w, t, refs)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::radio_time;
    use std::time::Duration;

    fn quiet() -> Workload {
        Workload {
            clients: 100,
            rooms: 10,
            rate: 1.0 / 60.0,
            ..Workload::default()
        }
    }

    #[test]
    fn an_sse_client_in_a_silent_room_wakes_for_every_keep_alive() {
        // Keep-alives 15 s apart and no message: each wakes the radio
        // (260.1 ms) and holds it 11.576 s, at 15, 30, ... 3,585 s.
        let w = Workload {
            rate: 1e-9,
            sse_keepalive: Duration::from_secs(15),
            ..quiet()
        };
        let (all, _, _) = timeline(&w, Transport::Sse);
        let t = radio_time(&RadioModel::default(), &all, (0, HOUR_US));
        assert_eq!(t.promotions, 239);
        assert_eq!(t.promotion_us, 239 * 260_100);
        assert_eq!(t.connected_us, 239 * 11_576_000);
        // Messages a minute apart that fall into the 3.4 s between a tail
        // and the next keep-alive stretch a tail over it: fewer promotions.
        let (all, _, _) = timeline(&quiet(), Transport::Sse);
        let t = radio_time(&RadioModel::default(), &all, (0, HOUR_US));
        assert!(
            t.promotions < 239 + 60 && t.on_share() > 239.0 * 11.836 / 3600.0,
            "{t:?}"
        );
    }

    #[test]
    fn short_polls_every_five_seconds_never_let_the_radio_sleep() {
        let w = Workload {
            poll_interval: Duration::from_secs(5),
            ..quiet()
        };
        let (all, _, _) = timeline(&w, Transport::ShortPoll);
        let t = radio_time(&RadioModel::default(), &all, (0, HOUR_US));
        // The first poll at 5 s promotes once; the radio stays connected.
        assert_eq!(t.promotions, 1);
        assert!(t.on_share() > 0.99);
    }

    #[test]
    fn a_long_poll_in_a_silent_room_re_polls_at_its_wait() {
        let w = Workload {
            rate: 1e-9,
            long_poll_wait: Duration::from_secs(30),
            ..quiet()
        };
        let (all, msgs, delivered) = timeline(&w, Transport::LongPoll);
        assert_eq!((delivered, msgs.len()), (0, 0));
        // 30, 60, ... 3,570 s.
        assert_eq!(all.len(), 119);
        assert_eq!(all[0].at, 30_000_000);
    }

    #[test]
    fn the_same_workload_gives_the_same_timeline() {
        let w = quiet();
        assert_eq!(
            timeline(&w, Transport::WebSocket),
            timeline(&w, Transport::WebSocket)
        );
    }
}
