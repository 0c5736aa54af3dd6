//! Template mining side by side: aiops's miner against logdrain (Rust) and Drain3 (Python) on
//! the same Loghub 2k lines. `benches/compare-templates` sets up Drain3 and runs this:
//!
//! ```text
//! cargo run --release -p aiops-benches --example compare_templates -- LOGHUB_DIR \
//!     (--drain3 DRAIN3.json | --drain3-python PYTHON --drain3-driver drain3_driver.py) \
//!     [--repetitions N] [--json]
//! ```
//!
//! - Lines: the `Content` column of every `LOGHUB_DIR/<D>/<D>_2k.log_structured.csv` (read
//!   with `aiops_detect::eval::loghub::read_structured`), in file order. The Drain3 driver
//!   reads the same column and reports an FNV-1a 64 hash per data set, checked here.
//! - aiops: `aiops_detect::template::TemplateMiner` with `TemplateConfig::default()` (its
//!   masking is built in). It is single threaded, so its lines/s is one core's.
//! - logdrain 0.3.2: `Miner::builder()` defaults (similarity 0.4, depth 4, 100 clusters per
//!   leaf, numeric tokens parametrized) plus all of its built-in masks (`uuid`, `hex32`,
//!   `email`, `ipv4`, `jwt`), called from one thread.
//! - Drain3: `benches/python/drain3_driver.py` (Drain3's defaults plus the masking of its
//!   `examples/drain3.ini`). With `--drain3 FILE` its figures come from a finished driver run;
//!   with `--drain3-python`/`--drain3-driver` the driver is run once per repetition, between
//!   the Rust sides, so that all three are measured in the same stretch of time (what the
//!   script does: ratios are then robust to other load on the machine).
//!
//! Lines/s: each repetition builds a fresh miner per data set (outside the timed region) and
//! times only the loop that adds every line and keeps its cluster id; a repetition's time is the
//! sum over the data sets and lines/s is all lines over the median repetition time (default 11
//! repetitions). aiops and logdrain alternate data set by data set, and which of them goes
//! first alternates by repetition.
//!
//! GA (grouping accuracy, Zhu et al., "Tools and Benchmarks for Automated Log Parsing",
//! ICSE-SEIP 2019): per data set, computed with `aiops_detect::eval::loghub::grouping_accuracy`
//! from each line's cluster id (as returned when the line was added) against the ground truth
//! `EventTemplate` column, which is one-to-one with `EventId` in these files. Every side is
//! scored the same way. Each side's cluster ids must be the same in every repetition.
//!
//! CPU time: the CPU seconds of the mining thread over the same loop
//! (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`; Drain3: `time.thread_time`), reported per
//! million lines for the median repetition, beside lines/s: on a shared machine wall-clock
//! lines/s drops when other work takes the core, CPU seconds much less.
//!
//! Output: a table (side, lines/s, CPU s per million lines, GA average, GA minimum), the
//! machine (CPU model, cores), GA per data set, the ratios
//! aiops/Drain3 and aiops/logdrain of lines/s, and whether each target of issue 7 is met;
//! with `--json`, one JSON object with the same figures.

use aiops_detect::eval::loghub::{self, grouping_accuracy};
use aiops_detect::template::{TemplateConfig, TemplateMiner};
use logdrain::{Miner, builtin_masks};
use serde_json::{Map, Value, json};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Targets of issue 7 for template mining.
const TARGET_LINES_PER_SECOND: f64 = 1_000_000.0;
const TARGET_VS_DRAIN3: f64 = 50.0;
const TARGET_VS_LOGDRAIN: f64 = 3.0;

const USAGE: &str = "usage: compare_templates LOGHUB_DIR (--drain3 DRAIN3.json | --drain3-python PYTHON --drain3-driver drain3_driver.py) [--repetitions N (default 11)] [--json]";

struct Dataset {
    name: String,
    lines: Vec<String>,
    truth: Vec<String>,
}

