//! Pieces both front ends use to answer: reading the body within its limit, the `X-Mars-*`
//! headers, and raw relays to an upstream that speaks the caller's API.

use std::sync::Arc;

use axum::body::{Body as HttpBody, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use futures::StreamExt;

use crate::core::AppState;
use crate::error::{Api, ApiError};
use crate::fields::{self, Body};

/// The id of a request: the client's `X-Request-Id` when it sent one, else the server's.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The body as a JSON object; a body over the limit is 413, malformed JSON 400.
pub fn read_body(
    bytes: Result<Bytes, BytesRejection>,
    limit: usize,
    api: Api,
) -> Result<(Bytes, Body), ApiError> {
    let bytes = bytes.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(limit).on(api)
        } else {
            ApiError::bad_request(rejection.body_text()).on(api)
        }
    })?;
    let body = fields::parse_body(&bytes).map_err(|e| e.on(api))?;
    Ok((bytes, body))
}

/// Adds `X-Mars-Strategy` and, when known, `X-Mars-Model-Calls`.
pub fn mars_headers(response: &mut Response, strategy: &str, model_calls: Option<u32>) {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(strategy) {
        headers.insert("x-mars-strategy", value);
    }
    if let Some(calls) = model_calls {
        headers.insert("x-mars-model-calls", HeaderValue::from(calls));
    }
}

/// The client's bearer token, forwarded upstream under `--forward-key`.
pub fn forwarded_key(state: &AppState, headers: &HeaderMap) -> Option<String> {
    if !state.config.forward_key {
        return None;
    }
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
}

/// What a relay sends: the upstream's URL, the request's bytes unchanged and its key.
#[derive(Debug)]
pub struct Relay<'a> {
    /// The pooled client of the upstream.
    pub http: &'a reqwest::Client,
    /// Where to post.
    pub url: String,
    /// The caller's body, byte for byte.
    pub body: Bytes,
    /// Bearer token for the upstream.
    pub key: Option<String>,
    /// Whether the caller asked for a stream.
    pub stream: bool,
    /// The caller's API, for errors.
    pub api: Api,
}

