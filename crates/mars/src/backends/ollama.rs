//! `OllamaClient`: Ollama's native chat API (`POST /api/chat`, streamed NDJSON).

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::backends::framing::LineDecoder;
use crate::backends::http::{
    HttpOptions, Transport, WireDecoder, WireMessage, WireSampling, checked_base_url, event_stream,
    wire_messages,
};
use crate::client::{
    ChatRequest, EventStream, Finish, FinishReason, ModelClient, SamplingOptions, StreamEvent,
    Usage,
};
use crate::error::{Error, Result, truncate_for_error};

/// Where Ollama listens unless told otherwise.
pub const DEFAULT_OLLAMA_URL: &str = "http://localhost:11434";

/// Configuration of an [`OllamaClient`]. `Default` never reads the environment; see
/// [`OllamaConfig::from_env`].
#[derive(Debug, Clone, PartialEq)]
pub struct OllamaConfig {
    /// Base URL of the server, e.g. `http://localhost:11434`.
    pub base_url: String,
    /// Model name as Ollama knows it, e.g. `tinyllama` or `qwen2.5-coder:1.5b`.
    pub model: String,
    /// How long the server keeps the model loaded after the request (Ollama's `keep_alive`,
    /// e.g. `"5m"`, `"-1"`); `None` leaves the server's default.
    pub keep_alive: Option<String>,
    /// Timeouts and retries.
    pub http: HttpOptions,
}

impl Default for OllamaConfig {
    fn default() -> Self {
        OllamaConfig::new("tinyllama")
    }
}

impl OllamaConfig {
    /// A configuration for `model` on [`DEFAULT_OLLAMA_URL`].
    pub fn new(model: impl Into<String>) -> Self {
        OllamaConfig {
            base_url: DEFAULT_OLLAMA_URL.to_owned(),
            model: model.into(),
            keep_alive: None,
            http: HttpOptions::default(),
        }
    }

    /// Like [`OllamaConfig::new`], with the base URL taken from `OLLAMA_HOST` when it is set
    /// (`host`, `host:port` or a full URL, as the Ollama CLI accepts it).
    pub fn from_env(model: impl Into<String>) -> Self {
        let mut config = OllamaConfig::new(model);
        if let Ok(host) = std::env::var("OLLAMA_HOST")
            && !host.trim().is_empty()
        {
            config.base_url = normalize_ollama_host(&host);
        }
        config
    }
}

/// Turns an `OLLAMA_HOST` value into a base URL: adds `http://` and port 11434 where missing.
pub fn normalize_ollama_host(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    let (scheme, rest) = match host.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => ("http", host),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let has_port = match authority.rfind(']') {
        Some(bracket) => authority[bracket..].contains(':'),
        None => authority.contains(':'),
    };
    let port = if has_port {
        ""
    } else if scheme == "https" {
        ":443"
    } else {
        ":11434"
    };
    format!("{scheme}://{authority}{port}{path}")
}

/// A model installed on an Ollama server, as `/api/tags` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct OllamaModel {
    /// The name to request it by, e.g. `tinyllama:latest`.
    pub name: String,
    /// Size on disk in bytes, when reported.
    #[serde(default)]
    pub size: Option<u64>,
    /// Content digest, when reported.
    #[serde(default)]
    pub digest: Option<String>,
}

/// A client of Ollama's native chat API.
///
/// Sampling options go into Ollama's `options` object (`max_tokens` as `num_predict`). The
/// response is framed byte by byte (a character split across network chunks survives), every
/// line is checked for Ollama's `{"error": ...}` record, and a stream that ends without its
/// `"done": true` line is [`Error::Truncated`]. A missing model is [`Error::ModelNotFound`].
#[derive(Debug, Clone)]
pub struct OllamaClient {
    config: OllamaConfig,
    transport: Transport,
}

impl OllamaClient {
    /// A client with this configuration; rejects a malformed base URL or zero timeouts.
    pub fn new(config: OllamaConfig) -> Result<Self> {
        let base = checked_base_url(&config.base_url)?;
        if config.model.trim().is_empty() {
            return Err(Error::InvalidConfig {
                field: "model",
                reason: "must not be empty".into(),
            });
        }
        let transport = Transport::new(config.http.clone())?;
        Ok(OllamaClient {
            config: OllamaConfig {
                base_url: base,
                ..config
            },
            transport,
        })
    }

