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
    TransportRun, SCHEMA,
};
use crate::Transport;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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
/// sweep point in input order.
pub fn merge(inputs: &[PathBuf], out: &Path, command: Vec<String>) -> Result<Merged, MergeError> {
    if inputs.len() < 2 {
        return Err(MergeError::TooFew(inputs.len()));
    }
    let files: Vec<RunFile> = inputs
        .iter()
        .map(|d| RunFile::read(d).map_err(MergeError::Read))
        .collect::<Result<_, _>>()?;
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
    let id = new_run_id();
    let dir = out.join(&scenario.name).join(&id);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MergeError::Io { path, source }
    };
    std::fs::create_dir_all(dir.parent().unwrap_or(out)).map_err(io(&dir))?;
    std::fs::create_dir(&dir).map_err(io(&dir))?;
    let mut file = RunFile {
        schema: SCHEMA.into(),
        run_id: id,
        created: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        command,
        environment: first.environment.clone(),
        scenario,
        server_mode: first.server_mode.clone(),
        cpus: first.cpus.clone(),
        complete: files.iter().all(|f| f.complete),
        problems,
        runs,
        summary: Vec::new(),
        merged_from: files.iter().map(|f| f.run_id.clone()).collect(),
    };
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
