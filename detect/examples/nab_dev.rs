//! Development harness: NAB score with a config given as JSON on the command line.
use aiops_detect::eval::nab;
use aiops_detect::value::ValueConfig;
use std::path::Path;

const HELD_OUT: [&str; 6] = [
    "artificialNoAnomaly/art_daily_small_noise.csv",
    "artificialWithAnomaly/art_daily_jumpsdown.csv",
    "realAdExchange/exchange-3_cpm_results.csv",
    "realKnownCause/ec2_request_latency_system_failure.csv",
    "realTraffic/speed_7578.csv",
    "realTweets/Twitter_volume_IBM.csv",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cfg: ValueConfig = match args.get(1) {
        Some(j) => serde_json::from_str(j).unwrap(),
        None => ValueConfig::default(),
    };
    let show_held = args.iter().any(|a| a == "--held");
    let verbose = args.iter().any(|a| a == "-v");
    let corpus = nab::load_corpus(
        Path::new("/work/shared/data/nab/data"),
        Path::new("/work/shared/data/nab/labels/combined_windows.json"),
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let scores = nab::detect_corpus(&corpus, &cfg);
    let el = t0.elapsed();
    let (tune, held): (Vec<usize>, Vec<usize>) =
        (0..corpus.len()).partition(|&i| !HELD_OUT.contains(&corpus[i].name.as_str()));
    let sub = |idx: &[usize]| {
        let c: Vec<_> = idx.iter().map(|&i| corpus[i].clone()).collect();
        let s: Vec<_> = idx.iter().map(|&i| scores[i].clone()).collect();
        (c, s)
    };
    let (tc, ts) = sub(&tune);
    let r = nab::report(&tc, &ts);
    println!(
        "TUNE std {:.2} lowFP {:.2} lowFN {:.2} th {:?} ({:?})",
        r.standard,
        r.reward_low_fp_rate,
        r.reward_low_fn_rate,
        r.thresholds.get("standard"),
        el
    );
    if verbose {
        for f in &r.files {
            let o = &f.profiles["standard"];
            println!(
                "  {:60} w{} tp{} fp{} fn{} {:.3}",
                f.file, f.windows, o.tp, o.fp, o.fn_, o.score
            );
        }
    }
    if args.iter().any(|a| a == "-d") {
        for (i, c) in corpus.iter().enumerate() {
            let prob = nab::probationary_rows(c.values.len());
            let mut inw = 0.0f64;
            let mut outw = 0.0f64;
            let mut first_in = None;
            let mut outs: Vec<f64> = vec![];
            for (j, (&t, &s)) in c.timestamps.iter().zip(&scores[i]).enumerate() {
                if j < prob {
                    continue;
                }
                let w = c.windows.iter().any(|&(a, b)| t >= a && t <= b);
                if w {
                    if s > inw {
                        inw = s;
                        first_in = Some(j);
                    }
                } else {
                    outw = outw.max(s);
                    outs.push(s);
                }
            }
            outs.sort_by(|a, b| b.total_cmp(a));
            println!(
                "  {:55} in {:.3}@{:?} out {:.3} out5 {:.3} out20 {:.3}",
                c.name,
                inw,
                first_in,
                outw,
                outs.get(5).unwrap_or(&0.0),
                outs.get(20).unwrap_or(&0.0)
            );
        }
    }
    if show_held {
        // Held-out: score with the tuning threshold.
        let (hc, hs) = sub(&held);
        let th = r.thresholds["standard"].unwrap_or(2.0);
        let bin: Vec<Vec<f64>> = hs
            .iter()
            .map(|v| v.iter().map(|&x| if x >= th { 1.0 } else { 0.0 }).collect())
            .collect();
        let hr = nab::report(&hc, &bin);
        println!("HELD (tune threshold) std {:.2}", hr.standard);
        for f in &hr.files {
            let o = &f.profiles["standard"];
            println!(
                "  {:60} w{} tp{} fp{} fn{} {:.3}",
                f.file, f.windows, o.tp, o.fp, o.fn_, o.score
            );
        }
        let all = nab::report(&corpus, &scores);
        println!(
            "ALL std {:.2} lowFP {:.2} lowFN {:.2}",
            all.standard, all.reward_low_fp_rate, all.reward_low_fn_rate
        );
    }
}
