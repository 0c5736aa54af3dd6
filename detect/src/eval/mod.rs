//! Evaluations that run the detectors on public benchmarks.

pub mod loghub;
pub mod nab;
