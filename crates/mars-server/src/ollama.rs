//! The Ollama front end: `/`, `/api/version`, `/api/tags`, `/api/show`, `/api/ps`,
//! `/api/chat` and `/api/generate` (NDJSON streams by default), translated to the core request
//! and back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::{Body as HttpBody, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use mars::{ChatRequest, Message, Role, SamplingOptions, StreamEvent, Usage};
use serde_json::{Value, json};

use crate::core::{self, AppState, Tick, Ticker};
use crate::error::{Api, ApiError};
use crate::fields::{self, Body};
use crate::respond::{self, Relay, RequestId};
use crate::upstream::{self, Upstream};

/// The Ollama API version this surface follows, reported by `/api/version`.
pub const OLLAMA_VERSION: &str = "0.12.0";

/// `GET`/`HEAD /`.
pub async fn root() -> &'static str {
    "Ollama is running"
}

/// `GET /api/version`.
pub async fn version() -> Response {
    axum::Json(json!({"version": OLLAMA_VERSION})).into_response()
}

/// `GET /api/tags`: every base model's record, then its strategy variants.
pub async fn tags(State(state): State<Arc<AppState>>) -> Response {
    let catalog = state.upstreams.catalog(false).await;
    let mut models: Vec<Value> = catalog.iter().map(|e| e.record.clone()).collect();
    for entry in catalog.iter() {
        for prefix in state.listed_prefixes() {
            let name = format!("{prefix}-{}", entry.name);
            let mut record = entry.record.clone();
            record["name"] = json!(name);
            record["model"] = json!(name);
            models.push(record);
        }
    }
    axum::Json(json!({"models": models})).into_response()
}

/// `GET /api/ps`: the Ollama upstream's loaded models, and the embedded model (always loaded).
pub async fn ps(State(state): State<Arc<AppState>>) -> Response {
    let mut models = Vec::new();
    for upstream in state.upstreams.all() {
        match upstream {
            Upstream::Ollama { base, http, .. } => {
                let url = format!("{base}/api/ps");
                if let Ok(response) = http.get(&url).send().await
                    && let Ok((bytes, false)) =
                        upstream::read_capped(response, upstream::MAX_ANSWER_BYTES).await
                    && let Ok(body) = serde_json::from_slice::<Value>(&bytes)
                    && let Some(list) = body.get("models").and_then(Value::as_array)
                {
                    models.extend(list.iter().cloned());
                }
            }
            Upstream::Embedded { .. } => {
                for mut record in upstream.models().await.unwrap_or_default() {
                    record["expires_at"] = json!("2262-04-11T23:47:16Z");
                    record["size_vram"] = json!(0);
                    models.push(record);
                }
            }
            Upstream::OpenAi { .. } => {}
        }
    }
    axum::Json(json!({"models": models})).into_response()
}

/// `POST /api/show` with `model` (or `name`): the upstream's answer for an Ollama model,
/// else one built from the model list.
pub async fn show(
    State(state): State<Arc<AppState>>,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    match show_inner(&state, bytes).await {
        Ok(response) => response,
        Err(err) => err.on(Api::Ollama).into_response(),
    }
}

async fn show_inner(
    state: &Arc<AppState>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (_, mut body) = respond::read_body(bytes, state.config.max_body_bytes, Api::Ollama)?;
    if fields::present(&body, "model").is_none()
        && let Some(name) = body.get("name").cloned()
    {
        body.insert("model".into(), name);
    }
    let plan = state.plan(&body).await?;
    if let Some(Upstream::Ollama { base, http, .. }) = state.upstreams.get(plan.route.upstream) {
        let url = format!("{base}/api/show");
        let upstream = http
            .post(&url)
            .json(&json!({"model": plan.route.model}))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        if let Ok(response) = upstream
            && let Ok((bytes, false)) =
                upstream::read_capped(response, upstream::MAX_ANSWER_BYTES).await
            && let Some(value) = with_capabilities(serde_json::from_slice(&bytes).ok())
        {
            return Ok(axum::Json(value).into_response());
        }
    }
    let catalog = state.upstreams.catalog(false).await;
    let details = catalog
        .iter()
        .find(|e| e.name == plan.route.model && e.upstream == plan.route.upstream)
        .and_then(|e| e.record.get("details").cloned())
        .unwrap_or_else(|| json!({}));
    Ok(axum::Json(json!({
        "modelfile": "",
        "parameters": "",
        "template": "",
        "details": details,
        "model_info": {},
        "capabilities": ["completion"],
        "modified_at": "1970-01-01T00:00:00Z",
    }))
    .into_response())
}

