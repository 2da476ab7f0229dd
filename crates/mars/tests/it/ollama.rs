//! `OllamaClient` against a loopback server speaking Ollama's NDJSON wire format.

use std::time::Duration;

use mars::{
    Error, HttpOptions, ModelClient, ModelClientExt, OllamaClient, OllamaConfig, SamplingOptions,
};
use serde_json::{Value, json};

use crate::conformance::{Wire, conformance_suite};
use crate::server::{Part, Reply, TestServer};

pub struct Ollama;

impl Wire for Ollama {
    const PATH: &'static str = "/api/chat";
    const CONTENT_TYPE: &'static str = "application/x-ndjson";

    fn client(base_url: &str, http: HttpOptions) -> Box<dyn ModelClient> {
        let config = OllamaConfig {
            base_url: base_url.to_owned(),
            http,
            ..OllamaConfig::new("tinyllama")
        };
        Box::new(OllamaClient::new(config).unwrap())
    }

    fn delta(text: &str) -> Vec<u8> {
        let line = json!({
            "model": "tinyllama",
            "created_at": "2026-11-28T10:00:00Z",
            "message": {"role": "assistant", "content": text},
            "done": false
        });
        format!("{line}\n").into_bytes()
    }

    fn terminal(prompt_tokens: u64, completion_tokens: u64) -> Vec<u8> {
        let line = json!({
            "model": "tinyllama",
            "created_at": "2026-11-28T10:00:01Z",
            "message": {"role": "assistant", "content": ""},
            "done": true,
            "done_reason": "stop",
            "total_duration": 2_000_000_000u64,
            "load_duration": 1_000_000u64,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 300_000_000u64,
            "eval_count": completion_tokens,
            "eval_duration": 1_500_000_000u64
        });
        format!("{line}\n").into_bytes()
    }

    fn error_record(message: &str) -> Vec<u8> {
        format!("{}\n", json!({"error": message})).into_bytes()
    }

    fn malformed_record() -> Vec<u8> {
        b"{not json\n".to_vec()
    }

    fn check_options(body: &Value, options: &SamplingOptions) {
        let sent = &body["options"];
        assert_eq!(body["model"], "tinyllama");
        assert_eq!(
            sent["temperature"].as_f64().map(|v| v as f32),
            options.temperature
        );
        assert_eq!(sent["top_p"].as_f64().map(|v| v as f32), options.top_p);
        assert_eq!(sent["top_k"], json!(options.top_k));
        assert_eq!(sent["seed"], json!(options.seed));
        assert_eq!(sent["num_predict"], json!(options.max_tokens));
        assert_eq!(sent["stop"], json!(options.stop));
        assert!(sent.get("max_tokens").is_none());
    }
}

conformance_suite!(Ollama);

#[tokio::test]
async fn server_durations_and_done_reason_are_reported() {
    let mut body = Ollama::delta("x");
    body.extend(Ollama::terminal(5, 1));
    let server = TestServer::start(vec![Reply::ok(
        Ollama::CONTENT_TYPE,
        vec![Part::Bytes(body)],
    )])
    .await;
    let client = Ollama::client(&server.url(), HttpOptions::default());
    let usage = client.complete("x").await.unwrap().usage;
    assert_eq!(usage.prompt_eval_duration, Some(Duration::from_millis(300)));
    assert_eq!(usage.eval_duration, Some(Duration::from_millis(1500)));
    assert_eq!(usage.load_duration, Some(Duration::from_millis(1)));
}

#[tokio::test]
async fn missing_model_has_its_own_error_with_a_hint() {
    let reply = Reply::status(
        404,
        r#"{"error":"model \"qwen9\" not found, try pulling it first"}"#,
    );
    let server = TestServer::start(vec![reply]).await;
    let config = OllamaConfig {
        base_url: server.url(),
        ..OllamaConfig::new("qwen9")
    };
    let client = OllamaClient::new(config).unwrap();
    let err = client.complete("x").await.unwrap_err();
    assert!(
        matches!(&err, Error::ModelNotFound { model, hint, .. } if model == "qwen9" && hint.contains("ollama pull qwen9")),
        "{err:?}"
    );
}

