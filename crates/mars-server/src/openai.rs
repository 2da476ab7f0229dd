//! The OpenAI front end: `/v1/chat/completions` (streamed as SSE or not), `/v1/models` and
//! `/v1/models/{model}`, translated to the core request and back.

use std::sync::Arc;

use axum::Extension;
use axum::body::{Body as HttpBody, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use mars::{ChatRequest, Message, Role, SamplingOptions, StreamEvent, Usage};
use serde::Serialize;
use serde_json::{Value, json};

use crate::code::VerifyGuard;
use crate::core::{self, AppState, Tick, Ticker};
use crate::error::{Api, ApiError};
use crate::fields::{self, Body};
use crate::respond::{self, Relay, RequestId};
use crate::upstream::{self, Upstream};

/// Fields of the OpenAI API that a strategy (or a translation to another wire) cannot honour.
const UNMODELLED: &[&str] = &[
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "response_format",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "frequency_penalty",
    "presence_penalty",
    "audio",
    "modalities",
    "prediction",
];

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    match chat(&state, &id, &headers, bytes).await {
        Ok(response) => response,
        Err(err) => err.on(Api::OpenAi).into_response(),
    }
}

async fn chat(
    state: &Arc<AppState>,
    id: &RequestId,
    headers: &HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (raw, body) = respond::read_body(bytes, state.config.max_body_bytes, Api::OpenAi)?;
    let mut plan = state.plan(&body).await?;
    let stream = fields::opt_bool(&body, "stream")?.unwrap_or(false);
    let n = fields::opt_u64(&body, "n")?.unwrap_or(1);
    if n == 0 || n > state.config.max_n as u64 {
        return Err(ApiError::bad_field(
            "n",
            format!("`n` must be between 1 and {}", state.config.max_n),
        ));
    }
    let include_usage = match fields::opt_object(&body, "stream_options")? {
        Some(options) => fields::opt_bool(options, "include_usage")?.unwrap_or(false),
        None => false,
    };
    let key = respond::forwarded_key(state, headers);
    if !matches!(fields::present(&body, "messages"), Some(Value::Array(m)) if !m.is_empty()) {
        return Err(ApiError::bad_field(
            "messages",
            "`messages` must be a non-empty array",
        ));
    }
    // Sampling fields are checked on every path, a relay's included (it forwards them as sent).
    sampling(&body)?;
    if plan.strategies.is_none()
        && !fields::has_tag(&body)
        && let Some(Upstream::OpenAi {
            base,
            http,
            key: own,
            ..
        }) = state.upstreams.get(plan.route.upstream)
    {
        return respond::relay(
            state,
            Relay {
                http,
                url: format!("{base}/chat/completions"),
                body: raw,
                key: key.or_else(|| own.clone()),
                stream,
                api: Api::OpenAi,
                model: plan.requested.clone(),
            },
        )
        .await;
    }
    let why = if plan.strategies.is_some() {
        "by a strategy"
    } else {
        "when the model is served through another API"
    };
    fields::refuse_unmodelled(&body, UNMODELLED, why)?;
    let mut request = chat_request(&body)?;
    state.apply_tag(&mut plan, &mut request)?;
    if state.config.log_prompts {
        tracing::info!(request_id = %id.0, prompt = ?request.messages, "prompt");
    }
    let started = state.start(&plan, &request, n as usize, None, key)?;
    let label = started.label.clone();
    let verification = started.verification.clone();
    let reply = Reply {
        id: format!("chatcmpl-{}", id.0),
        created: upstream::unix_now(),
        model: plan.requested.clone(),
        label: label.clone(),
    };
    if !stream {
        let (completions, usage) = core::collect_all(started, state.config.request_timeout).await?;
        let choices: Vec<Value> = completions
            .iter()
            .enumerate()
            .map(|(index, c)| {
                json!({
                    "index": index,
                    "message": {"role": "assistant", "content": c.text, "refusal": null},
                    "logprobs": null,
                    "finish_reason": core::finish_name(&c.finish_reason),
                })
            })
            .collect();
        let body = json!({
            "id": reply.id,
            "object": "chat.completion",
            "created": reply.created,
            "model": reply.model,
            "system_fingerprint": null,
            "choices": choices,
            "usage": usage_json(&usage, &label, verification.as_deref()),
        });
        let mut response = axum::Json(body).into_response();
        respond::mars_headers(&mut response, &label, Some(usage.model_calls));
        return Ok(response);
    }
    let choices = started.choices.len();
    let mut ticker = Ticker::new(
        started.choices,
        state.config.request_timeout,
        state.config.keep_alive,
    );
    // Wait for the first event (up to a second) so that a request that fails at once still
    // gets its HTTP status; the headers then go out with a keep-alive.
    let first = ticker.first().await;
    match &first {
        Tick::Event(_, Err(err)) => return Err(ApiError::from_mars(err)),
        Tick::TimedOut => return Err(ApiError::timeout(state.config.request_timeout)),
        _ => {}
    }
    let body = sse(reply, ticker, first, choices, include_usage, verification);
    let mut response = Response::new(HttpBody::from_stream(body));
    response.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("text/event-stream"),
    );
    response.headers_mut().insert(
        "cache-control",
        axum::http::HeaderValue::from_static("no-cache"),
    );
    respond::mars_headers(&mut response, &label, None);
    Ok(response)
}

