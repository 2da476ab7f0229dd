//! Live tests of `mars::OpenAiClient` against llama.cpp's own llama-server on loopback.

use futures::StreamExt;
use mars::backends::openai::{OpenAiClient, OpenAiConfig};
use mars::{ChatRequest, Error, FinishReason, ModelClient, ModelClientExt, StreamEvent};
use mars_llama::server::LlamaServer;

use crate::common::{engine, greedy, seeded, start_server, within};

fn client(server: &LlamaServer, extra: Option<(&str, serde_json::Value)>) -> OpenAiClient {
    let mut config = OpenAiConfig::new(format!("{}/v1", server.base_url()), "smollm2");
    if let Some((key, value)) = extra {
        config.extra_body.insert(key.into(), value);
    }
    OpenAiClient::new(config).unwrap()
}

#[tokio::test]
async fn streams_deltas_and_usage_from_llama_server() {
    let server = start_server().await;
    let client = client(&server, None);
    let request = ChatRequest::new("Write three sentences about the sea.").with_options(greedy(8));
    let events: Vec<_> = within(client.stream_chat(request.clone()).collect()).await;
    let (last, deltas) = events.split_last().expect("no events");
    assert!(!deltas.is_empty(), "no deltas");
    assert!(
        deltas
            .iter()
            .all(|e| matches!(e, Ok(StreamEvent::Delta(_)))),
        "{deltas:?}"
    );
    let Ok(StreamEvent::Done(finish)) = last else {
        panic!("last event is not Done: {last:?}");
    };
    assert_eq!(finish.reason, FinishReason::Length);
    assert_eq!(finish.usage.completion_tokens, Some(8));
    // llama-server renders SmolLM2's template with its default system prompt, as the engine does.
    let engine_count = engine().count_prompt_tokens(&request).unwrap() as u64;
    assert_eq!(finish.usage.prompt_tokens, Some(engine_count));
    assert!(
        finish.usage.eval_duration.is_some(),
        "llama-server timings were not read"
    );
}

#[tokio::test]
async fn seeded_sampling_reproduces_with_prompt_caching_off() {
    let server = start_server().await;
    let client = client(&server, Some(("cache_prompt", serde_json::json!(false))));
    let request = ChatRequest::new("Tell me a short story about a fox.");
    let sample = |seed| client.complete(request.clone().with_options(seeded(seed, 16)));
    let first = within(sample(5)).await.unwrap().text;
    let other = within(sample(6)).await.unwrap().text;
    let again = within(sample(5)).await.unwrap().text;
    assert!(!first.is_empty());
    assert_eq!(first, again, "same seed, different text");
    assert_ne!(first, other, "seeds 5 and 6 gave the same text");
}

#[tokio::test]
async fn an_unknown_route_is_an_http_error() {
    let server = start_server().await;
    let config = OpenAiConfig::new(format!("{}/no-such-prefix", server.base_url()), "smollm2");
    let client = OpenAiClient::new(config).unwrap();
    let err = within(client.complete("Hi")).await.unwrap_err();
    assert!(matches!(err, Error::Http { status: 404, .. }), "{err}");
}
