//! A recording fake upstream on loopback that speaks both wire formats (Ollama's `/api/*` and
//! OpenAI's `/v1/*`).
//!
//! Every chat call answers the same four tokens, `The answer is 4.`, and reports
//! `prompt_tokens` = the number of whitespace-separated words of its messages and
//! `completion_tokens` = 4. Words in the last user message steer it: `HANG` sends one token
//! and then waits until the client goes away; `SLOW` waits 20 ms before each token; `FAIL500`
//! and `FAIL429` answer that status; `HUGE` answers 17 MiB of text (not streamed); `LATE` (not
//! streamed) sends its head after 200 ms and its body 200 ms later; `MIDFAIL` sends two tokens
//! and then an error record. An Ollama chat without messages (or a generate with an empty
//! prompt) is a model load, as in Ollama.
//! Answers name the resolved model (`:latest` added on Ollama, a dated snapshot on OpenAI).
//! It records every request, each call's start and how it ended (`done` or `dropped`), and
//! the most calls it had in flight at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const TOKENS: [&str; 4] = ["The", " answer", " is", " 4."];

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub body: Value,
    pub authorization: Option<String>,
}

#[derive(Debug, Default)]
pub struct Log {
    pub requests: Mutex<Vec<Recorded>>,
    /// `start N`, `done N`, `dropped N` per chat call N.
    pub events: Mutex<Vec<String>>,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub calls: AtomicUsize,
    pub ollama_models: Vec<&'static str>,
    pub openai_models: Vec<&'static str>,
}

/// A running fake.
#[derive(Debug, Clone)]
pub struct Fake {
    pub addr: SocketAddr,
    pub log: Arc<Log>,
}

impl Fake {
    pub async fn start(ollama_models: &[&'static str], openai_models: &[&'static str]) -> Fake {
        let log = Arc::new(Log {
            ollama_models: ollama_models.to_vec(),
            openai_models: openai_models.to_vec(),
            ..Log::default()
        });
        let router = Router::new()
            .route("/api/tags", get(tags))
            .route(
                "/api/version",
                get(|| async { axum::Json(json!({"version": "0.0.0-fake"})) }),
            )
            .route(
                "/api/ps",
                get(|| async { axum::Json(json!({"models": []})) }),
            )
            .route("/api/show", post(show))
            .route("/v1/models", get(models))
            .route("/api/chat", post(ollama_chat))
            .route("/api/generate", post(ollama_generate))
            .route("/v1/chat/completions", post(openai_chat))
            .with_state(Arc::clone(&log));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Fake { addr, log }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.requests.lock().unwrap().clone()
    }