/// What every chunk of a response repeats.
#[derive(Debug, Clone)]
struct Reply {
    id: String,
    created: u64,
    model: String,
    label: String,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChunkChoice<'a>; 1],
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: usize,
    delta: Delta<'a>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

impl Reply {
    fn chunk(&self, out: &mut Vec<u8>, index: usize, delta: Delta<'_>, finish: Option<&str>) {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: [ChunkChoice {
                index,
                delta,
                finish_reason: finish,
            }],
        };
        out.extend_from_slice(b"data: ");
        // A struct of strings and numbers always serialises.
        let _ = serde_json::to_writer(&mut *out, &chunk);
        out.extend_from_slice(b"\n\n");
    }
}

/// The SSE body: a role chunk before each choice's first text, its deltas, exactly one
/// finish chunk per choice, the usage chunk when asked for, then `[DONE]`; keep-alive
/// comments while nothing comes; an error event (and no `[DONE]`) on a failure, or when a
/// choice ended without finishing. A second finish of a choice is ignored. Events that are
/// ready together go out in one chunk.
fn sse(
    reply: Reply,
    mut ticker: Ticker,
    first: Tick,
    choices: usize,
    include_usage: bool,
    verification: Option<Arc<VerifyGuard>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    async_stream::stream! {
        let mut writer = SseWriter {
            reply,
            opened: vec![false; choices],
            finished: vec![false; choices],
            usage: Usage::default(),
        };
        let mut pending = Some(first);
        loop {
            let tick = match pending.take() {
                Some(tick) => tick,
                None => ticker.next().await,
            };
            let (index, event) = match tick {
                Tick::End => break,
                Tick::KeepAlive => {
                    yield Ok(Bytes::from_static(b": keep-alive\n\n"));
                    continue;
                }
                Tick::TimedOut => {
                    yield Ok(respond::stream_error(Api::OpenAi, &ticker.timed_out()));
                    return;
                }
                Tick::Event(index, event) => (index, event),
            };
            let mut out = Vec::new();
            let mut failed = writer.event(&mut out, index, event);
            while !failed && out.len() < core::COALESCE_BYTES {
                let Some((index, event)) = ticker.ready() else { break };
                failed = writer.event(&mut out, index, event);
            }
            yield Ok(Bytes::from(out));
            if failed {
                return;
            }
        }
        if let Some(index) = writer.finished.iter().position(|done| !done) {
            let err = ApiError::from_mars(&mars::Error::Backend {
                message: format!("choice {index} ended before its answer finished"),
            });
            yield Ok(respond::stream_error(Api::OpenAi, &err));
            return;
        }
        if include_usage {
            let body = json!({
                "id": writer.reply.id,
                "object": "chat.completion.chunk",
                "created": writer.reply.created,
                "model": writer.reply.model,
                "choices": [],
                "usage": usage_json(&writer.usage, &writer.reply.label, verification.as_deref()),
            });
            yield Ok(Bytes::from(format!("data: {body}\n\n")));
        }
        yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
    }
}

