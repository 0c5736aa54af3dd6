//! # aiops-act
//!
//! The act stage (DESIGN §5–§6): incidents, their workflow, and recovery.
