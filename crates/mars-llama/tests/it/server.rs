//! llama-server on loopback: starts with the resolved model, answers, and stops on drop.

use mars_llama::server::{LlamaServer, ServerConfig, find_server};

use crate::common::model_path;

#[tokio::test]
async fn llama_server_starts_answers_and_stops() {
    let binary = find_server().unwrap_or_else(|e| panic!("{e}"));
    let config = ServerConfig {
        threads: 2,
        ..ServerConfig::new(binary, model_path())
    };
    let server = tokio::task::spawn_blocking(move || LlamaServer::start(&config))
        .await
        .unwrap()
        .unwrap();
    let url = server.base_url();
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8,
        "temperature": 0.0,
    });
    let client = reqwest::Client::new();
    let response: serde_json::Value = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = response["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(!text.is_empty(), "{response}");
    assert!(
        response["timings"]["predicted_n"].as_u64().is_some(),
        "{response}"
    );
    drop(server);
    let gone = client.get(format!("{url}/health")).send().await;
    assert!(gone.is_err(), "the server still answers after drop");
}