    /// A client for `model` at `OLLAMA_HOST` (or the default URL); see
    /// [`OllamaConfig::from_env`].
    pub fn from_env(model: impl Into<String>) -> Result<Self> {
        OllamaClient::new(OllamaConfig::from_env(model))
    }

    /// The configuration in force.
    pub fn config(&self) -> &OllamaConfig {
        &self.config
    }

    /// The same client (sharing its connection pool) for another model and `keep_alive`.
    pub fn for_model(&self, model: impl Into<String>, keep_alive: Option<String>) -> Self {
        let mut client = self.clone();
        client.config.model = model.into();
        client.config.keep_alive = keep_alive;
        client
    }

    /// The pooled HTTP client this client sends with (for a loopback server, the one that
    /// bypasses the environment's proxy). Cloning it shares its connections, so other requests
    /// to the same server (a proxy's raw relays, its model lists) use the same pool.
    pub fn http_client(&self) -> &reqwest::Client {
        self.transport.client_for(&self.config.base_url)
    }

    /// The server's version (`GET /api/version`): a cheap health check.
    pub async fn version(&self) -> Result<String> {
        #[derive(Deserialize)]
        struct Version {
            version: String,
        }
        let version: Version = self.get_json("/api/version").await?;
        Ok(version.version)
    }

    /// The models installed on the server (`GET /api/tags`).
    pub async fn list_models(&self) -> Result<Vec<OllamaModel>> {
        #[derive(Deserialize)]
        struct Tags {
            #[serde(default)]
            models: Vec<OllamaModel>,
        }
        let tags: Tags = self.get_json("/api/tags").await?;
        Ok(tags.models)
    }

    /// Whether the server answers and has this client's model installed (`GET /api/tags`). A
    /// name without a tag is its `:latest` (`tinyllama` is `tinyllama:latest`). An unreachable
    /// server is an error, not `false`.
    pub async fn has_model(&self) -> Result<bool> {
        let models = self.list_models().await?;
        Ok(models
            .iter()
            .any(|m| same_model(&m.name, &self.config.model)))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let url = format!("{}{path}", self.config.base_url);
        self.transport.get_json(&url, |c| c.get(&url)).await
    }

    /// The JSON body sent for `request`.
    pub fn request_body(&self, request: &ChatRequest) -> Value {
        let body = ChatBody {
            model: &self.config.model,
            messages: wire_messages(request),
            stream: true,
            options: WireOptions::from(&request.options),
            keep_alive: self.config.keep_alive.as_deref(),
        };
        // A struct of strings, numbers and lists always serialises; `Null` is never sent.
        serde_json::to_value(body).unwrap_or(Value::Null)
    }
}

/// The body of `/api/chat`, with the API's field names.
#[derive(Debug, Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "WireOptions::is_empty")]
    options: WireOptions<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<&'a str>,
}

/// Provider-neutral options under Ollama's names (`max_tokens` is `num_predict`).
#[derive(Debug, Default, PartialEq, Serialize)]
struct WireOptions<'a> {
    #[serde(flatten)]
    sampling: WireSampling<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u32>,
}

impl WireOptions<'_> {
    fn is_empty(&self) -> bool {
        *self == WireOptions::default()
    }
}

impl<'a> From<&'a SamplingOptions> for WireOptions<'a> {
    fn from(options: &'a SamplingOptions) -> Self {
        WireOptions {
            sampling: WireSampling::from(options),
            num_predict: options.max_tokens,
        }
    }
}

impl ModelClient for OllamaClient {
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        let url = format!("{}/api/chat", self.config.base_url);
        let body = self.request_body(&request);
        let target = url.clone();
        let model = self.config.model.clone();
        let map_error = move |err| not_found_to_model_error(err, &model);
        event_stream(
            &self.transport,
            url,
            move |c| c.post(&target).json(&body),
            OllamaDecoder::default(),
            map_error,
        )
    }
}

/// Whether two Ollama model names name the same model, a missing tag being `:latest`.
fn same_model(a: &str, b: &str) -> bool {
    fn tagged(name: &str) -> std::borrow::Cow<'_, str> {
        let last = name.rsplit('/').next().unwrap_or(name);
        if last.contains(':') {
            name.into()
        } else {
            format!("{name}:latest").into()
        }
    }
    tagged(a) == tagged(b)
}

