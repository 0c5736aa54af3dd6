//! Template mining with masking: `aiops_detect::template::TemplateMiner` (default
//! `TemplateConfig`) against the crate `logdrain` 0.3.2 (its default options plus all five of
//! its built-in masks: uuid, hex32, email, ipv4, jwt), on the same lines.
//!
//! Input: every line of the ten Loghub-2k files (`<dir>/<System>/<System>_2k.log`, 20,000
//! raw lines with their headers, ~2.8 MB), read once at start from `$AIOPS_LOGHUB_DIR` or
//! `/work/shared/data/loghub2k`. When the directory holds none of them the benchmark prints
//! a message and measures nothing. Each file is one log group: it has a miner of its own,
//! as the detection engine has one miner per log group.
//!
//! Groups (both declare `Throughput::ElementsAndBytes`: elements are lines, bytes are the
//! lines' UTF-8 bytes without line ends):
//!
//! - `templates_fresh`: each iteration builds fresh miners (one per file) and feeds them all
//!   20,000 lines: the cost of learning the templates from nothing.
//! - `templates_warm`: steady state: the miners were fed every line once before measuring,
//!   and each iteration feeds all lines again to the same miners (almost every line matches
//!   an existing template, as in a long-running stream).
//!
//! Functions: `aiops` and `logdrain` in each group; criterion shows the ratio of their
//! throughputs; `benches/compare-templates` (another script) adds Drain3 and accuracy.

/// The allocator of the `aiops` binary, so the figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use aiops_detect::template::{TemplateConfig, TemplateMiner};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logdrain::{Miner, Options, builtin_masks};
use std::hint::black_box;
use std::path::{Path, PathBuf};

/// The Loghub systems, in the order their files are fed.
const SYSTEMS: [&str; 10] = [
    "Apache",
    "BGL",
    "HDFS",
    "HPC",
    "Hadoop",
    "Linux",
    "OpenStack",
    "Proxifier",
    "Spark",
    "Zookeeper",
];

/// The lines of each Loghub-2k file found (system name, lines), or none.
fn load_loghub() -> Vec<(String, Vec<String>)> {
    let dir = std::env::var_os("AIOPS_LOGHUB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/data/loghub2k"));
    let mut out = Vec::new();
    for system in SYSTEMS {
        let path: PathBuf = Path::new(&dir)
            .join(system)
            .join(format!("{system}_2k.log"));
        match std::fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<String> = text.lines().map(str::to_owned).collect();
                out.push((system.to_string(), lines));
            }
            Err(e) => eprintln!("templates bench: skipping {}: {e}", path.display()),
        }
    }
    out
}

/// logdrain's default options plus its built-in masks, built once: the masks' regexes are
/// compiled here, not in the timed loops (a `Regex` clone shares the compiled program).
fn logdrain_options() -> Options {
    match Miner::builder()
        .masks([
            builtin_masks::uuid(),
            builtin_masks::hex32(),
            builtin_masks::email(),
            builtin_masks::ipv4(),
            builtin_masks::jwt(),
        ])
        .build_options()
    {
        Ok(o) => o,
        Err(e) => panic!("logdrain default options must build: {e}"),
    }
}

fn bench_templates(c: &mut Criterion) {
    let files = load_loghub();
    if files.is_empty() {
        eprintln!(
            "templates bench: no Loghub-2k files found (set AIOPS_LOGHUB_DIR); nothing measured"
        );
        return;
    }
    let lines: usize = files.iter().map(|(_, l)| l.len()).sum();
    let bytes: usize = files
        .iter()
        .flat_map(|(_, l)| l.iter().map(String::len))
        .sum();
    let throughput = Throughput::ElementsAndBytes {
        elements: lines as u64,
        bytes: bytes as u64,
    };
    let cfg = TemplateConfig::default();
    let opts = logdrain_options();

    // Warm miners, and a one-off report of how many templates each side found per file.
    let mut aiops_warm: Vec<TemplateMiner> = Vec::with_capacity(files.len());
    let mut logdrain_warm: Vec<Miner> = Vec::with_capacity(files.len());
    eprintln!(
        "templates bench: {lines} lines, {bytes} bytes; templates per file (aiops / logdrain):"
    );
    for (system, file) in &files {
        let mut m = TemplateMiner::new(&cfg);
        let l = Miner::from_options(opts.clone());
        for line in file {
            m.add(line);
            l.add(line);
        }
        eprintln!("  {system:<10} {:>4} / {:>4}", m.len(), l.len());
        aiops_warm.push(m);
        logdrain_warm.push(l);
    }

    let mut g = c.benchmark_group("templates_fresh");
    g.throughput(throughput.clone());
    g.bench_function("aiops", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for (_, file) in &files {
                let mut m = TemplateMiner::new(&cfg);
                for line in file {
                    n = n.wrapping_add(m.add(line).template_id);
                }
            }
            black_box(n)
        })
    });
    g.bench_function("logdrain", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for (_, file) in &files {
                let m = Miner::from_options(opts.clone());
                for line in file {
                    n = n.wrapping_add(m.add(line).cluster_id);
                }
            }
            black_box(n)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("templates_warm");
    g.throughput(throughput);
    g.bench_function("aiops", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for ((_, file), m) in files.iter().zip(aiops_warm.iter_mut()) {
                for line in file {
                    n = n.wrapping_add(m.add(line).template_id);
                }
            }
            black_box(n)
        })
    });
    g.bench_function("logdrain", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for ((_, file), m) in files.iter().zip(logdrain_warm.iter()) {
                for line in file {
                    n = n.wrapping_add(m.add(line).cluster_id);
                }
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_templates);
criterion_main!(benches);
