//! How late a wait for an instant ends: tokio's timer against the load
//! generator's `SendTimer`. Each benchmark returns the summed lateness, not
//! the wait, so criterion's figure is the mean lateness per wait of 300 µs.
//!
//! `cargo bench -p chatbench-loadgen --bench send_timer`

use chatbench_loadgen::clock::{unix_now_us, RunClock, SendTimer};
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_micros(300);

fn unix_now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn lateness(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let timer = SendTimer::start().expect("the timer thread");
    let clock = RunClock::starting_at(unix_now_us());
    let mut g = c.benchmark_group("lateness of a 300 µs wait");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    g.bench_function("tokio::time::sleep_until", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut late = Duration::ZERO;
                for _ in 0..iters {
                    let at = Instant::now() + WAIT;
                    tokio::time::sleep_until(at.into()).await;
                    late += Instant::now().saturating_duration_since(at);
                }
                late
            })
        })
    });
    for (name, spin) in [
        ("SendTimer::wait_until", false),
        ("SendTimer::wait_until_spinning", true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut late = Duration::ZERO;
                    for _ in 0..iters {
                        let at = clock.now_us() + WAIT.as_micros() as u64;
                        if spin {
                            timer.wait_until_spinning(&clock, at).await;
                        } else {
                            timer.wait_until(&clock, at).await;
                        }
                        // In ns: the spinning wait is often late by less than 1 µs.
                        let due = (clock.t0_unix_us + at) as u128 * 1000;
                        late += Duration::from_nanos(unix_now_ns().saturating_sub(due) as u64);
                    }
                    late
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, lateness);
criterion_main!(benches);
