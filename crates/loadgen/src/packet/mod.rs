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
pub mod trace;
pub mod tun;
