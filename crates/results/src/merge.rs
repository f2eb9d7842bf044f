//! `chatbench merge`: several run folders of one scenario, made on one build
//! and machine, become one run folder with every repetition of every input.
//!
//! Use it to add repetitions later (`--repeat 2` today, 2 more tomorrow) or
//! to join transports that were run one at a time (`--transports sse`, then
//! `--transports websocket`). Medians are recomputed over all repetitions
//! and latency histograms are merged as histograms, never as percentiles.
//! Runs from different commits or machines are refused: that is what
//! `compare` is for.

use crate::run_file::{
    histogram_name, new_run_id, read_hlog_intervals, write_latency_histograms, LatencyRep, RunFile,
    TransportRun,
};
use crate::Transport;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why runs could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Fewer than two inputs.
    #[error("merge needs at least two run folders, got {0}")]
    TooFew(usize),
    /// The same run was given twice (by the same or another path).
    #[error("{b} is the same run as {a} (run id {run_id}): merging it twice would claim repetitions that never ran")]
    Duplicate {
        /// The first path to it.
        a: String,
        /// The second.
        b: String,
        /// Its run id.
        run_id: String,
    },
    /// A run folder could not be read.
    #[error(transparent)]
    Read(#[from] crate::run_file::ReadError),
    /// The inputs do not describe the same experiment.
    #[error("cannot merge {b} into {a}: {why}")]
    Mismatch {
        /// The first input.
        a: String,
        /// The input that differs.
        b: String,
        /// What differs.
        why: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A transport at a sweep point.
type Key = (Transport, usize);

/// The merged run folder.
#[derive(Debug)]
pub struct Merged {
    /// Where it was written.
    pub dir: PathBuf,
    /// Its `run.json`.
    pub file: RunFile,
}

/// Merges the run folders `inputs` (in this order) into a new folder
/// `<out>/<scenario>/<run-id>/` holding `run.json`, the histogram files and
/// the inputs' server logs. Repetitions are renumbered per transport and
/// sweep point in input order. The partial folders of a run spread over
/// machines, given all together and nothing else, are added up instead
/// (`merge_shards`).
pub fn merge(inputs: &[PathBuf], out: &Path, command: Vec<String>) -> Result<Merged, MergeError> {
    if inputs.len() < 2 {
        return Err(MergeError::TooFew(inputs.len()));
    }
    let files: Vec<RunFile> = inputs
        .iter()
        .map(|d| RunFile::read(d).map_err(MergeError::Read))
        .collect::<Result<_, _>>()?;
    if files.iter().all(RunFile::is_shard_part) {
        return merge_shards(inputs, files, out, command);
    }
    for (dir, f) in inputs.iter().zip(&files) {
        if f.is_shard_part() {
            return Err(MergeError::Mismatch {
                a: inputs[0].display().to_string(),
                b: dir.display().to_string(),
                why: format!(
                    "it is shard {} of {} of a run spread over machines; merge all {} shards of that run, and nothing else",
                    f.shards[0].index, f.shards[0].of, f.shards[0].of
                ),
            });
        }
    }
    let first = &files[0];
    for (dir, f) in inputs.iter().zip(&files).skip(1) {
        compatible(first, f).map_err(|why| MergeError::Mismatch {
            a: inputs[0].display().to_string(),
            b: dir.display().to_string(),
            why,
        })?;
    }

    for (i, f) in files.iter().enumerate() {
        if let Some(j) = files[..i].iter().position(|g| g.run_id == f.run_id) {
            return Err(MergeError::Duplicate {
                a: inputs[j].display().to_string(),
                b: inputs[i].display().to_string(),
                run_id: f.run_id.clone(),
            });
        }
    }

    let mut transports: Vec<Transport> = Vec::new();
    for t in files.iter().flat_map(|f| &f.scenario.transports) {
        if !transports.contains(t) {
            transports.push(*t);
        }
    }
    transports.sort();
    let mut next_rep: HashMap<Key, u32> = HashMap::new();
    let mut runs: Vec<TransportRun> = Vec::new();
    // The latency histogram of each repetition, renumbered.
    let mut hists: Vec<LatencyRep> = Vec::new();
    let mut problems = Vec::new();
    for (dir, f) in inputs.iter().zip(&files) {
        // This input's latency histograms, by tag (`rep<N>`).
        let mut intervals: HashMap<Key, HashMap<String, Histogram<u64>>> = HashMap::new();
        for run in &f.runs {
            let key = (run.transport, run.point);
            if let std::collections::hash_map::Entry::Vacant(slot) = intervals.entry(key) {
                let name = histogram_name(&f.scenario, run.transport, run.point);
                let path = dir.join(format!("{name}.hlog"));
                let found = if path.exists() {
                    read_hlog_intervals(&path)
                        .map_err(|source| MergeError::Io {
                            path: path.clone(),
                            source,
                        })?
                        .into_iter()
                        .collect()
                } else {
                    HashMap::new()
                };
                slot.insert(found);
            }
            let rep = next_rep.entry(key).or_insert(0);
            let mut run = run.clone();
            let tag = format!("rep{}", run.repetition);
            run.repetition = *rep;
            *rep += 1;
            match intervals.get_mut(&key).and_then(|m| m.remove(&tag)) {
                Some(h) => hists.push((run.transport, run.point, run.repetition, h)),
                None => problems.push(format!(
                    "{}: no latency histogram for {} repetition {}",
                    dir.display(),
                    run.transport,
                    tag
                )),
            }
            runs.push(run);
        }
        problems.extend(f.problems.iter().map(|p| format!("{}: {p}", f.run_id)));
    }

    let mut scenario = first.scenario.clone();
    scenario.transports = transports.clone();
    scenario.repeat = next_rep.values().copied().max().unwrap_or(1);
    let (id, dir) = new_folder(out, &scenario.name)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MergeError::Io { path, source }
    };
    let mut file = RunFile::begin(id, command, scenario, first.setting());
    file.complete = files.iter().all(|f| f.complete);
    file.problems = problems;
    file.runs = runs;
    file.merged_from = files.iter().map(|f| f.run_id.clone()).collect();
    file.summarize();

    write_latency_histograms(&dir, &file.scenario, &hists, &file.runs).map_err(io(&dir))?;
    let mut log = String::new();
    for (d, f) in inputs.iter().zip(&files) {
        if let Ok(text) = std::fs::read_to_string(d.join("server.log")) {
            log.push_str(&format!("==== server.log of {}\n{text}", f.run_id));
        }
    }
    if !log.is_empty() {
        let p = dir.join("server.log");
        std::fs::write(&p, log).map_err(io(&p))?;
    }
    file.write(&dir).map_err(io(&dir))?;
    Ok(Merged { dir, file })
}

/// A new run folder `<out>/<name>/<run-id>/` (never an existing one), and
/// its run id.
fn new_folder(out: &Path, name: &str) -> Result<(String, PathBuf), MergeError> {
    let id = new_run_id();
    let dir = out.join(name).join(&id);
    let fail = |source| MergeError::Io {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir.parent().unwrap_or(out)).map_err(fail)?;
    std::fs::create_dir(&dir).map_err(fail)?;
    Ok((id, dir))
}

/// Whether `b` measured the same experiment as `a` on the same build and
/// machine; if not, what differs, in words.
fn compatible(a: &RunFile, b: &RunFile) -> Result<(), String> {
    if a.environment != b.environment {
        let field = first_difference(
            &serde_json::to_value(&a.environment).unwrap_or_default(),
            &serde_json::to_value(&b.environment).unwrap_or_default(),
        );
        return Err(format!(
            "they ran on different builds or machines (environment {field}); put them side by side with `chatbench compare` instead"
        ));
    }
    if a.server_mode != b.server_mode || a.cpus != b.cpus {
        return Err(format!(
            "their servers ran differently ({} on CPUs {:?} against {} on CPUs {:?})",
            a.server_mode, a.cpus.server, b.server_mode, b.cpus.server
        ));
    }
    let scenario = |f: &RunFile| {
        let mut v = serde_json::to_value(&f.scenario).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.remove("transports");
            m.remove("repeat");
        }
        v
    };
    let (sa, sb) = (scenario(a), scenario(b));
    if sa != sb {
        return Err(format!(
            "their scenarios differ in {} (only transports and repeat may differ)",
            first_difference(&sa, &sb)
        ));
    }
    Ok(())
}

