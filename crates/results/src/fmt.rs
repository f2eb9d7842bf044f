//! Numbers for people, both ways: durations and byte counts written for
//! people, and the durations and bandwidths people write in scenario files
//! and flags, parsed. A leaf: it uses nothing else of the crate.

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

/// Parses a human-readable duration (`250ms`, `1m 30s`), as scenario files
/// and flags write them.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

/// Parses a bandwidth: `"unlimited"` or a number with a unit of bits per
/// second (`bit`, `kbit`, `Mbit`, `Gbit`, each optionally followed by
/// `/s`).
pub fn parse_bandwidth(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    if t == "unlimited" {
        return Ok(None);
    }
    let t = t.strip_suffix("/s").unwrap_or(t);
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?} has no unit; write e.g. \"1Mbit\" or \"unlimited\""))?;
    let (num, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "Mbit" => 1e6,
        "Gbit" => 1e9,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?}; use bit, kbit, Mbit or Gbit"
            ))
        }
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: {num:?} is not a number"))?;
    let bps = v * scale;
    if !(1000.0..=1e12).contains(&bps) {
        return Err(format!(
            "{s:?} is out of range: from 1kbit to 1000Gbit per second"
        ));
    }
    Ok(Some(bps.round() as u64))
}

/// A count of CPUs in words: `0.5 CPU`, `1 CPU`, `2 CPUs` (a quota may be
/// a fraction of one).
pub fn cpus(n: f64) -> String {
    format!("{} CPU{}", sig3(n), if n <= 1.0 { "" } else { "s" })
}

/// A number for people with three significant digits (`0.0167`, `12.3`,
/// `597`), whole numbers without decimals, thousands separated
/// (`14,996`).
pub fn sig3(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let a = x.abs();
    if a >= 1000.0 || (x.fract() == 0.0 && a < 1e15) {
        let n = x.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        return if n < 0 { format!("-{out}") } else { out };
    }
    let decimals = if a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        (2 - a.log10().floor() as i32).clamp(0, 9) as usize
    };
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod sig3_tests {
    use super::sig3;

    #[test]
    fn three_significant_digits_and_separators() {
        assert_eq!(sig3(1234.4), "1,234");
        assert_eq!(sig3(1_234_567.0), "1,234,567");
        assert_eq!(sig3(123.4), "123");
        assert_eq!(sig3(12.34), "12.3");
        assert_eq!(sig3(1.234), "1.23");
        assert_eq!(sig3(0.016667), "0.0167");
        assert_eq!(sig3(0.0), "0");
        assert_eq!(sig3(10.0), "10");
        assert_eq!(sig3(50.0), "50");
        assert_eq!(sig3(0.05), "0.05");
        assert_eq!(sig3(1.004), "1");
        assert_eq!(sig3(-2500.0), "-2,500");
    }
}
