//! Break-even points: where one transport starts to cost more than another
//! (REPORT.md "Break-even points").
//!
//! - **Bytes: short polling against WebSocket.** Per delivered message,
//!   short polling at interval `P` costs `N·C/(P·D) + r`: `N` pollers each
//!   paying `C` bytes for a poll besides the messages in it (its request,
//!   the answer's head and JSON envelope, measured), `D` deliveries a
//!   second, and `r` what is left per delivery when the polls' own cost is
//!   taken out (the message inside an answer, a share of the publishes),
//!   which does not depend on `P`. It equals WebSocket's `w` per delivery
//!   at `P* = N·C / (D·(w − r))`, and never when `w ≤ r`: then polling
//!   costs more at any interval, as an HTTP publish costs more than a
//!   WebSocket frame, and unless a room's receivers are many, what a frame
//!   costs more per delivery than a message inside a poll answer does not
//!   make up for it. Bytes and deliveries are both counted by when they
//!   were read in the measured window, so a poll that brings a window's
//!   last messages after its end does not bias either.
//! - **Requests: long polling against short polling.** A long poll is
//!   answered at the first message after it is armed (or at its `wait`),
//!   then re-arms, which takes `t` (a round trip); messages that arrive in
//!   the meantime are answered as soon as it is back. With Poisson
//!   arrivals at `λ` into the room the mean cycle is
//!   `t + e^(−λt)·(1 − e^(−λ·wait))/λ`, and a receiver's polls per second
//!   its inverse. Short polling makes `1/P`. Long polling makes more once
//!   `λ` passes the rate `λ*` at which the cycle is `P`.
//!
//! Both are checked against a sweep that crosses them: where the measured
//! difference changes sign between two sweep points, the crossing is
//! interpolated (in `1/P` for bytes, in `λ` for requests).

use crate::run_file::{RunFile, TransportRun};
use crate::Transport;

/// Long polling's requests per second per receiver (see the module).
/// `rate` messages per second into the room, `rearm` and `wait` in
/// seconds.
pub fn long_poll_requests_per_s(rate: f64, rearm: f64, wait: f64) -> f64 {
    let armed = if rate > 0.0 {
        (-rate * rearm).exp() * (1.0 - (-rate * wait).exp()) / rate
    } else {
        wait
    };
    1.0 / (rearm + armed).max(1e-9)
}

/// The message rate into a room above which long polling makes more
/// requests per receiver than short polling every `interval` s; None when
/// no rate does (the interval is no longer than the re-arm: short polling
/// always makes more) or every rate does (the interval is longer than a
/// whole idle long-poll cycle, `rearm + wait`).
pub fn long_poll_request_break_even(interval: f64, rearm: f64, wait: f64) -> Option<f64> {
    if interval <= rearm || interval >= rearm + wait {
        return None;
    }
    // The cycle falls with the rate: bisect in log space.
    let (mut lo, mut hi) = (1e-9f64, 1e9f64);
    for _ in 0..200 {
        let mid = (lo * hi).sqrt();
        if 1.0 / long_poll_requests_per_s(mid, rearm, wait) > interval {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some((lo * hi).sqrt())
}

/// The interval at which short polling's bytes per delivery equal
/// `other`'s (see the module): `pollers · poll_bytes / (deliveries_per_s ·
/// (other − rest))`; None when `other ≤ rest` (no interval).
pub fn short_poll_bytes_break_even(
    pollers: f64,
    poll_bytes: f64,
    deliveries_per_s: f64,
    rest_per_delivery: f64,
    other_per_delivery: f64,
) -> Option<f64> {
    let gap = deliveries_per_s * (other_per_delivery - rest_per_delivery);
    (gap > 0.0 && pollers > 0.0 && poll_bytes > 0.0).then(|| pollers * poll_bytes / gap)
}

/// Where `f(x)` (points in order of `x`) changes sign, interpolated
/// linearly in `x`.
pub fn crossing(points: &[(f64, f64)]) -> Option<f64> {
    points.windows(2).find_map(|w| {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if y0 == 0.0 {
            return Some(x0);
        }
        (y0.signum() != y1.signum() && y1 != y0).then(|| x0 + (x1 - x0) * y0 / (y0 - y1))
    })
}

/// The bytes break-even at one sweep point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BytesPoint {
    /// The sweep point.
    pub point: usize,
    /// The short-poll interval there, s.
    pub interval_s: f64,
    /// Short polling's measured bytes per delivery.
    pub short_poll: f64,
    /// WebSocket's.
    pub websocket: f64,
    /// Bytes of one poll besides the messages in it (measured).
    pub poll_bytes: f64,
    /// Short polling's bytes per delivery without its polls' own cost.
    pub rest: f64,
    /// Deliveries per second (WebSocket's).
    pub deliveries_per_s: f64,
    /// Clients polling.
    pub pollers: f64,
    /// The break-even interval from these figures, s.
    pub break_even_s: Option<f64>,
}

/// The requests break-even at one sweep point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestsPoint {
    /// The sweep point.
    pub point: usize,
    /// The short-poll interval there, s.
    pub interval_s: f64,
    /// Messages per second into a room there, as sent in the long-poll
    /// run's measured window.
    pub room_rate: f64,
    /// Short polling's measured polls per second per receiver.
    pub short_poll: f64,
    /// Long polling's.
    pub long_poll: f64,
    /// Long polling's, by the model.
    pub long_poll_model: f64,
    /// The break-even room rate from the model, messages per second.
    pub break_even_rate: Option<f64>,
}

