//! Context messages on the typed errors of a library crate, the way `anyhow::Context` adds them
//! in a binary.
//!
//! A library crate keeps one `thiserror` enum whose leaves are the typed errors of what it calls
//! (I/O, Parquet, the AWS SDK, ...) and one variant that wraps any of them with a message
//! saying what was being done (`cannot open data/raw/x.parquet`). The macro
//! [`error_context!`](crate::error_context) writes the extension trait that adds such a message to
//! a `Result` or an `Option`, so call sites read `.context("...")` / `.with_context(|| ...)`
//! as with `anyhow`, and the binary's `{:#}` prints `message: cause: cause` unchanged.

/// Writes a crate-private extension trait `Context` for the error enum `$error`.
///
/// `$error` must have a variant `Context { what: String, source: Box<$error> }` (Display
/// `"{what}"`, `source` marked `#[source]`) and a variant `Invalid(String)` (Display `"{0}"`).
/// `Result<T, X>` for every `X: Into<$error>` gains `context(what)` and
/// `with_context(|| what)`, which wrap the error in `Context`; `Option<T>` gains the same
/// two, which turn `None` into `Invalid(what)`.
#[macro_export]
macro_rules! error_context {
    ($error:ident) => {
        /// Adds a message saying what was being done to an error or a missing value
        /// (see [`aiops_core::error_context`]).
        #[allow(dead_code)]
        pub(crate) trait Context<T> {
            /// Wraps the error (or `None`) with `what`.
            fn context(self, what: impl Into<String>) -> std::result::Result<T, $error>;
            /// Wraps the error (or `None`) with the message `what()` builds, only on failure.
            fn with_context<F: FnOnce() -> String>(self, what: F)
            -> std::result::Result<T, $error>;
        }

        impl<T, X: Into<$error>> Context<T> for std::result::Result<T, X> {
            fn context(self, what: impl Into<String>) -> std::result::Result<T, $error> {
                self.map_err(|e| $error::Context {
                    what: what.into(),
                    source: Box::new(e.into()),
                })
            }
            fn with_context<F: FnOnce() -> String>(
                self,
                what: F,
            ) -> std::result::Result<T, $error> {
                self.map_err(|e| $error::Context {
                    what: what(),
                    source: Box::new(e.into()),
                })
            }
        }

        impl<T> Context<T> for Option<T> {
            fn context(self, what: impl Into<String>) -> std::result::Result<T, $error> {
                self.ok_or_else(|| $error::Invalid(what.into()))
            }
            fn with_context<F: FnOnce() -> String>(
                self,
                what: F,
            ) -> std::result::Result<T, $error> {
                self.ok_or_else(|| $error::Invalid(what()))
            }
        }
    };
}
