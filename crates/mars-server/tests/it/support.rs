//! Starting a server in process over the fake, and small request helpers.

use std::time::Duration;

use mars_server::upstream::Upstream;
use mars_server::{App, ServerConfig};
use serde_json::Value;

use crate::fake::Fake;

/// The fake's models: Ollama's (one named like a strategy prefix) and the OpenAI server's.
pub const OLLAMA_MODELS: &[&str] = &["llama3:latest", "moa-lookalike:latest"];
pub const OPENAI_MODELS: &[&str] = &["gpt-fake"];

/// A server over one fake that answers both wires.
#[derive(Debug)]
pub struct Harness {
    pub url: String,
    pub fake: Fake,
    pub client: reqwest::Client,
    /// The server's state (its gate, to hold permits from a test).
    pub state: std::sync::Arc<mars_server::core::AppState>,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::with(|_| {}).await
    }

    pub async fn with(adjust: impl FnOnce(&mut ServerConfig)) -> Harness {
        let fake = Fake::start(OLLAMA_MODELS, OPENAI_MODELS).await;
        let mut config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            keep_alive: Duration::from_millis(200),
            ..ServerConfig::default()
        };
        adjust(&mut config);
        let upstreams = vec![
            Upstream::ollama(&fake.url()).unwrap(),
            Upstream::openai(&fake.url(), Some("upstream-secret".into())).unwrap(),
        ];
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = App::new(config, upstreams);
        let state = std::sync::Arc::clone(app.state());
        tokio::spawn(app.serve(listener, std::future::pending()));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        Harness {
            url,
            fake,
            client,
            state,
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// The lines of an NDJSON body as JSON.
pub fn ndjson(body: &str) -> Vec<Value> {
    body.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The sum of the fake's reported prompt tokens over its chat calls.
pub fn recorded_prompt_tokens(fake: &Fake) -> u64 {
    fake.chat_requests()
        .iter()
        .map(|r| crate::fake::words(&r.body))
        .sum()
}

pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}
