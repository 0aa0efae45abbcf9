//! The crate's one error type: the message etcdctl prints after `Error: ` and the code it exits
//! with.

use std::fmt;

/// etcdctl's exit codes (cobrautl's `Exit*`).
pub(crate) const EXIT_ERROR: i32 = 1;
pub(crate) const EXIT_BAD_CONNECTION: i32 = 2;
/// etcdctl's ExitInvalidInput: unreadable input (a txn cut short).
pub(crate) const EXIT_INVALID_INPUT: i32 = 3;
/// A valid flag with a value the command does not support (an output format).
pub(crate) const EXIT_BAD_FEATURE: i32 = 4;
pub(crate) const EXIT_INTERRUPTED: i32 = 5;
pub(crate) const EXIT_BAD_ARGS: i32 = 128;
/// The code a Go program exits with when it panics (etcdctl does on some inputs).
pub(crate) const EXIT_PANIC: i32 = 2;

/// A failed command: its message and etcdctl's exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: i32,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: i32, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A failure with the general exit code.
    pub(crate) fn error(message: impl Into<String>) -> Self {
        Self::new(EXIT_ERROR, message)
    }

    /// Bad arguments or flags.
    pub(crate) fn bad_args(message: impl Into<String>) -> Self {
        Self::new(EXIT_BAD_ARGS, message)
    }

    /// An exit whose reasons were printed already (etcdctl's bare `os.Exit`): no `Error:` line.
    pub(crate) fn quiet(code: i32) -> Self {
        Self::new(code, String::new())
    }
}

pub(crate) use oxetcd_common::go_errors::{
    errno_text as go_errno_text, path_error as go_path_error,
};

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Errors of the load generator's internals (`bench`) fail with the general exit code.
impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::error(format!("{e:#}"))
    }
}

/// A failed call prints as etcdctl prints it.
impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        Failure::error(status_text(&s))
    }
}

/// The text etcdctl prints for a failed call: etcd's own message for etcd errors, gRPC's
/// description otherwise.
pub(crate) fn status_text(s: &tonic::Status) -> String {
    match s.code() {
        tonic::Code::DeadlineExceeded => "context deadline exceeded".to_string(),
        // tonic's own request timeout (`--command-timeout`): the deadline, in clientv3's words.
        tonic::Code::Cancelled if s.message() == "Timeout expired" => {
            "context deadline exceeded".to_string()
        }
        _ if s.message().starts_with("etcdserver:") => s.message().to_string(),
        _ => format!("rpc error: code = {:?} desc = {}", s.code(), s.message()),
    }
}