    pub fn chat_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.contains("chat") || r.path.contains("generate"))
            .collect()
    }

    pub fn events(&self) -> Vec<String> {
        self.log.events.lock().unwrap().clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.log.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits (polling, up to 20 s) until `pred` holds of the events; returns whether it did.
    pub async fn wait_for(&self, pred: impl Fn(&[String]) -> bool) -> bool {
        for _ in 0..400 {
            if pred(&self.events()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

async fn tags(State(log): State<Arc<Log>>) -> impl IntoResponse {
    let models: Vec<Value> = log
        .ollama_models
        .iter()
        .map(|name| {
            json!({"name": name, "model": name, "modified_at": "2026-01-01T00:00:00Z",
                   "size": 42, "digest": "abc", "details": {"family": "fake", "format": "gguf"}})
        })
        .collect();
    axum::Json(json!({"models": models}))
}

async fn show(State(log): State<Arc<Log>>, body: Bytes) -> impl IntoResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&log, "/api/show", &body, &HeaderMap::new());
    axum::Json(
        json!({"modelfile": "FROM fake", "parameters": "", "template": "{{ .Prompt }}",
        "details": {"family": "fake"}, "model_info": {"general.architecture": "fake"},
        "capabilities": ["completion"]}),
    )
}

async fn models(State(log): State<Arc<Log>>, headers: HeaderMap) -> impl IntoResponse {
    record(&log, "/v1/models", &Value::Null, &headers);
    let data: Vec<Value> = log
        .openai_models
        .iter()
        .map(|id| json!({"id": id, "object": "model", "owned_by": "fake"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data}))
}

fn record(log: &Log, path: &str, body: &Value, headers: &HeaderMap) {
    log.requests.lock().unwrap().push(Recorded {
        path: path.to_owned(),
        body: body.clone(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
}

/// Counts a call in flight until dropped; records how it ended.
struct CallGuard {
    log: Arc<Log>,
    id: usize,
    finished: bool,
}

impl CallGuard {
    fn new(log: &Arc<Log>) -> Self {
        let id = log.calls.fetch_add(1, Ordering::SeqCst);
        let now = log.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        log.max_in_flight.fetch_max(now, Ordering::SeqCst);
        log.events.lock().unwrap().push(format!("start {id}"));
        CallGuard {
            log: Arc::clone(log),
            id,
            finished: false,
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.log.in_flight.fetch_sub(1, Ordering::SeqCst);
        let what = if self.finished { "done" } else { "dropped" };
        self.log
            .events
            .lock()
            .unwrap()
            .push(format!("{what} {}", self.id));
    }
}

pub fn words(body: &Value) -> u64 {
    let mut n = 0;
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for m in messages {
            n += m
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or("")
                .split_whitespace()
                .count();
        }
    }
    for field in ["prompt", "system"] {
        n += body
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or("")
            .split_whitespace()
            .count();
    }
    n as u64
}

fn last_user(body: &Value) -> String {
    if let Some(prompt) = body.get("prompt").and_then(Value::as_str) {
        return prompt.to_owned();
    }
    body.get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m.get("content").and_then(Value::as_str))
        .unwrap_or("")
        .to_owned()
}

#[derive(Clone, Copy, PartialEq)]
enum Wire {
    OllamaChat,
    OllamaGenerate,
    OpenAi,
}

async fn ollama_chat(State(log): State<Arc<Log>>, headers: HeaderMap, body: Bytes) -> Response {
    answer(log, headers, body, Wire::OllamaChat, "/api/chat").await
}

async fn ollama_generate(State(log): State<Arc<Log>>, headers: HeaderMap, body: Bytes) -> Response {
    answer(log, headers, body, Wire::OllamaGenerate, "/api/generate").await
}

async fn openai_chat(State(log): State<Arc<Log>>, headers: HeaderMap, body: Bytes) -> Response {
    answer(log, headers, body, Wire::OpenAi, "/v1/chat/completions").await
}

async fn answer(
    log: Arc<Log>,
    headers: HeaderMap,
    body: Bytes,
    wire: Wire,
    path: &str,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&log, path, &body, &headers);
    let prompt = last_user(&body);
    let no_messages = body["messages"].as_array().is_none_or(Vec::is_empty);
    let load = match wire {
        Wire::OllamaChat => no_messages,
        Wire::OllamaGenerate => prompt.is_empty(),
        Wire::OpenAi => false,
    };
    if load {
        // As Ollama: a model load, answered at once in one record.
        return axum::Json(
            json!({"model": body["model"], "created_at": "2026-01-01T00:00:00Z",
            "done": true, "done_reason": "load"}),
        )
        .into_response();
    }
    if prompt.contains("FAIL500") {
        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    if prompt.contains("FAIL429") {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "0")],
            "slow down",
        )
            .into_response();
    }
    // Answers name the model as the upstream resolves it: Ollama adds `:latest` to a name
    // without a tag, the OpenAI server names a dated snapshot.
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let model = match wire {
        Wire::OpenAi => format!("{model}-2026-01-01"),
        _ if !model.contains(':') => format!("{model}:latest"),
        _ => model,
    };
    let stream = match wire {
        Wire::OpenAi => body["stream"].as_bool().unwrap_or(false),
        _ => body["stream"].as_bool().unwrap_or(true),
    };
    let prompt_tokens = words(&body);
    let mut guard = CallGuard::new(&log);
    if !stream {
        let text: String = if prompt.contains("HUGE") {
            "x".repeat(17 * 1024 * 1024)
        } else {
            TOKENS.concat()
        };
        guard.finished = true;
        drop(guard);
        let value = match wire {
            Wire::OpenAi => {
                json!({"id": "x", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 4, "total_tokens": prompt_tokens + 4}})
            }
            Wire::OllamaChat => json!({"model": model, "created_at": "2026-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": text}, "done": true, "done_reason": "stop",
                "prompt_eval_count": prompt_tokens, "eval_count": 4, "total_duration": 1}),
            Wire::OllamaGenerate => json!({"model": model, "created_at": "2026-01-01T00:00:00Z",
                "response": text, "done": true, "done_reason": "stop",
                "prompt_eval_count": prompt_tokens, "eval_count": 4}),
        };
        if prompt.contains("LATE") {
            // The head after 200 ms, the body 200 ms after it.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let body = async_stream::stream! {
                tokio::time::sleep(Duration::from_millis(200)).await;
                yield Ok::<_, std::io::Error>(Bytes::from(value.to_string()));
            };
            return (
                [("content-type", "application/json")],
                Body::from_stream(body),
            )
                .into_response();
        }
        return axum::Json(value).into_response();
    }
    let hang = prompt.contains("HANG");
    let slow = prompt.contains("SLOW");
    let midfail = prompt.contains("MIDFAIL");
    let stream = async_stream::stream! {
        let mut guard = guard;
        for (i, token) in TOKENS.iter().enumerate() {
            if slow {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if midfail && i == 2 {
                let line = match wire {
                    Wire::OpenAi => "data: {\"error\":{\"message\":\"fake failure\"}}\n\n".to_owned(),
                    _ => "{\"error\":\"fake failure\"}\n".to_owned(),
                };
                guard.finished = true;
                yield Ok::<_, std::io::Error>(Bytes::from(line));
                return;
            }
            yield Ok(Bytes::from(delta(wire, &model, token)));
            if hang {
                std::future::pending::<()>().await;
            }
        }
        yield Ok(Bytes::from(last(wire, &model, prompt_tokens)));
        guard.finished = true;
    };
    let content_type = if wire == Wire::OpenAi {
        "text/event-stream"
    } else {
        "application/x-ndjson"
    };
    ([("content-type", content_type)], Body::from_stream(stream)).into_response()
}