#[tokio::test]
async fn keep_alive_is_sent_when_configured() {
    let mut body = Ollama::delta("x");
    body.extend(Ollama::terminal(1, 1));
    let server = TestServer::start(vec![Reply::ok(
        Ollama::CONTENT_TYPE,
        vec![Part::Bytes(body)],
    )])
    .await;
    let config = OllamaConfig {
        base_url: server.url(),
        keep_alive: Some("10m".into()),
        ..OllamaConfig::new("tinyllama")
    };
    OllamaClient::new(config)
        .unwrap()
        .complete("x")
        .await
        .unwrap();
    let sent = server.requests()[0].json();
    assert_eq!(sent["keep_alive"], "10m");
    assert!(
        sent.get("options").is_none(),
        "no options object when none are set"
    );
}

#[tokio::test]
async fn list_models_and_version() {
    let tags = r#"{"models":[{"name":"tinyllama:latest","model":"tinyllama:latest","size":637700138,"digest":"2644915ede35","details":{"family":"llama"}},{"name":"qwen2.5-coder:1.5b"}]}"#;
    let server = TestServer::start(vec![
        Reply::status(200, tags),
        Reply::status(200, r#"{"version":"0.12.3"}"#),
    ])
    .await;
    let config = OllamaConfig {
        base_url: server.url(),
        ..OllamaConfig::default()
    };
    let client = OllamaClient::new(config).unwrap();
    let models = client.list_models().await.unwrap();
    let names: Vec<_> = models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["tinyllama:latest", "qwen2.5-coder:1.5b"]);
    assert_eq!(models[0].size, Some(637_700_138));
    assert_eq!(client.version().await.unwrap(), "0.12.3");
    let paths: Vec<_> = server
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        paths,
        [
            ("GET".into(), "/api/tags".into()),
            ("GET".into(), "/api/version".into())
        ]
    );
}

#[tokio::test]
async fn has_model_reads_the_tags_with_latest_as_the_missing_tag() {
    let tags = r#"{"models":[{"name":"tinyllama:latest"},{"name":"qwen2.5-coder:1.5b"}]}"#;
    let server = TestServer::start(vec![Reply::status(200, tags); 4]).await;
    let client = |model: &str| {
        OllamaClient::new(OllamaConfig {
            base_url: server.url(),
            ..OllamaConfig::new(model)
        })
        .unwrap()
    };
    assert!(client("tinyllama").has_model().await.unwrap());
    assert!(client("qwen2.5-coder:1.5b").has_model().await.unwrap());
    assert!(!client("qwen2.5-coder").has_model().await.unwrap());
    assert!(!client("llama3").has_model().await.unwrap());
    assert!(server.requests().iter().all(|r| r.path == "/api/tags"));

    // A server that does not answer is an error, not "no such model".
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = OllamaClient::new(OllamaConfig {
        base_url: closed,
        http: HttpOptions {
            max_retries: 0,
            ..HttpOptions::default()
        },
        ..OllamaConfig::new("tinyllama")
    })
    .unwrap();
    let err = client.has_model().await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
}

#[test]
fn bad_configuration_is_rejected() {
    let config = OllamaConfig {
        base_url: "not a url".into(),
        ..OllamaConfig::default()
    };
    assert!(matches!(
        OllamaClient::new(config),
        Err(Error::InvalidConfig {
            field: "base_url",
            ..
        })
    ));
    assert!(matches!(
        OllamaClient::new(OllamaConfig::new(" ")),
        Err(Error::InvalidConfig { field: "model", .. })
    ));
}

#[test]
fn default_config_does_not_read_the_environment() {
    // `Default` and `new` never look at OLLAMA_HOST; only `from_env` does.
    assert_eq!(
        OllamaConfig::default().base_url,
        mars::backends::ollama::DEFAULT_OLLAMA_URL
    );
}