/// The dotted path of the first field where `a` and `b` differ, with both
/// values: `clients.rooms (4 against 5)`.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value) -> String {
    use serde_json::Value;
    fn walk(a: &Value, b: &Value, path: &mut Vec<String>) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let (va, vb) = (
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                    );
                    if va != vb {
                        path.push(k.clone());
                        return walk(va, vb, path);
                    }
                }
                None
            }
            _ if a != b => Some(format!("{} ({a} against {b})", path.join("."))),
            _ => None,
        }
    }
    walk(a, b, &mut Vec::new()).unwrap_or_else(|| "nothing".into())
}

/// The file in a shard's partial folder that holds what it measured: one
/// JSON [`Measurement`](crate::measurement::Measurement) per line, one line
/// per transport run, for `chatbench merge` to add up with the other
/// shards'.
pub const MEASUREMENTS: &str = "measurements.jsonl";

/// Merges the partial folders of every shard of one run spread over
/// machines (`chatbench run --shard I/N`) into one run folder: for each
/// transport run, the shards' measurements are added up (histograms
/// merged, audit, bytes and CPU summed), as `[clients] processes` does on
/// one machine. The shards must come from one scenario and one `--start-at`,
/// and every index from 0 to N-1 must be there once; their builds and
/// machines may differ. A transport run is flagged `clock_uncertain` when a
/// shard's clock uncertainty exceeds 10% of its p50 latency. `files` are
/// the inputs' `run.json`, already read.
fn merge_shards(
    inputs: &[PathBuf],
    files: Vec<RunFile>,
    out: &Path,
    command: Vec<String>,
) -> Result<Merged, MergeError> {
    use crate::measurement::{Measurement, ServerSide};
    let order = shard_order(inputs, &files)?;
    let parts = read_measurements(inputs, &order)?;
    let scenario = files[0].scenario.clone();
    let worst_uncertainty = files
        .iter()
        .map(|f| f.shards[0].clock.uncertainty_us)
        .max()
        .unwrap_or(0);
    let mut problems: Vec<String> = files
        .iter()
        .flat_map(|f| f.problems.iter().map(move |p| format!("{}: {p}", f.run_id)))
        .collect();
    let mut runs = Vec::new();
    let mut hists: Vec<LatencyRep> = Vec::new();
    let mut complete = files.iter().all(|f| f.complete);
    for m0 in &parts[0] {
        let Some(t) = m0.transport else { continue };
        let key = (t, m0.point, m0.repetition);
        let mut all: Option<Measurement> = None;
        for (k, ms) in parts.iter().enumerate() {
            let Some(m) = ms
                .iter()
                .find(|m| (m.transport, m.point, m.repetition) == (Some(key.0), key.1, key.2))
            else {
                problems.push(format!(
                    "shard {k} has no measurement of {t} at point {} repetition {}",
                    key.1,
                    key.2 + 1
                ));
                complete = false;
                continue;
            };
            match &mut all {
                None => {
                    // A copy through JSON: Measurement holds histograms, which
                    // do not clone cheaply in place.
                    let copy = serde_json::to_string(m)
                        .and_then(|j| serde_json::from_str::<Measurement>(&j))
                        .map_err(|e| MergeError::Io {
                            path: inputs[order[k]].join(MEASUREMENTS),
                            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                        })?;
                    all = Some(copy);
                }
                Some(a) => {
                    if let Err(e) = a.combine(m) {
                        problems.push(format!("shard {k}: {e}"));
                        complete = false;
                    }
                }
            }
        }
        let Some(m) = all else { continue };
        let at = scenario
            .at_point(key.1)
            .unwrap_or_else(|_| scenario.clone());
        let mut run = m.summarize(
            &at,
            ServerSide {
                counters: None,
                cost: None,
                cpus: None,
                tcp: None,
            },
        );
        if worst_uncertainty as f64 > 0.1 * run.latency_us.p50 as f64 {
            run.flags.push("clock_uncertain".into());
        }
        hists.push((t, key.1, key.2, m.histograms.latency));
        runs.push(run);
    }
    let (id, dir) = new_folder(out, &scenario.name)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MergeError::Io { path, source }
    };
    let mut file = RunFile::begin(id, command, scenario, files[order[0]].setting());
    file.complete = complete;
    file.problems = problems;
    file.runs = runs;
    file.merged_from = order.iter().map(|&i| files[i].run_id.clone()).collect();
    file.shards = order.iter().map(|&i| files[i].shards[0].clone()).collect();
    file.summarize();
    write_latency_histograms(&dir, &file.scenario, &hists, &file.runs).map_err(io(&dir))?;
    file.write(&dir).map_err(io(&dir))?;
    Ok(Merged { dir, file })
}