/// The upstream's `/api/show` answer with `capabilities` added when it has none; `None` when
/// the answer is not a JSON object (the server then answers from the model list).
fn with_capabilities(value: Option<Value>) -> Option<Value> {
    let Some(Value::Object(mut value)) = value else {
        return None;
    };
    value
        .entry("capabilities")
        .or_insert_with(|| json!(["completion"]));
    Some(Value::Object(value))
}

/// Which endpoint: the two differ in their input and in how a record carries text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Generate,
}

/// Fields that a strategy (or a translation to another wire) cannot honour.
const UNMODELLED_CHAT: &[&str] = &["format", "tools", "think"];
const UNMODELLED_GENERATE: &[&str] = &[
    "format", "suffix", "images", "raw", "template", "context", "think",
];

/// The `options` a strategy honours (mapped to mars's sampling options); any other is a 400
/// on a request that is not relayed.
const MAPPED_OPTIONS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "num_predict",
    "stop",
];

/// `POST /api/chat`.
pub async fn chat(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    respond_to(&state, &id, &headers, bytes, Endpoint::Chat).await
}

/// `POST /api/generate`.
pub async fn generate(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    respond_to(&state, &id, &headers, bytes, Endpoint::Generate).await
}

async fn respond_to(
    state: &Arc<AppState>,
    id: &RequestId,
    headers: &HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> Response {
    match run(state, id, headers, bytes, endpoint).await {
        Ok(response) => response,
        Err(err) => err.on(Api::Ollama).into_response(),
    }
}

async fn run(
    state: &Arc<AppState>,
    id: &RequestId,
    headers: &HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let (raw, body) = respond::read_body(bytes, state.config.max_body_bytes, Api::Ollama)?;
    let mut plan = state.plan(&body).await?;
    let stream = fields::opt_bool(&body, "stream")?.unwrap_or(true);
    let keep_alive = keep_alive(&body)?;
    // Ollama's way to load a model: no messages (or an empty prompt) answers at once.
    let load = match endpoint {
        Endpoint::Chat => match fields::present(&body, "messages") {
            None => true,
            Some(Value::Array(messages)) => messages.is_empty(),
            Some(_) => {
                return Err(ApiError::bad_field(
                    "messages",
                    "`messages` must be an array",
                ));
            }
        },
        Endpoint::Generate => fields::opt_string(&body, "prompt")?
            .unwrap_or_default()
            .is_empty(),
    };
    // `options` are checked on every path, a relay's included (it forwards them as sent).
    sampling(&body)?;
    if plan.strategies.is_none()
        && !fields::has_tag(&body)
        && let Some(Upstream::Ollama { base, http, .. }) = state.upstreams.get(plan.route.upstream)
    {
        let path = match endpoint {
            Endpoint::Chat => "/api/chat",
            Endpoint::Generate => "/api/generate",
        };
        return respond::relay(
            state,
            Relay {
                http,
                url: format!("{base}{path}"),
                body: raw,
                key: None,
                stream,
                api: Api::Ollama,
                model: plan.requested.clone(),
            },
        )
        .await;
    }
    if load {
        // Relayed to an Ollama upstream above (which loads the model); answered here otherwise.
        let mut record = json!({
            "model": plan.requested,
            "created_at": upstream::rfc3339_now(),
            "done": true,
            "done_reason": "load",
        });
        match endpoint {
            Endpoint::Chat => record["message"] = json!({"role": "assistant", "content": ""}),
            Endpoint::Generate => record["response"] = json!(""),
        }
        return Ok(axum::Json(record).into_response());
    }
    let why = if plan.strategies.is_some() {
        "by a strategy"
    } else {
        "when the model is served through another API"
    };
    let (unmodelled, mut request) = match endpoint {
        Endpoint::Chat => (UNMODELLED_CHAT, chat_request(&body)?),
        Endpoint::Generate => (UNMODELLED_GENERATE, generate_request(&body)?),
    };
    fields::refuse_unmodelled(&body, unmodelled, why)?;
    refuse_unmapped_options(&body, why)?;
    state.apply_tag(&mut plan, &mut request)?;
    if plan
        .strategies
        .as_ref()
        .is_some_and(|s| s.alternatives.len() > 1)
    {
        return Err(ApiError::bad_field(
            "model",
            "alternatives `a|b` need several choices, which only the OpenAI API has",
        ));
    }
    if state.config.log_prompts {
        tracing::info!(request_id = %id.0, prompt = ?request.messages, "prompt");
    }
    let key = respond::forwarded_key(state, headers);
    let started = state.start(&plan, &request, 1, keep_alive, key)?;
    let label = started.label.clone();
    let shape = Shape {
        model: plan.requested.clone(),
        endpoint,
    };
    if !stream {
        let (completions, usage) = core::collect_all(started, state.config.request_timeout).await?;
        let (text, reason) = completions
            .first()
            .map(|c| (c.text.as_str(), core::finish_name(&c.finish_reason)))
            .unwrap_or(("", "stop"));
        let record = shape.last(text, reason, &usage, start.elapsed());
        let mut response = axum::Json(record).into_response();
        respond::mars_headers(&mut response, &label, Some(usage.model_calls));
        return Ok(response);
    }
    let mut ticker = Ticker::new(
        started.choices,
        state.config.request_timeout,
        state.config.keep_alive,
    );
    // As on the OpenAI route: a failure that comes at once keeps its HTTP status.
    let first = ticker.first().await;
    match &first {
        Tick::Event(_, Err(err)) => return Err(ApiError::from_mars(err)),
        Tick::TimedOut => return Err(ApiError::timeout(state.config.request_timeout)),
        _ => {}
    }
    let mut response = Response::new(HttpBody::from_stream(ndjson(shape, ticker, first, start)));
    response.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/x-ndjson"),
    );
    respond::mars_headers(&mut response, &label, None);
    Ok(response)
}

