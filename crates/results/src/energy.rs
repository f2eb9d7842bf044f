//! The radio energy a phone would spend on a client's traffic: the LTE RRC
//! state machine of Huang et al., "A Close Examination of Performance and
//! Power Characteristics of 4G LTE Networks" (MobiSys 2012), run over the
//! times and sizes of everything the client sent and received.
//!
//! The model ([`RadioModel`], the paper's Table 3 and Table 4):
//! - **RRC_IDLE**: the radio wakes for paging, `idle_on` every
//!   `idle_cycle` at `idle_on_mw` (43.2 ms every 1.28 s at 594.3 mW: 20.1 mW
//!   on average).
//! - **Promotion**: a packet sent or received while idle first costs
//!   `promotion` at `promotion_mw` (260.1 ms at 1,210.7 mW).
//! - **RRC_CONNECTED**: after each packet the radio stays connected for
//!   `tail` (11.576 s: continuous reception, then short and long DRX) at
//!   `tail_mw` (1,060.0 mW, the tail's base power); a packet inside the
//!   tail restarts it without a promotion.
//! - **Transfer**: while a packet moves, the power is `alpha_up_mw` ×
//!   uplink Mbit/s + `alpha_down_mw` × downlink Mbit/s + `beta_mw` (438.39,
//!   51.97 and 1,288.04 mW); a packet is taken to move at the paper's median
//!   LTE throughput (`up_mbps` 6, `down_mbps` 13), and what that costs
//!   above the tail's power is added. A 300-byte packet takes 0.4 ms up:
//!   the tail, not the bytes, is what a chat client pays for.
//!
//! [`RadioMeter`] runs the state machine one packet at a time, in constant
//! memory (the load generator keeps one per client); [`radio_time`] is the
//! same over a whole timeline. Both give [`RadioTime`]: how long the radio
//! spent in each state within a window, which [`RadioModel::energy_mj`]
//! prices. The timeline is what the client's sockets saw: the model adds
//! no promotion delay to the latencies measured.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The parameters of the LTE power model (`[energy]` in a scenario sets
/// any of them; the defaults are the paper's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RadioModel {
    /// Promotion from RRC_IDLE to RRC_CONNECTED (Table 3: 260.1 ms).
    #[serde(with = "humantime_serde")]
    pub promotion: Duration,
    /// Power during a promotion, mW (Table 3: 1,210.7).
    pub promotion_mw: f64,
    /// How long the radio stays connected after the last packet (Table 3:
    /// 11,576 ms).
    #[serde(with = "humantime_serde")]
    pub tail: Duration,
    /// Power during the tail, mW (Table 3, the tail's base: 1,060.0).
    pub tail_mw: f64,
    /// RRC_IDLE's paging cycle (Table 3: 1,280 ms).
    #[serde(with = "humantime_serde")]
    pub idle_cycle: Duration,
    /// How long the radio is on in each paging cycle (Table 3: 43.2 ms).
    #[serde(with = "humantime_serde")]
    pub idle_on: Duration,
    /// Power while on for paging, mW (Table 3: 594.3).
    pub idle_on_mw: f64,
    /// Transfer power per uplink Mbit/s, mW (Table 4: 438.39).
    pub alpha_up_mw: f64,
    /// Transfer power per downlink Mbit/s, mW (Table 4: 51.97).
    pub alpha_down_mw: f64,
    /// Transfer power's base, mW (Table 4: 1,288.04).
    pub beta_mw: f64,
    /// Uplink throughput a packet is taken to move at, Mbit/s (the paper's
    /// median LTE uplink: 6).
    pub up_mbps: f64,
    /// Downlink throughput, Mbit/s (the paper's median LTE downlink: 13).
    pub down_mbps: f64,
}

impl Default for RadioModel {
    fn default() -> RadioModel {
        RadioModel {
            promotion: Duration::from_micros(260_100),
            promotion_mw: 1210.7,
            tail: Duration::from_micros(11_576_000),
            tail_mw: 1060.0,
            idle_cycle: Duration::from_millis(1280),
            idle_on: Duration::from_micros(43_200),
            idle_on_mw: 594.3,
            alpha_up_mw: 438.39,
            alpha_down_mw: 51.97,
            beta_mw: 1288.04,
            up_mbps: 6.0,
            down_mbps: 13.0,
        }
    }
}

impl RadioModel {
    /// The name run.json and REPORT.md give the model.
    pub const NAME: &'static str = "LTE RRC, Huang et al., MobiSys 2012 (Tables 3 and 4)";

