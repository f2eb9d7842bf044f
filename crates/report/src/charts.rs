//! The charts, each drawn once per backend: SVG and PNG.
//!
//! Text uses DejaVu Sans from this crate, registered with plotters'
//! `ab_glyph` feature, so no system font is looked up and a PNG renders the
//! same on any machine.

use crate::ReportError;
use chatbench_results::run_file::{RunFile, TransportRun, TransportSummary};
use chatbench_results::Transport;
use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
const SIZE: (u32, u32) = (1000, 560);

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in; failing to parse it is a build defect.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// An SVG names the font its text was measured and laid out with
/// (plotters writes the family it was asked for, `sans-serif`, whose
/// metrics vary by viewer), with `sans-serif` as the fallback.
fn declare_font(svg: &str) -> String {
    svg.replace(
        "font-family=\"sans-serif\"",
        "font-family=\"DejaVu Sans, sans-serif\"",
    )
}

/// The colour of a transport in every chart.
pub fn color(t: Transport) -> RGBColor {
    match t {
        Transport::ShortPoll => RGBColor(214, 39, 40),
        Transport::LongPoll => RGBColor(255, 127, 14),
        Transport::Sse => RGBColor(31, 119, 180),
        Transport::WebSocket => RGBColor(44, 160, 44),
        Transport::WebTransport => RGBColor(148, 103, 189),
    }
}

pub(crate) type DrawResult = Result<(), String>;

/// A chart that can draw itself on any backend.
pub(crate) trait Chart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult;

    /// The values drawn, series by series, written beside the images as
    /// `<name>.json` so a test (or a reader) can hold the picture to
    /// `run.json`.
    fn data(&self) -> Vec<SeriesData>;

    /// Width and height in pixels.
    fn size(&self) -> (u32, u32) {
        SIZE
    }
}

/// One drawn series: its panel, its name and its points (x, y) in the
/// chart's own units.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SeriesData {
    /// The panel's title (the chart's, for one-panel charts).
    pub panel: String,
    /// The series: a transport, or a transport and a bar segment.
    pub name: String,
    /// (x, y) as drawn, before any axis transform (a log axis gets the
    /// value, not its logarithm).
    pub points: Vec<[f64; 2]>,
}

/// A chart's sidecar file, `<name>.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChartData {
    /// The chart's file name, without extension.
    pub chart: String,
    /// Its series.
    pub series: Vec<SeriesData>,
}

pub(crate) fn series(
    panel: &str,
    name: impl Into<String>,
    points: impl IntoIterator<Item = (f64, f64)>,
) -> SeriesData {
    SeriesData {
        panel: panel.to_owned(),
        name: name.into(),
        points: points.into_iter().map(|(x, y)| [x, y]).collect(),
    }
}

pub(crate) fn e<E: std::fmt::Display>(err: E) -> String {
    err.to_string()
}

/// Draws `chart` to `<dir>/<name>.svg` and `<dir>/<name>.png`; a run that
/// did not finish gets a red banner on every chart.
pub(crate) fn render(
    chart: &impl Chart,
    dir: &Path,
    name: &str,
    incomplete: bool,
) -> Result<Vec<PathBuf>, ReportError> {
    register_font();
    let svg = dir.join(format!("{name}.svg"));
    let png = dir.join(format!("{name}.png"));
    let json = dir.join(format!("{name}.json"));
    let fail = |path: &Path, reason: String| ReportError::Chart {
        path: path.to_owned(),
        reason,
    };
    {
        let mut text = String::new();
        {
            let root = SVGBackend::with_string(&mut text, chart.size()).into_drawing_area();
            chart.draw(&root).map_err(|r| fail(&svg, r))?;
            if incomplete {
                incomplete_banner(&root).map_err(|r| fail(&svg, r))?;
            }
            root.present().map_err(|x| fail(&svg, x.to_string()))?;
        }
        std::fs::write(&svg, declare_font(&text)).map_err(|x| fail(&svg, x.to_string()))?;
    }
    {
        let root = BitMapBackend::new(&png, chart.size()).into_drawing_area();
        chart.draw(&root).map_err(|r| fail(&png, r))?;
        if incomplete {
            incomplete_banner(&root).map_err(|r| fail(&png, r))?;
        }
        root.present().map_err(|x| fail(&png, x.to_string()))?;
    }
    let data = ChartData {
        chart: name.to_owned(),
        series: chart.data(),
    };
    let text = serde_json::to_string_pretty(&data).map_err(|x| fail(&json, x.to_string()))?;
    std::fs::write(&json, text + "\n").map_err(|x| fail(&json, x.to_string()))?;
    Ok(vec![svg, png, json])
}

fn incomplete_banner<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>) -> DrawResult {
    root.draw(&Text::new(
        "INCOMPLETE RUN: it ended early; see REPORT.md",
        (8, 6),
        ("sans-serif", 16).into_font().color(&RED),
    ))
    .map_err(e)
}

/// 1. Latency percentile spectrum, HdrHistogram style.
struct Spectrum<'a> {
    lines: Vec<(Transport, Vec<(f64, f64)>)>,
    /// Samples in each transport's histogram, in the order of `lines`.
    counts: Vec<u64>,
    subtitle: &'a str,
}

/// Where on the percentile axis (log10 of 1/(1-p)) fewer than 10 of `n`
/// samples lie beyond the percentile: from there on a line shows single
/// samples, not a distribution.
pub fn thin_from(n: u64) -> Option<f64> {
    (n > 10).then(|| (n as f64 / 10.0).log10())
}

/// Points (log10(1/(1-p)), latency ms) of a histogram.
pub fn spectrum_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        if q >= 1.0 {
            break;
        }
        let x = (1.0 / (1.0 - q)).log10();
        if x > 6.0 {
            break;
        }
        pts.push((x, v.value_iterated_to().max(1) as f64 / 1000.0));
    }
    pts.push((
        pts.last().map_or(0.0, |p| p.0).max(0.0),
        h.max().max(1) as f64 / 1000.0,
    ));
    pts
}

