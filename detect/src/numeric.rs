//! Small numeric helpers shared by the detectors: tail probabilities, clamping, and a bounded
//! sorted window that answers median and MAD queries.
//!
//! Every function here returns a finite value for every input (NaN and infinities included),
//! because detector scores must always be finite.

use std::collections::VecDeque;

/// Consistency constant that turns a median absolute deviation into an estimate of the standard
/// deviation of a normal distribution (1 / Φ⁻¹(3/4); Rousseeuw & Croux, JASA 1993).
pub const MAD_TO_SIGMA: f64 = 1.482_602_218_505_602;

/// `x` clamped to `[0, 1]`; NaN becomes 0.
pub fn clamp01(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

/// Maps a tail probability `p` (small = surprising) to a score in `[0, 1]` on a logarithmic
/// scale: `score = min(1, -log10(p) / decades)`. With `decades = 10`, `p = 1e-5` scores 0.5
/// and anything at or below `1e-10` scores 1. `p` is clamped to `[1e-300, 1]`; NaN scores 0;
/// a non-positive or non-finite `decades` is treated as 10.
pub fn surprise_score(p: f64, decades: f64) -> f64 {
    if p.is_nan() {
        return 0.0;
    }
    let d = if decades.is_finite() && decades > 0.0 {
        decades
    } else {
        10.0
    };
    let p = p.clamp(1e-300, 1.0);
    clamp01(-p.log10() / d)
}

/// A bounded window of the most recent finite values, kept both in arrival order (to drop the
/// oldest) and sorted (to answer order statistics). Insertion and removal cost `O(capacity)`
/// memory moves; median is `O(1)`, MAD `O(n)`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SortedWindow {
    order: VecDeque<f64>,
    sorted: Vec<f64>,
    capacity: usize,
}

impl SortedWindow {
    /// An empty window holding at most `capacity` values (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        SortedWindow {
            order: VecDeque::with_capacity(capacity.min(4096)),
            sorted: Vec::with_capacity(capacity.min(4096)),
            capacity,
        }
    }

    /// Number of values held.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Maximum number of values held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds `x`, dropping the oldest value when full. Non-finite values are ignored and
    /// `false` is returned.
    pub fn push(&mut self, x: f64) -> bool {
        if !x.is_finite() {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(old) = self.order.pop_front()
        {
            let idx = self.sorted.partition_point(|v| v.total_cmp(&old).is_lt());
            if idx < self.sorted.len() {
                self.sorted.remove(idx);
            }
        }
        self.order.push_back(x);
        let idx = self.sorted.partition_point(|v| v.total_cmp(&x).is_lt());
        self.sorted.insert(idx, x);
        true
    }

    /// The most recent value, if any.
    pub fn last(&self) -> Option<f64> {
        self.order.back().copied()
    }

    /// The values in arrival order, oldest first.
    pub fn iter_recent(&self) -> impl DoubleEndedIterator<Item = f64> + '_ {
        self.order.iter().copied()
    }

    /// Median (mean of the two middle values for an even count); `None` when empty.
    pub fn median(&self) -> Option<f64> {
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        let hi = *self.sorted.get(n / 2)?;
        if n % 2 == 1 {
            Some(hi)
        } else {
            let lo = *self.sorted.get(n / 2 - 1)?;
            Some(0.5 * (lo + hi))
        }
    }

    /// The `q`-quantile (`q` in `[0, 1]`, nearest rank, lower); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        let q = clamp01(q);
        let idx = ((q * (n - 1) as f64).round() as usize).min(n - 1);
        self.sorted.get(idx).copied()
    }

    /// The `k` largest values (fewer when the window holds fewer), largest last.
    pub fn top(&self, k: usize) -> impl Iterator<Item = f64> + '_ {
        let n = self.sorted.len();
        self.sorted.iter().skip(n.saturating_sub(k)).copied()
    }

    /// Number of values strictly below `x` (`O(log n)`).
    pub fn count_below(&self, x: f64) -> usize {
        self.sorted.partition_point(|v| *v < x)
    }

    /// Median absolute deviation around `center`: the lower median of `|x_i - center|`,
    /// found by merging the two sorted halves outward from `center` (`O(n)`, no allocation).
    /// `None` when empty.
    pub fn mad_around(&self, center: f64) -> Option<f64> {
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        // Deviations below the center, increasing as we walk left; above, as we walk right.
        let split = self.sorted.partition_point(|v| *v < center);
        let mut left = split; // next candidate on the left is left - 1
        let mut right = split; // next candidate on the right is right
        let k = (n - 1) / 2; // lower median rank
        let mut last = 0.0;
        for _ in 0..=k {
            let dl = if left > 0 {
                self.sorted.get(left - 1).map(|v| center - v)
            } else {
                None
            };
            let dr = self.sorted.get(right).map(|v| v - center);
            match (dl, dr) {
                (Some(a), Some(b)) if a <= b => {
                    last = a;
                    left -= 1;
                }
                (_, Some(b)) => {
                    last = b;
                    right += 1;
                }
                (Some(a), None) => {
                    last = a;
                    left -= 1;
                }
                (None, None) => break,
            }
        }
        Some(last)
    }

    /// Removes every value.
    pub fn clear(&mut self) {
        self.order.clear();
        self.sorted.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surprise_score_is_logarithmic_and_finite() {
        assert_eq!(surprise_score(1.0, 10.0), 0.0);
        assert!((surprise_score(1e-5, 10.0) - 0.5).abs() < 1e-12);
        assert_eq!(surprise_score(0.0, 10.0), 1.0);
        assert_eq!(surprise_score(f64::NAN, 10.0), 0.0);
        assert!((surprise_score(1e-3, f64::NAN) - 0.3).abs() < 1e-12);
    }

    #[test]
    fn sorted_window_median_and_mad() {
        let mut w = SortedWindow::new(5);
        assert_eq!(w.median(), None);
        assert_eq!(w.mad_around(0.0), None);
        for x in [1.0, 2.0, 3.0, 4.0, 100.0] {
            assert!(w.push(x));
        }
        assert_eq!(w.median(), Some(3.0));
        // deviations from 3: 2,1,0,1,97 -> sorted 0,1,1,2,97 -> median 1
        assert_eq!(w.mad_around(3.0), Some(1.0));
        // Pushing evicts the oldest (1.0).
        w.push(5.0);
        assert_eq!(w.len(), 5);
        assert_eq!(w.median(), Some(4.0));
        // deviations from 4: 2,1,0,96,1 -> 0,1,1,2,96 -> 1
        assert_eq!(w.mad_around(4.0), Some(1.0));
        assert!(!w.push(f64::NAN));
        assert!(!w.push(f64::INFINITY));
        assert_eq!(w.len(), 5);
        assert_eq!(w.last(), Some(5.0));
    }

    #[test]
    fn sorted_window_even_count_and_constant() {
        let mut w = SortedWindow::new(10);
        for x in [4.0, 1.0, 3.0, 2.0] {
            w.push(x);
        }
        assert_eq!(w.median(), Some(2.5));
        // deviations 0.5,0.5,1.5,1.5 -> lower median 0.5
        assert_eq!(w.mad_around(2.5), Some(0.5));
        let mut c = SortedWindow::new(3);
        for _ in 0..7 {
            c.push(7.0);
        }
        assert_eq!(c.median(), Some(7.0));
        assert_eq!(c.mad_around(7.0), Some(0.0));
        assert_eq!(c.quantile(1.0), Some(7.0));
    }
}
