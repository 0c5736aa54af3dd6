//! History in Parquet for the people and jobs that use it (DESIGN §4, §7): `aiops backtest`
//! (try a detect configuration on history), `aiops learn` (baselines that detect loads at
//! start), and the `findings` / `incidents` tables written beside `raw`.
//!
//! `--history` names where the archive writes: the data directory in embedded mode
//! (`--data-dir`, holding `raw/`), or `s3://<bucket>/<prefix>` in aws mode (`[aws]
//! history_bucket` and `history_prefix`). S3 is read with the AWS SDK and the standard
//! credential chain; `AWS_ENDPOINT_URL` points it at an emulator.

pub mod backtest;
pub mod baselines;
pub mod compare;
pub mod error;
pub mod labels;
pub mod learn;
pub mod location;
pub mod patterns;
pub mod progress;
pub mod reader;
pub mod report;
pub mod run;
pub mod tables;

pub use baselines::load_baselines;
pub use compare::{LiveComparison, compare_live};
pub use error::{HistoryError, Result};
pub use location::{AwsAccess, HistoryLocation, parse_time_arg, time_range, write_atomically};