impl Chart for Spectrum<'_> {
    fn data(&self) -> Vec<SeriesData> {
        self.lines
            .iter()
            .map(|(t, pts)| series("latency", t.as_str(), pts.iter().copied()))
            .collect()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        root.fill(&WHITE).map_err(e)?;
        let xmax = self
            .lines
            .iter()
            .flat_map(|(_, p)| p.iter().map(|x| x.0))
            .fold(2.0f64, f64::max)
            .ceil();
        let (ymin, ymax) = y_range(self.lines.iter().flat_map(|(_, p)| p.iter().map(|x| x.1)));
        let mut c = ChartBuilder::on(root)
            .caption(
                format!("Delivery latency by percentile — {}", self.subtitle),
                ("sans-serif", 22),
            )
            .margin(16)
            // Room for the last percentile's label, centred on the edge.
            .margin_right(40)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..xmax, (ymin..ymax).log_scale())
            .map_err(e)?;
        c.configure_mesh()
            .x_desc("Percentile (log scale of 1/(1-p))")
            .y_desc("Latency (ms, log scale)")
            .x_labels(xmax as usize + 1)
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| fmt_ms(*y))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()
            .map_err(e)?;
        let mut marked = false;
        for ((t, pts), n) in self.lines.iter().zip(&self.counts) {
            let col = color(*t);
            c.draw_series(LineSeries::new(pts.iter().copied(), col.stroke_width(3)))
                .map_err(e)?
                .label(t.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], col.stroke_width(3))
                });
            // A bar across the line where fewer than 10 samples remain
            // beyond the percentile.
            let at = thin_from(*n).and_then(|x| pts.iter().find(|p| p.0 >= x).map(|p| (x, p.1)));
            if let Some((x, y)) = at {
                marked = true;
                c.draw_series(std::iter::once(PathElement::new(
                    vec![(x, y / 1.35), (x, y * 1.35)],
                    col.stroke_width(4),
                )))
                .map_err(e)?;
            }
        }
        if marked {
            let note = TextStyle::from(("sans-serif", 13).into_font())
                .pos(Pos::new(HPos::Right, VPos::Bottom));
            root.draw(&Text::new(
                "bar on a line: under 10 samples to its right",
                (SIZE.0 as i32 - 12, SIZE.1 as i32 - 6),
                note,
            ))
            .map_err(e)?;
        }
        legend(&mut c)
    }
}

fn legend<
    'a,
    DB: DrawingBackend + 'a,
    X: plotters::coord::ranged1d::Ranged,
    Y: plotters::coord::ranged1d::Ranged,
>(
    c: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
) -> DrawResult {
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(e)
}

fn percentile_label(x: f64) -> String {
    let k = x.round() as i32;
    if (x - k as f64).abs() > 1e-6 {
        return String::new();
    }
    match k {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        k => format!("99.{}%", "9".repeat((k - 2) as usize)),
    }
}

pub(crate) fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.0}s", ms / 1000.0)
    } else if ms >= 1.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.0}µs", ms * 1000.0)
    }
}

/// A log-scale range around the values, in whole decades.
pub(crate) fn y_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.1, 10.0);
    }
    // At least two whole decades: over a single one, plotters' log axis
    // switches to a dense mesh that drew a grey band and ticks past the
    // top (the scale sweep's CPU panel, 23 to 83 ms).
    // The decade above the largest value, so a value on a decade (0.001
    // requests per message) is not drawn on the top edge under the title.
    let hi = 10f64.powf(hi.log10().floor() + 1.0);
    let lo = 10f64.powf(lo.log10().floor()).min(hi / 100.0);
    (lo, hi)
}

/// A two-panel bar chart with one bar (or stack) per transport.
struct Bars<'a> {
    title: String,
    panels: Vec<Panel<'a>>,
}

/// Stacked bar segments, bottom first: (value, label).
type Stack<'a> = Vec<(f64, &'a str)>;

struct Panel<'a> {
    title: &'a str,
    y_desc: &'a str,
    log: bool,
    /// Per transport: stacked segments (value, label); None when unknown.
    bars: Vec<(Transport, Option<Stack<'a>>)>,
}

impl Chart for Bars<'_> {
    /// A series per bar segment: x is the bar's place, y the segment's
    /// value.
    fn data(&self) -> Vec<SeriesData> {
        let mut out = Vec::new();
        for p in &self.panels {
            for (i, (t, stack)) in p.bars.iter().enumerate() {
                for (v, label) in stack.iter().flatten() {
                    out.push(series(p.title, format!("{t} {label}"), [(i as f64, *v)]));
                }
            }
        }
        out
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        root.fill(&WHITE).map_err(e)?;
        let root = root.titled(&self.title, ("sans-serif", 22)).map_err(e)?;
        let areas = root.split_evenly((1, self.panels.len()));
        for (area, p) in areas.iter().zip(&self.panels) {
            p.draw(area)?;
        }
        Ok(())
    }
}

impl Panel<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult {
        let n = self.bars.len();
        let totals: Vec<f64> = self
            .bars
            .iter()
            .map(|(_, b)| b.as_ref().map_or(0.0, |s| s.iter().map(|x| x.0).sum()))
            .collect();
        let top = totals.iter().copied().fold(0.0, f64::max);
        let names: Vec<&str> = self.bars.iter().map(|(t, _)| t.as_str()).collect();
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(self.title, ("sans-serif", 17))
            .margin(14)
            .x_label_area_size(36)
            .y_label_area_size(72);
        let label_fmt = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => names.get(*i).map(|s| s.to_string()).unwrap_or_default(),
            _ => String::new(),
        };
        if self.log {
            let (lo, hi) = y_range(
                self.bars
                    .iter()
                    .filter_map(|(_, b)| b.as_ref())
                    .flat_map(|s| s.iter().map(|x| x.0)),
            );
            let mut c = builder
                .build_cartesian_2d((0..n - 1).into_segmented(), (lo..hi).log_scale())
                .map_err(e)?;
            c.configure_mesh()
                .disable_x_mesh()
                .y_desc(self.y_desc)
                .x_label_formatter(&label_fmt)
                .y_label_formatter(&|y| trim_num(*y))
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 14))
                .draw()
                .map_err(e)?;
            for (i, (t, b)) in self.bars.iter().enumerate() {
                if let Some(segs) = b {
                    // On a log axis a bar's base means nothing: a dot marks
                    // the value. A zero cannot sit on a log axis: it is a
                    // hollow dot on the floor, labelled with its true value.
                    let v = segs.iter().map(|x| x.0).sum::<f64>();
                    let h = v.max(lo);
                    let style = if v > 0.0 {
                        color(*t).filled()
                    } else {
                        color(*t).stroke_width(2)
                    };
                    let label = if v > 0.0 {
                        trim_num(v)
                    } else {
                        "0, below the axis".into()
                    };
                    let text = TextStyle::from(("sans-serif", 13).into_font())
                        .pos(Pos::new(HPos::Center, VPos::Bottom));
                    // The dot, and its value just above it.
                    c.draw_series(std::iter::once(
                        EmptyElement::at((SegmentValue::CenterOf(i), h))
                            + Circle::new((0, 0), 7, style)
                            + Text::new(label, (0, -10), text),
                    ))
                    .map_err(e)?;
                }
            }
        } else {
            // A lone bar gets an empty segment beside it, so it is not clipped.
            let mut c = builder
                .build_cartesian_2d(
                    (0..n.max(2) - 1).into_segmented(),
                    0f64..(top * 1.18).max(1e-9),
                )
                .map_err(e)?;
            c.configure_mesh()
                .disable_x_mesh()
                .y_desc(self.y_desc)
                .x_label_formatter(&label_fmt)
                .y_label_formatter(&|y| trim_num(*y))
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 14))
                .draw()
                .map_err(e)?;
            for (i, (t, b)) in self.bars.iter().enumerate() {
                let Some(segs) = b else {
                    c.draw_series(std::iter::once(value_label(i, 0.0, "n/a".into())))
                        .map_err(e)?;
                    continue;
                };
                let mut base = 0.0;
                for (k, (v, _)) in segs.iter().enumerate() {
                    // Bottom segment solid, each one above it lighter.
                    let style = color(*t).mix(SHADES[k.min(SHADES.len() - 1)]).filled();
                    c.draw_series(std::iter::once(bar(i, base, base + v, style)))
                        .map_err(e)?;
                    base += v;
                }
                c.draw_series(std::iter::once(value_label(i, base, trim_num(base))))
                    .map_err(e)?;
            }
            if let Some((_, Some(segs))) = self.bars.first() {
                // Panels of one bar each carry the key in the chart's title.
                if segs.len() > 1 && self.bars.len() > 1 {
                    let caption = segs
                        .iter()
                        .zip(SHADE_NAMES)
                        .map(|(s, shade)| format!("{shade}: {}", s.1))
                        .collect::<Vec<_>>()
                        .join(", ");
                    area.draw(&Text::new(caption, (90, 40), ("sans-serif", 13)))
                        .map_err(e)?;
                }
            }
        }
        Ok(())
    }
}