    /// True at the paper's parameters (run.json then leaves `[energy]` out).
    pub fn is_default(&self) -> bool {
        *self == RadioModel::default()
    }

    /// RRC_IDLE's mean power, mW: paging's power over its share of the
    /// cycle.
    pub fn idle_mw(&self) -> f64 {
        self.idle_on_mw * self.idle_on.as_secs_f64() / self.idle_cycle.as_secs_f64().max(1e-9)
    }

    /// Energy, mJ, of `t`: each state's time at its power, plus what
    /// moving the bytes costs above the tail's power.
    pub fn energy_mj(&self, t: &RadioTime) -> f64 {
        let s = |us: u64| us as f64 / 1e6;
        let transfer = |bytes: u64, alpha: f64, mbps: f64| {
            let secs = bytes as f64 * 8.0 / (mbps * 1e6);
            (alpha * mbps + self.beta_mw - self.tail_mw).max(0.0) * secs
        };
        s(t.promotion_us) * self.promotion_mw
            + s(t.connected_us) * self.tail_mw
            + s(t.idle_us()) * self.idle_mw()
            + transfer(t.up_bytes, self.alpha_up_mw, self.up_mbps)
            + transfer(t.down_bytes, self.alpha_down_mw, self.down_mbps)
    }

    /// Checks every parameter: durations above zero and at most an hour
    /// (which keeps every instant the meter adds representable; the idle
    /// on-time within its cycle), powers and throughputs finite and above
    /// zero.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let durations = [
            ("energy.promotion", self.promotion),
            ("energy.tail", self.tail),
            ("energy.idle_cycle", self.idle_cycle),
            ("energy.idle_on", self.idle_on),
        ];
        const HOUR: Duration = Duration::from_secs(3600);
        for (name, d) in durations {
            if d.is_zero() || d > HOUR {
                return Err((
                    name,
                    format!("must be above zero and at most 1h, got {d:?}"),
                ));
            }
        }
        if self.idle_on > self.idle_cycle {
            return Err((
                "energy.idle_on",
                format!(
                    "must be at most energy.idle_cycle ({:?}), got {:?}",
                    self.idle_cycle, self.idle_on
                ),
            ));
        }
        let numbers = [
            ("energy.promotion_mw", self.promotion_mw),
            ("energy.tail_mw", self.tail_mw),
            ("energy.idle_on_mw", self.idle_on_mw),
            ("energy.alpha_up_mw", self.alpha_up_mw),
            ("energy.alpha_down_mw", self.alpha_down_mw),
            ("energy.beta_mw", self.beta_mw),
            ("energy.up_mbps", self.up_mbps),
            ("energy.down_mbps", self.down_mbps),
        ];
        for (name, v) in numbers {
            if !(v.is_finite() && v > 0.0) {
                return Err((name, format!("must be a number above zero, got {v}")));
            }
        }
        Ok(())
    }
}

/// How long a client's radio spent in each state within a window, and the
/// bytes it moved there; sums over clients add up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RadioTime {
    /// Clients summed.
    pub clients: u64,
    /// The window's length, µs, summed over the clients.
    pub window_us: u64,
    /// Promoting, µs.
    pub promotion_us: u64,
    /// Connected (transfers and tails), µs.
    pub connected_us: u64,
    /// Promotions that ended in the window.
    pub promotions: u64,
    /// Packets in the window.
    pub packets: u64,
    /// Bytes sent in the window.
    pub up_bytes: u64,
    /// Bytes received in the window.
    pub down_bytes: u64,
}

impl RadioTime {
    /// Idle, µs: the rest of the window.
    pub fn idle_us(&self) -> u64 {
        self.window_us
            .saturating_sub(self.promotion_us + self.connected_us)
    }

    /// The share of the window the radio was on (promoting or connected).
    pub fn on_share(&self) -> f64 {
        (self.promotion_us + self.connected_us) as f64 / self.window_us.max(1) as f64
    }
}

impl std::ops::Add for RadioTime {
    type Output = RadioTime;
    fn add(self, o: RadioTime) -> RadioTime {
        RadioTime {
            clients: self.clients + o.clients,
            window_us: self.window_us + o.window_us,
            promotion_us: self.promotion_us + o.promotion_us,
            connected_us: self.connected_us + o.connected_us,
            promotions: self.promotions + o.promotions,
            packets: self.packets + o.packets,
            up_bytes: self.up_bytes + o.up_bytes,
            down_bytes: self.down_bytes + o.down_bytes,
        }
    }
}

