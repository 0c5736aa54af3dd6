//! `aiops eval`: run the detection code on public benchmarks (NAB, Loghub) and print the scores.
//!
//! The evaluation logic lives in `aiops_detect::eval`; this module only parses arguments and
//! prints either a human summary or exactly one JSON object.

use aiops_detect::eval::{loghub, nab};
use aiops_detect::template::TemplateConfig;
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;

/// The `aiops eval` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum EvalCommand {
    /// Score the streaming value detector on the Numenta Anomaly Benchmark: each series is fed
    /// row by row, NAB's threshold sweep picks one threshold per profile, and the normalised
    /// scores of the three profiles are printed.
    Nab {
        /// NAB data directory (holding `<category>/<series>.csv`).
        #[arg(long)]
        data: PathBuf,
        /// NAB labels file (`labels/combined_windows.json`).
        #[arg(long)]
        labels: PathBuf,
        /// Write NAB results files `OUT/aiops/<category>/aiops_<file>.csv`
        /// (`timestamp,value,anomaly_score,label`).
        #[arg(long = "results-dir", value_name = "OUT")]
        results_dir: Option<PathBuf>,
        /// Print one JSON object: `{"standard", "reward_low_FP_rate", "reward_low_FN_rate",
        /// "thresholds", "files"}`.
        #[arg(long)]
        json: bool,
    },
    /// Score the log template miner on Loghub 2k samples: grouping accuracy, parsing accuracy and
    /// lines per second for each `<D>/<D>_2k.log_structured.csv` under the data directory.
    Loghub {
        /// Directory holding one folder per dataset.
        #[arg(long)]
        data: PathBuf,
        /// Write `OUT/<D>_2k.log_structured.csv` (`LineId,Content,EventTemplate`) with the
        /// parsed templates.
        #[arg(long, value_name = "OUT")]
        out: Option<PathBuf>,
        /// Print one JSON object with per-dataset and average figures.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `aiops eval` subcommand and prints its result on standard output (a closed pipe is
/// an error, not a panic).
///
/// # Errors
/// When the data cannot be read, results cannot be written, or JSON cannot be produced.
pub fn run(cmd: EvalCommand) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match cmd {
        EvalCommand::Nab {
            data,
            labels,
            results_dir,
            json,
        } => {
            let report = nab::run(
                &data,
                &labels,
                results_dir.as_deref(),
                &nab::NabConfig::default(),
            )
            .with_context(|| format!("NAB evaluation of {}", data.display()))?;
            if json {
                writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
            } else {
                writeln!(stdout, "NAB ({} series)", report.files.len())?;
                for (name, score) in [
                    ("standard", report.standard),
                    ("reward_low_FP_rate", report.reward_low_fp_rate),
                    ("reward_low_FN_rate", report.reward_low_fn_rate),
                ] {
                    let th = report
                        .thresholds
                        .get(name)
                        .copied()
                        .flatten()
                        .map_or_else(|| "never fire".to_string(), |t| format!("{t:.4}"));
                    writeln!(stdout, "  {name:<20} {score:6.2}   (threshold {th})")?;
                }
                if let Some(dir) = &results_dir {
                    writeln!(
                        stdout,
                        "results files under {}",
                        dir.join("aiops").display()
                    )?;
                }
            }
        }
        EvalCommand::Loghub { data, out, json } => {
            let report = loghub::run(&data, &TemplateConfig::default(), out.as_deref())
                .with_context(|| format!("Loghub evaluation of {}", data.display()))?;
            if json {
                writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
            } else {
                writeln!(
                    stdout,
                    "{:<12} {:>6} {:>6} {:>10} {:>12}",
                    "dataset", "GA", "PA", "templates", "lines/s"
                )?;
                for d in &report.datasets {
                    writeln!(
                        stdout,
                        "{:<12} {:>6.3} {:>6.3} {:>5}/{:<4} {:>12.0}",
                        d.dataset,
                        d.grouping_accuracy,
                        d.parsing_accuracy,
                        d.templates,
                        d.true_templates,
                        d.lines_per_second
                    )?;
                }
                writeln!(
                    stdout,
                    "{:<12} {:>6.3} {:>6.3} {:>10} {:>12.0}",
                    "average",
                    report.average_grouping_accuracy,
                    report.average_parsing_accuracy,
                    "",
                    report.lines_per_second
                )?;
                writeln!(stdout, "lowest GA {:.3}", report.min_grouping_accuracy)?;
            }
        }
    }
    Ok(())
}