/// Opacity of stacked segments, bottom first, and what the caption calls them.
const SHADES: [f64; 3] = [1.0, 0.45, 0.2];
const SHADE_NAMES: [&str; 3] = ["solid", "light", "lightest"];

fn bar(i: usize, y0: f64, y1: f64, style: ShapeStyle) -> Rectangle<(SegmentValue<usize>, f64)> {
    let mut r = Rectangle::new(
        [
            (SegmentValue::Exact(i), y0),
            (SegmentValue::Exact(i + 1), y1),
        ],
        style,
    );
    r.set_margin(0, 0, 18, 18);
    r
}

fn value_label(
    i: usize,
    y: f64,
    text: String,
) -> Text<'static, (SegmentValue<usize>, f64), String> {
    Text::new(
        text,
        (SegmentValue::CenterOf(i), y),
        TextStyle::from(("sans-serif", 13).into_font()).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Bottom,
            ),
        ),
    )
}

pub(crate) fn trim_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e6 && (v / 1e6).fract() == 0.0 {
        format!("{}M", v / 1e6)
    } else if v.abs() >= 1e4 && (v / 1e3).fract() == 0.0 {
        format!("{}k", v / 1e3)
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// The shade of the warm-up band.
const WARMUP: RGBColor = RGBColor(200, 200, 200);

/// One transport's points over a run: (second, msg/s, p99 ms).
type Series = Vec<(f64, f64, f64)>;

/// Which transports' msg/s lines are the same second by second, as a
/// note for the timeline (None when no two coincide).
fn coinciding(lines: &[(Transport, Series)]) -> Option<String> {
    let same = |a: &Series, b: &Series| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && x.1 == y.1)
    };
    let mut groups: Vec<Vec<&str>> = Vec::new();
    let mut done = vec![false; lines.len()];
    for i in 0..lines.len() {
        if done[i] {
            continue;
        }
        let mut group = vec![lines[i].0.as_str()];
        for j in i + 1..lines.len() {
            if !done[j] && same(&lines[i].1, &lines[j].1) {
                done[j] = true;
                group.push(lines[j].0.as_str());
            }
        }
        if group.len() > 1 {
            groups.push(group);
        }
    }
    if groups.is_empty() {
        return None;
    }
    let said: Vec<String> = groups.iter().map(|g| g.join(", ")).collect();
    Some(format!(
        "msg/s lines that coincide (same seeded schedule), drawn nested: {}",
        said.join("; ")
    ))
}

/// 4. Per-second deliveries and p99 over the run, warm-up shaded.
struct Timeline {
    warmup_s: f64,
    lines: Vec<(Transport, Series)>,
    /// Per line, the seconds whose p99 rests on fewer than 10 samples
    /// beyond it (under 1,000 deliveries): marked, not hidden.
    thin: Vec<Vec<f64>>,
}

/// Deliveries below which a p99 rests on fewer than 10 samples beyond it.
const THIN_P99: u64 = 1000;

impl Chart for Timeline {
    fn data(&self) -> Vec<SeriesData> {
        let mut out = Vec::new();
        for (t, pts) in &self.lines {
            out.push(series("msg/s", t.as_str(), pts.iter().map(|p| (p.0, p.1))));
            out.push(series("p99 ms", t.as_str(), pts.iter().map(|p| (p.0, p.2))));
        }
        for ((t, pts), thin) in self.lines.iter().zip(&self.thin) {
            out.push(series(
                "p99 ms, under 10 samples beyond",
                t.as_str(),
                pts.iter()
                    .filter(|p| thin.contains(&p.0))
                    .map(|p| (p.0, p.2)),
            ));
        }
        out
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let mut entries = vec![(Key::Shade(WARMUP), "warm-up (not measured)")];
        entries.extend(
            self.lines
                .iter()
                .map(|(t, _)| (Key::Line(color(*t)), t.as_str())),
        );
        let root = titled_with_legend(
            root,
            "Throughput and p99 latency over the run (first repetition)",
            &entries,
        )?;
        let (top, bottom) = root.split_vertically(SIZE.1 / 2 - 35);
        let xmax = self
            .lines
            .iter()
            .flat_map(|(_, p)| p.iter().map(|x| x.0 + 1.0))
            .fold(1.0, f64::max)
            .ceil();
        let ymax = self
            .lines
            .iter()
            .flat_map(|(_, p)| p.iter().map(|x| x.1))
            .fold(1.0, f64::max);
        let mut c = ChartBuilder::on(&top)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax * 1.15)
            .map_err(e)?;
        c.configure_mesh()
            .y_desc("received msg/s")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(e)?;
        c.draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (self.warmup_s, ymax * 1.15)],
            WARMUP.mix(0.5).filled(),
        )))
        .map_err(e)?;
        // Transports fed by the same seeded schedule deliver the same
        // msg/s, and their lines coincide: each is drawn narrower than the
        // one before it, so coinciding lines show as nested stripes, and
        // the panel says which coincide.
        let n = self.lines.len();
        for (i, (t, pts)) in self.lines.iter().enumerate() {
            let col = color(*t);
            c.draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0 + 0.5, p.1)),
                col.stroke_width(2 * (n - i) as u32),
            ))
            .map_err(e)?;
        }
        if let Some(note) = coinciding(&self.lines) {
            top.draw(&Text::new(note, (90, 14), ("sans-serif", 13).into_font()))
                .map_err(e)?;
        }
        let (lo, hi) = y_range(self.lines.iter().flat_map(|(_, p)| p.iter().map(|x| x.2)));
        let mut c = ChartBuilder::on(&bottom)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..xmax, (lo..hi).log_scale())
            .map_err(e)?;
        c.configure_mesh()
            .x_desc("seconds since traffic started (p99: by intended send time)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("p99 latency (log)")
            .y_label_formatter(&|y| fmt_ms(*y))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(e)?;
        c.draw_series(std::iter::once(Rectangle::new(
            [(0.0, lo), (self.warmup_s, hi)],
            WARMUP.mix(0.5).filled(),
        )))
        .map_err(e)?;
        for ((t, pts), thin) in self.lines.iter().zip(&self.thin) {
            let col = color(*t);
            c.draw_series(LineSeries::new(
                pts.iter().filter(|p| p.2 > 0.0).map(|p| (p.0 + 0.5, p.2)),
                col.stroke_width(2),
            ))
            .map_err(e)?;
            c.draw_series(
                pts.iter()
                    .filter(|p| p.2 > 0.0 && thin.contains(&p.0))
                    .map(|p| Circle::new((p.0 + 0.5, p.2), 4, col.stroke_width(2))),
            )
            .map_err(e)?;
        }
        if self.thin.iter().any(|t| !t.is_empty()) {
            bottom
                .draw(&Text::new(
                    "ring: a second with under 1,000 deliveries, so under 10 samples beyond its p99",
                    (90, 14),
                    ("sans-serif", 13).into_font(),
                ))
                .map_err(e)?;
        }
        Ok(())
    }
}