/// Ollama answers an unknown model on `/api/chat` with 404 and a JSON error naming the model;
/// an unknown route gives a plain-text 404 and stays an [`Error::Http`].
fn not_found_to_model_error(err: Error, model: &str) -> Error {
    match err {
        Error::Http {
            status: 404,
            body,
            url,
        } => {
            if body.contains("model") && body.contains("not found") {
                Error::ModelNotFound {
                    model: model.to_owned(),
                    hint: format!("install it with `ollama pull {model}`"),
                    body,
                }
            } else {
                Error::Http {
                    status: 404,
                    body,
                    url,
                }
            }
        }
        other => other,
    }
}

/// One line of Ollama's streamed chat response. Metric fields are optional: Ollama omits them
/// when zero.
#[derive(Debug, Deserialize)]
struct ChatLine<'a> {
    #[serde(borrow, default)]
    message: Option<LineMessage<'a>>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    prompt_eval_duration: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    eval_duration: Option<u64>,
    #[serde(default)]
    load_duration: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct LineMessage<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

/// Decodes Ollama's NDJSON chat stream into events. Pure: bytes in, events out.
#[derive(Debug, Default)]
pub struct OllamaDecoder {
    lines: LineDecoder,
    done: bool,
}

impl OllamaDecoder {
    fn line(done: &mut bool, number: u64, line: &str, out: &mut Vec<StreamEvent>) -> Result<()> {
        if *done {
            return Ok(());
        }
        let parsed: ChatLine<'_> = serde_json::from_str(line).map_err(|err| Error::Decode {
            line_number: number,
            line: truncate_for_error(line, 512),
            reason: err.to_string(),
        })?;
        if let Some(error) = parsed.error {
            let message = match error {
                Value::String(s) => s,
                other => other.to_string(),
            };
            return Err(Error::Backend { message });
        }
        if let Some(content) = parsed.message.and_then(|m| m.content)
            && !content.is_empty()
        {
            out.push(StreamEvent::Delta(content.into_owned()));
        }
        if parsed.done {
            *done = true;
            let nanos = |n: Option<u64>| n.map(Duration::from_nanos);
            out.push(StreamEvent::Done(Finish {
                reason: FinishReason::from_wire(parsed.done_reason.as_deref().unwrap_or("stop")),
                usage: Usage {
                    prompt_tokens: Some(parsed.prompt_eval_count.unwrap_or(0)),
                    completion_tokens: Some(parsed.eval_count.unwrap_or(0)),
                    prompt_eval_duration: nanos(parsed.prompt_eval_duration),
                    eval_duration: nanos(parsed.eval_duration),
                    load_duration: nanos(parsed.load_duration),
                    ..Usage::default()
                },
            }));
        }
        Ok(())
    }
}

