//! `OpenAiClient`: any OpenAI-compatible chat server (`POST /v1/chat/completions`, streamed SSE):
//! llama.cpp's `llama-server`, vLLM, LM Studio, Ollama's `/v1`, OpenAI.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::backends::framing::{SseDecoder, SseEvent};
use crate::backends::http::{
    HttpOptions, Transport, WireDecoder, WireMessage, WireSampling, checked_base_url, event_stream,
    wire_messages,
};
use crate::client::{
    ChatRequest, EventStream, Finish, FinishReason, ModelClient, StreamEvent, Usage,
};
use crate::error::{Error, Result, truncate_for_error};

/// OpenAI's own endpoint, used by [`OpenAiConfig::from_env`] when `OPENAI_BASE_URL` is unset.
pub const OPENAI_URL: &str = "https://api.openai.com/v1";

/// Configuration of an [`OpenAiClient`]. `Default`-free: a base URL and a model are required.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiConfig {
    /// Base URL including the version prefix, e.g. `http://127.0.0.1:8080/v1`; the client
    /// posts to `{base_url}/chat/completions`.
    pub base_url: String,
    /// Model name sent in the request.
    pub model: String,
    /// Bearer token, sent as `Authorization: Bearer ...` when set.
    pub api_key: Option<String>,
    /// Extra top-level fields merged into every request body (e.g. llama-server's
    /// `"cache_prompt": false`); they override the fields the client sets.
    pub extra_body: Map<String, Value>,
    /// Timeouts and retries.
    pub http: HttpOptions,
}

impl OpenAiConfig {
    /// A configuration for `model` at `base_url`, without a key.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        OpenAiConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            extra_body: Map::new(),
            http: HttpOptions::default(),
        }
    }

    /// A configuration for `model` with the base URL from `OPENAI_BASE_URL` (default
    /// [`OPENAI_URL`]) and the key from `OPENAI_API_KEY`.
    pub fn from_env(model: impl Into<String>) -> Self {
        let base_url = std::env::var("OPENAI_BASE_URL")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| OPENAI_URL.to_owned());
        OpenAiConfig {
            api_key: std::env::var("OPENAI_API_KEY")
                .ok()
                .filter(|v| !v.trim().is_empty()),
            ..OpenAiConfig::new(base_url, model)
        }
    }
}

/// A client of the OpenAI chat-completions API, streamed.
///
/// Asks for usage with `stream_options.include_usage`; tolerates `choices: null` or `[]`,
/// `finish_reason: ""`, keep-alive comments, and reports `data: {"error": ...}` as
/// [`Error::Backend`]. The stream's terminal record is `data: [DONE]`; a body that ends without
/// it is [`Error::Truncated`]. `top_k` is sent only when set (llama-server and vLLM accept it;
/// OpenAI does not).
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    config: OpenAiConfig,
    transport: Transport,
}

impl OpenAiClient {
    /// A client with this configuration; rejects a malformed base URL or zero timeouts.
    pub fn new(config: OpenAiConfig) -> Result<Self> {
        let base = checked_base_url(&config.base_url)?;
        let transport = Transport::new(config.http.clone())?;
        Ok(OpenAiClient {
            config: OpenAiConfig {
                base_url: base,
                ..config
            },
            transport,
        })
    }

    /// A client for `model` configured from the environment; see [`OpenAiConfig::from_env`].
    pub fn from_env(model: impl Into<String>) -> Result<Self> {
        OpenAiClient::new(OpenAiConfig::from_env(model))
    }

    /// The configuration in force.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// The same client (sharing its connection pool) for another model and bearer token.
    pub fn for_model(&self, model: impl Into<String>, api_key: Option<String>) -> Self {
        let mut client = self.clone();
        client.config.model = model.into();
        client.config.api_key = api_key;
        client
    }

    /// The pooled HTTP client this client sends with (for a loopback server, the one that
    /// bypasses the environment's proxy). Cloning it shares its connections, so other requests
    /// to the same server (a proxy's raw relays, its model lists) use the same pool.
    pub fn http_client(&self) -> &reqwest::Client {
        self.transport.client_for(&self.config.base_url)
    }