/// Writes the events of one SSE response.
struct SseWriter {
    reply: Reply,
    opened: Vec<bool>,
    /// Which choices have had their finish chunk.
    finished: Vec<bool>,
    usage: Usage,
}

impl SseWriter {
    /// Appends `event` of choice `index` to `out`; true when it was a failure (an error event
    /// was written and the stream must end).
    fn event(&mut self, out: &mut Vec<u8>, index: usize, event: mars::Result<StreamEvent>) -> bool {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                out.extend_from_slice(&respond::stream_error(
                    Api::OpenAi,
                    &ApiError::from_mars(&err),
                ));
                return true;
            }
        };
        if self.finished.get(index).copied().unwrap_or(true) {
            // Nothing after a choice's finish (or for a choice that does not exist).
            return false;
        }
        if let Some(open) = self.opened.get_mut(index)
            && !*open
        {
            *open = true;
            let role = Delta {
                role: Some("assistant"),
                content: Some(""),
            };
            self.reply.chunk(out, index, role, None);
        }
        match event {
            StreamEvent::Delta(text) => {
                let delta = Delta {
                    role: None,
                    content: Some(&text),
                };
                self.reply.chunk(out, index, delta, None);
            }
            StreamEvent::Done(finish) => {
                if let Some(done) = self.finished.get_mut(index) {
                    *done = true;
                }
                self.usage.accumulate(&finish.usage);
                let reason = core::finish_name(&finish.reason);
                self.reply.chunk(
                    out,
                    index,
                    Delta {
                        role: None,
                        content: None,
                    },
                    Some(reason),
                );
            }
        }
        false
    }
}

/// OpenAI's `usage` with mars's `usage.mars`, which adds what a code strategy verified
/// (`verification`: candidates checked, compiled and passed; example and generated-test runs
/// and passes; checks refused over the sandbox budget).
fn usage_json(usage: &Usage, label: &str, verification: Option<&VerifyGuard>) -> Value {
    let total = usage
        .prompt_tokens
        .zip(usage.completion_tokens)
        .map(|(p, c)| p + c);
    let mut mars = json!({"strategy": label, "model_calls": usage.model_calls});
    if let Some(guard) = verification {
        mars["verification"] = json!(guard.counts());
    }
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": total,
        "mars": mars,
    })
}

/// The core request of an OpenAI body: a leading system (or developer) message becomes the
/// system prompt; text parts are joined; anything else is a 400 naming its place.
pub fn chat_request(body: &Body) -> Result<ChatRequest, ApiError> {
    let messages = match fields::present(body, "messages") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) | None => {
            return Err(ApiError::bad_field(
                "messages",
                "`messages` must be a non-empty array",
            ));
        }
        Some(_) => {
            return Err(ApiError::bad_field(
                "messages",
                "`messages` must be an array",
            ));
        }
    };
    let options = sampling(body)?;
    let mut turns = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let Value::Object(message) = message else {
            return Err(ApiError::bad_field(at, "each message must be an object"));
        };
        let role = match fields::opt_string(message, "role")
            .map_err(|_| ApiError::bad_field(format!("{at}.role"), "`role` must be a string"))?
            .as_deref()
        {
            Some("system" | "developer") => Role::System,
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            other => {
                return Err(ApiError::bad_field(
                    format!("{at}.role"),
                    format!(
                        "role {other:?} cannot be honoured here (system, developer, user, assistant)"
                    ),
                ));
            }
        };
        if fields::present(message, "tool_calls").is_some() {
            return Err(ApiError::bad_field(
                format!("{at}.tool_calls"),
                "tool calls cannot be honoured by a strategy",
            ));
        }
        let content = content_text(fields::present(message, "content"), &at)?;
        turns.push(Message { role, content });
    }
    fields::chat_request(turns, options)
}

