//! The router, its tower layers (request ids, auth, admission, metrics, body limit), the
//! operations routes (`/health`, `/ready`, `/metrics`) and serving with graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body as HttpBody;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::code::CodeChecks;
use crate::config::ServerConfig;
use crate::core::AppState;
use crate::error::{Api, ApiError};
use crate::limit::Gate;
use crate::metrics::Metrics;
use crate::respond::RequestId;
use crate::upstream::{Upstream, Upstreams};
use crate::{ollama, openai};

/// The state and router of a server, before it listens.
#[derive(Debug, Clone)]
pub struct App {
    state: Arc<AppState>,
    admission: Arc<Admission>,
}

/// Requests in the server (running or queued), bounded by `max_concurrency + max_queue`.
#[derive(Debug)]
struct Admission {
    admitted: AtomicUsize,
    bound: usize,
    /// A refused request's body is read up to this many bytes before the 429 goes out.
    max_body_bytes: usize,
    ids: AtomicU64,
    metrics: Arc<Metrics>,
}

impl App {
    /// The app over `upstreams`, without code strategies; `config` sets the limits.
    pub fn new(config: ServerConfig, upstreams: Vec<Upstream>) -> Self {
        Self::with_code_checks(config, upstreams, None)
    }

    /// The app over `upstreams`, serving the code strategies when `code` is given (see
    /// [`CodeChecks::start`]).
    pub fn with_code_checks(
        config: ServerConfig,
        upstreams: Vec<Upstream>,
        code: Option<CodeChecks>,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let gate = Arc::new(Gate::new(config.max_concurrency, Arc::clone(&metrics)));
        let admission = Arc::new(Admission {
            admitted: AtomicUsize::new(0),
            bound: config.max_concurrency + config.max_queue,
            max_body_bytes: config.max_body_bytes,
            ids: AtomicU64::new(0),
            metrics: Arc::clone(&metrics),
        });
        let state = Arc::new(AppState {
            config,
            upstreams: Upstreams::new(upstreams),
            gate,
            metrics,
            servable: AppState::servable_strategies_with(code.is_some()),
            code,
        });
        App { state, admission }
    }

    /// The upstreams of `config` (`--ollama`, `--openai`, `--embedded`, in that order); the
    /// embedded model is loaded here (blocking; a preset is fetched on first use).
    pub fn upstreams_of(config: &ServerConfig) -> Result<Vec<Upstream>, mars::Error> {
        let mut all = Vec::new();
        if let Some(url) = &config.ollama {
            all.push(Upstream::ollama(url)?);
        }
        if let Some(url) = &config.openai {
            all.push(Upstream::openai(url, config.openai_key.clone())?);
        }
        if let Some(model) = &config.embedded {
            all.push(embedded(model)?);
        }
        if all.is_empty() {
            return Err(mars::Error::InvalidConfig {
                field: "upstream",
                reason: "give at least one of --ollama, --openai, --embedded".into(),
            });
        }
        Ok(all)
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The router with every route and layer.
    pub fn router(&self) -> Router {
        let state = Arc::clone(&self.state);
        let work = Router::new()
            .route("/v1/chat/completions", post(openai::chat_completions))
            .route("/api/chat", post(ollama::chat))
            .route("/api/generate", post(ollama::generate))
            .route_layer(middleware::from_fn_with_state(
                Arc::clone(&self.admission),
                admit,
            ));
        let open = Router::new()
            .route("/v1/models", get(openai::models))
            .route("/v1/models/{*model}", get(openai::model))
            .route("/", get(ollama::root).head(ollama::root))
            .route("/api/version", get(ollama::version))
            .route("/api/tags", get(ollama::tags))
            .route("/api/show", post(ollama::show))
            .route("/api/ps", get(ollama::ps))
            .route("/ready", get(ready))
            .route("/metrics", get(metrics));
        let guarded = work
            .merge(open)
            .fallback(fallback)
            .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
            .route_layer(middleware::from_fn_with_state(Arc::clone(&state), auth));
        Router::new()
            .route("/health", get(health))
            .merge(guarded)
            .layer(middleware::from_fn_with_state(
                (Arc::clone(&state), Arc::clone(&self.admission)),
                observe,
            ))
            .with_state(state)
    }

    /// Serves on `listener` until `shutdown` resolves; then stops accepting, lets in-flight
    /// requests finish for up to `--shutdown-grace`, and returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = self.state.config.shutdown_grace;
        let (tx, rx) = tokio::sync::watch::channel(false);
        // Small writes (one token per SSE event) go out at once, not after Nagle's wait.
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::warn!(%err, "could not set TCP_NODELAY");
            }
        });
        let server = axum::serve(listener, self.router()).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        let mut rx = rx;
        let deadline = async move {
            let _ = rx.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = server => result,
            () = deadline => {
                tracing::warn!(?grace, "shutdown grace ran out; dropping in-flight requests");
                Ok(())
            }
        }
    }
}

