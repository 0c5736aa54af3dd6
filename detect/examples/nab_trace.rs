//! Trace one NAB series: rows with a score above a level.
use aiops_detect::eval::nab;
use aiops_detect::value::{ValueConfig, ValueDetector};
use std::path::Path;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cfg: ValueConfig = serde_json::from_str(&args[1]).unwrap();
    let file = &args[2];
    let level: f64 = args[3].parse().unwrap();
    let corpus = nab::load_corpus(
        Path::new("/work/shared/data/nab/data"),
        Path::new("/work/shared/data/nab/labels/combined_windows.json"),
    )
    .unwrap();
    let s = corpus
        .iter()
        .find(|s| s.name.contains(file.as_str()))
        .unwrap();
    println!(
        "{} rows {} prob {} windows {:?}",
        s.name,
        s.values.len(),
        nab::probationary_rows(s.values.len()),
        s.windows
            .iter()
            .map(|&(a, b)| (
                s.timestamps.partition_point(|&t| t < a),
                s.timestamps.partition_point(|&t| t <= b)
            ))
            .collect::<Vec<_>>()
    );
    let mut d = ValueDetector::new(&cfg);
    for (i, (&t, &v)) in s.timestamps.iter().zip(&s.values).enumerate() {
        let r = d.observe(t, v);
        if r.score >= level {
            println!(
                "{i} {} v={v} exp={:.2} score={:.3} p={:.2e} m={}",
                s.timestamp_text[i], r.expected, r.score, r.p, r.measure
            );
        }
    }
}
