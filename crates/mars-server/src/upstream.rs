//! The upstreams (an Ollama server, an OpenAI-compatible server, the embedded engine), their
//! model lists, and routing a model name to the upstream that has it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mars::{HttpOptions, ModelClient, OllamaClient, OllamaConfig, OpenAiClient, OpenAiConfig};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Which wire an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Ollama's `/api/*`.
    Ollama,
    /// OpenAI's `/v1/*`.
    OpenAi,
    /// The engine in process.
    Embedded,
}

/// One upstream: a client for mars calls and, for the HTTP ones, that client's own pooled HTTP
/// client for raw relays and model lists (one connection pool per upstream). Built once and
/// shared by every request.
pub enum Upstream {
    /// An Ollama server.
    Ollama {
        /// Base URL, without a trailing slash.
        base: String,
        /// The mars client (its model replaced per request, its pool shared).
        client: OllamaClient,
        /// Raw relays and `/api/tags`.
        http: reqwest::Client,
    },
    /// An OpenAI-compatible server.
    OpenAi {
        /// Base URL including `/v1`.
        base: String,
        /// The mars client.
        client: OpenAiClient,
        /// Raw relays and `/v1/models`.
        http: reqwest::Client,
        /// `--openai-key`.
        key: Option<String>,
    },
    /// The embedded engine and the name it is served under.
    Embedded {
        /// The model's name: the preset name or the GGUF file's stem.
        name: String,
        /// The engine.
        engine: Arc<dyn ModelClient>,
        /// The model file's size in bytes.
        size: u64,
    },
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Ollama { base, .. } => f.debug_tuple("Ollama").field(base).finish(),
            Upstream::OpenAi { base, .. } => f.debug_tuple("OpenAi").field(base).finish(),
            Upstream::Embedded { name, .. } => f.debug_tuple("Embedded").field(name).finish(),
        }
    }
}

/// The mars clients' HTTP options: no retries. The server's client decides about retries
/// (told by `x-should-retry` and `Retry-After`); a retry here would wait while holding a
/// concurrency permit.
fn no_retries() -> HttpOptions {
    HttpOptions {
        max_retries: 0,
        ..HttpOptions::default()
    }
}

/// `--openai URL` with `/v1` added when the URL has no path.
pub fn openai_base(url: &str) -> String {
    let url = url.trim_end_matches('/');
    let path_empty = url
        .split_once("://")
        .is_none_or(|(_, rest)| !rest.contains('/'));
    if path_empty {
        format!("{url}/v1")
    } else {
        url.to_owned()
    }
}

impl Upstream {
    /// An Ollama upstream at `url`.
    pub fn ollama(url: &str) -> Result<Self, mars::Error> {
        let base = mars::backends::ollama::normalize_ollama_host(url);
        let client = OllamaClient::new(OllamaConfig {
            base_url: base.clone(),
            http: no_retries(),
            ..OllamaConfig::new("unset")
        })?;
        let http = client.http_client().clone();
        Ok(Upstream::Ollama { base, client, http })
    }

    /// An OpenAI-compatible upstream at `url` with `key`.
    pub fn openai(url: &str, key: Option<String>) -> Result<Self, mars::Error> {
        let base = openai_base(url);
        let client = OpenAiClient::new(OpenAiConfig {
            api_key: key.clone(),
            http: no_retries(),
            ..OpenAiConfig::new(base.clone(), "unset")
        })?;
        let http = client.http_client().clone();
        Ok(Upstream::OpenAi {
            base,
            client,
            http,
            key,
        })
    }

    /// The wire it speaks.
    pub fn wire(&self) -> Wire {
        match self {
            Upstream::Ollama { .. } => Wire::Ollama,
            Upstream::OpenAi { .. } => Wire::OpenAi,
            Upstream::Embedded { .. } => Wire::Embedded,
        }
    }

