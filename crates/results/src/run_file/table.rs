//! The console table a run prints.

use super::schema::*;
use std::fmt::Write as _;

impl RunFile {
    /// The console table at any width: one row per transport, every
    /// column, then the legend.
    pub fn table(&self) -> String {
        self.table_fitting(None)
    }

    /// The console table for a terminal `width` columns wide: columns
    /// that do not fit are left out, least telling first (max, p99.9, the
    /// load generator's receive time, requests per message, RSS per
    /// connection, radio energy), and the legend says which. Then a legend of the units,
    /// in lines that fit 80 columns.
    pub fn table_fitting(&self, width: Option<u16>) -> String {
        use comfy_table::{CellAlignment, ColumnConstraint, Table};
        let mut out = String::new();
        if let Some(sweep) = &self.scenario.sweep {
            let _ = writeln!(out, "sweep over {}", sweep.parameter);
        }
        let sweeps = self.summary.iter().any(|s| s.point_label.is_some());
        let mut header: Vec<&str> = Vec::new();
        if sweeps {
            header.push("at");
        }
        header.extend([
            "transport",
            "p50",
            "p99",
            "p99.9",
            "max",
            "send lag",
            "recv50",
            "bytes/msg",
            "req/msg",
            "cpu-ms/1k",
            "rss/conn",
            "J/h",
            "lost",
            "flags",
        ]);
        let mut table = Table::new();
        table
            .load_preset(comfy_table::presets::NOTHING)
            .set_header(header.clone());
        for s in &self.summary {
            let opt = |o: Option<Stat>, f: &dyn Fn(f64) -> String| {
                o.map(|x| f(x.median)).unwrap_or_else(|| "n/a".into())
            };
            let us = |v: f64| crate::fmt::fmt_us(v as u64);
            let mut row: Vec<String> = Vec::new();
            if sweeps {
                row.push(s.point_label.clone().unwrap_or_default());
            }
            row.extend([
                s.transport.as_str().to_owned(),
                us(s.p50_us.median),
                us(s.p99_us.median),
                us(s.p999_us.median),
                us(s.max_us.median),
                format!(
                    "{}/{}",
                    us(s.send_lag_p50_us.median),
                    us(s.send_lag_p99_us.median)
                ),
                us(s.receive_p50_us.median),
                format!("{:.0}", s.bytes_per_msg.median),
                format!("{:.3}", s.requests_per_msg.median),
                opt(s.server_cpu_ms_per_1k, &|v| format!("{v:.1}")),
                opt(s.rss_per_connection, &|v| format!("{:.1}KiB", v / 1024.0)),
                opt(s.radio_j_per_client_hour, &|v| format!("{v:.0}")),
                s.lost.to_string(),
                if s.flags.is_empty() {
                    "-".to_owned()
                } else {
                    s.flags.join(",")
                },
            ]);
            table.add_row(row);
        }
        let first_number = if sweeps { 2 } else { 1 };
        for (i, column) in table.column_iter_mut().enumerate() {
            // One space between columns; numbers right-aligned.
            column.set_padding((0, 1));
            if i >= first_number && i < header.len() - 1 {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        let mut hidden = Vec::new();
        let widest = |t: &Table| t.lines().map(|l| l.trim_end().chars().count()).max();
        if let Some(width) = width {
            for name in ["max", "p99.9", "recv50", "req/msg", "rss/conn", "J/h"] {
                if widest(&table).unwrap_or(0) <= width as usize {
                    break;
                }
                if let Some(c) = header
                    .iter()
                    .position(|h| *h == name)
                    .and_then(|i| table.column_mut(i))
                {
                    c.set_constraint(ColumnConstraint::Hidden);
                    hidden.push(name);
                }
            }
        }
        for line in table.lines() {
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let _ = writeln!(
            out,
            "latency: intended send to arrival at the client's socket; send lag p50/p99;"
        );
        let _ = writeln!(
            out,
            "recv50: the load generator's own receive time, p50; bytes and requests per"
        );
        let _ = writeln!(
            out,
            "message, both directions; cpu-ms/1k: server CPU ms per 1,000 messages;"
        );
        let _ = writeln!(
            out,
            "rss/conn: server memory per idle connection; J/h: a phone's LTE radio"
        );
        let _ = writeln!(out, "energy per client-hour (REPORT.md's Battery section).");
        if !hidden.is_empty() {
            let _ = writeln!(
                out,
                "Not shown at {} columns: {} (run.json has them).",
                width.unwrap_or(0),
                hidden.join(", ")
            );
        }
        out
    }
}

#[cfg(test)]
mod table_tests {
    use super::RunFile;

    fn fixture() -> RunFile {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../report/tests/fixtures/run-a");
        RunFile::read(&dir).unwrap()
    }

    #[test]
    fn the_table_fits_80_columns_and_says_what_it_left_out() {
        let run = fixture();
        let full = run.table();
        let widest = |t: &str| t.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(widest(&full) > 80, "the full table is wider:\n{full}");
        assert!(full.lines().next().unwrap().starts_with("transport"));
        for col in ["p99.9", "max", "recv50", "req/msg", "rss/conn"] {
            assert!(full.lines().next().unwrap().contains(col), "{col}");
        }
        assert!(!full.contains("Not shown"));
        let narrow = run.table_fitting(Some(80));
        assert!(widest(&narrow) <= 80, "wider than 80:\n{narrow}");
        let head = narrow.lines().next().unwrap();
        for kept in [
            "transport",
            "p50",
            "p99",
            "send lag",
            "bytes/msg",
            "cpu-ms/1k",
            "lost",
            "flags",
        ] {
            assert!(head.contains(kept), "{kept} missing:\n{narrow}");
        }
        assert!(!head.contains("p99.9") && !head.contains("max"), "{head}");
        let note = narrow.lines().last().unwrap();
        assert_eq!(
            note,
            "Not shown at 80 columns: max, p99.9, recv50, req/msg (run.json has them)."
        );
        // One row per transport, in the file's order.
        let rows: Vec<&str> = narrow
            .lines()
            .skip(1)
            .take(4)
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(rows, ["short_poll", "long_poll", "sse", "websocket"]);
        // Wide enough, nothing is left out.
        assert_eq!(run.table_fitting(Some(400)), full);
    }
}
