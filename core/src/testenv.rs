//! Test-environment helpers shared by the aws-mode tests of every crate.
//!
//! The aws-mode tests talk to a local AWS emulator (moto in server mode, DESIGN §8) whose
//! endpoint `./scripts/test` exports as `AIOPS_MOTO_ENDPOINT`. A plain `cargo test` on a laptop
//! has no emulator: those tests then skip. Under CI (`CI=true`, as CI sets it) a missing
//! emulator is a broken test setup and must fail the run, never turn into a green one.

/// The environment variable naming the emulator endpoint.
pub const MOTO_ENDPOINT_VAR: &str = "AIOPS_MOTO_ENDPOINT";

/// What an aws-mode test should do, decided from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmulatorEndpoint {
    /// Run against this loopback endpoint (`http://127.0.0.1:PORT` or `http://localhost:PORT`).
    Use(String),
    /// Skip the test, for this reason (not under CI, no endpoint set).
    Skip(String),
    /// Fail the test, for this reason (under CI without an endpoint, or a non-loopback one).
    Fail(String),
}

/// Decides from the two variables' values (`AIOPS_MOTO_ENDPOINT`, `CI`) what a test does.
/// `CI` counts as set when it is `true` or `1` (case-insensitive), as CI services set it.
/// Only loopback endpoints are ever used: the tests must never reach another address.
pub fn decide_endpoint(endpoint: Option<&str>, ci: Option<&str>) -> EmulatorEndpoint {
    let under_ci = ci.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    match endpoint {
        Some(url)
            if url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:") =>
        {
            EmulatorEndpoint::Use(url.to_string())
        }
        Some(url) => EmulatorEndpoint::Fail(format!(
            "{MOTO_ENDPOINT_VAR}={url} is not a loopback URL (http://127.0.0.1:PORT)"
        )),
        None if under_ci => EmulatorEndpoint::Fail(format!(
            "{MOTO_ENDPOINT_VAR} is not set under CI=true: the emulator did not start \
             (./scripts/test starts moto and sets it)"
        )),
        None => EmulatorEndpoint::Skip(format!(
            "{MOTO_ENDPOINT_VAR} is not set (./scripts/test starts moto and sets it)"
        )),
    }
}

/// The emulator endpoint for the aws-mode test named `test`: `Some(url)` to run, `None` after
/// printing why the test is skipped (no endpoint outside CI).
///
/// # Panics
/// Under CI (`CI=true`) without `AIOPS_MOTO_ENDPOINT`, or when the endpoint is not a loopback
/// URL: the panic message names the variable, and the test fails.
pub fn moto_endpoint(test: &str) -> Option<String> {
    let endpoint = std::env::var(MOTO_ENDPOINT_VAR).ok();
    let ci = std::env::var("CI").ok();
    match decide_endpoint(endpoint.as_deref(), ci.as_deref()) {
        EmulatorEndpoint::Use(url) => Some(url),
        EmulatorEndpoint::Skip(why) => {
            eprintln!("SKIP {test}: {why}");
            None
        }
        EmulatorEndpoint::Fail(why) => panic!("{test}: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_endpoint_is_used_with_or_without_ci() {
        let url = "http://127.0.0.1:5000";
        assert_eq!(
            decide_endpoint(Some(url), Some("true")),
            EmulatorEndpoint::Use(url.into())
        );
        assert_eq!(
            decide_endpoint(Some(url), None),
            EmulatorEndpoint::Use(url.into())
        );
    }

    #[test]
    fn a_missing_endpoint_skips_on_a_laptop_and_fails_under_ci() {
        assert!(matches!(
            decide_endpoint(None, None),
            EmulatorEndpoint::Skip(_)
        ));
        assert!(matches!(
            decide_endpoint(None, Some("false")),
            EmulatorEndpoint::Skip(_)
        ));
        for ci in ["true", "TRUE", "1"] {
            match decide_endpoint(None, Some(ci)) {
                EmulatorEndpoint::Fail(why) => {
                    assert!(why.contains("AIOPS_MOTO_ENDPOINT"), "{why}")
                }
                other => panic!("CI={ci}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_non_loopback_endpoint_always_fails() {
        assert!(matches!(
            decide_endpoint(Some("http://10.0.0.5:5000"), None),
            EmulatorEndpoint::Fail(_)
        ));
    }
}