impl<'a> Bars<'a> {
    /// Bytes and requests per delivered message, by transport.
    fn overhead(sum: &[&TransportSummary]) -> Bars<'a> {
        Bars {
            title: "Wire overhead per delivered message (measured window)".into(),
            panels: vec![
                Panel {
                    title: "bytes per message (both directions)",
                    y_desc: "bytes",
                    log: false,
                    bars: sum
                        .iter()
                        .map(|x| {
                            (
                                x.transport,
                                Some(vec![
                                    (x.bytes_up_per_msg.median, "client to server"),
                                    (x.bytes_down_per_msg.median, "server to client"),
                                ]),
                            )
                        })
                        .collect(),
                },
                Panel {
                    title: "HTTP requests per message (log scale)",
                    y_desc: "requests",
                    log: true,
                    bars: sum
                        .iter()
                        .map(|x| {
                            (
                                x.transport,
                                Some(vec![(x.requests_per_msg.median, "requests")]),
                            )
                        })
                        .collect(),
                },
            ],
        }
    }

    /// The latency breakdown: one panel per transport, each with its own
    /// scale, since short polling's wait is a thousand times the push
    /// transports' whole latency.
    fn breakdown(sum: &[&TransportSummary]) -> Bars<'a> {
        Bars {
            title:
                "Mean latency per delivery: up-leg (solid), poll wait (light), down-leg (lightest)"
                    .into(),
            panels: sum
                .iter()
                .map(|x| Panel {
                    title: x.transport.as_str(),
                    y_desc: "µs",
                    log: false,
                    bars: vec![(
                        x.transport,
                        Some(vec![
                            (x.up_leg_mean_us.median, "up-leg"),
                            (x.poll_wait_mean_us.median, "poll wait"),
                            (x.down_leg_mean_us.median, "down-leg"),
                        ]),
                    )],
                })
                .collect(),
        }
    }

    /// Radio energy per client-hour, the messages' part and the
    /// transport's own stacked, and the share of the time the radio was on.
    fn battery(sum: &[&TransportSummary]) -> Bars<'a> {
        Bars {
            title: "A phone's LTE radio (Huang et al. 2012), measured window".into(),
            panels: vec![
                Panel {
                    title: "radio energy per client-hour",
                    y_desc: "J",
                    log: false,
                    bars: sum
                        .iter()
                        .map(|x| {
                            let all = x.radio_j_per_client_hour.map(|v| v.median);
                            let own = x.radio_overhead_share.map_or(0.0, |v| v.median);
                            (
                                x.transport,
                                all.map(|j| {
                                    vec![
                                        (j * (1.0 - own), "messages only"),
                                        (j * own, "the transport's own"),
                                    ]
                                }),
                            )
                        })
                        .collect(),
                },
                Panel {
                    title: "radio on, share of the time",
                    y_desc: "%",
                    log: false,
                    bars: sum
                        .iter()
                        .map(|x| {
                            (
                                x.transport,
                                x.radio_on_share.map(|v| vec![(v.median * 100.0, "on")]),
                            )
                        })
                        .collect(),
                },
            ],
        }
    }

    /// Server CPU per 1,000 messages and memory per idle connection.
    fn server_cost(sum: &[&TransportSummary]) -> Bars<'a> {
        Bars {
            title: "Server cost".into(),
            panels: vec![
                Panel {
                    title: "server CPU-ms per 1,000 delivered messages",
                    y_desc: "CPU ms",
                    log: false,
                    bars: sum
                        .iter()
                        .map(|x| {
                            (
                                x.transport,
                                x.server_cpu_ms_per_1k.map(|v| vec![(v.median, "cpu")]),
                            )
                        })
                        .collect(),
                },
                Panel {
                    title: "server memory per idle connection",
                    y_desc: "KiB",
                    log: false,
                    bars: sum
                        .iter()
                        .map(|x| {
                            (
                                x.transport,
                                x.rss_per_connection
                                    .map(|v| vec![(v.median / 1024.0, "rss")]),
                            )
                        })
                        .collect(),
                },
            ],
        }
    }
}

impl Timeline {
    /// Messages received and p99 latency each second of the first sweep
    /// point's runs (`first`).
    fn of(s: &chatbench_results::scenario::Scenario, first: &[&TransportRun]) -> Timeline {
        Timeline {
            warmup_s: s.warmup.as_secs_f64(),
            lines: first
                .iter()
                .map(|r| {
                    (
                        r.transport,
                        r.timeline
                            .iter()
                            .map(|x| (x.second as f64, x.received as f64, x.p99_us as f64 / 1000.0))
                            .collect(),
                    )
                })
                .collect(),
            thin: first
                .iter()
                .map(|r| {
                    r.timeline
                        .iter()
                        .filter(|x| x.delivered > 0 && x.delivered < THIN_P99)
                        .map(|x| x.second as f64)
                        .collect()
                })
                .collect(),
        }
    }
}