    /// The JSON body sent for `request`: [`OpenAiConfig::extra_body`]'s keys added to (or
    /// replacing) the typed fields.
    pub fn request_body(&self, request: &ChatRequest) -> Value {
        let options = &request.options;
        let body = ChatBody {
            model: &self.config.model,
            messages: wire_messages(request),
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            sampling: WireSampling::from(options),
            max_tokens: options.max_tokens,
        };
        // A struct of strings, numbers and lists always serialises; `Null` is never sent.
        let mut body = serde_json::to_value(body).unwrap_or(Value::Null);
        if let Value::Object(fields) = &mut body {
            for (key, value) in &self.config.extra_body {
                fields.insert(key.clone(), value.clone());
            }
        }
        body
    }
}

/// The body of `/v1/chat/completions`, with the API's field names.
#[derive(Debug, Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    stream_options: StreamOptions,
    #[serde(flatten)]
    sampling: WireSampling<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

/// `stream_options`: usage in the last chunk.
#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

impl ModelClient for OpenAiClient {
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        let url = format!("{}/chat/completions", self.config.base_url);
        let body = self.request_body(&request);
        let target = url.clone();
        let key = self.config.api_key.clone();
        event_stream(
            &self.transport,
            url,
            move |c| {
                let builder = c.post(&target).json(&body);
                match &key {
                    Some(key) => builder.bearer_auth(key),
                    None => builder,
                }
            },
            OpenAiDecoder::default(),
            |err| err,
        )
    }
}

impl OpenAiClient {
    /// The ids of the models the server lists (`GET {base_url}/models`). Not every
    /// OpenAI-compatible server offers the endpoint; one that does not answers
    /// [`Error::Http`] with status 404.
    pub async fn list_models(&self) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Models {
            #[serde(default)]
            data: Vec<ModelWire>,
        }
        #[derive(Deserialize)]
        struct ModelWire {
            id: String,
        }
        let url = format!("{}/models", self.config.base_url);
        let key = self.config.api_key.clone();
        let models: Models = self
            .transport
            .get_json(&url, |c| match &key {
                Some(key) => c.get(&url).bearer_auth(key),
                None => c.get(&url),
            })
            .await?;
        Ok(models.data.into_iter().map(|m| m.id).collect())
    }
}

#[derive(Debug, Deserialize)]
struct ChunkWire<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<ChoiceWire<'a>>>,
    #[serde(default)]
    usage: Option<UsageWire>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    timings: Option<TimingsWire>,
}

#[derive(Debug, Deserialize)]
struct ChoiceWire<'a> {
    #[serde(borrow, default)]
    delta: Option<DeltaWire<'a>>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeltaWire<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct UsageWire {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// llama-server's per-response timings (milliseconds).
#[derive(Debug, Deserialize)]
struct TimingsWire {
    #[serde(default)]
    prompt_ms: Option<f64>,
    #[serde(default)]
    predicted_ms: Option<f64>,
}

/// Decodes an OpenAI-compatible SSE chat stream into events. Pure: bytes in, events out.
#[derive(Debug, Default)]
pub struct OpenAiDecoder {
    sse: SseDecoder,
    finish_reason: Option<String>,
    usage: Usage,
    done: bool,
}

impl OpenAiDecoder {
    fn event(&mut self, event: SseEvent, out: &mut Vec<StreamEvent>) -> Result<()> {
        if self.done {
            return Ok(());
        }
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            let reason = self.finish_reason.take().unwrap_or_default();
            out.push(StreamEvent::Done(Finish {
                reason: FinishReason::from_wire(&reason),
                usage: std::mem::take(&mut self.usage),
            }));
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let decode_error = |reason: String| Error::Decode {
            line_number: event.line_number,
            line: truncate_for_error(data, 512),
            reason,
        };
        let chunk: ChunkWire<'_> =
            serde_json::from_str(data).map_err(|err| decode_error(err.to_string()))?;
        if let Some(error) = chunk.error {
            return Err(Error::Backend {
                message: error_message(error),
            });
        }
        if event.event.as_deref() == Some("error") {
            return Err(Error::Backend {
                message: data.to_owned(),
            });
        }
        for choice in chunk.choices.into_iter().flatten() {
            if let Some(content) = choice.delta.and_then(|d| d.content)
                && !content.is_empty()
            {
                out.push(StreamEvent::Delta(content.into_owned()));
            }
            if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
                self.finish_reason = Some(reason);
            }
        }
        if let Some(usage) = chunk.usage {
            self.usage.prompt_tokens = usage.prompt_tokens;
            self.usage.completion_tokens = usage.completion_tokens;
        }
        if let Some(timings) = chunk.timings {
            let ms = |v: Option<f64>| {
                v.filter(|v| v.is_finite() && *v >= 0.0)
                    .map(|v| Duration::from_secs_f64(v / 1000.0))
            };
            self.usage.prompt_eval_duration = ms(timings.prompt_ms);
            self.usage.eval_duration = ms(timings.predicted_ms);
        }
        Ok(())
    }
}