/// Loads the embedded engine for `model` (a preset name or a GGUF path).
#[cfg(feature = "embedded")]
fn embedded(model: &str) -> Result<Upstream, mars::Error> {
    let engine = mars_llama::LlamaEngine::load(mars_llama::LlamaConfig::new(model))
        .map_err(mars::Error::from)?;
    let size = std::fs::metadata(engine.model_path()).map_or(0, |m| m.len());
    let name = std::path::Path::new(model)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(model)
        .to_owned();
    Ok(Upstream::Embedded {
        name,
        engine: Arc::new(engine),
        size,
    })
}

#[cfg(not(feature = "embedded"))]
fn embedded(model: &str) -> Result<Upstream, mars::Error> {
    Err(mars::Error::InvalidConfig {
        field: "embedded",
        reason: format!("{model}: this binary was built without the `embedded` feature"),
    })
}

/// Which API a path belongs to, for the shape of layer errors.
fn api_of(path: &str) -> Api {
    if path.starts_with("/v1") {
        Api::OpenAi
    } else {
        Api::Ollama
    }
}

/// Request id, tracing span, metrics by route, strategy and status, and the in-flight gauge
/// (held until the response body ends).
async fn observe(
    State((state, admission)): State<(Arc<AppState>, Arc<Admission>)>,
    mut request: Request,
    next: Next,
) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(
            || {
                format!(
                    "{:x}-{}",
                    std::process::id(),
                    admission.ids.fetch_add(1, Ordering::Relaxed)
                )
            },
            str::to_owned,
        );
    request.extensions_mut().insert(RequestId(id.clone()));
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let start = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    let strategy = response
        .headers()
        .get("x-mars-strategy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    span.in_scope(|| {
        tracing::info!(status = status.as_u16(), strategy, elapsed = ?start.elapsed(), "answered");
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let route = match path.as_str() {
        "/v1/chat/completions" => "openai_chat",
        "/api/chat" => "ollama_chat",
        "/api/generate" => "ollama_generate",
        _ => "other",
    };
    state
        .metrics
        .record_request(route, &strategy, status.as_u16(), start.elapsed());
    response
}

/// `Authorization: Bearer <--api-key>` (the scheme in any case), compared in constant time:
/// the SHA-256 digests of both are compared, so neither the key nor its length leaks.
async fn auth(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(key) = &state.config.api_key {
        let given = crate::respond::bearer(request.headers()).unwrap_or("");
        let given = Sha256::digest(given.as_bytes());
        let ok: bool = given
            .as_slice()
            .ct_eq(Sha256::digest(key.as_bytes()).as_slice())
            .into();
        if !ok {
            return ApiError::unauthorized()
                .on(api_of(request.uri().path()))
                .into_response();
        }
    }
    next.run(request).await
}

/// The admission bound: past `max_concurrency + max_queue` requests in the server, 429 with
/// `Retry-After`. The slot is held until the response body ends; the in-flight gauge with it.
async fn admit(State(admission): State<Arc<Admission>>, request: Request, next: Next) -> Response {
    let api = api_of(request.uri().path());
    let before = admission.admitted.fetch_add(1, Ordering::AcqRel);
    if before >= admission.bound {
        admission.admitted.fetch_sub(1, Ordering::AcqRel);
        // Read what the client is still sending (up to the body limit) before refusing: a
        // response sent over an unread body makes the connection close under the client, which
        // then sees a reset instead of the 429 and its Retry-After.
        let _ = axum::body::to_bytes(request.into_body(), admission.max_body_bytes).await;
        return ApiError::overloaded(Duration::from_secs(1))
            .on(api)
            .into_response();
    }
    admission.metrics.add_in_flight(1);
    let slot = Slot(Arc::clone(&admission));
    let response = next.run(request).await;
    let (parts, body) = response.into_parts();
    let body = HttpBody::from_stream(body.into_data_stream().map(move |chunk| {
        let _ = &slot;
        chunk
    }));
    Response::from_parts(parts, body)
}

/// One admitted request, in flight until dropped with its response body.
struct Slot(Arc<Admission>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.add_in_flight(-1);
    }
}

async fn health() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

/// `/ready`: 200 when every upstream answers, else 503 naming the ones that do not.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let checks =
        futures::future::join_all(state.upstreams.all().iter().map(Upstream::models)).await;
    let failed: Vec<String> = checks
        .iter()
        .zip(state.upstreams.all())
        .filter_map(|(check, upstream)| {
            check
                .as_ref()
                .err()
                .map(|err| format!("{}: {err}", upstream.owner()))
        })
        .collect();
    if failed.is_empty() {
        axum::Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not ready", "failed": failed})),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Some(code) = &state.code {
        state.metrics.set_sandbox_runs(code.runs_in_flight());
    }
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

async fn fallback(method: Method, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let mut err = ApiError::no_route(&format!("{method} {path}"));
    err.code = Some("not_found");
    err.on(api_of(&path)).into_response()
}