/// Every chart of a run, written under `dir`. Returns the files written.
pub fn draw_all(
    run: &RunFile,
    histograms: &[(Transport, Histogram<u64>)],
    dir: &Path,
) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    let s = &run.scenario;
    let subtitle = format!(
        "{} clients in {} rooms, {} msg/s per sender",
        s.total_clients(),
        s.clients.rooms,
        s.messages.rate
    );
    let spectrum = Spectrum {
        lines: histograms
            .iter()
            .map(|(t, h)| (*t, spectrum_points(h)))
            .collect(),
        counts: histograms.iter().map(|(_, h)| h.len()).collect(),
        subtitle: &subtitle,
    };
    files.extend(render(&spectrum, dir, "latency", !run.complete)?);

    let sum: Vec<&TransportSummary> = run.at_point(0).collect();
    let overhead = Bars::overhead(&sum);
    files.extend(render(&overhead, dir, "overhead", !run.complete)?);

    let breakdown = Bars::breakdown(&sum);
    // Runs made before the breakdown existed have none to draw.
    if run.runs.iter().any(|r| r.breakdown.is_some()) {
        files.extend(render(&breakdown, dir, "breakdown", !run.complete)?);
    }

    let cost = Bars::server_cost(&sum);
    files.extend(render(&cost, dir, "server-cost", !run.complete)?);

    if sum.iter().any(|x| x.radio_j_per_client_hour.is_some()) {
        let battery = Bars::battery(&sum);
        files.extend(render(&battery, dir, "battery", !run.complete)?);
    }

    let first: Vec<&TransportRun> = s
        .transports
        .iter()
        .filter_map(|t| run.runs.iter().find(|r| r.transport == *t && r.point == 0))
        .collect();
    let timeline = Timeline::of(s, &first);
    files.extend(render(&timeline, dir, "timeline", !run.complete)?);
    let resources = Resources::of(&first);
    if !resources.lines.is_empty() {
        files.extend(render(&resources, dir, "resources", !run.complete)?);
    }
    if let Some(chart) = ModelChart::of(run) {
        files.extend(render(&chart, dir, "model", !run.complete)?);
    }
    let pareto = Pareto::of(run);
    if pareto.points.len() >= 2 {
        files.extend(render(&pareto, dir, "pareto", !run.complete)?);
    }
    if let Some(sweep) = &s.sweep {
        let chart = SweepChart {
            parameter: &sweep.parameter,
            labels: (0..s.points())
                .map(|p| s.point_label(p).unwrap_or_default())
                .collect(),
            summaries: &run.summary,
            transports: &s.transports,
        };
        files.extend(render(&chart, dir, "sweep", !run.complete)?);
    }
    Ok(files)
}

/// The server's CPU and memory, second by second, from the samples in
/// `run.json` (`server.samples`), one line per transport (first
/// repetition).
struct Resources {
    lines: Vec<(Transport, Vec<ResourcePoint>)>,
}

/// Seconds since the clients began connecting, CPU % of one CPU over the
/// second before, RSS MiB.
type ResourcePoint = (f64, f64, f64);

impl Resources {
    /// From the runs' samples; transports with fewer than two are left out.
    fn of(runs: &[&TransportRun]) -> Resources {
        let lines = runs
            .iter()
            .filter_map(|r| {
                let samples = &r.server.as_ref()?.samples;
                let pts: Vec<ResourcePoint> = samples
                    .windows(2)
                    .filter(|w| w[1].t_ms > w[0].t_ms)
                    .map(|w| {
                        let (cpu_ms, _) =
                            chatbench_results::machine::ProcSample::cpu_between(&w[0], &w[1]);
                        let dt_ms = (w[1].t_ms - w[0].t_ms) as f64;
                        (
                            w[1].t_ms as f64 / 1000.0,
                            100.0 * cpu_ms / dt_ms,
                            w[1].rss_bytes as f64 / 1_048_576.0,
                        )
                    })
                    .collect();
                (!pts.is_empty()).then_some((r.transport, pts))
            })
            .collect();
        Resources { lines }
    }
}

impl Chart for Resources {
    fn data(&self) -> Vec<SeriesData> {
        let mut out = Vec::new();
        for (t, pts) in &self.lines {
            out.push(series("CPU %", t.as_str(), pts.iter().map(|p| (p.0, p.1))));
            out.push(series(
                "RSS MiB",
                t.as_str(),
                pts.iter().map(|p| (p.0, p.2)),
            ));
        }
        out
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let entries: Vec<(Key, &str)> = self
            .lines
            .iter()
            .map(|(t, _)| (Key::Line(color(*t)), t.as_str()))
            .collect();
        let root = titled_with_legend(
            root,
            "Server CPU and memory over the run (first repetition)",
            &entries,
        )?;
        let (top, bottom) = root.split_vertically(SIZE.1 / 2 - 35);
        let xmax = self
            .lines
            .iter()
            .flat_map(|(_, p)| p.iter().map(|x| x.0))
            .fold(1.0, f64::max)
            .ceil();
        type Pick = fn(&ResourcePoint) -> f64;
        let panels: [(&DrawingArea<DB, Shift>, &str, Pick, bool); 2] = [
            (&top, "server CPU, % of one CPU", |p| p.1, false),
            (&bottom, "server RSS, MiB", |p| p.2, true),
        ];
        for (area, desc, pick, last) in panels {
            let ymax = self
                .lines
                .iter()
                .flat_map(|(_, p)| p.iter().map(pick))
                .fold(1.0, f64::max);
            let mut c = ChartBuilder::on(area)
                .margin(10)
                .x_label_area_size(if last { 40 } else { 30 })
                .y_label_area_size(80)
                .build_cartesian_2d(0f64..xmax, 0f64..ymax * 1.15)
                .map_err(e)?;
            let mut mesh = c.configure_mesh();
            mesh.y_desc(desc)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| trim_num(*y))
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 14));
            if last {
                mesh.x_desc("seconds since the clients began connecting (samples about 1 s apart)");
            }
            mesh.draw().map_err(e)?;
            for (t, pts) in &self.lines {
                c.draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.0, pick(p))),
                    color(*t).stroke_width(2),
                ))
                .map_err(e)?;
            }
        }
        Ok(())
    }
}

/// 5. Each metric against the swept parameter, one line per transport;
///    points flagged `saturated` are ringed.
struct SweepChart<'a> {
    parameter: &'a str,
    labels: Vec<String>,
    summaries: &'a [TransportSummary],
    transports: &'a [Transport],
}

/// A sweep panel's value of one summary.
type Metric = fn(&TransportSummary) -> f64;