/// One side's figures.
struct Side {
    name: &'static str,
    /// Seconds of each repetition (sum over data sets).
    seconds: Vec<f64>,
    /// CPU seconds of the mining thread in each repetition (sum over data sets); empty when
    /// not measured (a Drain3 driver run from before it reported them).
    cpu_seconds: Vec<f64>,
    /// GA per data set, in the order of the data sets.
    ga: Vec<f64>,
    /// Lines of one repetition.
    lines: usize,
}

impl Side {
    fn lines_per_second(&self) -> f64 {
        let m = median(&self.seconds);
        if m > 0.0 { self.lines as f64 / m } else { 0.0 }
    }

    /// CPU seconds of the mining thread per million lines (median repetition), when
    /// measured.
    fn cpu_secs_per_million_lines(&self) -> Option<f64> {
        (!self.cpu_seconds.is_empty() && self.lines > 0)
            .then(|| median(&self.cpu_seconds) / self.lines as f64 * 1e6)
    }

    fn ga_avg(&self) -> f64 {
        self.ga.iter().sum::<f64>() / self.ga.len().max(1) as f64
    }

    fn ga_min(&self) -> f64 {
        self.ga
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .min(1.0)
    }

    fn to_json(&self, data: &[Dataset]) -> Value {
        let ga: Map<String, Value> = data
            .iter()
            .zip(&self.ga)
            .map(|(d, g)| (d.name.clone(), json!(g)))
            .collect();
        json!({
            "lines_per_second": self.lines_per_second(),
            "repetitions": self.seconds.len(),
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
            "cpu_seconds_per_million_lines": self.cpu_secs_per_million_lines(),
            "threads": 1,
            "ga_avg": self.ga_avg(),
            "ga_min": self.ga_min(),
            "ga": ga,
        })
    }
}

/// The machine, for the report: the CPU model of `/proc/cpuinfo` and the number of cores
/// this process may use (`unknown CPU` where `/proc/cpuinfo` says nothing).
fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores")
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let at = |i: usize| s.get(i).copied().unwrap_or(0.0);
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => at(n / 2),
        _ => (at(n / 2 - 1) + at(n / 2)) / 2.0,
    }
}