impl WireDecoder for OllamaDecoder {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<()> {
        self.lines.push(chunk);
        while let Some((number, line)) = self.lines.next_line()? {
            Self::line(&mut self.done, number, line, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<()> {
        if let Some((number, line)) = self.lines.finish()? {
            Self::line(&mut self.done, number, line, out)?;
        }
        Ok(())
    }
}

impl OllamaDecoder {
    /// Decodes one chunk of the response body, appending events to `out`; public so that
    /// benchmarks can measure the decode cost alone.
    pub fn decode_chunk(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<()> {
        self.feed(chunk, out)
    }

    /// Decodes the end of the response body.
    pub fn decode_end(&mut self, out: &mut Vec<StreamEvent>) -> Result<()> {
        self.finish(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(body: &str) -> Result<Vec<StreamEvent>> {
        let mut decoder = OllamaDecoder::default();
        let mut out = Vec::new();
        decoder.feed(body.as_bytes(), &mut out)?;
        decoder.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn a_missing_tag_is_latest() {
        for (a, b, same) in [
            ("tinyllama:latest", "tinyllama", true),
            ("tinyllama", "tinyllama:latest", true),
            ("tinyllama:latest", "tinyllama:latest", true),
            ("tinyllama:1.1b", "tinyllama", false),
            ("tinyllama:1.1b", "tinyllama:1.1b", true),
            ("qwen2.5-coder:0.5b", "qwen2.5-coder", false),
            ("host:5000/ns/m:latest", "host:5000/ns/m", true),
            ("tinyllama2:latest", "tinyllama", false),
        ] {
            assert_eq!(same_model(a, b), same, "{a} vs {b}");
        }
    }

    #[test]
    fn host_normalisation_table() {
        for (input, expected) in [
            ("localhost", "http://localhost:11434"),
            ("127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://gpu-box", "http://gpu-box:11434"),
            ("https://ollama.example", "https://ollama.example:443"),
            ("http://[::1]:9000/", "http://[::1]:9000"),
            ("[::1]", "http://[::1]:11434"),
            ("http://host:1234/prefix", "http://host:1234/prefix"),
        ] {
            assert_eq!(normalize_ollama_host(input), expected, "{input}");
        }
    }

    #[test]
    fn options_map_to_ollama_names() {
        let options = SamplingOptions {
            temperature: Some(0.5),
            top_p: Some(0.9),
            top_k: Some(40),
            seed: Some(7),
            max_tokens: Some(64),
            stop: vec!["```".into()],
        };
        let map = serde_json::to_value(WireOptions::from(&options)).unwrap();
        assert_eq!(map["num_predict"], json!(64));
        assert_eq!(map["seed"], json!(7));
        assert_eq!(map["top_k"], json!(40));
        assert_eq!(map["stop"], json!(["```"]));
        assert!(map.get("max_tokens").is_none());
        assert!(WireOptions::from(&SamplingOptions::default()).is_empty());
        let none = serde_json::to_value(WireOptions::from(&SamplingOptions::default())).unwrap();
        assert_eq!(none, json!({}));
    }

    #[test]
    fn final_line_metrics_are_optional() {
        let events = decode(
            "{\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},\"done\":false}\n\
             {\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"length\",\"eval_count\":3}",
        )
        .unwrap();
        assert_eq!(events[0], StreamEvent::Delta("hi".into()));
        let StreamEvent::Done(finish) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(finish.reason, FinishReason::Length);
        assert_eq!(
            finish.usage.prompt_tokens,
            Some(0),
            "omitted count means zero"
        );
        assert_eq!(finish.usage.completion_tokens, Some(3));
        assert_eq!(finish.usage.eval_duration, None);
    }

    #[test]
    fn error_line_is_a_backend_error() {
        let err = decode("{\"message\":{\"content\":\"a\"}}\n{\"error\":\"out of memory\"}\n")
            .unwrap_err();
        assert!(
            matches!(&err, Error::Backend { message } if message == "out of memory"),
            "{err:?}"
        );
    }

    #[test]
    fn malformed_line_names_the_line() {
        let err = decode("{\"message\":{\"content\":\"a\"}}\n{not json\n").unwrap_err();
        assert!(
            matches!(&err, Error::Decode { line_number: 2, line, .. } if line == "{not json"),
            "{err:?}"
        );
    }

    #[test]
    fn missing_model_maps_to_its_own_variant() {
        let err = not_found_to_model_error(
            Error::Http {
                status: 404,
                body: r#"{"error":"model \"llama9\" not found, try pulling it first"}"#.into(),
                url: "u".into(),
            },
            "llama9",
        );
        assert!(
            matches!(&err, Error::ModelNotFound { hint, .. } if hint.contains("ollama pull llama9"))
        );
        let err = not_found_to_model_error(
            Error::Http {
                status: 404,
                body: "404 page not found".into(),
                url: "u".into(),
            },
            "llama9",
        );
        assert!(matches!(err, Error::Http { status: 404, .. }));
    }

    #[test]
    fn request_body_bytes_on_the_wire() {
        let config = OllamaConfig {
            keep_alive: Some("5m".into()),
            ..OllamaConfig::new("m")
        };
        let client = OllamaClient::new(config).unwrap();
        let request = ChatRequest::new("q")
            .with_system("s")
            .with_options(SamplingOptions {
                temperature: Some(0.5),
                top_p: Some(0.25),
                top_k: Some(40),
                seed: Some(7),
                max_tokens: Some(64),
                stop: vec!["END".into()],
            });
        let sent = serde_json::to_string(&client.request_body(&request)).unwrap();
        assert_eq!(
            sent,
            r#"{"keep_alive":"5m","messages":[{"content":"s","role":"system"},{"content":"q","role":"user"}],"model":"m","options":{"num_predict":64,"seed":7,"stop":["END"],"temperature":0.5,"top_k":40,"top_p":0.25},"stream":true}"#
        );
        let bare = OllamaClient::new(OllamaConfig::new("m")).unwrap();
        let sent = serde_json::to_string(&bare.request_body(&ChatRequest::new("q"))).unwrap();
        assert_eq!(
            sent,
            r#"{"messages":[{"content":"q","role":"user"}],"model":"m","stream":true}"#
        );
    }
}