impl SweepChart<'_> {
    /// The server's cost is drawn when the run measured it (a server
    /// chatbench started).
    fn has_server_cost(&self) -> bool {
        self.summaries
            .iter()
            .any(|s| s.server_cpu_ms_per_1k.is_some())
    }

    /// The panels: title and value.
    fn panels(&self) -> Vec<(&'static str, Metric)> {
        let mut panels: Vec<(&str, Metric)> = vec![
            ("p50 latency (ms, log)", |s| s.p50_us.median / 1000.0),
            ("p99 latency (ms, log)", |s| s.p99_us.median / 1000.0),
            ("client bytes/s, both directions (log)", |s| {
                s.bytes_per_s.median
            }),
            ("HTTP requests/s (log)", |s| s.requests_per_s.median),
        ];
        if self.has_server_cost() {
            panels.push(("server CPU-ms per 1,000 messages (log)", |s| {
                s.server_cpu_ms_per_1k.map_or(0.0, |v| v.median)
            }));
            panels.push(("server KiB per idle connection (log)", |s| {
                s.rss_per_connection.map_or(0.0, |v| v.median / 1024.0)
            }));
        }
        panels
    }
}

impl Chart for SweepChart<'_> {
    /// x is the sweep point's index; y the value (0 where the chart draws
    /// its zero line).
    fn data(&self) -> Vec<SeriesData> {
        let mut out = Vec::new();
        for (title, f) in self.panels() {
            for &t in self.transports {
                out.push(series(
                    title,
                    t.as_str(),
                    self.summaries
                        .iter()
                        .filter(|s| s.transport == t)
                        .map(|s| (s.point as f64, f(s))),
                ));
            }
        }
        out
    }

    fn size(&self) -> (u32, u32) {
        if self.has_server_cost() {
            (SIZE.0, SIZE.1 * 3 / 2)
        } else {
            SIZE
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        // One legend for all four panels, in a row of its own: lines rise or
        // fall with the parameter, so no corner of a panel is reliably free.
        let mut entries = transport_keys(self.transports);
        entries.push((Key::Ring, "ringed point: saturated"));
        let root = titled_with_legend(root, &format!("Sweep over {}", self.parameter), &entries)?;
        let panels = self.panels();
        let n = self.labels.len();
        let rows = panels.len() / 2;
        for (area, (title, f)) in root.split_evenly((rows, 2)).iter().zip(panels) {
            let (lo, hi) = y_range(self.summaries.iter().map(f));
            // A zero has no place on a log axis: when there is one, the axis
            // gets a decade below its floor whose line is labelled 0, and
            // zeros (hollow) sit on it.
            let zeros = self.summaries.iter().any(|s| f(s) <= 0.0);
            let zero_at = lo / 10.0;
            let lo = if zeros { zero_at } else { lo };
            let title = if zeros {
                format!("{title}; bottom line: 0")
            } else {
                title.to_string()
            };
            let mut c = ChartBuilder::on(area)
                .caption(&title, ("sans-serif", 15))
                .margin(8)
                .x_label_area_size(28)
                .y_label_area_size(64)
                .build_cartesian_2d(-0.3f64..(n as f64 - 0.7), (lo..hi).log_scale())
                .map_err(e)?;
            let labels = &self.labels;
            c.configure_mesh()
                .x_labels(n)
                .x_label_formatter(&|x| point_tick(labels, *x))
                // The zero line's label is drawn below, whether or not the
                // axis puts a tick there.
                .y_label_formatter(&|y| {
                    if zeros && (*y / zero_at - 1.0).abs() < 1e-6 {
                        String::new()
                    } else {
                        trim_num(*y)
                    }
                })
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(e)?;
            if zeros {
                let left = TextStyle::from(("sans-serif", 12).into_font())
                    .pos(Pos::new(HPos::Right, VPos::Center));
                c.draw_series(std::iter::once(
                    EmptyElement::at((-0.3, zero_at)) + Text::new("0", (-6, 0), left),
                ))
                .map_err(e)?;
            }
            for &t in self.transports {
                let col = color(t);
                let pts: Vec<(f64, f64, bool)> = self
                    .summaries
                    .iter()
                    .filter(|s| s.transport == t)
                    .map(|s| {
                        (
                            s.point as f64,
                            if f(s) > 0.0 { f(s) } else { lo },
                            s.flags.iter().any(|f| f == "saturated"),
                        )
                    })
                    .collect();
                c.draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.0, p.1)),
                    col.stroke_width(2),
                ))
                .map_err(e)?;
                c.draw_series(pts.iter().map(|p| {
                    let style = if p.1 <= zero_at && zeros {
                        col.stroke_width(2)
                    } else {
                        col.filled()
                    };
                    Circle::new((p.0, p.1), 4, style)
                }))
                .map_err(e)?;
                c.draw_series(
                    pts.iter()
                        .filter(|p| p.2)
                        .map(|p| Circle::new((p.0, p.1), 8, BLACK.stroke_width(2))),
                )
                .map_err(e)?;
            }
        }
        Ok(())
    }
}

/// Measured p50 and mean latency against the model's, over a sweep of
/// `network.rtt`: one colour per transport, the model dashed.
struct ModelChart<'a> {
    labels: Vec<String>,
    /// (transport, point, measured p50 ms, measured mean ms, model p50 ms,
    /// model mean ms).
    points: Vec<(Transport, usize, f64, f64, f64, f64)>,
    transports: &'a [Transport],
}

impl ModelChart<'_> {
    fn of<'a>(run: &'a RunFile) -> Option<ModelChart<'a>> {
        let s = &run.scenario;
        let sweep = s.sweep.as_ref()?;
        if sweep.parameter != "network.rtt" {
            return None;
        }
        let points = run
            .against_model()
            .iter()
            .map(|r| {
                (
                    r.summary.transport,
                    r.summary.point,
                    r.summary.p50_us.median / 1000.0,
                    r.mean_us / 1000.0,
                    r.model.p50_us / 1000.0,
                    r.model.mean_us / 1000.0,
                )
            })
            .collect();
        Some(ModelChart {
            labels: (0..s.points())
                .map(|p| s.point_label(p).unwrap_or_default())
                .collect(),
            points,
            transports: &s.transports,
        })
    }

    /// (title, measured, model) accessors of the two panels.
    #[allow(clippy::type_complexity)]
    fn panels() -> [(
        &'static str,
        fn(&(Transport, usize, f64, f64, f64, f64)) -> (f64, f64),
    ); 2] {
        [
            ("p50 latency (ms, log)", |p| (p.2, p.4)),
            ("mean latency (ms, log)", |p| (p.3, p.5)),
        ]
    }
}

