//! run.json's layout: serde_json's pretty printing (two spaces an
//! indent), except that an object or array that is an element of an array
//! inside a run (a second of the timeline, a server sample, a
//! repetition's figures) is written on one line. A 100-second run's
//! per-second samples then take one line a second instead of nine, and the
//! file about half the bytes, while every field a reader looks for by eye
//! keeps its own line.

use serde::Serialize;
use std::io;

/// Array elements at this depth or deeper (the root is 1, `runs` 2, a run
/// 3) are written on one line.
const FLAT_FROM: usize = 4;

/// `value` as run.json writes it.
pub fn to_vec<T: Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64 * 1024);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Layout::default());
    value.serialize(&mut ser)?;
    Ok(out)
}

/// The formatter: a stack of open containers, each with whether it is
/// written on one line.
#[derive(Debug, Default)]
struct Layout {
    /// Per open container: (is an array, is written on one line).
    open: Vec<(bool, bool)>,
    /// The innermost open container has a value.
    has_value: bool,
}

impl Layout {
    fn push(&mut self, array: bool) {
        let flat = match self.open.last() {
            Some(&(parent_array, parent_flat)) => {
                parent_flat || (parent_array && self.open.len() + 1 >= FLAT_FROM)
            }
            None => false,
        };
        self.open.push((array, flat));
        self.has_value = false;
    }

    fn flat(&self) -> bool {
        self.open.last().is_some_and(|c| c.1)
    }

    fn close<W: ?Sized + io::Write>(&mut self, w: &mut W, bracket: &[u8]) -> io::Result<()> {
        let flat = self.open.pop().is_some_and(|c| c.1);
        if self.has_value && !flat {
            w.write_all(b"\n")?;
            self.indent(w)?;
        }
        w.write_all(bracket)
    }

    fn indent<W: ?Sized + io::Write>(&self, w: &mut W) -> io::Result<()> {
        for _ in 0..self.open.len() {
            w.write_all(b"  ")?;
        }
        Ok(())
    }

    fn element<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if self.flat() {
            return if first { Ok(()) } else { w.write_all(b",") };
        }
        w.write_all(if first { b"\n" } else { b",\n" })?;
        self.indent(w)
    }
}

impl serde_json::ser::Formatter for Layout {
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.push(true);
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"]")
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.element(w, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.push(false);
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"}")
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.element(w, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(if self.flat() { b":" } else { b": " })
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    struct Sample {
        t_ms: u64,
        rss: u64,
    }

    #[derive(Serialize)]
    struct Run {
        latency_us: BTreeMap<&'static str, u64>,
        samples: Vec<Sample>,
        flags: Vec<&'static str>,
        none: BTreeMap<&'static str, u64>,
    }

    #[derive(Serialize)]
    struct File {
        schema: u32,
        empty: Vec<u32>,
        runs: Vec<Run>,
    }

    #[test]
    fn shallow_containers_are_pretty_and_deep_array_elements_one_line() {
        let v = File {
            schema: 1,
            empty: vec![],
            runs: vec![Run {
                latency_us: [("p50", 5), ("p99", 9)].into(),
                samples: vec![Sample { t_ms: 0, rss: 1 }, Sample { t_ms: 1000, rss: 2 }],
                flags: vec!["a", "b"],
                none: BTreeMap::new(),
            }],
        };
        let text = String::from_utf8(to_vec(&v).unwrap()).unwrap();
        let want = r#"{
  "schema": 1,
  "empty": [],
  "runs": [
    {
      "latency_us": {
        "p50": 5,
        "p99": 9
      },
      "samples": [
        {"t_ms":0,"rss":1},
        {"t_ms":1000,"rss":2}
      ],
      "flags": [
        "a",
        "b"
      ],
      "none": {}
    }
  ]
}"#;
        assert_eq!(text, want);
        // The same value as serde_json's own printing.
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, serde_json::to_value(&v).unwrap());
    }

    #[test]
    fn without_deep_array_elements_it_is_serde_jsons_pretty_printing() {
        let v = serde_json::json!({"a": [1, 2, {"b": [3]}], "d": {"e": {"f": [true, null]}}});
        assert_eq!(to_vec(&v).unwrap(), serde_json::to_vec_pretty(&v).unwrap());
    }
}