fn delta(wire: Wire, model: &str, token: &str) -> String {
    match wire {
        Wire::OpenAi => format!(
            "data: {}\n\n",
            json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": model,
                   "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": null}]})
        ),
        Wire::OllamaChat => format!(
            "{}\n",
            json!({"model": model, "created_at": "2026-01-01T00:00:00Z",
                   "message": {"role": "assistant", "content": token}, "done": false})
        ),
        Wire::OllamaGenerate => format!(
            "{}\n",
            json!({"model": model, "created_at": "2026-01-01T00:00:00Z", "response": token, "done": false})
        ),
    }
}

fn last(wire: Wire, model: &str, prompt_tokens: u64) -> String {
    match wire {
        Wire::OpenAi => format!(
            "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
            json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": model,
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": model,
                   "choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 4,
                   "total_tokens": prompt_tokens + 4}})
        ),
        Wire::OllamaChat => format!(
            "{}\n",
            json!({"model": model, "created_at": "2026-01-01T00:00:00Z",
                   "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop",
                   "prompt_eval_count": prompt_tokens, "eval_count": 4,
                   "prompt_eval_duration": 1000, "eval_duration": 2000})
        ),
        Wire::OllamaGenerate => format!(
            "{}\n",
            json!({"model": model, "created_at": "2026-01-01T00:00:00Z", "response": "", "done": true,
                   "done_reason": "stop", "prompt_eval_count": prompt_tokens, "eval_count": 4})
        ),
    }
}