/// Checks that `files` are every shard of one run, once each, and returns
/// their positions in shard order.
fn shard_order(inputs: &[PathBuf], files: &[RunFile]) -> Result<Vec<usize>, MergeError> {
    let mismatch = |i: usize, why: String| MergeError::Mismatch {
        a: inputs[0].display().to_string(),
        b: inputs[i].display().to_string(),
        why,
    };
    for (i, f) in files.iter().enumerate() {
        if !f.is_shard_part() {
            return Err(mismatch(
                i,
                "it is not one shard's partial folder (`chatbench run --shard I/N`); mix shards of one run only".into(),
            ));
        }
    }
    let first = &files[0].shards[0];
    let of = first.of;
    let mut seen = vec![None::<usize>; of as usize];
    for (i, f) in files.iter().enumerate() {
        let sh = &f.shards[0];
        if f.scenario != files[0].scenario {
            let (a, b) = (
                serde_json::to_value(&files[0].scenario).unwrap_or_default(),
                serde_json::to_value(&f.scenario).unwrap_or_default(),
            );
            return Err(mismatch(
                i,
                format!(
                    "their scenarios differ in {}; the shards of one run share it",
                    first_difference(&a, &b)
                ),
            ));
        }
        if sh.of != of || sh.start_at_unix_us != first.start_at_unix_us {
            return Err(mismatch(
                i,
                format!(
                    "it is shard {}/{} starting at {} µs, not a shard of the run {}/{} starting at {} µs",
                    sh.index, sh.of, sh.start_at_unix_us, first.index, of, first.start_at_unix_us
                ),
            ));
        }
        match seen.get_mut(sh.index as usize) {
            Some(slot @ None) => *slot = Some(i),
            Some(Some(j)) => {
                return Err(MergeError::Duplicate {
                    a: inputs[*j].display().to_string(),
                    b: inputs[i].display().to_string(),
                    run_id: format!("shard {}/{of}", sh.index),
                })
            }
            None => {
                return Err(mismatch(
                    i,
                    format!("its index {} is not below {of}", sh.index),
                ))
            }
        }
    }
    let missing: Vec<String> = (0..of)
        .filter(|&k| seen[k as usize].is_none())
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(MergeError::Mismatch {
            a: inputs[0].display().to_string(),
            b: format!("shards {}", missing.join(", ")),
            why: format!("a run of {of} shards needs all of them; these are missing"),
        });
    }
    Ok(seen.iter().map(|s| s.unwrap_or(0)).collect())
}

