//! # aiops-ingest
//!
//! The ingest stage (DESIGN §1–§3, §7): decode every input format into normalised
//! [`aiops_core::Event`]s, de-duplicate by event id, send undecodable records to dead letters,
//! and archive raw history to Parquet.

pub mod archive;
pub mod decode;
pub mod dedup;
pub mod files;