fn error_message(error: Value) -> String {
    match error {
        Value::String(s) => s,
        Value::Object(ref map) => match map.get("message") {
            Some(Value::String(message)) => message.clone(),
            _ => error.to_string(),
        },
        other => other.to_string(),
    }
}

impl WireDecoder for OpenAiDecoder {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<()> {
        self.sse.push(chunk);
        while let Some(event) = self.sse.next_event()? {
            self.event(event, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<()> {
        if let Some(event) = self.sse.finish()? {
            self.event(event, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(body: &str) -> Result<Vec<StreamEvent>> {
        let mut decoder = OpenAiDecoder::default();
        let mut out = Vec::new();
        decoder.feed(body.as_bytes(), &mut out)?;
        decoder.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn tolerates_odd_but_valid_chunks() {
        let events = decode(concat!(
            ": keepalive\n\n",
            "data: {\"choices\":null}\n\n",
            "data: {\"choices\":[]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"},\"finish_reason\":\"\"}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1},",
            "\"timings\":{\"prompt_ms\":12.5,\"predicted_ms\":4.0}}\n\n",
            "data: [DONE]\n\n",
        ))
        .unwrap();
        assert_eq!(events[0], StreamEvent::Delta("Hi".into()));
        let StreamEvent::Done(finish) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(finish.reason, FinishReason::Length);
        assert_eq!(finish.usage.prompt_tokens, Some(5));
        assert_eq!(finish.usage.completion_tokens, Some(1));
        assert_eq!(
            finish.usage.prompt_eval_duration,
            Some(Duration::from_micros(12_500))
        );
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn error_inside_the_stream_is_a_backend_error() {
        let err = decode("data: {\"error\":{\"message\":\"context too long\",\"code\":400}}\n\n")
            .unwrap_err();
        assert!(
            matches!(&err, Error::Backend { message } if message == "context too long"),
            "{err:?}"
        );
    }

    #[test]
    fn missing_usage_stays_unknown() {
        let events = decode("data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n").unwrap();
        let StreamEvent::Done(finish) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(finish.usage.completion_tokens, None);
        assert_eq!(finish.reason, FinishReason::Stop);
    }

    #[test]
    fn request_body_carries_options_and_extra_fields() {
        let mut config = OpenAiConfig::new("http://127.0.0.1:1/v1", "m");
        config
            .extra_body
            .insert("cache_prompt".into(), json!(false));
        let client = OpenAiClient::new(config).unwrap();
        let request = ChatRequest::new("q")
            .with_system("s")
            .with_options(crate::SamplingOptions {
                max_tokens: Some(9),
                seed: Some(3),
                ..Default::default()
            });
        let body = client.request_body(&request);
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "s"})
        );
        assert_eq!(body["max_tokens"], json!(9));
        assert_eq!(body["seed"], json!(3));
        assert_eq!(body["cache_prompt"], json!(false));
        assert_eq!(body["stream_options"]["include_usage"], json!(true));
        assert!(body.get("top_k").is_none());
    }

    #[test]
    fn request_body_bytes_on_the_wire() {
        let client = OpenAiClient::new(OpenAiConfig::new("http://127.0.0.1:1/v1", "m")).unwrap();
        let request = ChatRequest::new("q")
            .with_system("s")
            .with_options(crate::SamplingOptions {
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
            r#"{"max_tokens":64,"messages":[{"content":"s","role":"system"},{"content":"q","role":"user"}],"model":"m","seed":7,"stop":["END"],"stream":true,"stream_options":{"include_usage":true},"temperature":0.5,"top_k":40,"top_p":0.25}"#
        );
        let bare = serde_json::to_string(&client.request_body(&ChatRequest::new("q"))).unwrap();
        assert_eq!(
            bare,
            r#"{"messages":[{"content":"q","role":"user"}],"model":"m","stream":true,"stream_options":{"include_usage":true}}"#
        );
    }
}
