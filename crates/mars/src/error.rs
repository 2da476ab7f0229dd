//! The crate's one error type.

use std::time::Duration;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed source error from a dependency (the HTTP stack, the OS).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Establishing the TCP connection.
    Connect,
    /// Waiting for the response head after the request was sent.
    FirstByte,
    /// Waiting for the next chunk of a response that had already started.
    Idle,
}

impl std::fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::FirstByte => "first byte",
            TimeoutPhase::Idle => "idle gap between chunks",
        })
    }
}

/// Everything that can go wrong in mars.
///
/// Variants keep what a caller needs to act: the HTTP status and body, the offending line of a
/// decode failure, the timeout phase. The type is `Send + Sync + 'static`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value was rejected by a constructor.
    #[error("invalid configuration: {field}: {reason}")]
    InvalidConfig {
        /// The field (or argument) that was rejected.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },

    /// The request could not reach the server (refused, DNS, reset before a response).
    #[error("could not connect to {url} (after {attempts} attempt(s)): {source}")]
    Connect {
        /// The URL that was requested.
        url: String,
        /// How many attempts were made, retries included.
        attempts: u32,
        /// The underlying transport error.
        #[source]
        source: BoxError,
    },

    /// The transport failed after the response had started.
    #[error("transport error while reading the response from {url}: {source}")]
    Transport {
        /// The URL that was requested.
        url: String,
        /// The underlying transport error.
        #[source]
        source: BoxError,
    },

    /// A wait ran out.
    #[error("timed out ({phase}) after {after:?} waiting for {url}")]
    Timeout {
        /// Which wait ran out.
        phase: TimeoutPhase,
        /// The configured limit.
        after: Duration,
        /// The URL that was requested.
        url: String,
    },

    /// The server answered with a non-success status.
    #[error("HTTP {status} from {url}: {body}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The response body (truncated to 64 KiB).
        body: String,
        /// The URL that was requested.
        url: String,
    },

    /// The server does not have the requested model.
    #[error("model {model:?} not found on the server ({body}); {hint}")]
    ModelNotFound {
        /// The model name that was requested.
        model: String,
        /// The server's message.
        body: String,
        /// What to do about it, e.g. `run: ollama pull NAME`.
        hint: String,
    },

    /// The server reported an error inside an otherwise successful response
    /// (Ollama's `{"error": ...}` line, an SSE `data: {"error": ...}` event).
    #[error("the backend reported an error mid-stream: {message}")]
    Backend {
        /// The server's message.
        message: String,
    },

    /// A line or event of the response could not be decoded.
    #[error("could not decode response line {line_number} ({reason}): {line}")]
    Decode {
        /// 1-based number of the line (or SSE event) in the response.
        line_number: u64,
        /// The offending line, truncated to 512 bytes.
        line: String,
        /// What was wrong with it.
        reason: String,
    },

    /// The stream ended without its terminal record: the answer may be incomplete.
    #[error("the stream ended without a terminal record after {text_bytes} bytes of text")]
    Truncated {
        /// How many bytes of text had been received.
        text_bytes: usize,
    },

    /// A stream broke its contract (e.g. an event after the terminal event).
    #[error("stream protocol violation: {detail}")]
    Protocol {
        /// What was violated.
        detail: String,
    },

    /// A request could not be served by this backend as asked.
    #[error("unsupported request: {detail}")]
    Unsupported {
        /// What was not supported.
        detail: String,
    },

    /// A model call made by a strategy failed (under the default
    /// [`FailurePolicy::Fail`](crate::strategies::FailurePolicy::Fail)).
    #[error("{strategy}: {call} failed: {source}")]
    StrategyCall {
        /// The strategy's name, e.g. `best_of_n`.
        strategy: &'static str,
        /// Which call, e.g. `candidate 2 of 5` or `judge call for candidate 1`.
        call: String,
        /// The inner call's error.
        #[source]
        source: Box<Error>,
    },

    /// Every candidate of a strategy failed (under
    /// [`FailurePolicy::Drop`](crate::strategies::FailurePolicy::Drop)).
    #[error("{strategy}: all {candidates} candidate(s) failed; the first: {first_error}")]
    AllCandidatesFailed {
        /// The strategy's name.
        strategy: &'static str,
        /// How many candidates were requested.
        candidates: usize,
        /// The first failed call and its error, as displayed.
        first_error: String,
    },

    /// Reading or writing a file failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done, e.g. `append to`.
        action: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The sandbox for untrusted code failed (not the code it ran: that is a verdict).
    #[error(transparent)]
    Sandbox(crate::eval::sandbox::SandboxError),

    /// A pinned file (model weights, a task set) could not be fetched or verified.
    #[error("fetch failed: {0}")]
    Fetch(#[from] crate::fetch::FetchError),

    /// A backend that lives outside this crate (the embedded llama.cpp engine of `mars-llama`)
    /// failed. `source` is that crate's own error type; downcast it for the details.
    #[error("{backend}: {source}")]
    External {
        /// The backend, e.g. `llama.cpp engine`.
        backend: &'static str,
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

/// Shortens `text` to at most `max` bytes on a character boundary, marking the cut.
pub(crate) fn truncate_for_error(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<Error>();
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let text = "ééé";
        assert_eq!(truncate_for_error(text, 3), "é… (6 bytes in all)");
        assert_eq!(truncate_for_error(text, 6), "ééé");
    }
}
