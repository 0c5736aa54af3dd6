//! The bridge between the synchronous ports of this crate and the asynchronous AWS SDK for
//! Rust: each AWS adapter holds a [`Blocking`] (a Tokio runtime handle, optionally owning the
//! runtime) and blocks on one SDK call at a time.
//!
//! Callers must not call an AWS adapter from inside an async task (that would block a runtime
//! worker, and Tokio panics when `block_on` is nested): run the workflow on a dedicated thread
//! (as the embedded pipeline does) or inside `tokio::task::spawn_blocking`.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::future::Future;
use std::sync::Arc;
use thiserror::Error;
use tokio::runtime::{Handle, Runtime};

/// Errors setting up the AWS side.
#[derive(Debug, Error)]
pub enum AwsSetupError {
    /// The Tokio runtime could not be built.
    #[error("cannot start the async runtime for the AWS SDK: {0}")]
    Runtime(String),
}

/// Runs SDK futures to completion from synchronous code.
#[derive(Clone, Debug)]
pub struct Blocking {
    handle: Handle,
    _owner: Option<Arc<Runtime>>,
}

impl Blocking {
    /// Uses an existing runtime (it must be a multi-thread runtime, whose workers drive the
    /// I/O while this thread blocks).
    pub fn from_handle(handle: Handle) -> Blocking {
        Blocking {
            handle,
            _owner: None,
        }
    }

    /// Starts a small multi-thread runtime (`workers` worker threads, at least 1) owned by
    /// this value and its clones; it stops when the last clone is dropped.
    ///
    /// # Errors
    /// [`AwsSetupError::Runtime`] when the runtime cannot be built.
    pub fn owned(workers: usize) -> Result<Blocking, AwsSetupError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name("aiops-act-aws")
            .enable_all()
            .build()
            .map_err(|e| AwsSetupError::Runtime(e.to_string()))?;
        Ok(Blocking {
            handle: rt.handle().clone(),
            _owner: Some(Arc::new(rt)),
        })
    }

    /// The runtime handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `f` to completion on the runtime, blocking this thread. Must not be called from
    /// an async task (see the module documentation).
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.handle.block_on(f)
    }
}

/// Loads the SDK configuration from the standard chain (environment, profile, SSO, instance
/// role). `region` overrides the chain's region; `endpoint_url` overrides every client's
/// endpoint (local emulators). Without it the SDK still honours `AWS_ENDPOINT_URL` and the
/// per-service `AWS_ENDPOINT_URL_<SERVICE>` variables (e.g. `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`;
/// <https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html>).
pub async fn load_sdk_config(region: Option<&str>, endpoint_url: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = region.filter(|r| !r.is_empty()) {
        loader = loader.region(Region::new(r.to_string()));
    }
    if let Some(url) = endpoint_url.filter(|u| !u.is_empty()) {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// The error code and message of an SDK error, for matching and for records: `(code,
/// message)`, e.g. `("ThrottlingException", "Too many requests")`. Transport failures give
/// the code `transport` and the error chain as message.
pub fn error_parts<E, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> (String, String)
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    use aws_sdk_dynamodb::error::SdkError;
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            (
                e.code().unwrap_or("unknown").to_string(),
                e.message().unwrap_or_default().to_string(),
            )
        }
        other => ("transport".to_string(), error_chain(other)),
    }
}

/// An error and its sources joined by `: `.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut src = err.source();
    let mut depth = 0;
    while let Some(s) = src {
        if depth >= 8 {
            break;
        }
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
        depth += 1;
    }
    out
}
