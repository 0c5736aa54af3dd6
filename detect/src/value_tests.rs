//! Behavioural tests of the value detector on generated metric series: what a CloudWatch user
//! would notice (a level shift that stays, a drop to zero, a second smaller spike after a big
//! one, a noisy series without anomalies), through the detector and the engine's decision.

use super::*;
use crate::config::DecisionConfig;
use crate::decision::Decision;

const MIN: i64 = 60_000_000;

/// Deterministic standard normal noise (SplitMix64 + Box–Muller).
struct Noise(u64);

impl Noise {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Runs the detector and the default decision (threshold 0.5, cooldown 10) over one value a
/// minute; returns the indices of the findings.
fn findings(cfg: &ValueConfig, values: &[f64]) -> Vec<usize> {
    let mut det = ValueDetector::new(cfg);
    let mut dec = Decision::new();
    let dcfg = DecisionConfig::default();
    let mut out = Vec::new();
    for (i, &x) in values.iter().enumerate() {
        let s = det.observe(i as i64 * MIN, x);
        if dec.decide(s.score, &dcfg).finding {
            out.push(i);
        }
    }
    out
}

/// `days` of one value a minute: `base + sd · N(0, 1)`, clamped at 0.
fn noisy(seed: u64, days: usize, base: f64, sd: f64) -> Vec<f64> {
    let mut n = Noise(seed);
    (0..days * 1440)
        .map(|_| (base + sd * n.normal()).max(0.0))
        .collect()
}

#[test]
fn noisy_stationary_series_has_no_finding() {
    // Three days of CPU at 40 % with a standard deviation of 5 points.
    let v = noisy(7, 3, 40.0, 5.0);
    assert_eq!(findings(&ValueConfig::default(), &v), Vec::<usize>::new());
}

#[test]
fn persistent_level_shift_is_one_finding_at_its_onset() {
    // CPU at 17 % (sd 1) for two days, then 27 % for a day.
    let mut v = noisy(11, 2, 17.0, 1.0);
    let onset = v.len();
    v.extend(noisy(12, 1, 27.0, 1.0));
    assert_eq!(findings(&ValueConfig::default(), &v), vec![onset]);
}

#[test]
fn drop_to_zero_that_stays_is_one_finding() {
    // Requests at 120 a minute (sd 10) for two days, then none at all for a day.
    let mut v = noisy(13, 2, 120.0, 10.0);
    let onset = v.len();
    v.extend(std::iter::repeat_n(0.0, 1440));
    assert_eq!(findings(&ValueConfig::default(), &v), vec![onset]);
}

#[test]
fn smaller_spike_days_after_a_big_one_is_still_found() {
    // Latency 100 ms (sd 5); on day 2 a 30-minute incident at 400 ms; on day 5 a one-minute
    // spike to 150 ms (10 sd, a third of the first incident's height).
    let mut v = noisy(17, 6, 100.0, 5.0);
    let big = 2 * 1440 + 600;
    for x in v.iter_mut().skip(big).take(30) {
        *x = 400.0;
    }
    let small = 5 * 1440 + 300;
    v[small] = 150.0;
    let f = findings(&ValueConfig::default(), &v);
    assert_eq!(f, vec![big, small]);
}

#[test]
fn harmonic_mean_combination_exact_values() {
    // Two measures at 0.01 and 0.04: p = 2 / (100 + 25) = 0.016 (Bonferroni: 0.02); the
    // smallest is measure 0.
    let (p, i) = combine(&[Some(0.01), None, Some(0.04)]).unwrap_or((1.0, 9));
    assert!((p - 0.016).abs() < 1e-15, "{p}");
    assert_eq!(i, 0);
    // Agreement is rewarded: three measures at 0.01 give 0.01, not 0.03.
    let (p, _) = combine(&[Some(0.01), Some(0.01), Some(0.01)]).unwrap_or((1.0, 9));
    assert!((p - 0.01).abs() < 1e-15, "{p}");
    assert_eq!(combine(&[None, None]), None);
    // NaN counts as 1, zero is floored so the result stays finite.
    let (p, i) = combine(&[Some(f64::NAN), Some(0.0)]).unwrap_or((1.0, 9));
    assert_eq!(i, 1);
    assert!(p > 0.0 && p < 1e-299);
}

/// Minutes, counted from the onset, in the two hours after a 17 % -> 27 % shift whose score
/// reaches the NAB preset's finding threshold (0.2, with the preset's return period per hour),
/// without the decision's cooldown.
fn scored_minutes_after_shift(suppress: usize) -> Vec<usize> {
    let nab = crate::eval::nab::NabConfig::default();
    let mut v = noisy(11, 2, 17.0, 1.0);
    let onset = v.len();
    v.extend(noisy(12, 1, 27.0, 1.0));
    let cfg = ValueConfig {
        suppress,
        ..nab.value
    };
    let mut det = ValueDetector::new(&cfg);
    let mut out = Vec::new();
    for (i, &x) in v.iter().enumerate() {
        let s = det.observe(i as i64 * MIN, x);
        if i >= onset && i < onset + 120 && s.score >= nab.decision.finding_threshold {
            out.push(i - onset);
        }
    }
    out
}

#[test]
fn suppression_scores_a_persistent_shift_once() {
    // With the suppression only the onset scores; without it the shift keeps scoring for
    // its first three minutes (on this 1-minute series the return period per hour makes a
    // p-value 60 times larger, so only the most surprising minutes of the shift reach 0.2).
    assert_eq!(scored_minutes_after_shift(100), vec![0]);
    assert_eq!(scored_minutes_after_shift(0), vec![0, 1, 2]);
}

/// Scores at or above `threshold` (default detector, with or without the `likelihood` stage)
/// in the hour after the noise of a series at 40 (sd 1) grows to sd `sd` for an hour; minutes
/// counted from the onset.
fn scores_after_noise_burst(sd: f64, likelihood: bool, threshold: f64) -> Vec<usize> {
    let mut v = noisy(31, 2, 40.0, 1.0);
    let onset = v.len();
    v.extend(
        noisy(32, 1, 0.0, 1.0)
            .iter()
            .take(60)
            .map(|z| 40.0 + sd * z),
    );
    v.extend(noisy(33, 1, 40.0, 1.0));
    let cfg = ValueConfig {
        likelihood,
        ..ValueConfig::default()
    };
    let mut det = ValueDetector::new(&cfg);
    let mut out = Vec::new();
    for (i, &x) in v.iter().enumerate() {
        let s = det.observe(i as i64 * MIN, x);
        if s.score >= threshold && i >= onset && i < onset + 120 {
            out.push(i - onset);
        }
    }
    out
}

#[test]
fn likelihood_stage_reports_a_noisy_hour_fewer_times() {
    // The noise grows from sd 1 to sd 2.5 for an hour: no single value is extreme. Without
    // the stage, six observations reach the NAB preset's threshold (0.24); with it, the
    // isolated ones are discounted against the (ordinary) recent mean surprise and three
    // remain, the first within the noisy hour.
    assert_eq!(
        scores_after_noise_burst(2.5, false, 0.24),
        vec![6, 13, 21, 29, 39, 49]
    );
    assert_eq!(scores_after_noise_burst(2.5, true, 0.24), vec![21, 39, 49]);
    // Neither reaches the engine's default threshold (0.5).
    assert!(scores_after_noise_burst(2.5, true, 0.5).is_empty());
}

#[test]
fn return_period_scales_the_p_value_by_the_sampling_interval() {
    // The same values observed every 5 minutes and every hour: without the return period the
    // p-values are equal; per hour (3600 s) the 5-minute series' p-value is multiplied by
    // 3600 / 300 = 12 and the hourly one by 1 (capped at 1).
    let v = noisy(41, 2, 10.0, 1.0);
    let run = |step: i64, unit: f64| {
        let cfg = ValueConfig {
            seasonal: false,
            return_period_secs: unit,
            ..ValueConfig::default()
        };
        let mut det = ValueDetector::new(&cfg);
        let mut out = Vec::new();
        for (i, &x) in v.iter().enumerate() {
            out.push(det.observe(i as i64 * step * MIN, x).p_value);
        }
        out
    };
    let base = run(5, 0.0);
    assert_eq!(run(60, 0.0), base);
    let hourly = run(60, 3600.0);
    for (a, b) in hourly.iter().zip(&base) {
        assert_eq!(*a, (b * 3600.0 / 3600.0).min(1.0));
    }
    let five = run(5, 3600.0);
    assert_eq!(five.len(), base.len());
    for (a, b) in five.iter().zip(&base) {
        assert_eq!(*a, (b * 3600.0 / 300.0).min(1.0));
    }
}

#[test]
fn weekly_profile_explains_a_quiet_weekend() {
    // Hourly traffic at 100 on weekdays and 20 on weekends (sd 1) for five weeks. On the fifth
    // Saturday the daily profile (the last three days: Wednesday to Friday) expects 100; the
    // weekly profile (the last three Saturdays) expects 20, so with `weekly` on the seasonal
    // measure sees no surprise and the first weekend hours score lower.
    let mut n = Noise(51);
    let v: Vec<(i64, f64)> = (0..5 * 7 * 24)
        .map(|h: i64| {
            let weekend = (h / 24) % 7 >= 5;
            let base = if weekend { 20.0 } else { 100.0 };
            (h * 60 * MIN, base + n.normal())
        })
        .collect();
    let saturday = 4 * 7 * 24 + 5 * 24;
    let run = |weekly: bool| {
        let cfg = ValueConfig {
            weekly,
            ..ValueConfig::default()
        };
        let mut det = ValueDetector::new(&cfg);
        let mut out = Vec::new();
        for (i, &(t, x)) in v.iter().enumerate() {
            let s = det.observe(t, x);
            if (saturday..saturday + 3).contains(&i) {
                out.push((s.raw_score, s.expected, s.measure));
            }
        }
        out
    };
    let (on, off) = (run(true), run(false));
    assert_eq!(on.len(), 3);
    for (a, b) in on.iter().zip(&off) {
        // The step and the level measures decide (the weekend is far from the median either
        // way), but the seasonal measure no longer adds its surprise to the combination.
        assert_eq!(a.2, b.2);
        assert!(a.0 < b.0, "{a:?} {b:?}");
    }
}