/// Relays a request without loss: the body is forwarded byte for byte, and the upstream's
/// status, content type and body come back as they are (a streamed body chunk by chunk),
/// except an upstream 5xx, 401 or 403, which is a 502 in the caller's error shape with the
/// upstream's body in its message. The
/// call holds a concurrency permit while its body streams; dropping the response closes the
/// upstream connection. A non-streaming OpenAI answer gets `usage.mars`.
pub async fn relay(state: &Arc<AppState>, relay: Relay<'_>) -> Result<Response, ApiError> {
    let api = relay.api;
    let timeout = state.config.request_timeout;
    // One deadline for the whole call: the wait for a permit, the request, and the body.
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = || ApiError::timeout(timeout).on(api);
    let permit = tokio::time::timeout_at(deadline, state.gate.acquire())
        .await
        .map_err(|_| timed_out())?
        .ok_or_else(|| ApiError::unavailable("shutting down").on(api))?;
    state.metrics.model_call();
    let mut request = relay
        .http
        .post(&relay.url)
        .header("content-type", "application/json")
        .body(relay.body);
    if let Some(key) = relay.key {
        request = request.bearer_auth(key);
    }
    let response = tokio::time::timeout_at(deadline, request.send())
        .await
        .map_err(|_| timed_out())?
        .map_err(|err| {
            state.metrics.upstream_error();
            upstream_unreachable(&relay.url, &err).on(api)
        })?;
    let status = response.status();
    if !status.is_success() {
        state.metrics.upstream_error();
    }
    if status.is_server_error()
        || status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
    {
        // The upstream's own failure (or its key, which is the server's): a 502 in the
        // caller's shape, with what the upstream said.
        drop(permit);
        let text = tokio::time::timeout_at(deadline, response.bytes())
            .await
            .map_err(|_| timed_out())?
            .unwrap_or_default();
        let mut err = ApiError::from_mars(&mars::Error::Backend {
            message: format!(
                "the upstream {} answered {status}: {}",
                relay.url,
                String::from_utf8_lossy(&text)
            ),
        });
        err.status = StatusCode::BAD_GATEWAY;
        return Err(err.on(api));
    }
    let mut head = HeaderMap::new();
    for name in ["content-type", "retry-after"] {
        if let Some(value) = response.headers().get(name) {
            head.insert(name, value.clone());
        }
    }
    if !status.is_success() {
        head.insert("x-should-retry", HeaderValue::from_static("false"));
    }
    let stream = relay.stream;
    let body = if stream && status.is_success() {
        relay_stream(
            Arc::clone(state),
            response,
            permit,
            (deadline, timeout),
            api,
        )
    } else {
        let bytes = tokio::time::timeout_at(deadline, response.bytes())
            .await
            .map_err(|_| timed_out())?
            .map_err(|err| upstream_unreachable(&relay.url, &err).on(api))?;
        drop(permit);
        let bytes = if status.is_success() {
            count_and_mark(state, api, bytes)
        } else {
            bytes
        };
        HttpBody::from(bytes)
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    out.headers_mut().extend(head);
    // A stream's call count is known only at its end (as for strategies, where it is in the
    // usage); a relay is one call.
    mars_headers(&mut out, crate::core::BASELINE, (!stream).then_some(1));
    Ok(out)
}

fn upstream_unreachable(url: &str, err: &reqwest::Error) -> ApiError {
    let mut api = ApiError::from_mars(&mars::Error::Backend {
        message: format!("the upstream {url} failed: {err}"),
    });
    if err.is_timeout() {
        api.status = StatusCode::GATEWAY_TIMEOUT;
    }
    api
}

/// Counts a relayed answer's tokens and, on the OpenAI API, adds `usage.mars`.
fn count_and_mark(state: &AppState, api: Api, bytes: Bytes) -> Bytes {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return bytes;
    };
    let (prompt, completion) = match api {
        Api::OpenAi => ("/usage/prompt_tokens", "/usage/completion_tokens"),
        Api::Ollama => ("/prompt_eval_count", "/eval_count"),
    };
    state.metrics.tokens(&mars::Usage {
        prompt_tokens: value.pointer(prompt).and_then(serde_json::Value::as_u64),
        completion_tokens: value
            .pointer(completion)
            .and_then(serde_json::Value::as_u64),
        ..mars::Usage::default()
    });
    if api == Api::Ollama {
        return bytes;
    }
    match value.get_mut("usage") {
        Some(serde_json::Value::Object(usage)) => {
            usage.insert(
                "mars".into(),
                serde_json::json!({"strategy": crate::core::BASELINE, "model_calls": 1}),
            );
            serde_json::to_vec(&value).map_or(bytes, Bytes::from)
        }
        _ => bytes,
    }
}

/// A relayed stream, chunk by chunk, holding its permit; past the request's deadline it ends with an
/// error record in the caller's API. The upstream's usage record (OpenAI's usage chunk,
/// Ollama's final record) is counted in the metrics, and on the OpenAI API gets `usage.mars`.
fn relay_stream(
    state: Arc<AppState>,
    response: reqwest::Response,
    permit: tokio::sync::OwnedSemaphorePermit,
    (deadline, limit): (tokio::time::Instant, std::time::Duration),
    api: Api,
) -> HttpBody {
    let mut chunks = response.bytes_stream();
    HttpBody::from_stream(async_stream::stream! {
        let _permit = permit;
        loop {
            match tokio::time::timeout_at(deadline, chunks.next()).await {
                Ok(Some(Ok(chunk))) => yield Ok::<Bytes, std::io::Error>(usage_lines(&state, api, chunk)),
                Ok(None) => break,
                Ok(Some(Err(err))) => {
                    yield Ok(error_record(api, &format!("the upstream stream broke: {err}")));
                    break;
                }
                Err(_) => {
                    yield Ok(stream_error(api, &ApiError::timeout(limit)));
                    break;
                }
            }
        }
    })
}