fn content_text(content: Option<&Value>, at: &str) -> Result<String, ApiError> {
    match content {
        None => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                match (
                    part.get("type").and_then(Value::as_str),
                    part.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(piece)) => text.push_str(piece),
                    (kind, _) => {
                        return Err(ApiError::bad_field(
                            format!("{at}.content[{j}]"),
                            format!(
                                "a content part of type {} cannot be honoured by a strategy",
                                kind.unwrap_or("(none)")
                            ),
                        ));
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(ApiError::bad_field(
            format!("{at}.content"),
            "`content` must be a string or an array of text parts",
        )),
    }
}

fn sampling(body: &Body) -> Result<SamplingOptions, ApiError> {
    let max_tokens = match fields::opt_u32(body, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => fields::opt_u32(body, "max_tokens")?,
    };
    Ok(SamplingOptions {
        temperature: fields::opt_f32(body, "temperature")?,
        top_p: fields::opt_f32(body, "top_p")?,
        top_k: fields::opt_u32(body, "top_k")?,
        seed: fields::opt_seed(body, "seed")?,
        max_tokens,
        stop: fields::stop(body, "stop")?,
    })
}

/// `GET /v1/models`: every base model, then its strategy variants (`moa-<model>`, ...).
pub async fn models(State(state): State<Arc<AppState>>) -> Response {
    let catalog = state.upstreams.catalog(false).await;
    let mut data = Vec::new();
    for entry in catalog.iter() {
        let owner = state
            .upstreams
            .get(entry.upstream)
            .map_or("", Upstream::owner);
        data.push(model_json(&entry.name, owner));
    }
    for entry in catalog.iter() {
        for prefix in state.listed_prefixes() {
            data.push(model_json(&format!("{prefix}-{}", entry.name), "mars"));
        }
    }
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

fn model_json(id: &str, owner: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
}

/// `GET /v1/models/{model}`: a base model or a strategy variant of one.
pub async fn model(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Response {
    let mut body = Body::new();
    body.insert("model".into(), Value::String(model.clone()));
    match state.plan(&body).await {
        Ok(plan) => {
            let owner = if plan.strategies.is_some() {
                "mars"
            } else {
                state
                    .upstreams
                    .get(plan.route.upstream)
                    .map_or("", Upstream::owner)
            };
            axum::Json(model_json(&model, owner)).into_response()
        }
        Err(err) => err.on(Api::OpenAi).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use mars::EventStream;
    use std::time::Duration;

    fn done() -> mars::Result<StreamEvent> {
        Ok(StreamEvent::Done(mars::Finish {
            reason: mars::FinishReason::Stop,
            usage: Usage::default(),
        }))
    }

    async fn body(choices: Vec<Vec<mars::Result<StreamEvent>>>) -> String {
        let n = choices.len();
        let streams: Vec<EventStream<'static>> = choices
            .into_iter()
            .map(|events| Box::pin(futures::stream::iter(events)) as EventStream<'static>)
            .collect();
        let mut ticker = Ticker::new(streams, Duration::from_secs(60), Duration::from_secs(60));
        let first = ticker.next().await;
        let reply = Reply {
            id: "x".into(),
            created: 0,
            model: "m".into(),
            label: "baseline".into(),
        };
        let chunks: Vec<_> = sse(reply, ticker, first, n, false, None).collect().await;
        chunks
            .into_iter()
            .map(|c| String::from_utf8(c.unwrap().to_vec()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_choice_without_its_finish_ends_in_an_error_event() {
        let text = body(vec![
            vec![Ok(StreamEvent::Delta("a".into())), done()],
            vec![Ok(StreamEvent::Delta("b".into()))],
        ])
        .await;
        assert!(text.contains("choice 1 ended"), "{text}");
        assert!(!text.contains("[DONE]"), "{text}");
    }

    #[tokio::test]
    async fn a_second_finish_is_ignored() {
        let text = body(vec![vec![
            Ok(StreamEvent::Delta("a".into())),
            done(),
            done(),
        ]])
        .await;
        assert_eq!(
            text.matches("\"finish_reason\":\"stop\"").count(),
            1,
            "{text}"
        );
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    }
}
