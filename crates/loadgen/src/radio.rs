//! Each client's radio, as a phone's LTE modem would see its traffic
//! ([`chatbench_results::energy`]): the counted sockets tell a client's
//! [`ClientRadio`] of every read and write, and its inbox and sender of
//! every message, and the meters run the RRC state machine as they come,
//! in constant memory per client.
//!
//! A read or a write is one packet to the model: TCP's acknowledgements and
//! segments split from a read are not seen, but they travel within
//! milliseconds of what is, and the model's tail is 11.6 s, so they would
//! not move a promotion or a tail by more than that.

use chatbench_results::energy::{RadioMeter, RadioModel, RadioTime};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// The measured window, µs since the UNIX epoch, once traffic starts.
type Window = Arc<OnceLock<(u64, u64)>>;

/// One client's two meters: every packet, and its messages alone.
#[derive(Debug)]
pub struct ClientRadio {
    window: Window,
    wire: Mutex<RadioMeter>,
    messages: Mutex<RadioMeter>,
}

fn locked(m: &Mutex<RadioMeter>) -> MutexGuard<'_, RadioMeter> {
    // A meter holds plain sums: one a panicking holder left is still whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClientRadio {
    /// A read or write at `at` (µs since the UNIX epoch) of `up` bytes sent
    /// and `down` received.
    pub fn packet(&self, at: u64, up: u64, down: u64) {
        locked(&self.wire).packet(at, up, down, self.window.get().copied());
    }

    /// A message received or a publish sent at `at`: the one packet an
    /// ideal transport would spend on it.
    pub fn message(&self, at: u64, up: u64, down: u64) {
        locked(&self.messages).packet(at, up, down, self.window.get().copied());
    }
}

/// The radios of one transport run's clients in this process.
#[derive(Debug)]
pub struct Radios {
    model: RadioModel,
    window: Window,
    clients: Mutex<HashMap<u64, Arc<ClientRadio>>>,
}

impl Radios {
    /// Radios under `model`, before traffic.
    pub fn new(model: RadioModel) -> Radios {
        Radios {
            model,
            window: Arc::new(OnceLock::new()),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Client `key`'s radio, made on first use.
    pub fn client(&self, key: u64) -> Arc<ClientRadio> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(key)
            .or_insert_with(|| {
                Arc::new(ClientRadio {
                    window: self.window.clone(),
                    wire: Mutex::new(RadioMeter::new(&self.model)),
                    messages: Mutex::new(RadioMeter::new(&self.model)),
                })
            })
            .clone()
    }

    /// Sets the measured window, `[from, to)` in µs since the UNIX epoch,
    /// when traffic starts (before it, every packet lies before it).
    pub fn start(&self, from: u64, to: u64) {
        let _ = self.window.set((from, to));
    }

    /// Every client's time in each state within the window, summed: over
    /// all their packets, and over their messages alone. Zero when traffic
    /// never started.
    pub fn finish(&self) -> (RadioTime, RadioTime) {
        let Some(&window) = self.window.get() else {
            return Default::default();
        };
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = (RadioTime::default(), RadioTime::default());
        for c in clients.values() {
            all.0 = all.0 + locked(&c.wire).clone().finish(window);
            all.1 = all.1 + locked(&c.messages).clone().finish(window);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    /// Two clients, one keeping its radio up with packets, both told of the
    /// same message; packets before the window only set the state.
    #[test]
    fn clients_are_metered_apart_and_summed() {
        let r = Radios::new(RadioModel::default());
        let (a, b) = (r.client(1), r.client(2));
        assert!(Arc::ptr_eq(&a, &r.client(1)));
        a.packet(S, 100, 0);
        r.start(10 * S, 70 * S);
        for t in [20, 30, 40] {
            a.packet(t * S, 0, 50);
        }
        for c in [&a, &b] {
            c.message(30 * S, 0, 40);
        }
        let (wire, messages) = r.finish();
        assert_eq!(wire.clients, 2);
        assert_eq!(wire.window_us, 120 * S);
        assert_eq!(wire.packets, 3);
        assert_eq!(wire.down_bytes, 150);
        assert_eq!(wire.up_bytes, 0);
        // a: promoted at 20 s (its 1 s packet's tail ended at 12.576 s),
        // then connected to 51.576 s.
        assert_eq!(wire.promotions, 1);
        assert_eq!(wire.connected_us, 2_576_000 + 31_576_000);
        assert_eq!(messages.promotions, 2);
        assert_eq!(messages.connected_us, 2 * 11_576_000);
    }

    #[test]
    fn nothing_is_measured_without_a_start() {
        let r = Radios::new(RadioModel::default());
        r.client(1).packet(S, 1, 1);
        assert_eq!(r.finish(), (RadioTime::default(), RadioTime::default()));
    }
}
