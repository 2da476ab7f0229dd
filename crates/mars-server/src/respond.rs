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
use crate::upstream::{MAX_ANSWER_BYTES, read_capped};

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
    bearer(headers).map(str::to_owned)
}

/// The token of an `Authorization: Bearer <token>` header, the scheme in any case.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
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
    /// The model string as requested, echoed in the answer's `model`.
    pub model: String,
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
        let text = tokio::time::timeout_at(deadline, crate::upstream::error_text(response))
            .await
            .map_err(|_| timed_out())?;
        let mut err = ApiError::from_mars(&mars::Error::Backend {
            message: format!("the upstream {} answered {status}: {text}", relay.url),
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
            (api, relay.model),
        )
    } else {
        let (bytes, more) =
            tokio::time::timeout_at(deadline, read_capped(response, MAX_ANSWER_BYTES))
                .await
                .map_err(|_| timed_out())?
                .map_err(|err| upstream_unreachable(&relay.url, &err).on(api))?;
        drop(permit);
        if more {
            state.metrics.upstream_error();
            let mut err = ApiError::from_mars(&mars::Error::Backend {
                message: format!(
                    "the upstream {} answered more than {MAX_ANSWER_BYTES} bytes",
                    relay.url
                ),
            });
            err.status = StatusCode::BAD_GATEWAY;
            return Err(err.on(api));
        }
        let bytes = Bytes::from(bytes);
        let bytes = if status.is_success() {
            rewrite_record(state, api, &relay.model, bytes, true)
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

/// A relayed record (a whole answer, or one record of a stream) with its `model` set to the
/// requested string; a usage record (`usage`: a whole answer or the stream's usage record) is
/// counted in the metrics and, on the OpenAI API, gets `usage.mars`. A record that is not a
/// JSON object, or needs no change, is passed on as it is.
fn rewrite_record(state: &AppState, api: Api, model: &str, bytes: Bytes, usage: bool) -> Bytes {
    let Ok(serde_json::Value::Object(mut value)) = serde_json::from_slice(&bytes) else {
        return bytes;
    };
    let mut changed = false;
    if let Some(upstream) = value.get_mut("model")
        && upstream.as_str() != Some(model)
    {
        *upstream = serde_json::Value::String(model.to_owned());
        changed = true;
    }
    if usage {
        let (prompt, completion) = match api {
            Api::OpenAi => ("/usage/prompt_tokens", "/usage/completion_tokens"),
            Api::Ollama => ("/prompt_eval_count", "/eval_count"),
        };
        let record = serde_json::Value::Object(value);
        state.metrics.tokens(&mars::Usage {
            prompt_tokens: record.pointer(prompt).and_then(serde_json::Value::as_u64),
            completion_tokens: record
                .pointer(completion)
                .and_then(serde_json::Value::as_u64),
            ..mars::Usage::default()
        });
        let serde_json::Value::Object(record) = record else {
            return bytes;
        };
        value = record;
        if api == Api::OpenAi
            && let Some(serde_json::Value::Object(usage)) = value.get_mut("usage")
        {
            usage.insert(
                "mars".into(),
                serde_json::json!({"strategy": crate::core::BASELINE, "model_calls": 1}),
            );
            changed = true;
        }
    }
    if !changed {
        return bytes;
    }
    serde_json::to_vec(&value).map_or(bytes, Bytes::from)
}

/// Most bytes of one line of a relayed stream.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// The lines of a relayed stream, rewritten one complete line at a time (a line split across
/// chunks waits for its end).
struct Lines {
    api: Api,
    model: String,
    /// `"model":"<requested>"`: a record holding it needs no rewrite.
    same_model: Vec<u8>,
    partial: Vec<u8>,
}

impl Lines {
    fn new(api: Api, model: String) -> Self {
        let same_model = format!("\"model\":{}", serde_json::Value::String(model.clone()));
        Lines {
            api,
            model,
            same_model: same_model.into_bytes(),
            partial: Vec::new(),
        }
    }

    /// The complete lines of `chunk` (after what was left of the last one), rewritten;
    /// `None` when a line grows past [`MAX_LINE_BYTES`].
    fn push(&mut self, state: &AppState, chunk: &[u8]) -> Option<Bytes> {
        let Some(end) = chunk.iter().rposition(|b| *b == b'\n') else {
            self.partial.extend_from_slice(chunk);
            return (self.partial.len() <= MAX_LINE_BYTES).then(Bytes::new);
        };
        let mut out = Vec::with_capacity(self.partial.len() + end + 1);
        let mut whole = std::mem::take(&mut self.partial);
        whole.extend_from_slice(&chunk[..=end]);
        for line in whole.split_inclusive(|b| *b == b'\n') {
            self.line(state, line, &mut out);
        }
        self.partial.extend_from_slice(&chunk[end + 1..]);
        Some(Bytes::from(out))
    }

    /// What is left at the end of the stream.
    fn finish(&mut self, state: &AppState) -> Bytes {
        let rest = std::mem::take(&mut self.partial);
        let mut out = Vec::with_capacity(rest.len());
        self.line(state, &rest, &mut out);
        Bytes::from(out)
    }

    fn line(&self, state: &AppState, line: &[u8], out: &mut Vec<u8>) {
        let body = line.trim_ascii_end();
        let ending = &line[body.len()..];
        let (prefix, json) = match self.api {
            Api::OpenAi => match body.strip_prefix(b"data:") {
                Some(rest) => (&b"data: "[..], rest.trim_ascii_start()),
                None => (&b""[..], &b""[..]),
            },
            Api::Ollama => (&b""[..], body),
        };
        let usage = has_usage(self.api, json);
        let model_ok = !contains(json, b"\"model\"") || contains(json, &self.same_model);
        if !json.starts_with(b"{") || (!usage && model_ok) {
            out.extend_from_slice(line);
            return;
        }
        let record = rewrite_record(
            state,
            self.api,
            &self.model,
            Bytes::copy_from_slice(json),
            usage,
        );
        out.extend_from_slice(prefix);
        out.extend_from_slice(&record);
        out.extend_from_slice(ending);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A relayed stream, chunk by chunk, holding its permit; past the request's deadline it ends
/// with an error record in the caller's API. Each record's `model` is the requested string;
/// the upstream's usage record (OpenAI's usage chunk, Ollama's final record) is counted in the
/// metrics, and on the OpenAI API gets `usage.mars`.
fn relay_stream(
    state: Arc<AppState>,
    response: reqwest::Response,
    permit: tokio::sync::OwnedSemaphorePermit,
    (deadline, limit): (tokio::time::Instant, std::time::Duration),
    (api, model): (Api, String),
) -> HttpBody {
    let mut chunks = response.bytes_stream();
    let mut lines = Lines::new(api, model);
    HttpBody::from_stream(async_stream::stream! {
        let _permit = permit;
        loop {
            match tokio::time::timeout_at(deadline, chunks.next()).await {
                Ok(Some(Ok(chunk))) => match lines.push(&state, &chunk) {
                    Some(out) if out.is_empty() => {}
                    Some(out) => yield Ok::<Bytes, std::io::Error>(out),
                    None => {
                        let message = format!("a line of the upstream's stream is over {MAX_LINE_BYTES} bytes");
                        yield Ok(error_record(api, &message));
                        break;
                    }
                },
                Ok(None) => {
                    let rest = lines.finish(&state);
                    if !rest.is_empty() {
                        yield Ok(rest);
                    }
                    break;
                }
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

    fn state() -> AppState {
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
        AppState {
            config: crate::ServerConfig::default(),
            upstreams: crate::upstream::Upstreams::new(Vec::new()),
            gate: std::sync::Arc::new(crate::limit::Gate::new(1, std::sync::Arc::clone(&metrics))),
            metrics,
            servable: Vec::new(),
            code: None,
        }
    }

    #[test]
    fn stream_lines_are_rewritten_whole_even_when_split_across_chunks() {
        let state = state();
        let mut lines = Lines::new(Api::OpenAi, "asked".into());
        let mut out = Vec::new();
        let chunks: [&[u8]; 4] = [
            b"data:{\"model\":\"real\",\"choices\":[]}\n\ndata: {\"model\":",
            b"\"real\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,",
            b"\"completion_tokens\":4}}\n\n: comment\n\n",
            b"data: [DONE]\n\n",
        ];
        for chunk in chunks {
            out.extend_from_slice(&lines.push(&state, chunk).unwrap());
        }
        out.extend_from_slice(&lines.finish(&state));
        let text = String::from_utf8(out).unwrap();
        let records: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 2, "{text}");
        assert!(records.iter().all(|r| r["model"] == "asked"), "{text}");
        assert_eq!(records[1]["usage"]["mars"]["model_calls"], 1, "{text}");
        assert!(text.contains(": comment\n\ndata: [DONE]\n\n"), "{text}");
        assert!(!text.contains("data: data:"), "{text}");
        let metrics = state.metrics.render();
        assert!(
            metrics.contains("mars_tokens_total{kind=\"completion\"} 4"),
            "{metrics}"
        );
    }
}
