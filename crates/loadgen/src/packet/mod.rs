//! The packet-level link (`[network] mode = "packet"`): the clients' IP
//! packets cross a user-space link between two TUN devices, below the
//! kernel's TCP, so that loss, queues and a cellular trace's capacity meet
//! TCP's retransmissions and congestion window as they do on a real
//! network. Mahimahi's shells are the model.
//!
//! - [`model`]: one direction of the link, a pure function of the packets
//!   offered to it (loss, drop-tail queue, rate or trace, delay);
//! - [`trace`]: Mahimahi's trace format;
//! - [`tun`]: a TUN device; [`netns`]: the clients' network namespace and
//!   the thread that makes sockets in it;
//! - [`forwarder`]: the running link ([`forwarder::PacketLink`]): the
//!   namespace, a TUN device on each side, and the forwarder thread between
//!   them.

pub mod forwarder;
pub mod model;
pub mod netns;
pub mod tun;

/// Mahimahi's trace format (in the results crate, which checks a
/// scenario's traces when it loads it).
pub use chatbench_results::trace;

use crate::scenario::{Network, NetworkMode};
use forwarder::PacketLinkSpec;
use model::{Capacity, DirectionSpec, Loss, QueueLimit};

/// What run.json says of a link that ran ([`forwarder::PacketLink::stop`]).
pub fn report(r: forwarder::ForwarderReport) -> crate::results::LinkReport {
    crate::results::LinkReport {
        up: r.up,
        down: r.down,
        forwarder_cpu_ms: r.cpu_ms,
    }
}

/// How `run.json` names the mode.
pub const MODE: &str = "packet-level, between TUN devices below the kernel's TCP";

/// The packet link `[network]` asks for, None in socket mode: half the
/// round trip each way (or `delay_up` and the rest), the jitter (and
/// whether it may reorder), the loss, the queue, and the bandwidth
/// or each direction's trace; an error when a trace cannot be read.
pub fn spec_of(n: &Network, seed: u64) -> Option<Result<PacketLinkSpec, String>> {
    if n.mode != NetworkMode::Packet {
        return None;
    }
    let loss = if n.loss == 0.0 {
        Loss::None
    } else if n.loss_burst > 1.0 {
        Loss::Bursty {
            rate: n.loss,
            mean_burst: n.loss_burst,
        }
    } else {
        Loss::Independent(n.loss)
    };
    let (delay_up, delay_down) = n.delays();
    let direction = DirectionSpec {
        delay_us: delay_up.as_micros() as u64,
        jitter_us: n.jitter.as_micros() as u64,
        reorder: n.reorder,
        loss,
        queue: match (n.queue_bytes, n.queue_packets) {
            (Some(b), _) => QueueLimit::Bytes(b),
            (None, Some(p)) => QueueLimit::Packets(p),
            (None, None) => QueueLimit::Unbounded,
        },
        capacity: match n.bandwidth_bps() {
            Ok(Some(bps)) => Capacity::Rate(bps),
            _ => Capacity::Unlimited,
        },
    };
    // A direction with a trace follows it instead of the bandwidth. The
    // scenario's loading read both traces already.
    let traced = |path: &Option<String>, d: &DirectionSpec| -> Result<DirectionSpec, String> {
        let mut d = d.clone();
        if let Some(p) = path {
            d.capacity = Capacity::Trace(std::sync::Arc::new(trace::Trace::read(
                std::path::Path::new(p),
            )?));
        }
        Ok(d)
    };
    let downward = DirectionSpec {
        delay_us: delay_down.as_micros() as u64,
        ..direction.clone()
    };
    Some(
        traced(&n.trace_up, &direction)
            .and_then(|up| Ok((up, traced(&n.trace_down, &downward)?)))
            .map(|(up, down)| PacketLinkSpec { up, down, seed }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_scenario_sets_both_directions() {
        let mut n = Network::default();
        assert!(spec_of(&n, 1).is_none(), "socket mode has no packet link");
        n.mode = NetworkMode::Packet;
        n.rtt = Duration::from_millis(50);
        n.jitter = Duration::from_millis(5);
        n.loss = 0.02;
        n.loss_burst = 3.0;
        n.queue_packets = Some(100);
        n.bandwidth = "2Mbit".into();
        let s = spec_of(&n, 9).unwrap().unwrap();
        let want = DirectionSpec {
            delay_us: 25_000,
            jitter_us: 5_000,
            reorder: false,
            loss: Loss::Bursty {
                rate: 0.02,
                mean_burst: 3.0,
            },
            queue: QueueLimit::Packets(100),
            capacity: Capacity::Rate(2_000_000),
        };
        assert_eq!(
            (s.up.clone(), s.down.clone(), s.seed),
            (want.clone(), want, 9)
        );
        n.loss_burst = 1.0;
        n.queue_packets = None;
        n.queue_bytes = Some(64_000);
        let s = spec_of(&n, 9).unwrap().unwrap();
        assert_eq!(
            (s.up.loss, s.up.queue),
            (Loss::Independent(0.02), QueueLimit::Bytes(64_000))
        );
        // An uneven split: the uplink's delay, and the rest down.
        n.delay_up = Some(Duration::from_millis(35));
        n.reorder = true;
        let s = spec_of(&n, 9).unwrap().unwrap();
        assert_eq!(
            (s.up.delay_us, s.down.delay_us, s.up.reorder, s.down.reorder),
            (35_000, 15_000, true, true)
        );
        n.trace_down = Some("no/such.down".into());
        assert_eq!(
            spec_of(&n, 9).unwrap().unwrap_err(),
            "no/such.down: cannot read the trace: No such file or directory (os error 2)"
        );
    }
}