    /// Who owns its models in `/v1/models`.
    pub fn owner(&self) -> &'static str {
        match self {
            Upstream::Ollama { .. } => "ollama",
            Upstream::OpenAi { .. } => "openai-upstream",
            Upstream::Embedded { .. } => "mars-llama",
        }
    }

    /// A client for `model`. `keep_alive` reaches Ollama; `key` replaces `--openai-key`
    /// (`--forward-key`).
    pub fn client(
        &self,
        model: &str,
        keep_alive: Option<String>,
        key: Option<String>,
    ) -> Arc<dyn ModelClient> {
        match self {
            Upstream::Ollama { client, .. } => Arc::new(client.for_model(model, keep_alive)),
            Upstream::OpenAi {
                client, key: own, ..
            } => Arc::new(client.for_model(model, key.or_else(|| own.clone()))),
            Upstream::Embedded { engine, .. } => Arc::clone(engine),
        }
    }

    /// Its models, each as an `/api/tags` record (Ollama's own records are kept whole).
    pub async fn models(&self) -> Result<Vec<Value>, mars::Error> {
        match self {
            Upstream::Ollama { base, http, .. } => {
                let url = format!("{base}/api/tags");
                let body: Value = get_json(http.get(&url), &url).await?;
                Ok(body
                    .get("models")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default())
            }
            Upstream::OpenAi {
                base, http, key, ..
            } => {
                let url = format!("{base}/models");
                let mut request = http.get(&url);
                if let Some(key) = key {
                    request = request.bearer_auth(key);
                }
                let body: Value = get_json(request, &url).await?;
                let ids = body
                    .get("data")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                Ok(ids
                    .iter()
                    .filter_map(|m| m.get("id").and_then(Value::as_str))
                    .map(|id| synthetic_record(id, 0))
                    .collect())
            }
            Upstream::Embedded { name, size, .. } => Ok(vec![synthetic_record(name, *size)]),
        }
    }
}

/// Longest wait for an upstream's model list: the lists are fetched while requests wait.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// Most bytes of an upstream's answer read whole (a non-streamed answer, a model list).
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Most bytes of an upstream's error text kept.
pub const MAX_ERROR_BYTES: usize = 64 * 1024;

/// At most `cap` bytes of `response`'s body, and whether there was more (the rest is not read).
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - out.len();
        if chunk.len() > room {
            out.extend_from_slice(&chunk[..room]);
            return Ok((out, true));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out, false))
}

/// The error text of an upstream's answer, at most [`MAX_ERROR_BYTES`].
pub async fn error_text(response: reqwest::Response) -> String {
    match read_capped(response, MAX_ERROR_BYTES).await {
        Ok((bytes, more)) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if more { text + " [...]" } else { text }
        }
        Err(err) => format!("(the error's body could not be read: {err})"),
    }
}

async fn get_json(request: reqwest::RequestBuilder, url: &str) -> Result<Value, mars::Error> {
    let request = request.timeout(LIST_TIMEOUT);
    let response = request.send().await.map_err(|err| mars::Error::Connect {
        url: url.to_owned(),
        attempts: 1,
        source: Box::new(err),
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(mars::Error::Http {
            status: status.as_u16(),
            body: error_text(response).await,
            url: url.to_owned(),
        });
    }
    let transport = |err: Box<dyn std::error::Error + Send + Sync>| mars::Error::Transport {
        url: url.to_owned(),
        source: err,
    };
    let (bytes, more) = read_capped(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|err| transport(Box::new(err)))?;
    if more {
        return Err(mars::Error::Backend {
            message: format!("{url} answered more than {MAX_ANSWER_BYTES} bytes"),
        });
    }
    serde_json::from_slice(&bytes).map_err(|err| transport(Box::new(err)))
}

/// An `/api/tags` record for a model that Ollama does not describe.
pub fn synthetic_record(name: &str, size: u64) -> Value {
    json!({
        "name": name,
        "model": name,
        "modified_at": "1970-01-01T00:00:00Z",
        "size": size,
        "digest": "",
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "",
            "families": null,
            "parameter_size": "",
            "quantization_level": "",
        },
    })
}

/// A model an upstream has.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its name as the upstream lists it.
    pub name: String,
    /// Index of the upstream in [`Upstreams::all`].
    pub upstream: usize,
    /// Its `/api/tags` record.
    pub record: Value,
}

/// The model lists of every upstream, refreshed when older than this.
const CATALOG_TTL: Duration = Duration::from_secs(5);

/// Every upstream, and a cache of their model lists.
#[derive(Debug)]
pub struct Upstreams {
    all: Vec<Upstream>,
    cache: Mutex<Option<(Instant, Arc<Vec<Entry>>)>>,
}

/// Where a model name leads.
#[derive(Debug, Clone)]
pub struct Route {
    /// The upstream's name of the model.
    pub model: String,
    /// Index of the upstream.
    pub upstream: usize,
}

/// Why a model name leads nowhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No upstream has it; the names available.
    Unknown(Vec<String>),
    /// Several upstreams have it.
    Ambiguous(Vec<String>),
}

impl Upstreams {
    /// The upstreams, in the order given.
    pub fn new(all: Vec<Upstream>) -> Self {
        Upstreams {
            all,
            cache: Mutex::new(None),
        }
    }

    /// Every upstream.
    pub fn all(&self) -> &[Upstream] {
        &self.all
    }

