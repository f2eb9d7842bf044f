//! A capacity search's REPORT.md, its console summary and its chart (p99
//! latency and server CPU against the deliveries each step made).

use crate::charts::{
    color, e, fmt_ms, render, series, titled_with_legend, transport_keys, trim_num, y_range, Chart,
    DrawResult, Key, SeriesData,
};
use crate::ReportError;
use chatbench_results::capacity::{CapacityFile, TransportSearch, Verdict};
use chatbench_results::fmt::{fmt_us, sig3};
use chatbench_results::Transport;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Holds => "held".into(),
        Verdict::Breaks(why) => format!("broke: {why}"),
        Verdict::LoadgenLimited(why) => format!("LOAD GENERATOR LIMITED: {why}"),
        Verdict::Failed(why) => format!("failed: {why}"),
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or("-".into(), f)
}

/// The knee table: a row per transport.
fn knees(file: &CapacityFile) -> String {
    let mut s = String::new();
    let param = file
        .scenario
        .search
        .as_ref()
        .map_or("value", |x| x.parameter.as_str());
    let _ = writeln!(
        s,
        "| transport | knee ({param}) | deliveries/s | per server core | per server CPU-second | p50 / p99 | connections per GiB | stopped because |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---|---:|---|");
    for t in &file.transports {
        match &t.knee {
            Some(k) => {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} / {} | {} | {} |",
                    t.transport,
                    sig3(k.value),
                    sig3(k.delivered_per_s),
                    opt(k.per_server_core, sig3),
                    opt(k.per_cpu_second, sig3),
                    fmt_us(k.p50_us as u64),
                    fmt_us(k.p99_us as u64),
                    opt(k.connections_per_gib, sig3),
                    t.stopped
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "| {} | - | - | - | - | - | - | {} |",
                    t.transport, t.stopped
                );
            }
        }
    }
    s
}

fn steps_table(t: &TransportSearch, param: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| {param} | sent/s | deliveries/s | p50 | p99 | server CPU | load generator CPU | lost | verdict | run |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|");
    for st in &t.steps {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {}% | {} | {} | [{}]({}/run.json) |",
            sig3(st.value),
            sig3(st.sent_per_s),
            sig3(st.delivered_per_s),
            fmt_us(st.p50_us as u64),
            fmt_us(st.p99_us as u64),
            opt(st.server_cpu_share, |c| match st.throttled_share {
                Some(t) => format!(
                    "{}% (throttled in {}% of periods)",
                    sig3(c * 100.0),
                    sig3(t * 100.0)
                ),
                None => format!("{}%", sig3(c * 100.0)),
            }),
            sig3(st.loadgen_cpu_share * 100.0),
            st.lost,
            verdict_text(&st.verdict),
            st.run.rsplit('/').nth(1).unwrap_or(&st.run),
            st.run
        );
    }
    s
}

/// What `chatbench capacity` prints at the end: the knee per transport.
pub fn summary(file: &CapacityFile) -> String {
    let mut s = String::new();
    for t in &file.transports {
        match &t.knee {
            Some(k) => {
                let _ = writeln!(
                    s,
                    "{:<11} knee at {} = {} deliveries/s ({} per server CPU-second), p50 {} p99 {}; {}",
                    t.transport.as_str(),
                    sig3(k.value),
                    sig3(k.delivered_per_s),
                    opt(k.per_cpu_second, sig3),
                    fmt_us(k.p50_us as u64),
                    fmt_us(k.p99_us as u64),
                    t.stopped
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "{:<11} no step held; {}",
                    t.transport.as_str(),
                    t.stopped
                );
            }
        }
    }
    s
}

fn markdown(file: &CapacityFile) -> String {
    let mut s = String::new();
    let sc = &file.scenario;
    let _ = writeln!(s, "# Capacity: {}\n", sc.name);
    if !file.complete {
        let _ = writeln!(
            s,
            "**Incomplete**: {}\n",
            if file.problems.is_empty() {
                "the search did not finish".to_owned()
            } else {
                file.problems.join("; ")
            }
        );
    }
    let _ = writeln!(s, "{}\n", sc.description.trim());
    if let Some(env) = &file.environment {
        let _ = writeln!(
            s,
            "Commit `{}`{}, {} ({} CPUs), {}.\n",
            env.commit.get(..7).unwrap_or(&env.commit),
            if env.dirty { " (dirty)" } else { "" },
            env.cpu_model,
            env.cpus,
            env.kernel
        );
    }
    if let Some(search) = &sc.search {
        let _ = writeln!(
            s,
            "The search raised `{}` from {} by ×{} while the steps held (at most {} steps), then ran {} steps between the highest that held and the lowest that broke. A step **breaks** when the server's CPU passes {}% of its CPUs{}, its p99 passes {}, it loses more than {} messages, or not every client gets ready; it is **load generator limited** when the load generator's CPU or send lag passes its limit (send lag alone while the server ran out is the server's), and the search of that transport stops there. Every step is an ordinary run with its own folder under `steps/`.\n",
            search.parameter,
            sig3(search.start),
            sig3(search.factor),
            search.steps,
            search.refine,
            sig3(sc.limits.server_cpu * 100.0),
            sc.server.cpu_quota.map_or(String::new(), |q| format!(
                " (here its quota, `server.cpu_quota`: {}, while the load generator has its own)",
                chatbench_results::fmt::cpus(q)
            )),
            fmt_us(search.max_p99.as_micros() as u64),
            search.max_lost
        );
    }
    let _ = writeln!(s, "## Knee per transport\n");
    let _ = writeln!(
        s,
        "The knee is the highest load that held. *Per server core*: deliveries a second over the CPUs the server had (its quota, when it had one); *per server CPU-second*: over the CPU it spent there, what a fully used core would deliver at that cost. Connections per GiB come from the server's RSS per connection at the knee.\n"
    );
    s.push_str(&knees(file));
    let _ = writeln!(
        s,
        "\n![p99 and server CPU against deliveries](charts/capacity.png)\n"
    );
    let param = sc.search.as_ref().map_or("value", |x| x.parameter.as_str());
    for t in &file.transports {
        let _ = writeln!(s, "## {}\n", t.transport);
        s.push_str(&steps_table(t, param));
        let _ = writeln!(s, "\nStopped: {}.\n", t.stopped);
    }
    s
}

