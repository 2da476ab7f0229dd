//! `ApiError`: every failure the server answers, rendered in the shape of the API that was
//! called (OpenAI's `{"error": {...}}` or Ollama's `{"error": "..."}`).

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Which API a request came in on, and so the shape of its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/*`.
    OpenAi,
    /// `/api/*` and `/`.
    Ollama,
}

/// An error answered to a client: status, message, and the OpenAI fields `type`, `param`,
/// `code`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
    /// OpenAI's `type`, e.g. `invalid_request_error`.
    pub kind: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// OpenAI's `code`, e.g. `model_not_found`.
    pub code: Option<&'static str>,
    /// `Retry-After`, when a retry later makes sense.
    pub retry_after: Option<Duration>,
    /// The shape to render.
    pub api: Api,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
            api: Api::OpenAi,
        }
    }

    /// 400 naming the field at fault.
    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        ApiError {
            param: Some(field),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                message.into(),
            )
        }
    }

    /// 400 without a single field at fault.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        ApiError {
            code: Some("invalid_api_key"),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "missing or wrong API key: send `Authorization: Bearer <key>`",
            )
        }
    }

    /// 404 for a model no upstream has (or more than one has).
    pub fn model_not_found(message: impl Into<String>) -> Self {
        ApiError {
            param: Some("model".into()),
            code: Some("model_not_found"),
            ..Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
        }
    }

    /// 404 for a path the server does not serve.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("no route {path}"),
        )
    }

    /// 413.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("the request body is over the limit of {limit} bytes"),
        )
    }

    /// 429 from the admission bound: nothing ran, a retry later is welcome.
    pub fn overloaded(retry_after: Duration) -> Self {
        ApiError {
            code: Some("server_busy"),
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "the server is at its admission bound (--max-concurrency + --max-queue)",
            )
        }
    }

    /// 504 for `--request-timeout`.
    pub fn timeout(after: Duration) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout_error",
            format!("the request ran past the server's limit of {after:?}"),
        )
    }

    /// 503 while the server shuts down or an upstream is not ready.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
    }

    /// 500 for the server's own failures.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// Classifies a failure of the mars library (an upstream call, a strategy) by its innermost
    /// cause: an upstream 429 stays 429, an upstream 400/413/422 is 400 (with the upstream's
    /// message), a timeout is 504, a missing model 404, the rest 502.
    pub fn from_mars(err: &mars::Error) -> Self {
        let message = err.to_string();
        match innermost(err) {
            mars::Error::Timeout { .. } => ApiError {
                message,
                ..Self::timeout(Duration::ZERO)
            },
            mars::Error::Http { status: 429, .. } => ApiError {
                code: Some("upstream_rate_limited"),
                retry_after: Some(Duration::from_secs(1)),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
            },
            // The upstream refused the request itself (bad input, too large): the caller's
            // fault, with the upstream's words.
            mars::Error::Http {
                status: 400 | 413 | 422,
                body,
                ..
            } => Self::bad_request(format!("the upstream refused the request: {body}")),
            mars::Error::ModelNotFound { .. } => Self::model_not_found(message),
            mars::Error::InvalidConfig { field, reason } => {
                Self::bad_field(*field, format!("{field}: {reason}"))
            }
            // A request the strategy cannot answer as asked (e.g. no user message).
            mars::Error::Unsupported { .. } => Self::bad_request(message),
            _ => ApiError {
                code: Some("upstream_error"),
                ..Self::new(StatusCode::BAD_GATEWAY, "upstream_error", message)
            },
        }
    }

    /// The same error rendered for `api`.
    pub fn on(mut self, api: Api) -> Self {
        self.api = api;
        self
    }

    /// Whether a client retry would be welcome: only when nothing ran (admission, shutdown).
    pub fn retryable(&self) -> bool {
        self.code == Some("server_busy") || self.status == StatusCode::SERVICE_UNAVAILABLE
    }

    /// The body in the API's shape.
    pub fn body(&self) -> serde_json::Value {
        match self.api {
            Api::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }}),
            Api::Ollama => json!({"error": self.message}),
        }
    }
}

/// The innermost mars error: a strategy's failed call unwrapped to what the upstream said.
fn innermost(err: &mars::Error) -> &mars::Error {
    match err {
        mars::Error::StrategyCall { source, .. } => innermost(source),
        other => other,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        let headers = response.headers_mut();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1);
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert("retry-after", value);
            }
        }
        if !self.retryable() {
            headers.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_the_api() {
        let err = ApiError::bad_field("n", "n must be at most 8");
        assert_eq!(
            err.body(),
            json!({"error": {"message": "n must be at most 8", "type": "invalid_request_error",
                   "param": "n", "code": null}})
        );
        assert_eq!(
            err.on(Api::Ollama).body(),
            json!({"error": "n must be at most 8"})
        );
    }

    #[test]
    fn upstream_failures_are_classified_by_their_cause() {
        let http = |status| mars::Error::Http {
            status,
            body: "busy".into(),
            url: "u".into(),
        };
        let wrapped = mars::Error::StrategyCall {
            strategy: "best_of_n",
            call: "candidate 1".into(),
            source: Box::new(http(429)),
        };
        assert_eq!(ApiError::from_mars(&wrapped).status, 429);
        assert_eq!(ApiError::from_mars(&http(500)).status, 502);
        for refused in [400, 413, 422] {
            let err = ApiError::from_mars(&mars::Error::StrategyCall {
                strategy: "re2",
                call: "answer".into(),
                source: Box::new(http(refused)),
            });
            assert_eq!(err.status, 400, "{refused}");
            assert!(err.message.contains("busy"), "{}", err.message);
        }
        let timeout = mars::Error::Timeout {
            phase: mars::error::TimeoutPhase::FirstByte,
            after: Duration::from_secs(1),
            url: "u".into(),
        };
        assert_eq!(ApiError::from_mars(&timeout).status, 504);
    }

    #[test]
    fn only_admission_errors_invite_a_retry() {
        let busy = ApiError::overloaded(Duration::from_secs(1)).into_response();
        assert!(busy.headers().get("x-should-retry").is_none());
        assert_eq!(busy.headers()["retry-after"], "1");
        let bad = ApiError::bad_request("x").into_response();
        assert_eq!(bad.headers()["x-should-retry"], "false");
    }
}
