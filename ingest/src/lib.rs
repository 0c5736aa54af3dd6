//! # aiops-ingest
//!
//! The ingest stage (DESIGN §1–§3, §7): decode every input format into normalised
//! [`aiops_core::Event`]s, de-duplicate by event id, send undecodable records to dead letters,
//! archive raw history to Parquet, and keep the manifest of ingested inputs that makes a
//! replay idempotent ([`manifest`]).

pub mod archive;
pub mod decode;
pub mod dedup;
pub mod files;
pub mod manifest;