impl Chart for ModelChart<'_> {
    fn data(&self) -> Vec<SeriesData> {
        let mut out = Vec::new();
        for (title, f) in ModelChart::panels() {
            for &t in self.transports {
                let pts: Vec<_> = self.points.iter().filter(|p| p.0 == t).collect();
                out.push(series(
                    title,
                    format!("{t} measured"),
                    pts.iter().map(|p| (p.1 as f64, f(p).0)),
                ));
                out.push(series(
                    title,
                    format!("{t} model"),
                    pts.iter().map(|p| (p.1 as f64, f(p).1)),
                ));
            }
        }
        out
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let mut entries = transport_keys(self.transports);
        entries.push((Key::Dash, "model, in each transport's colour"));
        let root = titled_with_legend(
            root,
            "Latency against the round trip: measured (solid) and model (dashed)",
            &entries,
        )?;
        let n = self.labels.len();
        for (area, (title, f)) in root.split_evenly((1, 2)).iter().zip(ModelChart::panels()) {
            let (lo, hi) = y_range(
                self.points
                    .iter()
                    .flat_map(|p| [f(p).0, f(p).1])
                    .filter(|v| *v > 0.0),
            );
            let mut c = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 15))
                .margin(8)
                .x_label_area_size(40)
                .y_label_area_size(64)
                .build_cartesian_2d(-0.3f64..(n as f64 - 0.7), (lo..hi).log_scale())
                .map_err(e)?;
            let labels = &self.labels;
            c.configure_mesh()
                .x_labels(n)
                .x_desc("round-trip time added (network.rtt)")
                .x_label_formatter(&|x| point_tick(labels, *x))
                .y_label_formatter(&|y| trim_num(*y))
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(e)?;
            for &t in self.transports {
                let col = color(t);
                let pts: Vec<_> = self.points.iter().filter(|p| p.0 == t).collect();
                let clamp = |v: f64| v.max(lo);
                c.draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.1 as f64, clamp(f(p).0))),
                    col.stroke_width(2),
                ))
                .map_err(e)?;
                c.draw_series(
                    pts.iter()
                        .map(|p| Circle::new((p.1 as f64, clamp(f(p).0)), 4, col.filled())),
                )
                .map_err(e)?;
                c.draw_series(DashedLineSeries::new(
                    pts.iter().map(|p| (p.1 as f64, clamp(f(p).1))),
                    6,
                    4,
                    col.stroke_width(2),
                ))
                .map_err(e)?;
            }
        }
        Ok(())
    }
}

/// Every transport and setting (sweep point) of a run: p50 latency against
/// bytes per message, with the Pareto frontier, the combinations no other
/// beats on both.
struct Pareto<'a> {
    /// (transport, point label, bytes per message, p50 ms).
    points: Vec<(Transport, String, f64, f64)>,
    transports: &'a [Transport],
}

impl Pareto<'_> {
    fn of(run: &RunFile) -> Pareto<'_> {
        let s = &run.scenario;
        Pareto {
            points: run
                .summary
                .iter()
                .filter(|x| x.bytes_per_msg.median > 0.0)
                .map(|x| {
                    (
                        x.transport,
                        x.point_label.clone().unwrap_or_default(),
                        x.bytes_per_msg.median,
                        (x.p50_us.median / 1000.0).max(1e-3),
                    )
                })
                .collect(),
            transports: &s.transports,
        }
    }

    /// The frontier, by bytes: each point with a lower latency than every
    /// point with fewer bytes.
    fn frontier(&self) -> Vec<(f64, f64)> {
        let mut pts: Vec<(f64, f64)> = self.points.iter().map(|p| (p.2, p.3)).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut best = f64::MAX;
        pts.into_iter()
            .filter(|p| {
                let keep = p.1 < best;
                best = best.min(p.1);
                keep
            })
            .collect()
    }
}

impl Chart for Pareto<'_> {
    fn data(&self) -> Vec<SeriesData> {
        let mut out: Vec<SeriesData> = self
            .transports
            .iter()
            .map(|&t| {
                series(
                    "",
                    t.as_str(),
                    self.points.iter().filter(|p| p.0 == t).map(|p| (p.2, p.3)),
                )
            })
            .collect();
        out.push(series("", "Pareto frontier", self.frontier()));
        out
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let mut entries = transport_keys(self.transports);
        entries.push((Key::Dash, "Pareto frontier: nothing beats these on both"));
        let root = titled_with_legend(
            root,
            "Latency against bytes, every transport and setting",
            &entries,
        )?;
        // Bytes per message often span less than a factor of 3 (one
        // transport's settings), latencies several decades: a linear bytes
        // axis then, fitted to the points.
        let (bmin, bmax) = self
            .points
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), p| {
                (lo.min(p.2), hi.max(p.2))
            });
        if bmax < 3.0 * bmin {
            let pad = ((bmax - bmin) * 0.15).max(bmax * 0.02);
            self.plot(&root, (bmin - pad).max(0.0)..bmax + pad, "")
        } else {
            let (xlo, xhi) = y_range(self.points.iter().map(|p| p.2));
            self.plot(&root, (xlo..xhi).log_scale(), " (log)")
        }
    }
}

impl Pareto<'_> {
    fn plot<DB: DrawingBackend, X>(
        &self,
        root: &DrawingArea<DB, Shift>,
        x: X,
        x_log: &str,
    ) -> DrawResult
    where
        X: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
        X::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
    {
        let (ylo, yhi) = y_range(self.points.iter().map(|p| p.3));
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(x, (ylo..yhi).log_scale())
            .map_err(e)?;
        c.configure_mesh()
            .x_desc(format!(
                "bytes per delivered message, both directions{x_log}"
            ))
            .y_desc("p50 latency, ms (log)")
            .x_label_formatter(&|x| trim_num(*x))
            .y_label_formatter(&|y| trim_num(*y))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(e)?;
        c.draw_series(DashedLineSeries::new(
            self.frontier(),
            6,
            4,
            RGBColor(90, 90, 90).stroke_width(2),
        ))
        .map_err(e)?;
        let label = TextStyle::from(("sans-serif", 11).into_font());
        for &t in self.transports {
            let col = color(t);
            let pts: Vec<_> = self.points.iter().filter(|p| p.0 == t).collect();
            c.draw_series(pts.iter().map(|p| Circle::new((p.2, p.3), 5, col.filled())))
                .map_err(e)?;
            // Points of one transport that nearly coincide (a setting that
            // does not touch it) share one label, "first–last".
            let mut groups: Vec<(f64, f64, String, String)> = Vec::new();
            for p in pts.iter().filter(|p| !p.1.is_empty()) {
                let near = |g: &&mut (f64, f64, String, String)| {
                    (g.0 / p.2 - 1.0).abs() < 0.03 && (g.1 / p.3 - 1.0).abs() < 0.3
                };
                match groups.iter_mut().find(near) {
                    Some(g) => g.3 = p.1.clone(),
                    None => groups.push((p.2, p.3, p.1.clone(), p.1.clone())),
                }
            }
            for (x, y, first, last) in groups {
                let text = if first == last {
                    first
                } else {
                    format!("{first}–{last}")
                };
                c.draw_series(std::iter::once(
                    EmptyElement::at((x, y)) + Text::new(text, (8, -14), label.clone().color(&col)),
                ))
                .map_err(e)?;
            }
        }
        Ok(())
    }
}

