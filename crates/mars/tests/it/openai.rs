//! `OpenAiClient` against a loopback server speaking the OpenAI SSE wire format.

use mars::{
    Error, HttpOptions, ModelClient, ModelClientExt, OpenAiClient, OpenAiConfig, SamplingOptions,
};
use serde_json::{Value, json};

use crate::conformance::{Wire, conformance_suite};
use crate::server::{Part, Reply, TestServer};

pub struct OpenAi;

fn event(value: Value) -> Vec<u8> {
    format!("data: {value}\n\n").into_bytes()
}

impl Wire for OpenAi {
    const PATH: &'static str = "/v1/chat/completions";
    const CONTENT_TYPE: &'static str = "text/event-stream";

    fn client(base_url: &str, http: HttpOptions) -> Box<dyn ModelClient> {
        let config = OpenAiConfig {
            http,
            ..OpenAiConfig::new(format!("{base_url}/v1"), "smol")
        };
        Box::new(OpenAiClient::new(config).unwrap())
    }

    fn delta(text: &str) -> Vec<u8> {
        event(json!({
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]
        }))
    }

    fn terminal(prompt_tokens: u64, completion_tokens: u64) -> Vec<u8> {
        let mut out = b": keep-alive\n\n".to_vec();
        out.extend(event(json!({
            "id": "chatcmpl-1",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]
        })));
        out.extend(event(json!({
            "id": "chatcmpl-1",
            "choices": [],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}
        })));
        out.extend(b"data: [DONE]\n\n");
        out
    }

    fn error_record(message: &str) -> Vec<u8> {
        event(json!({"error": {"message": message, "type": "server_error", "code": 500}}))
    }

    fn malformed_record() -> Vec<u8> {
        b"data: {not json\n\n".to_vec()
    }

    fn check_options(body: &Value, options: &SamplingOptions) {
        assert_eq!(body["model"], "smol");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(
            body["temperature"].as_f64().map(|v| v as f32),
            options.temperature
        );
        assert_eq!(body["top_p"].as_f64().map(|v| v as f32), options.top_p);
        assert_eq!(body["top_k"], json!(options.top_k));
        assert_eq!(body["seed"], json!(options.seed));
        assert_eq!(body["max_tokens"], json!(options.max_tokens));
        assert_eq!(body["stop"], json!(options.stop));
    }
}

conformance_suite!(OpenAi);

#[tokio::test]
async fn bearer_key_is_sent_only_when_configured() {
    let mut body = OpenAi::delta("x");
    body.extend(OpenAi::terminal(1, 1));
    let server = TestServer::start(vec![
        Reply::ok(OpenAi::CONTENT_TYPE, vec![Part::Bytes(body.clone())]),
        Reply::ok(OpenAi::CONTENT_TYPE, vec![Part::Bytes(body)]),
    ])
    .await;
    let mut config = OpenAiConfig::new(format!("{}/v1", server.url()), "smol");
    OpenAiClient::new(config.clone())
        .unwrap()
        .complete("x")
        .await
        .unwrap();
    config.api_key = Some("sk-test".into());
    OpenAiClient::new(config)
        .unwrap()
        .complete("x")
        .await
        .unwrap();
    let requests = server.requests();
    assert_eq!(requests[0].header("authorization"), None);
    assert_eq!(requests[1].header("authorization"), Some("Bearer sk-test"));
}

#[tokio::test]
async fn stream_without_usage_reports_unknown_counts() {
    let mut body = OpenAi::delta("hi");
    body.extend(event(
        json!({"choices": [{"delta": {}, "finish_reason": "length"}]}),
    ));
    body.extend(b"data: [DONE]\n\n");
    let server = TestServer::start(vec![Reply::ok(
        OpenAi::CONTENT_TYPE,
        vec![Part::Bytes(body)],
    )])
    .await;
    let client = OpenAi::client(&server.url(), HttpOptions::default());
    let completion = client.complete("x").await.unwrap();
    assert_eq!(completion.finish_reason, mars::FinishReason::Length);
    assert_eq!(completion.usage.prompt_tokens, None);
    assert_eq!(completion.usage.completion_tokens, None);
}

#[tokio::test]
async fn list_models_reads_the_ids_and_sends_the_key() {
    let models = r#"{"object":"list","data":[{"id":"smol","object":"model"},{"id":"big"}]}"#;
    let server = TestServer::start(vec![
        Reply::status(200, models),
        Reply::status(404, "not found"),
    ])
    .await;
    let config = OpenAiConfig {
        api_key: Some("sk-test".into()),
        ..OpenAiConfig::new(format!("{}/v1", server.url()), "smol")
    };
    let client = OpenAiClient::new(config).unwrap();
    assert_eq!(client.list_models().await.unwrap(), ["smol", "big"]);
    let err = client.list_models().await.unwrap_err();
    assert!(matches!(err, Error::Http { status: 404, .. }), "{err:?}");
    let requests = server.requests();
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("GET", "/v1/models")
    );
    assert_eq!(requests[0].header("authorization"), Some("Bearer sk-test"));
}

#[test]
fn bad_base_url_is_rejected() {
    let config = OpenAiConfig::new("::", "m");
    assert!(matches!(
        OpenAiClient::new(config),
        Err(Error::InvalidConfig {
            field: "base_url",
            ..
        })
    ));
}