/// How records of one response look.
#[derive(Debug, Clone)]
struct Shape {
    model: String,
    endpoint: Endpoint,
}

impl Shape {
    /// Appends the record of `event` to `out`; true when it was a failure (an error line was
    /// written and the stream must end).
    /// Events after the final record are ignored (`finished` says whether it was written).
    fn event(
        &self,
        out: &mut Vec<u8>,
        event: mars::Result<StreamEvent>,
        start: Instant,
        finished: &mut bool,
    ) -> bool {
        if *finished {
            return false;
        }
        match event {
            Ok(StreamEvent::Delta(text)) => out.extend_from_slice(&self.delta(&text)),
            Ok(StreamEvent::Done(finish)) => {
                *finished = true;
                let reason = core::finish_name(&finish.reason);
                let record = self.last("", reason, &finish.usage, start.elapsed());
                out.extend_from_slice(format!("{record}\n").as_bytes());
            }
            Err(err) => {
                out.extend_from_slice(&respond::stream_error(
                    Api::Ollama,
                    &ApiError::from_mars(&err),
                ));
                return true;
            }
        }
        false
    }

    fn delta(&self, text: &str) -> Vec<u8> {
        let record = match self.endpoint {
            Endpoint::Chat => json!({
                "model": self.model,
                "created_at": upstream::rfc3339_now(),
                "message": {"role": "assistant", "content": text},
                "done": false,
            }),
            Endpoint::Generate => json!({
                "model": self.model,
                "created_at": upstream::rfc3339_now(),
                "response": text,
                "done": false,
            }),
        };
        format!("{record}\n").into_bytes()
    }