/// A transport run's radio figures in run.json: the model over every
/// client's packets in the measured window, and over the same clients'
/// messages alone (each message received and each publish sent as one
/// packet, and nothing else): the least any transport could cost them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Radio {
    /// The model ([`RadioModel::NAME`]; `[energy]` in the scenario holds
    /// any parameter changed).
    pub model: String,
    /// Radio energy per client-hour, J.
    pub j_per_client_hour: f64,
    /// The share of the time the radio was on (promoting or connected).
    pub on_share: f64,
    /// Promotions from idle per client-hour: each is also 260 ms a real
    /// phone would add to the message that caused it.
    pub promotions_per_client_hour: f64,
    /// Radio energy per delivered message, mJ.
    pub mj_per_message: f64,
    /// The same clients' messages alone, J per client-hour.
    pub messages_only_j_per_client_hour: f64,
    /// The share of the energy the transport's own traffic caused
    /// (requests, empty answers, keep-alives, pings, handshakes): 1 less
    /// messages-only over all.
    pub overhead_share: f64,
    /// The time in each state, summed over the clients.
    pub time: RadioTime,
    /// The same for the messages alone.
    pub messages_only: RadioTime,
}

impl Radio {
    /// The figures of `time` (every packet) and `messages` (the messages
    /// alone) under `model`, for `delivered` messages.
    pub fn of(model: &RadioModel, time: RadioTime, messages: RadioTime, delivered: u64) -> Radio {
        let per_hour =
            |t: &RadioTime| model.energy_mj(t) / 1000.0 * 3600e6 / t.window_us.max(1) as f64;
        let all = per_hour(&time);
        let ideal = per_hour(&messages);
        Radio {
            model: RadioModel::NAME.into(),
            j_per_client_hour: all,
            on_share: time.on_share(),
            promotions_per_client_hour: time.promotions as f64 * 3600e6
                / time.window_us.max(1) as f64,
            mj_per_message: model.energy_mj(&time) / delivered.max(1) as f64,
            messages_only_j_per_client_hour: ideal,
            overhead_share: if all > 0.0 {
                (1.0 - ideal / all).max(0.0)
            } else {
                0.0
            },
            time,
            messages_only: messages,
        }
    }
}

/// The length of `[a, b)` inside `[w0, w1)`.
fn overlap(a: u64, b: u64, (w0, w1): (u64, u64)) -> u64 {
    b.min(w1).saturating_sub(a.max(w0))
}

/// The RRC state machine over one client's packets, as they come, in
/// constant memory. Times are µs on any clock the window uses too.
#[derive(Debug, Clone)]
pub struct RadioMeter {
    promotion_us: u64,
    tail_us: u64,
    /// The current burst: its first and its last packet.
    burst: Option<(u64, u64)>,
    /// What the bursts closed so far spent in the window.
    time: RadioTime,
}

impl RadioMeter {
    /// A meter for `model`'s timers, before any packet.
    pub fn new(model: &RadioModel) -> RadioMeter {
        RadioMeter {
            promotion_us: model.promotion.as_micros() as u64,
            tail_us: model.tail.as_micros() as u64,
            burst: None,
            time: RadioTime::default(),
        }
    }

    /// A packet at `at` carrying `up` bytes sent and `down` received.
    /// `window` is None while it is not known yet: it starts later than
    /// now, so a burst that ends before this packet lies wholly before it.
    /// Packets may come slightly out of order (from two connections).
    pub fn packet(&mut self, at: u64, up: u64, down: u64, window: Option<(u64, u64)>) {
        match &mut self.burst {
            Some((_, last)) if at <= *last + self.tail_us => *last = (*last).max(at),
            _ => {
                if let (Some(burst), Some(w)) = (self.burst, window) {
                    self.close(burst, w);
                }
                self.burst = Some((at, at));
            }
        }
        if let Some((w0, w1)) = window {
            if at >= w0 && at < w1 {
                self.time.packets += 1;
                self.time.up_bytes += up;
                self.time.down_bytes += down;
            }
        }
    }

    /// Adds a burst's promotion and connected time inside `w`.
    fn close(&mut self, (first, last): (u64, u64), w: (u64, u64)) {
        let start = first.saturating_sub(self.promotion_us);
        self.time.promotion_us += overlap(start, first, w);
        self.time.connected_us += overlap(first, last + self.tail_us, w);
        if first >= w.0 && first < w.1 {
            self.time.promotions += 1;
        }
    }