/// Every shard's measurements ([`MEASUREMENTS`]), in shard `order`.
fn read_measurements(
    inputs: &[PathBuf],
    order: &[usize],
) -> Result<Vec<Vec<crate::measurement::Measurement>>, MergeError> {
    use crate::measurement::Measurement;
    let mut parts: Vec<Vec<Measurement>> = Vec::new();
    for &i in order {
        let p = inputs[i].join(MEASUREMENTS);
        let text = std::fs::read_to_string(&p).map_err(|source| MergeError::Io {
            path: p.clone(),
            source,
        })?;
        let ms = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str::<Measurement>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| MergeError::Io {
                path: p.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
        parts.push(ms);
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Environment;
    use serde_json::json;

    #[test]
    fn first_difference_names_the_nested_field_and_both_values() {
        let a = json!({"name": "quick", "clients": {"rooms": 4, "ramp": "1s"}, "seed": 1});
        let b = json!({"name": "quick", "clients": {"rooms": 5, "ramp": "1s"}, "seed": 1});
        assert_eq!(first_difference(&a, &b), "clients.rooms (4 against 5)");
        let c = json!({"name": "quick", "clients": {"rooms": 4, "ramp": "1s"}, "seed": 2});
        assert_eq!(first_difference(&a, &c), "seed (1 against 2)");
        assert_eq!(first_difference(&a, &a), "nothing");
    }

    #[test]
    fn environment_differences_are_refused() {
        let e = Environment {
            commit: "aaa".into(),
            ..Environment::default()
        };
        let e2 = Environment {
            commit: "bbb".into(),
            ..e.clone()
        };
        assert_eq!(
            first_difference(
                &serde_json::to_value(&e).unwrap(),
                &serde_json::to_value(&e2).unwrap()
            ),
            "commit (\"aaa\" against \"bbb\")"
        );
    }
}