/// What a legend entry shows beside its label.
pub(crate) enum Key {
    Line(RGBColor),
    /// A dashed grey line: a model's curve.
    Dash,
    Shade(RGBColor),
    Ring,
}

/// Fills `root` white, titles it, and draws `entries` as a legend row under
/// the title; returns the area left for the panels.
pub(crate) fn titled_with_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    entries: &[(Key, &str)],
) -> Result<DrawingArea<DB, Shift>, String> {
    root.fill(&WHITE).map_err(e)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(e)?;
    let (key, rest) = root.split_vertically(30);
    legend_row(&key, entries).map_err(e)?;
    Ok(rest)
}

/// A legend entry per transport, in its colour.
pub(crate) fn transport_keys(transports: &[Transport]) -> Vec<(Key, &'static str)> {
    transports
        .iter()
        .map(|&t| (Key::Line(color(t)), t.as_str()))
        .collect()
}

/// The x-axis label of sweep point `x` (blank between points).
fn point_tick(labels: &[String], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() < 1e-6 && i >= 0.0 {
        labels.get(i as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// A centred row of legend entries, for charts whose lines leave no corner
/// reliably free.
fn legend_row<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(Key, &str)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let font =
        TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let width = |text: &str| {
        area.estimate_text_size(text, &font)
            .map_or(8 * text.len() as i32, |(w, _)| w as i32)
    };
    // Each entry: a 24 px key, 6 px gap, its label, then 24 px to the next.
    let total: i32 = entries.iter().map(|(_, l)| 54 + width(l)).sum::<i32>() - 24;
    let (w, h) = area.dim_in_pixel();
    let y = h as i32 / 2;
    let mut x = (w as i32 - total).max(0) / 2;
    for (key, label) in entries {
        match key {
            Key::Line(col) => area.draw(&PathElement::new(
                vec![(x, y), (x + 24, y)],
                col.stroke_width(3),
            ))?,
            Key::Shade(col) => {
                area.draw(&Rectangle::new([(x, y - 6), (x + 24, y + 6)], col.filled()))?
            }
            Key::Ring => area.draw(&Circle::new((x + 12, y), 8, BLACK.stroke_width(2)))?,
            Key::Dash => {
                for i in 0..3 {
                    area.draw(&PathElement::new(
                        vec![(x + i * 9, y), (x + i * 9 + 6, y)],
                        BLACK.stroke_width(2),
                    ))?
                }
            }
        }
        area.draw(&Text::new(*label, (x + 30, y), font.clone()))?;
        x += 54 + width(label);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resources_chart_plots_cpu_share_and_rss_from_the_samples() {
        use chatbench_results::machine::ProcSample;
        use chatbench_results::run_file::ServerCost;
        let sample = |t_ms, cpu_ns, rss_mib: u64| ProcSample {
            t_ms,
            cpu_ns,
            rss_bytes: rss_mib << 20,
            ..ProcSample::default()
        };
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run-a");
        let file = RunFile::read(&fixture).unwrap();
        let mut run = file.runs[0].clone();
        run.transport = Transport::Sse;
        run.server = Some(ServerCost {
            samples: vec![
                sample(0, 1_000_000, 10),
                sample(1_000, 501_000_000, 12),
                sample(2_000, 1_501_000_000, 12),
                // A sample at the same instant adds no point.
                sample(2_000, 1_501_000_000, 12),
            ],
            ..ServerCost::default()
        });
        let mut no_server = file.runs[0].clone();
        no_server.transport = Transport::WebSocket;
        no_server.server = None;
        let r = Resources::of(&[&run, &no_server]);
        assert_eq!(r.lines.len(), 1);
        assert_eq!(r.lines[0].0, Transport::Sse);
        assert_eq!(r.lines[0].1, vec![(1.0, 50.0, 12.0), (2.0, 100.0, 12.0)]);
    }

    #[test]
    fn axis_numbers() {
        let got: Vec<String> = [
            0.0, 0.04, 0.2469, 1.0, 2.5, 10.0, 246.3, 1000.0, 10_000.0, 20_000.0, 12_345.0, 1e6,
            1e7,
        ]
        .iter()
        .map(|&v| trim_num(v))
        .collect();
        assert_eq!(
            got,
            [
                "0", "0.04", "0.2469", "1", "2.5", "10", "246", "1000", "10k", "20k", "12345",
                "1M", "10M"
            ]
        );
    }

    #[test]
    fn percentile_labels() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(4.0), "99.99%");
        assert_eq!(percentile_label(1.5), "");
    }

    #[test]
    fn log_ranges_cover_whole_decades() {
        assert_eq!(y_range([1.7, 250.0].into_iter()), (1.0, 1000.0));
        // One decade of data gets two on the axis.
        assert_eq!(y_range([23.0, 83.0].into_iter()), (1.0, 100.0));
        assert_eq!(y_range([100.0].into_iter()), (10.0, 1000.0));
        assert_eq!(y_range([0.001, 0.0002].into_iter()), (0.0001, 0.01));
        assert_eq!(y_range(std::iter::empty()), (0.1, 10.0));
    }
}

#[cfg(test)]
mod coincide_tests {
    use super::*;

    #[test]
    fn percentiles_thin_out_where_fewer_than_10_samples_lie_beyond() {
        // 10,000 samples: 10 lie beyond p99.9 (x = 3).
        assert_eq!(thin_from(10_000), Some(3.0));
        assert_eq!(thin_from(100).map(|x| (x * 1e9).round() / 1e9), Some(1.0));
        assert_eq!(thin_from(10), None);
        assert_eq!(thin_from(0), None);
    }

    #[test]
    fn coinciding_lines_are_named_in_groups() {
        let a: Series = vec![(0.0, 10.0, 1.0), (1.0, 12.0, 1.0)];
        let b: Series = vec![(0.0, 9.0, 1.0), (1.0, 12.0, 1.0)];
        // p99 (the third field) may differ: only msg/s is compared.
        let a2: Series = vec![(0.0, 10.0, 7.0), (1.0, 12.0, 3.0)];
        let lines = vec![
            (Transport::ShortPoll, b.clone()),
            (Transport::LongPoll, a.clone()),
            (Transport::Sse, a2),
            (Transport::WebSocket, a),
        ];
        assert_eq!(
            coinciding(&lines).as_deref(),
            Some("msg/s lines that coincide (same seeded schedule), drawn nested: long_poll, sse, websocket")
        );
        assert_eq!(coinciding(&lines[..2]), None);
        let twice = vec![
            (Transport::ShortPoll, b.clone()),
            (Transport::LongPoll, b),
            (Transport::Sse, lines[1].1.clone()),
            (Transport::WebSocket, lines[1].1.clone()),
        ];
        assert_eq!(
            coinciding(&twice).as_deref(),
            Some("msg/s lines that coincide (same seeded schedule), drawn nested: short_poll, long_poll; sse, websocket")
        );
    }
}