    /// The final record: the whole text (empty when streamed), `done_reason`, counts and
    /// durations in nanoseconds.
    fn last(&self, text: &str, reason: &str, usage: &Usage, total: Duration) -> Value {
        let ns =
            |d: Option<Duration>| d.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let mut record = json!({
            "model": self.model,
            "created_at": upstream::rfc3339_now(),
            "done": true,
            "done_reason": reason,
            "total_duration": ns(Some(total)),
            "load_duration": ns(usage.load_duration),
            "prompt_eval_count": usage.prompt_tokens,
            "prompt_eval_duration": ns(usage.prompt_eval_duration),
            "eval_count": usage.completion_tokens,
            "eval_duration": ns(usage.eval_duration),
        });
        match self.endpoint {
            Endpoint::Chat => record["message"] = json!({"role": "assistant", "content": text}),
            Endpoint::Generate => record["response"] = json!(text),
        }
        record
    }
}

/// The NDJSON body: one record per delta, an empty record as keep-alive, the final record
/// (once; a second finish is ignored); or a final `{"error": ...}` line on a failure or when
/// the answer ended without finishing.
fn ndjson(
    shape: Shape,
    mut ticker: Ticker,
    first: Tick,
    start: Instant,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    async_stream::stream! {
        let mut pending = Some(first);
        let mut finished = false;
        loop {
            let tick = match pending.take() {
                Some(tick) => tick,
                None => ticker.next().await,
            };
            let event = match tick {
                Tick::End => {
                    if !finished {
                        let err = ApiError::from_mars(&mars::Error::Backend {
                            message: "the answer ended before it finished".into(),
                        });
                        yield Ok(respond::stream_error(Api::Ollama, &err));
                    }
                    break;
                }
                Tick::KeepAlive => {
                    yield Ok(Bytes::from(shape.delta("")));
                    continue;
                }
                Tick::TimedOut => {
                    yield Ok(respond::stream_error(Api::Ollama, &ticker.timed_out()));
                    return;
                }
                Tick::Event(_, event) => event,
            };
            let mut out = Vec::new();
            let mut failed = shape.event(&mut out, event, start, &mut finished);
            while !failed && out.len() < core::COALESCE_BYTES {
                let Some((_, event)) = ticker.ready() else { break };
                failed = shape.event(&mut out, event, start, &mut finished);
            }
            yield Ok(Bytes::from(out));
            if failed {
                return;
            }
        }
    }
}

/// `keep_alive`: a number of seconds or a duration string, passed to Ollama as a string.
fn keep_alive(body: &Body) -> Result<Option<String>, ApiError> {
    match fields::present(body, "keep_alive") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(format!("{n}s"))),
        Some(_) => Err(ApiError::bad_field(
            "keep_alive",
            "`keep_alive` must be a number of seconds or a duration string",
        )),
    }
}

