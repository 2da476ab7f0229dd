//! One live test: `mars serve --embedded smollm2-135m` (the smallest preset, fetched by the
//! project's resolver when it is not cached) answers one strategy request.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn the_embedded_model_answers_a_strategy_request() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mars"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--embedded",
            "smollm2-135m",
        ])
        .env_remove("MARS_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines
        .next_line()
        .await
        .unwrap()
        .expect("the server printed its address");
    let url = format!(
        "http://{}",
        first
            .strip_prefix("mars serve listening on http://")
            .unwrap()
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let tags: Value = client
        .get(format!("{url}/api/tags"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["models"][0]["name"], "smollm2-135m");
    let response = client
        .post(format!("{url}/v1/chat/completions"))
        .json(
            &json!({"model": "re2-smollm2-135m", "temperature": 0, "max_tokens": 16, "seed": 1,
                      "messages": [{"role": "user", "content": "What is 2 + 2?"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-mars-strategy"], "reread");
    let body: Value = response.json().await.unwrap();
    assert!(
        !body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty(),
        "{body}"
    );
    assert_eq!(body["usage"]["mars"]["model_calls"], 1);
    assert!(
        body["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
        "{body}"
    );
    let completion = body["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=16).contains(&completion), "{body}");
}