/// Both break-evens over a run's sweep points, and where the measurements
/// cross when the sweep crosses them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BreakEven {
    /// Points with short polling and WebSocket.
    pub bytes: Vec<BytesPoint>,
    /// The interval, s, where the measured bytes per second cross, when
    /// the scenario sweeps `short_poll.interval` across it.
    pub bytes_crossing_s: Option<f64>,
    /// Points with short and long polling.
    pub requests: Vec<RequestsPoint>,
    /// The room rate where the measured polls per second cross, when the
    /// scenario sweeps `messages.rate` across it.
    pub requests_crossing_rate: Option<f64>,
}

fn first_run(run: &RunFile, t: Transport, point: usize) -> Option<&TransportRun> {
    run.runs
        .iter()
        .find(|r| r.transport == t && r.point == point && r.repetition == 0)
}

/// Messages received in the measured window, by receipt time (whole
/// seconds of the timeline).
fn received_in_window(r: &TransportRun, warmup_s: u64, duration_s: u64) -> u64 {
    r.timeline
        .iter()
        .filter(|x| x.second >= warmup_s && x.second < warmup_s + duration_s)
        .map(|x| x.received)
        .sum()
}

/// Polls per second per client of a polling run (publishes taken out).
fn polls_per_client_s(r: &TransportRun, clients: f64) -> f64 {
    let secs = r.measured_seconds.max(1e-9);
    r.wire.measured.requests.saturating_sub(r.audit.sent) as f64 / secs / clients.max(1.0)
}