/// 400 naming `options.<key>` for an option other than [`MAPPED_OPTIONS`] (a null one asks
/// for nothing).
fn refuse_unmapped_options(body: &Body, why: &str) -> Result<(), ApiError> {
    let Some(options) = fields::opt_object(body, "options")? else {
        return Ok(());
    };
    match options
        .iter()
        .find(|(key, value)| !value.is_null() && !MAPPED_OPTIONS.contains(&key.as_str()))
    {
        Some((key, _)) => Err(ApiError::bad_field(
            format!("options.{key}"),
            format!(
                "`options.{key}` cannot be honoured {why} (it honours {}); send it without a \
                 strategy",
                MAPPED_OPTIONS.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// Ollama's `options` mapped to mars's sampling options (others are refused on requests that
/// are not relayed: [`refuse_unmapped_options`]).
fn sampling(body: &Body) -> Result<SamplingOptions, ApiError> {
    let Some(options) = fields::opt_object(body, "options")? else {
        return Ok(SamplingOptions::default());
    };
    let field = |name: &str| format!("options.{name}");
    let named = |err: ApiError, name: &str| ApiError {
        param: Some(field(name)),
        ..err
    };
    let num_predict = match fields::present(options, "num_predict") {
        // -1 (endless) and -2 (fill the context) leave the limit unset.
        Some(Value::Number(n)) if n.as_i64().is_some_and(|x| x < 0) => None,
        _ => fields::opt_u32(options, "num_predict").map_err(|e| named(e, "num_predict"))?,
    };
    Ok(SamplingOptions {
        temperature: fields::opt_f32(options, "temperature")
            .map_err(|e| named(e, "temperature"))?,
        top_p: fields::opt_f32(options, "top_p").map_err(|e| named(e, "top_p"))?,
        top_k: fields::opt_u32(options, "top_k").map_err(|e| named(e, "top_k"))?,
        seed: fields::opt_seed(options, "seed").map_err(|e| named(e, "seed"))?,
        max_tokens: num_predict,
        stop: fields::stop(options, "stop").map_err(|e| named(e, "stop"))?,
    })
}

/// The core request of an `/api/chat` body.
fn chat_request(body: &Body) -> Result<ChatRequest, ApiError> {
    let Some(Value::Array(messages)) = fields::present(body, "messages") else {
        return Err(ApiError::bad_field(
            "messages",
            "`messages` must be a non-empty array",
        ));
    };
    let options = sampling(body)?;
    let mut turns = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let Value::Object(message) = message else {
            return Err(ApiError::bad_field(at, "each message must be an object"));
        };
        for unmodelled in ["images", "tool_calls"] {
            if matches!(fields::present(message, unmodelled), Some(Value::Array(a)) if !a.is_empty())
            {
                return Err(ApiError::bad_field(
                    format!("{at}.{unmodelled}"),
                    format!("`{unmodelled}` cannot be honoured by a strategy"),
                ));
            }
        }
        let role = match fields::opt_string(message, "role")?.as_deref() {
            Some("system") => Role::System,
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            other => {
                return Err(ApiError::bad_field(
                    format!("{at}.role"),
                    format!("role {other:?} cannot be honoured here (system, user, assistant)"),
                ));
            }
        };
        let content = fields::opt_string(message, "content")
            .map_err(|e| ApiError {
                param: Some(format!("{at}.content")),
                ..e
            })?
            .unwrap_or_default();
        turns.push(Message { role, content });
    }
    fields::chat_request(turns, options)
}

/// The core request of an `/api/generate` body: `system` and one user message.
fn generate_request(body: &Body) -> Result<ChatRequest, ApiError> {
    Ok(ChatRequest {
        system: fields::opt_string(body, "system")?,
        messages: vec![Message::user(fields::string(body, "prompt")?)],
        options: sampling(body)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use mars::EventStream;

    fn done() -> mars::Result<StreamEvent> {
        Ok(StreamEvent::Done(mars::Finish {
            reason: mars::FinishReason::Stop,
            usage: Usage::default(),
        }))
    }

    async fn body(events: Vec<mars::Result<StreamEvent>>) -> Vec<Value> {
        let stream: EventStream<'static> = Box::pin(futures::stream::iter(events));
        let mut ticker = Ticker::new(
            vec![stream],
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let first = ticker.next().await;
        let shape = Shape {
            model: "m".into(),
            endpoint: Endpoint::Chat,
        };
        let chunks: Vec<_> = ndjson(shape, ticker, first, Instant::now()).collect().await;
        chunks
            .iter()
            .flat_map(|c| {
                let text = String::from_utf8(c.as_ref().unwrap().to_vec()).unwrap();
                text.lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn show_answers_that_are_not_objects_are_not_used() {
        assert_eq!(with_capabilities(Some(json!([1, 2]))), None);
        assert_eq!(with_capabilities(Some(json!("x"))), None);
        assert_eq!(with_capabilities(None), None);
        assert_eq!(
            with_capabilities(Some(json!({"capabilities": ["vision"]}))),
            Some(json!({"capabilities": ["vision"]}))
        );
        assert_eq!(
            with_capabilities(Some(json!({}))),
            Some(json!({"capabilities": ["completion"]}))
        );
    }

    #[tokio::test]
    async fn an_answer_without_its_finish_ends_in_an_error_line() {
        let records = body(vec![Ok(StreamEvent::Delta("a".into()))]).await;
        let last = records.last().unwrap();
        assert!(last["error"].is_string(), "{records:?}");
    }

    #[tokio::test]
    async fn a_second_finish_is_ignored() {
        let records = body(vec![Ok(StreamEvent::Delta("a".into())), done(), done()]).await;
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!(records[1]["done"], true);
    }
}