    /// The upstream at `index`.
    pub fn get(&self, index: usize) -> Option<&Upstream> {
        self.all.get(index)
    }

    /// Every model of every upstream, from a cache at most [`CATALOG_TTL`] old unless `fresh`.
    /// An upstream that does not answer contributes no model (and is logged).
    pub async fn catalog(&self, fresh: bool) -> Arc<Vec<Entry>> {
        let mut cache = self.cache.lock().await;
        if let Some((at, entries)) = cache.as_ref()
            && !fresh
            && at.elapsed() < CATALOG_TTL
        {
            return Arc::clone(entries);
        }
        let lists = futures::future::join_all(self.all.iter().map(Upstream::models)).await;
        let mut entries = Vec::new();
        for (upstream, list) in lists.into_iter().enumerate() {
            match list {
                Ok(records) => {
                    for record in records {
                        if let Some(name) = record.get("name").and_then(Value::as_str) {
                            entries.push(Entry {
                                name: name.to_owned(),
                                upstream,
                                record,
                            });
                        }
                    }
                }
                Err(err) => tracing::warn!(upstream, %err, "could not list the upstream's models"),
            }
        }
        let entries = Arc::new(entries);
        *cache = Some((Instant::now(), Arc::clone(&entries)));
        entries
    }

    /// Routes `model` in the cached lists (`fresh`: in lists fetched now).
    pub async fn route(&self, model: &str, fresh: bool) -> Result<Route, RouteError> {
        let catalog = self.catalog(fresh).await;
        route_in(&catalog, &self.all, model)
    }
}

/// Routes `model` in `catalog`: an exact name, or for Ollama a name without a tag meaning its
/// `:latest`.
pub fn route_in(
    catalog: &[Entry],
    upstreams: &[Upstream],
    model: &str,
) -> Result<Route, RouteError> {
    let matches: Vec<&Entry> = catalog
        .iter()
        .filter(|entry| {
            entry.name == model
                || (upstreams
                    .get(entry.upstream)
                    .is_some_and(|u| u.wire() == Wire::Ollama)
                    && !model.contains(':')
                    && entry.name.strip_suffix(":latest") == Some(model))
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(Route {
            model: one.name.clone(),
            upstream: one.upstream,
        }),
        [] => Err(RouteError::Unknown(
            catalog.iter().map(|e| e.name.clone()).collect(),
        )),
        many => Err(RouteError::Ambiguous(
            many.iter()
                .map(|e| {
                    format!(
                        "{} ({})",
                        e.name,
                        upstreams.get(e.upstream).map_or("", Upstream::owner)
                    )
                })
                .collect(),
        )),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The current time as RFC 3339 in UTC with nanoseconds, as Ollama writes `created_at`.
pub fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now)
}

/// `since_epoch` as RFC 3339 in UTC.
pub fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(Duration::new(1_796_212_800, 5)),
            "2026-12-02T12:00:00.000000005Z"
        );
        assert_eq!(
            rfc3339(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn openai_urls_get_v1_only_without_a_path() {
        assert_eq!(openai_base("http://h:1"), "http://h:1/v1");
        assert_eq!(openai_base("http://h:1/"), "http://h:1/v1");
        assert_eq!(openai_base("http://h:1/v1/"), "http://h:1/v1");
        assert_eq!(openai_base("http://h:1/openai/v1"), "http://h:1/openai/v1");
    }

    #[test]
    fn routing_follows_the_latest_rule_and_reports_ambiguity() {
        let ollama = Upstream::ollama("http://127.0.0.1:9").unwrap();
        let openai = Upstream::openai("http://127.0.0.1:9", None).unwrap();
        let upstreams = [ollama, openai];
        let entry = |name: &str, upstream| Entry {
            name: name.into(),
            upstream,
            record: Value::Null,
        };
        let catalog = [
            entry("llama3:latest", 0),
            entry("qwen:0.5b", 0),
            entry("gpt-x", 1),
            entry("both", 0),
            entry("both", 1),
        ];
        let route = route_in(&catalog, &upstreams, "llama3").unwrap();
        assert_eq!((route.model.as_str(), route.upstream), ("llama3:latest", 0));
        assert_eq!(route_in(&catalog, &upstreams, "gpt-x").unwrap().upstream, 1);
        assert!(matches!(
            route_in(&catalog, &upstreams, "qwen"),
            Err(RouteError::Unknown(names)) if names.len() == 5
        ));
        assert!(matches!(
            route_in(&catalog, &upstreams, "both"),
            Err(RouteError::Ambiguous(_))
        ));
    }
}
