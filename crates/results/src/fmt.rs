//! Numbers for people.

/// Formats microseconds for people: `850µs`, `12.3ms`, `1.25s`.
pub fn fmt_us(us: u64) -> String {
    fmt_us_sep(us, "")
}

/// [`fmt_us`] with `sep` between number and unit (`12.3 ms` for prose).
pub fn fmt_us_sep(us: u64, sep: &str) -> String {
    if us < 1_000 {
        format!("{us}{sep}µs")
    } else if us < 1_000_000 {
        format!("{:.1}{sep}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}{sep}s", us as f64 / 1e6)
    }
}