/// Whether `bytes` hold a usage record: OpenAI's `"usage": {` (a usage chunk; `null` in the
/// others) or Ollama's `"done": true` (the final record), whitespace allowed around `:`.
fn has_usage(api: Api, bytes: &[u8]) -> bool {
    let (key, value): (&[u8], &[u8]) = match api {
        Api::OpenAi => (b"\"usage\"", b"{"),
        Api::Ollama => (b"\"done\"", b"true"),
    };
    let mut rest = bytes;
    while let Some(at) = rest.windows(key.len()).position(|w| w == key) {
        rest = &rest[at + key.len()..];
        let after = rest.trim_ascii_start();
        if let Some(after) = after.strip_prefix(b":")
            && after.trim_ascii_start().starts_with(value)
        {
            return true;
        }
    }
    false
}

/// `chunk` unchanged unless one of its lines is a usage record; such a line is counted and,
/// on the OpenAI API, rewritten with `usage.mars`. (A record split across two chunks is
/// passed on unchanged and uncounted.)
fn usage_lines(state: &AppState, api: Api, chunk: Bytes) -> Bytes {
    if !has_usage(api, &chunk) {
        return chunk;
    }
    let mut out = Vec::with_capacity(chunk.len() + 64);
    for line in chunk.split_inclusive(|b| *b == b'\n') {
        if !has_usage(api, line) {
            out.extend_from_slice(line);
            continue;
        }
        let (prefix, json) = match api {
            Api::OpenAi => (&b"data: "[..], line.strip_prefix(b"data: ").unwrap_or(line)),
            Api::Ollama => (&b""[..], line),
        };
        let marked = count_and_mark(state, api, Bytes::copy_from_slice(json.trim_ascii_end()));
        out.extend_from_slice(prefix);
        out.extend_from_slice(&marked);
        out.extend_from_slice(&line[line.trim_ascii_end().len()..]);
    }
    Bytes::from(out)
}

/// An error record in a stream: an SSE `data:` event (OpenAI) or a final NDJSON line (Ollama).
pub fn error_record(api: Api, message: &str) -> Bytes {
    match api {
        Api::OpenAi => {
            let body = serde_json::json!({"error": {
                "message": message, "type": "upstream_error", "param": null, "code": null}});
            Bytes::from(format!("data: {body}\n\n"))
        }
        Api::Ollama => Bytes::from(format!("{}\n", serde_json::json!({"error": message}))),
    }
}

/// The error record of a failure after a stream began.
pub fn stream_error(api: Api, err: &ApiError) -> Bytes {
    match api {
        Api::OpenAi => {
            let mut body = err.clone().on(Api::OpenAi).body();
            if let Some(inner) = body.get_mut("error") {
                inner["status"] = serde_json::json!(err.status.as_u16());
            }
            Bytes::from(format!("data: {body}\n\n"))
        }
        Api::Ollama => Bytes::from(format!("{}\n", err.clone().on(Api::Ollama).body())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_records_are_found_with_any_spacing() {
        assert!(has_usage(
            Api::OpenAi,
            br#"data: {"choices":[],"usage":{"prompt_tokens":1}}"#
        ));
        assert!(has_usage(
            Api::OpenAi,
            br#"data: {"choices": [], "usage" : {"x": 1}}"#
        ));
        assert!(!has_usage(
            Api::OpenAi,
            br#"data: {"choices": [], "usage": null}"#
        ));
        assert!(has_usage(
            Api::Ollama,
            br#"{"done": true, "eval_count": 4}"#
        ));
        assert!(!has_usage(Api::Ollama, br#"{"done":false}"#));
    }
}