/// p99 and server CPU against deliveries per second, a line per
/// transport; a step that did not hold is a hollow point.
struct CapacityChart<'a> {
    file: &'a CapacityFile,
}

impl CapacityChart<'_> {
    fn points(
        &self,
        t: &TransportSearch,
        y: impl Fn(&chatbench_results::capacity::Step) -> f64,
    ) -> Vec<(f64, f64, bool)> {
        let mut pts: Vec<(f64, f64, bool)> = t
            .steps
            .iter()
            .filter(|s| s.delivered_per_s > 0.0)
            .map(|s| (s.delivered_per_s, y(s), s.verdict == Verdict::Holds))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        pts
    }

    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        title: &str,
        log_y: bool,
        y: impl Fn(&chatbench_results::capacity::Step) -> f64 + Copy,
    ) -> DrawResult {
        let all: Vec<(f64, f64, bool)> = self
            .file
            .transports
            .iter()
            .flat_map(|t| self.points(t, y))
            .collect();
        let (x0, x1) = y_range(all.iter().map(|p| p.0));
        let mut b = ChartBuilder::on(area);
        b.caption(title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(64);
        let transports = &self.file.transports;
        if log_y {
            let (y0, y1) = y_range(all.iter().map(|p| p.1));
            let mut c = b
                .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
                .map_err(e)?;
            c.configure_mesh()
                .x_desc("deliveries per second")
                .x_label_formatter(&|v| trim_num(*v))
                .y_label_formatter(&|v| fmt_ms(*v))
                .draw()
                .map_err(e)?;
            for t in transports {
                let pts = self.points(t, y);
                draw_series(&mut c, t.transport, &pts)?;
            }
        } else {
            let mut c = b
                .build_cartesian_2d((x0..x1).log_scale(), 0f64..100f64)
                .map_err(e)?;
            c.configure_mesh()
                .x_desc("deliveries per second")
                .x_label_formatter(&|v| trim_num(*v))
                .y_label_formatter(&|v| format!("{v:.0}%"))
                .draw()
                .map_err(e)?;
            for t in transports {
                let pts = self.points(t, y);
                draw_series(&mut c, t.transport, &pts)?;
            }
        }
        Ok(())
    }
}

fn draw_series<DB: DrawingBackend, X, Y>(
    c: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    t: Transport,
    pts: &[(f64, f64, bool)],
) -> DrawResult
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    let col = color(t);
    c.draw_series(LineSeries::new(
        pts.iter().map(|p| (p.0, p.1)),
        col.stroke_width(2),
    ))
    .map_err(e)?;
    c.draw_series(pts.iter().map(|p| {
        let style = if p.2 {
            col.filled()
        } else {
            col.stroke_width(2)
        };
        Circle::new((p.0, p.1), 5, style)
    }))
    .map_err(e)?;
    Ok(())
}

impl Chart for CapacityChart<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let ts: Vec<Transport> = self.file.transports.iter().map(|t| t.transport).collect();
        let mut keys = transport_keys(&ts);
        keys.push((Key::Ring, "hollow: the step did not hold"));
        let root = titled_with_legend(
            root,
            &format!("Capacity: {}", self.file.scenario.name),
            &keys,
        )?;
        let (left, right) = root.split_horizontally(root.dim_in_pixel().0 / 2);
        self.panel(&left, "p99 latency", true, |s| s.p99_us / 1e3)?;
        self.panel(&right, "server CPU (% of its CPUs or quota)", false, |s| {
            s.server_cpu_share.unwrap_or(0.0) * 100.0
        })
    }

    fn data(&self) -> Vec<SeriesData> {
        let mut out = Vec::new();
        for t in &self.file.transports {
            let name = t.transport.as_str();
            out.push(series(
                "p99 latency",
                name,
                self.points(t, |s| s.p99_us / 1e3)
                    .into_iter()
                    .map(|p| (p.0, p.1)),
            ));
            out.push(series(
                "server CPU",
                name,
                self.points(t, |s| s.server_cpu_share.unwrap_or(0.0) * 100.0)
                    .into_iter()
                    .map(|p| (p.0, p.1)),
            ));
        }
        out
    }
}

/// Writes `<dir>/REPORT.md` and `<dir>/charts/capacity.{png,svg}`.
pub fn write_report(dir: &Path, file: &CapacityFile) -> Result<PathBuf, ReportError> {
    let charts = dir.join("charts");
    std::fs::create_dir_all(&charts).map_err(|source| ReportError::Io {
        path: charts.clone(),
        source,
    })?;
    render(&CapacityChart { file }, &charts, "capacity", !file.complete)?;
    let path = dir.join("REPORT.md");
    std::fs::write(&path, markdown(file)).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}
