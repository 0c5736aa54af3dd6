//! The combination that decides when a score becomes a finding: a threshold and a per-series
//! cooldown (an alert that has fired stays quiet for a while instead of firing on every
//! window of the same incident).

use crate::config::DecisionConfig;

/// Per-series decision state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    /// Windows or observations of cooldown left.
    cooldown_left: u32,
}

/// What the decision made of one score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// The score to report: the input score, or 0 during a cooldown.
    pub reported: f64,
    /// Whether this score becomes a finding.
    pub finding: bool,
}

impl Decision {
    /// A fresh state (not cooling down).
    pub fn new() -> Self {
        Decision::default()
    }

    /// Whether a cooldown is running.
    pub fn cooling(&self) -> bool {
        self.cooldown_left > 0
    }

    /// Decides on one score (windows or observations advance the cooldown by one). A
    /// non-finite score counts as 0. During a cooldown the reported score is 0 and no finding
    /// is made; otherwise a score `>= finding_threshold` is a finding and starts a cooldown
    /// of `cooldown` steps.
    pub fn decide(&mut self, score: f64, cfg: &DecisionConfig) -> Verdict {
        let score = if score.is_finite() {
            score.clamp(0.0, 1.0)
        } else {
            0.0
        };
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            return Verdict {
                reported: 0.0,
                finding: false,
            };
        }
        if score >= cfg.finding_threshold {
            self.cooldown_left = cfg.cooldown;
            return Verdict {
                reported: score,
                finding: true,
            };
        }
        Verdict {
            reported: score,
            finding: false,
        }
    }

    /// Advances the cooldown by `n` steps without a score (e.g. empty windows).
    pub fn skip(&mut self, n: u64) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.cooldown_left = self.cooldown_left.saturating_sub(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldown_silences_following_steps() {
        let cfg = DecisionConfig {
            finding_threshold: 0.5,
            cooldown: 2,
        };
        let mut d = Decision::new();
        let got: Vec<(f64, bool)> = [0.4, 0.6, 0.9, 0.9, 0.7, f64::NAN]
            .iter()
            .map(|&s| {
                let v = d.decide(s, &cfg);
                (v.reported, v.finding)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0.4, false),
                (0.6, true),
                (0.0, false),
                (0.0, false),
                (0.7, true),
                (0.0, false)
            ]
        );
        let mut d = Decision::new();
        d.decide(1.0, &cfg);
        assert!(d.cooling());
        d.skip(5);
        assert!(!d.cooling());
    }
}
