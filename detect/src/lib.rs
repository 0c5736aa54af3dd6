//! # aiops-detect
//!
//! The detect stage (DESIGN §4): change rules on destructive CloudTrail calls, and the
//! statistical detectors over event-time windows.

pub mod eval;
pub mod numeric;
pub mod rules;
pub mod value;
