//! Simulated chat clients: one receive driver per transport, one open-loop
//! send loop, and the inbox every driver hands messages to.
//!
//! A client is a tokio task. Receivers read the room from `after=0` until
//! they see the control message that ends the run; senders follow their
//! [`crate::SendSchedule`] and publish by POST on a second keep-alive
//! connection, or over the WebSocket itself. Every connection is made by
//! the run's [`crate::dial::Dialer`].
//!
//! One file per job: [`context`] (what the clients share, which client is
//! which), `inbox` (latency and the delivery audit), `dropper` (connection
//! drops), `send` (the send loop), and one receiver per transport: `poll`
//! (short and long polling), [`sse`], `websocket` and `webtransport`. The clients of
//! another stack's profile (`target.profile`) are in `socketio` and
//! `generic`, over what they share in `foreign`.

pub mod context;
mod dropper;
mod foreign;
mod generic;
mod inbox;
mod poll;
mod send;
mod socketio;
pub mod sse;
mod websocket;
mod webtransport;

pub use context::{ClientSpec, RunCtx, STOP_FROM};
pub use sse::{SseEvent, SseParser};

use crate::dial::SharedH2;
use crate::drops::Away;
use crate::Transport;
use chatbench_results::target::Profile;
use poll::poll_receiver;
use send::http_sender;
use sse::sse_receiver;
use std::sync::Arc;
use websocket::websocket_client;

/// Runs one client until the run ends.
pub async fn run_client(ctx: Arc<RunCtx>, spec: ClientSpec) {
    let t = ctx.transport;
    let room = ctx.rooms[spec.room].clone();
    match ctx.scenario.target.profile {
        Profile::Chatbench => {}
        Profile::Socketio => return socketio::socketio_client(ctx, spec, &room).await,
        Profile::Generic => return generic::generic_client(ctx, spec, &room).await,
    }
    // The receiver makes the client's drops; the sender follows them.
    let away = Arc::new(Away::default());
    // Over HTTP/2, the sender's publishes and the receiver's polls or
    // stream share one connection.
    let h2 = Arc::new(SharedH2::default());
    match t {
        Transport::WebSocket => websocket_client(ctx, spec, &room).await,
        Transport::WebTransport => webtransport::webtransport_client(ctx, spec, &room).await,
        Transport::ShortPoll | Transport::LongPoll | Transport::Sse => {
            let sender = spec.sender.map(|s| {
                let ctx = ctx.clone();
                let room = room.clone();
                let away = away.clone();
                let h2 = h2.clone();
                let sends = ctx.sends.handle().clone();
                // Its publishes are answered before it ends.
                let sending = context::Sending::new(&ctx);
                sends.spawn(async move {
                    http_sender(ctx, spec.id, s, &room, &away, &h2).await;
                    drop(sending);
                })
            });
            match t {
                Transport::Sse => sse_receiver(ctx.clone(), spec, &room, away, &h2).await,
                _ => poll_receiver(ctx.clone(), spec, &room, away, &h2).await,
            }
            if let Some(s) = sender {
                // Sending ended before the drain, unless the run was aborted.
                let _ = s.await;
            }
            // The sender and receiver are done with the HTTP/2 connection.
            h2.close().await;
        }
    }
}