    /// The client's time in each state within `window`, the last burst
    /// closed.
    pub fn finish(mut self, window: (u64, u64)) -> RadioTime {
        if let Some(burst) = self.burst.take() {
            self.close(burst, window);
        }
        RadioTime {
            clients: 1,
            window_us: window.1.saturating_sub(window.0),
            ..self.time
        }
    }
}

/// One packet of a client's timeline: when, and the bytes each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// When it passed, µs.
    pub at: u64,
    /// Bytes sent.
    pub up: u64,
    /// Bytes received.
    pub down: u64,
}

/// [`RadioMeter`] over a whole timeline (in time order): the client's
/// time in each state within `window`.
pub fn radio_time(model: &RadioModel, packets: &[Packet], window: (u64, u64)) -> RadioTime {
    let mut m = RadioMeter::new(model);
    for p in packets {
        m.packet(p.at, p.up, p.down, Some(window));
    }
    m.finish(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn packets(at_s: &[f64], up: u64, down: u64) -> Vec<Packet> {
        at_s.iter()
            .map(|t| Packet {
                at: (t * 1e6) as u64,
                up,
                down,
            })
            .collect()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-6 * b.abs().max(1.0), "{a} against {b}");
    }

    /// Idle paging: 594.3 mW for 43.2 ms of every 1,280.
    const IDLE_MW: f64 = 594.3 * 43.2 / 1280.0;

    /// One empty packet at 10 s of a minute: one promotion (260.1 ms at
    /// 1,210.7 mW = 314.90 mJ), one tail (11.576 s at 1,060 mW = 12,270.56
    /// mJ), idle the other 48.1639 s (at 20.058 mW = 966.05 mJ): 13,551.52
    /// mJ.
    #[test]
    fn one_packet_costs_a_promotion_and_a_tail() {
        let m = RadioModel::default();
        let t = radio_time(&m, &packets(&[10.0], 0, 0), (0, 60 * S));
        assert_eq!(t.promotions, 1);
        assert_eq!(t.promotion_us, 260_100);
        assert_eq!(t.connected_us, 11_576_000);
        assert_eq!(t.idle_us(), 60 * S - 260_100 - 11_576_000);
        close(IDLE_MW, 20.057625);
        close(
            m.energy_mj(&t),
            0.2601 * 1210.7 + 11.576 * 1060.0 + 48.1639 * IDLE_MW,
        );
        close(m.energy_mj(&t), 13551.5165);
    }

    /// A second packet 5 s later, inside the first one's tail: no second
    /// promotion, the tail runs 11.576 s from the second.
    #[test]
    fn a_packet_inside_the_tail_extends_it_without_a_promotion() {
        let m = RadioModel::default();
        let t = radio_time(&m, &packets(&[10.0, 15.0], 0, 0), (0, 60 * S));
        assert_eq!(t.promotions, 1);
        assert_eq!(t.promotion_us, 260_100);
        assert_eq!(t.connected_us, 5 * S + 11_576_000);
        close(
            m.energy_mj(&t),
            0.2601 * 1210.7 + 16.576 * 1060.0 + (60.0 - 16.8361) * IDLE_MW,
        );
        // Out of order (two connections) is the same.
        let u = radio_time(&m, &packets(&[10.0, 15.0, 14.0], 0, 0), (0, 60 * S));
        assert_eq!(u.connected_us, t.connected_us);
        assert_eq!(u.packets, 3);
    }

    /// A keep-alive every 15 s, longer than the tail: every one promotes.
    /// At 7.5, 22.5, 37.5 and 52.5 s of a minute: 4 promotions (1.0404 s),
    /// three whole tails and the last cut by the window's end at 7.5 s
    /// (42.228 s connected), 16.7316 s idle: 46,356.9 mJ, the radio on
    /// 72.1% of the time, 2,781 J an hour.
    #[test]
    fn a_keep_alive_every_15_s_keeps_the_radio_on_most_of_the_time() {
        let m = RadioModel::default();
        let t = radio_time(&m, &packets(&[7.5, 22.5, 37.5, 52.5], 0, 0), (0, 60 * S));
        assert_eq!(t.promotions, 4);
        assert_eq!(t.promotion_us, 4 * 260_100);
        assert_eq!(t.connected_us, 3 * 11_576_000 + 7_500_000);
        close(t.on_share(), 43.2684 / 60.0);
        let e = m.energy_mj(&t);
        close(e, 1.0404 * 1210.7 + 42.228 * 1060.0 + 16.7316 * IDLE_MW);
        close(e * 60.0 / 1000.0, 2781.4133);
    }

    /// The window cuts what lies outside it: a burst before it counts only
    /// its tail's part inside, and its promotion not at all.
    #[test]
    fn the_window_clips_bursts_and_counts_promotions_inside_it() {
        let m = RadioModel::default();
        let t = radio_time(&m, &packets(&[5.0, 30.0], 0, 0), (10 * S, 40 * S));
        // The first burst's tail runs to 16.576 s; the second promotes at
        // 29.7399 s and its tail runs past 40 s.
        assert_eq!(t.promotions, 1);
        assert_eq!(t.packets, 1);
        assert_eq!(t.promotion_us, 260_100);
        assert_eq!(t.connected_us, 6_576_000 + 10 * S);
        // A meter that learns the window late: a burst that ended before
        // the window was known is wholly before it.
        let mut late = RadioMeter::new(&m);
        late.packet(S, 0, 0, None);
        late.packet(20 * S, 0, 0, None);
        late.packet(30 * S, 0, 0, Some((25 * S, 60 * S)));
        let l = late.finish((25 * S, 60 * S));
        // The burst from 20 s (before the window) runs to 41.576 s.
        assert_eq!(l.promotions, 0);
        assert_eq!(l.connected_us, 16_576_000);
    }

    /// Moving the bytes costs the transfer power above the tail's for the
    /// time they take: 1,300 bytes down at 13 Mbit/s take 0.8 ms at
    /// 51.97 × 13 + 1,288.04 = 1,963.65 mW, 903.65 above the tail.
    #[test]
    fn bytes_cost_the_transfer_power_above_the_tail() {
        let m = RadioModel::default();
        let empty = radio_time(&m, &packets(&[10.0], 0, 0), (0, 60 * S));
        let full = radio_time(&m, &packets(&[10.0], 0, 1300), (0, 60 * S));
        assert_eq!(full.down_bytes, 1300);
        close(m.energy_mj(&full) - m.energy_mj(&empty), 903.65 * 0.0008);
    }

    /// Two clients a minute each: one with a single packet, one with four
    /// 15 s keep-alives; their messages alone are the first's packet.
    #[test]
    fn run_figures_are_per_client_hour_and_split_the_overhead() {
        let m = RadioModel::default();
        let w = (0, 60 * S);
        let quiet = radio_time(&m, &packets(&[10.0], 0, 0), w);
        let kept = radio_time(&m, &packets(&[7.5, 22.5, 37.5, 52.5], 0, 0), w);
        let msgs = radio_time(&m, &packets(&[10.0], 0, 0), w)
            + RadioTime {
                clients: 1,
                window_us: 60 * S,
                ..RadioTime::default()
            };
        let r = Radio::of(&m, quiet + kept, msgs, 2);
        let all_mj = 13551.5165 + 46356.8884;
        close(r.j_per_client_hour, all_mj / 1000.0 * 60.0 / 2.0);
        close(r.mj_per_message, all_mj / 2.0);
        close(r.promotions_per_client_hour, 5.0 * 60.0 / 2.0);
        close(r.on_share, (11.8361 + 43.2684) / 120.0);
        // The second client's messages-only minute is all idle.
        let ideal_mj = 13551.5165 + 60.0 * IDLE_MW;
        close(
            r.messages_only_j_per_client_hour,
            ideal_mj / 1000.0 * 60.0 / 2.0,
        );
        close(r.overhead_share, 1.0 - ideal_mj / all_mj);
    }

    #[test]
    fn sums_add_and_bad_parameters_are_named() {
        let m = RadioModel::default();
        let a = radio_time(&m, &packets(&[10.0], 1, 0), (0, 60 * S));
        let b = a + a;
        assert_eq!(b.clients, 2);
        assert_eq!(b.window_us, 120 * S);
        close(m.energy_mj(&b), 2.0 * m.energy_mj(&a));
        assert!(m.check().is_ok());
        let bad = RadioModel {
            idle_on: Duration::from_secs(2),
            ..m
        };
        assert_eq!(
            bad.check().unwrap_err(),
            (
                "energy.idle_on",
                "must be at most energy.idle_cycle (1.28s), got 2s".into()
            )
        );
        let bad = RadioModel {
            tail_mw: f64::NAN,
            ..m
        };
        assert_eq!(bad.check().unwrap_err().0, "energy.tail_mw");
    }
}
