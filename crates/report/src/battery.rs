//! `REPORT.md`'s "Battery" section: what each transport's traffic would
//! cost a phone's LTE radio ([`chatbench_results::energy`]).

use chatbench_results::energy::{Radio, RadioModel};
use chatbench_results::run_file::RunFile;
use std::fmt::Write;

/// The median of `v` (the middle value, or the mean of the two middle).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Shown for every run whose runs carry radio figures.
pub(crate) fn battery(o: &mut String, run: &RunFile) {
    if run.runs.iter().all(|r| r.radio.is_none()) {
        return;
    }
    let s = &run.scenario;
    let m = &s.energy;
    let _ = writeln!(o, "\n## Battery\n");
    let _ = writeln!(
        o,
        "What each transport's traffic would cost a phone's radio, by the LTE model of {}{}: every packet a client sent or received in the measured window, as its sockets saw it, drives the radio from idle (paging, {:.1} mW on average) through a promotion ({:.1} ms at {:.1} mW) when a packet comes while it is idle, then keeps it connected for {:.3} s at {:.1} mW after each packet. \
**Messages only** runs the same model over the same clients' messages alone, one packet for each message received and each publish sent: what a transport with no requests, empty answers, keep-alives, pings or handshakes would cost. The rest is the transport's own. \
Per client-hour figures scale the {} s measured window, so an interval longer than the window (a keep-alive, a quiet room's gap) is not seen in them; the latencies above are loopback's, without the {:.0} ms a promotion would add on a phone.\n",
        RadioModel::NAME,
        if m.is_default() { "" } else { ", with the parameters `[energy]` sets" },
        m.idle_mw(),
        m.promotion.as_secs_f64() * 1000.0,
        m.promotion_mw,
        m.tail.as_secs_f64(),
        m.tail_mw,
        s.duration.as_secs_f64(),
        m.promotion.as_secs_f64() * 1000.0,
    );
    let sweeps = s.points() > 1;
    let _ = writeln!(
        o,
        "| {}transport | J per client-hour | radio on | promotions per client-hour | mJ per message | messages only, J per client-hour | the transport's own |\n|{}---|---:|---:|---:|---:|---:|---:|",
        if sweeps { "at | " } else { "" },
        if sweeps { "---|" } else { "" },
    );
    for p in 0..s.points() {
        for t in &s.transports {
            let radios: Vec<&Radio> = run
                .runs
                .iter()
                .filter(|r| r.point == p && r.transport == *t)
                .filter_map(|r| r.radio.as_ref())
                .collect();
            if radios.is_empty() {
                continue;
            }
            let med = |f: &dyn Fn(&Radio) -> f64| median(radios.iter().map(|r| f(r)).collect());
            let at = if sweeps {
                format!("{} | ", s.point_label(p).unwrap_or_default())
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "| {at}{t} | {:.0} | {:.1}% | {:.0} | {:.1} | {:.0} | {:.0}% |",
                med(&|r| r.j_per_client_hour),
                med(&|r| r.on_share) * 100.0,
                med(&|r| r.promotions_per_client_hour),
                med(&|r| r.mj_per_message),
                med(&|r| r.messages_only_j_per_client_hour),
                med(&|r| r.overhead_share) * 100.0,
            );
        }
    }
}
