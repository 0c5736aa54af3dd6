//! Progress bars on stderr for the passes over history.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` units (rows), showing the rate and time remaining; hidden when
/// `quiet` or when stderr is not a terminal.
pub fn bar(total: u64, quiet: bool, unit: &str) -> ProgressBar {
    if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    let template = format!(
        "{{bar:40}} {{pos}}/{{len}} {unit} · {{per_sec}} · {{elapsed_precise}} elapsed · ETA {{eta}}"
    );
    pb.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}
