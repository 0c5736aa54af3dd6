//! # aiops-detect
//!
//! The detect stage (DESIGN §4): change rules on destructive CloudTrail calls, and the
//! statistical detectors over event-time windows.

pub mod rules;