impl BreakEven {
    /// The break-evens of `run` (first repetition of each point).
    pub fn of(run: &RunFile) -> BreakEven {
        let s = &run.scenario;
        let mut out = BreakEven::default();
        for point in 0..s.points() {
            let Ok(at) = s.at_point(point) else { continue };
            let clients = at.total_clients() as f64;
            let interval_s = at.short_poll.interval.as_secs_f64();
            let rtt = at.network.rtt.as_secs_f64();
            let sp = first_run(run, Transport::ShortPoll, point);
            let (warmup_s, duration_s) = (at.warmup.as_secs(), at.duration.as_secs());
            if let (Some(sp), Some(ws)) = (sp, first_run(run, Transport::WebSocket, point)) {
                let w = &sp.wire.measured;
                let sp_got = received_in_window(sp, warmup_s, duration_s);
                let ws_got = received_in_window(ws, warmup_s, duration_s);
                if w.answered_polls > 0 && w.poll_overhead_bytes > 0 && sp_got > 0 && ws_got > 0 {
                    let c = w.poll_overhead_bytes as f64 / w.answered_polls as f64;
                    let bytes = (w.bytes_up + w.bytes_down) as f64;
                    let per = bytes / sp_got as f64;
                    let rest = (bytes - w.answered_polls as f64 * c) / sp_got as f64;
                    let ws_per = (ws.wire.measured.bytes_up + ws.wire.measured.bytes_down) as f64
                        / ws_got as f64;
                    let d = ws_got as f64 / ws.measured_seconds.max(1e-9);
                    out.bytes.push(BytesPoint {
                        point,
                        interval_s,
                        short_poll: per,
                        websocket: ws_per,
                        poll_bytes: c,
                        rest,
                        deliveries_per_s: d,
                        pollers: clients,
                        break_even_s: short_poll_bytes_break_even(clients, c, d, rest, ws_per),
                    });
                }
            }
            if let (Some(sp), Some(lp)) = (sp, first_run(run, Transport::LongPoll, point)) {
                // The rate the seeded schedules gave in the window, not
                // the nominal one: a few messages more or less move the
                // long polls' count by as much.
                let room_rate = lp.audit.sent as f64
                    / lp.measured_seconds.max(1e-9)
                    / at.clients.rooms.max(1) as f64;
                let wait = at.long_poll.wait.as_secs_f64();
                out.requests.push(RequestsPoint {
                    point,
                    interval_s,
                    room_rate,
                    short_poll: polls_per_client_s(sp, clients),
                    long_poll: polls_per_client_s(lp, clients),
                    long_poll_model: long_poll_requests_per_s(room_rate, rtt, wait),
                    break_even_rate: long_poll_request_break_even(interval_s, rtt, wait),
                });
            }
        }
        let param = s.sweep.as_ref().map(|sw| sw.parameter.as_str());
        if param == Some("short_poll.interval") {
            let mut pts: Vec<(f64, f64)> = out
                .bytes
                .iter()
                .map(|b| (1.0 / b.interval_s.max(1e-9), b.short_poll - b.websocket))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            out.bytes_crossing_s = crossing(&pts).map(|x| 1.0 / x);
        }
        if param == Some("messages.rate") || param == Some("clients.senders_per_room") {
            let mut pts: Vec<(f64, f64)> = out
                .requests
                .iter()
                .map(|r| (r.room_rate, r.long_poll - r.short_poll))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            out.requests_crossing_rate = crossing(&pts);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_polling_requests_follow_the_message_rate_and_the_wait() {
        // Idle: one poll per wait (plus the re-arm).
        assert!((long_poll_requests_per_s(0.0, 0.0, 25.0) - 0.04).abs() < 1e-12);
        // Busy, instant re-arm: one per message.
        assert!((long_poll_requests_per_s(10.0, 0.0, 25.0) - 10.0).abs() < 1e-6);
        // A long re-arm batches: at most one poll per re-arm.
        let r = long_poll_requests_per_s(1000.0, 0.1, 25.0);
        assert!((r - 10.0).abs() < 1e-6, "{r}");
        // Short polls every second against long polls waiting 25 s:
        // break-even at about one message a second into the room.
        let l = long_poll_request_break_even(1.0, 0.0, 25.0).unwrap();
        assert!((l - 1.0).abs() < 1e-6, "{l}");
        assert!(
            (1.0 / long_poll_requests_per_s(l, 0.0, 25.0) - 1.0).abs() < 1e-9,
            "the cycle at the break-even is the interval"
        );
        // A round trip of 150 ms: the re-arm batches messages, and the
        // break-even rate is a little higher (the cycle
        // 0.15 + e^(−0.15λ)/λ is 1 s at λ ≈ 1.011).
        let slow = long_poll_request_break_even(1.0, 0.15, 25.0).unwrap();
        assert!(slow > 1.005 && slow < 1.02, "{slow}");
        // Never: polling faster than a long poll can re-arm, or slower
        // than an idle long poll's cycle.
        assert_eq!(long_poll_request_break_even(0.1, 0.15, 25.0), None);
        assert_eq!(long_poll_request_break_even(30.0, 0.0, 25.0), None);
    }

    #[test]
    fn short_polling_bytes_break_even_where_polls_pay_for_the_gap() {
        // 1,000 pollers at 200 bytes a poll, 10,000 deliveries a second at
        // 170 bytes each besides the polls, against WebSocket's 174:
        // 200,000 / 40,000 = 5 s.
        assert_eq!(
            short_poll_bytes_break_even(1000.0, 200.0, 10_000.0, 170.0, 174.0),
            Some(5.0)
        );
        assert_eq!(
            short_poll_bytes_break_even(1000.0, 200.0, 10_000.0, 175.0, 174.0),
            None
        );
        assert_eq!(
            short_poll_bytes_break_even(1000.0, 0.0, 10_000.0, 170.0, 174.0),
            None
        );
    }

    #[test]
    fn crossings_are_interpolated_where_the_sign_changes() {
        assert_eq!(crossing(&[(1.0, -2.0), (2.0, -1.0), (3.0, 1.0)]), Some(2.5));
        assert_eq!(crossing(&[(1.0, 3.0), (2.0, 1.0)]), None);
        assert_eq!(crossing(&[(1.0, 0.0), (2.0, 1.0)]), Some(1.0));
        assert_eq!(crossing(&[]), None);
    }
}