/// FNV-1a 64 over each line's UTF-8 bytes followed by `\n` (as in the Drain3 driver).
fn fnv1a64(lines: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for l in lines {
        for &b in l.as_bytes().iter().chain(b"\n") {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn load(dir: &Path) -> Result<Vec<Dataset>, Box<dyn Error>> {
    let mut out = Vec::new();
    for (name, path) in loghub::datasets(dir)? {
        let rows = loghub::read_structured(&path)?;
        let (lines, truth) = rows.into_iter().map(|r| (r.content, r.template)).unzip();
        out.push(Dataset { name, lines, truth });
    }
    Ok(out)
}

fn ga_of(ids: &[u64], truth: &[String]) -> f64 {
    let parsed: Vec<String> = ids.iter().map(u64::to_string).collect();
    grouping_accuracy(&parsed, truth)
}

/// CPU time of the calling thread, seconds (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`); 0 if
/// the clock cannot be read.
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc == 0 {
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    } else {
        0.0
    }
}

/// The time of one side over one data set: wall-clock seconds, CPU seconds of this thread,
/// and the cluster id of every line.
type Mined = (f64, f64, Vec<u64>);

/// aiops over one data set with a fresh miner: the seconds of the add loop and the ids.
fn mine_aiops(d: &Dataset) -> Mined {
    let mut miner = TemplateMiner::new(&TemplateConfig::default());
    let mut ids = Vec::with_capacity(d.lines.len());
    let t = Instant::now();
    let cpu = thread_cpu_secs();
    for l in &d.lines {
        ids.push(miner.add(l).template_id);
    }
    let cpu = thread_cpu_secs() - cpu;
    (t.elapsed().as_secs_f64(), cpu, ids)
}

fn logdrain_miner() -> Result<Miner, Box<dyn Error>> {
    Ok(Miner::builder()
        .masks([
            builtin_masks::uuid(),
            builtin_masks::hex32(),
            builtin_masks::email(),
            builtin_masks::ipv4(),
            builtin_masks::jwt(),
        ])
        .build()?)
}

/// logdrain over one data set with a fresh miner: the seconds of the add loop and the ids.
fn mine_logdrain(d: &Dataset) -> Result<Mined, Box<dyn Error>> {
    let miner = logdrain_miner()?;
    let mut ids = Vec::with_capacity(d.lines.len());
    let t = Instant::now();
    let cpu = thread_cpu_secs();
    for l in &d.lines {
        ids.push(miner.add(l).cluster_id);
    }
    let cpu = thread_cpu_secs() - cpu;
    Ok((t.elapsed().as_secs_f64(), cpu, ids))
}

/// The cluster ids of every data set from a side's first repetition; later repetitions must
/// give the same.
struct FirstIds {
    side: &'static str,
    ids: Vec<Option<Vec<u64>>>,
}

impl FirstIds {
    fn new(side: &'static str, datasets: usize) -> Self {
        FirstIds {
            side,
            ids: vec![None; datasets],
        }
    }

    fn check(&mut self, k: usize, ids: Vec<u64>) -> Result<(), Box<dyn Error>> {
        match self.ids.get_mut(k) {
            Some(slot @ None) => *slot = Some(ids),
            Some(Some(first)) if *first != ids => {
                return Err(
                    format!("{}: cluster ids differ between repetitions", self.side).into(),
                );
            }
            _ => {}
        }
        Ok(())
    }

    fn ga(&self, data: &[Dataset]) -> Vec<f64> {
        data.iter()
            .zip(&self.ids)
            .map(|(d, ids)| ids.as_deref().map_or(0.0, |ids| ga_of(ids, &d.truth)))
            .collect()
    }
}

/// One run of the Drain3 driver (see `benches/python/drain3_driver.py`): its repetition
/// times, the cluster ids per data set, and its setup (versions, configuration).
struct Drain3Run {
    seconds: Vec<f64>,
    cpu_seconds: Vec<f64>,
    ids: Vec<Vec<u64>>,
    setup: Value,
}

/// Reads the driver's JSON and checks it against the data sets read here (names, line
/// hashes, one id per line).
fn read_drain3(path: &Path, data: &[Dataset]) -> Result<Drain3Run, Box<dyn Error>> {
    let bad = |what: &str| format!("{}: {what}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| bad(&e.to_string()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
    let seconds: Vec<f64> = v
        .get("seconds")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no seconds array"))?
        .iter()
        .map(|x| x.as_f64().ok_or_else(|| bad("a time is not a number")))
        .collect::<Result<_, _>>()?;
    // Absent from drivers older than the CPU measurement.
    let cpu_seconds: Vec<f64> = v
        .get("cpu_seconds")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let sets = v
        .get("datasets")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no datasets array"))?;
    if sets.len() != data.len() {
        let msg = format!("{} data sets, expected {}", sets.len(), data.len());
        return Err(bad(&msg).into());
    }
    let mut all = Vec::with_capacity(data.len());
    for (d, s) in data.iter().zip(sets) {
        let name = s.get("dataset").and_then(Value::as_str).unwrap_or("");
        if name != d.name {
            return Err(bad(&format!("data set {name:?}, expected {:?}", d.name)).into());
        }
        if s.get("fnv1a64").and_then(Value::as_str) != Some(fnv1a64(&d.lines).as_str()) {
            return Err(bad(&format!("{name}: Drain3 mined other lines (hash differs)")).into());
        }
        let ids: Vec<u64> = s
            .get("cluster_ids")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(&format!("{name}: no cluster_ids")))?
            .iter()
            .map(|x| {
                x.as_u64()
                    .ok_or_else(|| bad(&format!("{name}: a cluster id is not an integer")))
            })
            .collect::<Result<_, _>>()?;
        if ids.len() != d.lines.len() {
            let msg = format!("{name}: {} ids for {} lines", ids.len(), d.lines.len());
            return Err(bad(&msg).into());
        }
        all.push(ids);
    }
    let setup = json!({
        "drain3_version": v.get("drain3_version").cloned().unwrap_or(Value::Null),
        "python": v.get("python").cloned().unwrap_or(Value::Null),
        "config": v.get("config").cloned().unwrap_or(Value::Null),
    });
    Ok(Drain3Run {
        seconds,
        cpu_seconds,
        ids: all,
        setup,
    })
}

/// Runs the Drain3 driver for one repetition over `dir` and reads its JSON.
fn run_drain3_driver(
    python: &Path,
    driver: &Path,
    dir: &Path,
    data: &[Dataset],
    rep: usize,
) -> Result<Drain3Run, Box<dyn Error>> {
    let out = std::env::temp_dir().join(format!(
        "aiops-compare-templates-{}-{rep}.json",
        std::process::id()
    ));
    let status = std::process::Command::new(python)
        .arg(driver)
        .arg(dir)
        .args(["--repetitions", "1", "--out"])
        .arg(&out)
        .status()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !status.success() {
        return Err(format!("Drain3 driver failed: {status}").into());
    }
    let run = read_drain3(&out, data);
    // A leftover temporary file is harmless; the result is what matters.
    let _ = std::fs::remove_file(&out);
    run
}

/// Where the Drain3 figures come from.
enum Drain3Source {
    /// A finished driver run (`--drain3 FILE`).
    File(PathBuf),
    /// Run the driver once per repetition, between the Rust sides (`--drain3-python PY
    /// --drain3-driver SCRIPT`).
    Driver { python: PathBuf, driver: PathBuf },
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let json_out = args.iter().any(|a| a == "--json");
    let dir = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .ok_or(USAGE)?;
    let source = match (
        opt("--drain3"),
        opt("--drain3-python"),
        opt("--drain3-driver"),
    ) {
        (Some(f), None, None) => Drain3Source::File(PathBuf::from(f)),
        (None, Some(py), Some(dr)) => Drain3Source::Driver {
            python: PathBuf::from(py),
            driver: PathBuf::from(dr),
        },
        _ => return Err(USAGE.into()),
    };
    let reps: usize = match opt("--repetitions") {
        Some(s) => s.parse().map_err(|_| USAGE)?,
        None => 11,
    };
    if reps == 0 {
        return Err(USAGE.into());
    }

    let data = load(&dir)?;
    let total_lines: usize = data.iter().map(|d| d.lines.len()).sum();

    let new_side = |name| Side {
        name,
        seconds: Vec::with_capacity(reps),
        cpu_seconds: Vec::with_capacity(reps),
        ga: Vec::new(),
        lines: total_lines,
    };
    let (mut aiops, mut logd, mut drain3) =
        (new_side("aiops"), new_side("logdrain"), new_side("drain3"));
    let mut aiops_ids = FirstIds::new("aiops", data.len());
    let mut logd_ids = FirstIds::new("logdrain", data.len());
    let mut drain3_ids = FirstIds::new("drain3", data.len());
    let mut drain3_setup = Value::Null;
    let mut take_drain3 = |run: Drain3Run, drain3: &mut Side| -> Result<(), Box<dyn Error>> {
        drain3.seconds.extend(run.seconds);
        drain3.cpu_seconds.extend(run.cpu_seconds);
        for (k, ids) in run.ids.into_iter().enumerate() {
            drain3_ids.check(k, ids)?;
        }
        drain3_setup = run.setup;
        Ok(())
    };
    if let Drain3Source::File(path) = &source {
        take_drain3(read_drain3(path, &data)?, &mut drain3)?;
    }
    // The Rust sides alternate data set by data set (which of them goes first alternates by
    // repetition); with the driver, Drain3 runs once per repetition between them. Load from
    // other processes then hits every side alike.
    for rep in 0..reps {
        if let Drain3Source::Driver { python, driver } = &source {
            take_drain3(
                run_drain3_driver(python, driver, &dir, &data, rep)?,
                &mut drain3,
            )?;
        }
        let (mut a_secs, mut l_secs, mut a_cpu, mut l_cpu) = (0.0, 0.0, 0.0, 0.0);
        for (k, d) in data.iter().enumerate() {
            let (a, l) = if rep % 2 == 0 {
                let a = mine_aiops(d);
                (a, mine_logdrain(d)?)
            } else {
                let l = mine_logdrain(d)?;
                (mine_aiops(d), l)
            };
            a_secs += a.0;
            l_secs += l.0;
            a_cpu += a.1;
            l_cpu += l.1;
            aiops_ids.check(k, a.2)?;
            logd_ids.check(k, l.2)?;
        }
        aiops.seconds.push(a_secs);
        logd.seconds.push(l_secs);
        aiops.cpu_seconds.push(a_cpu);
        logd.cpu_seconds.push(l_cpu);
    }
    aiops.ga = aiops_ids.ga(&data);
    logd.ga = logd_ids.ga(&data);
    drain3.ga = drain3_ids.ga(&data);

    let ratio = |other: &Side| {
        let o = other.lines_per_second();
        if o > 0.0 {
            aiops.lines_per_second() / o
        } else {
            0.0
        }
    };
    let (vs_drain3, vs_logdrain) = (ratio(&drain3), ratio(&logd));
    // (JSON key, label, met)
    let targets = [
        (
            "lines_per_second_at_least_1m",
            "aiops >= 1,000,000 lines/s on one core",
            aiops.lines_per_second() >= TARGET_LINES_PER_SECOND,
        ),
        (
            "at_least_50x_drain3",
            "aiops >= 50x Drain3 lines/s",
            vs_drain3 >= TARGET_VS_DRAIN3,
        ),
        (
            "at_least_3x_logdrain",
            "aiops >= 3x logdrain lines/s",
            vs_logdrain >= TARGET_VS_LOGDRAIN,
        ),
        (
            "ga_at_least_drain3",
            "aiops GA avg >= Drain3 GA avg",
            aiops.ga_avg() >= drain3.ga_avg(),
        ),
        (
            "ga_at_least_logdrain",
            "aiops GA avg >= logdrain GA avg",
            aiops.ga_avg() >= logd.ga_avg(),
        ),
    ];

    if json_out {
        let met: Map<String, Value> = targets
            .iter()
            .map(|(key, _, met)| (key.to_string(), json!(met)))
            .collect();
        let out = json!({
            "machine": machine(),
            "datasets": data.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            "lines": total_lines,
            "aiops": aiops.to_json(&data),
            "logdrain": logd.to_json(&data),
            "drain3": drain3.to_json(&data),
            "drain3_setup": drain3_setup,
            "ratios": { "aiops_vs_drain3": vs_drain3, "aiops_vs_logdrain": vs_logdrain },
            "targets_met": met,
        });
        println!("{out}");
        return Ok(());
    }

    println!(
        "Template mining on Loghub 2k: {} data sets, {} lines (Content column).",
        data.len(),
        total_lines
    );
    println!(
        "lines/s = all lines / median time of {reps} repetitions (Drain3: {}); one thread per side (aiops's miner is single threaded); CPU s/1M = CPU seconds of the mining thread per million lines (median repetition).",
        drain3.seconds.len()
    );
    println!("machine: {}", machine());
    println!();
    println!(
        "{:<10} {:>12} {:>10} {:>8} {:>8}",
        "side", "lines/s", "CPU s/1M", "GA avg", "GA min"
    );
    for s in [&aiops, &logd, &drain3] {
        println!(
            "{:<10} {:>12.0} {:>10} {:>8.4} {:>8.3}",
            s.name,
            s.lines_per_second(),
            s.cpu_secs_per_million_lines()
                .map_or("-".to_string(), |c| format!("{c:.3}")),
            s.ga_avg(),
            s.ga_min()
        );
    }
    println!();
    println!(
        "{:<10} {:>8} {:>8} {:>8}",
        "GA", "aiops", "logdrain", "drain3"
    );
    for (i, d) in data.iter().enumerate() {
        let g = |s: &Side| s.ga.get(i).copied().unwrap_or(0.0);
        println!(
            "{:<10} {:>8.3} {:>8.3} {:>8.3}",
            d.name,
            g(&aiops),
            g(&logd),
            g(&drain3)
        );
    }
    println!();
    println!("aiops / Drain3   lines/s: {vs_drain3:.1}x");
    println!("aiops / logdrain lines/s: {vs_logdrain:.2}x");
    println!();
    for (_, name, met) in targets {
        println!("{name:<40} {}", if met { "met" } else { "NOT met" });
    }
    Ok(())
}
