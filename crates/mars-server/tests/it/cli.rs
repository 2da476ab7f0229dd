//! The `mars` binary: its first stdout line, and graceful shutdown on SIGTERM.

use std::process::Stdio;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::fake::{Fake, TOKENS};
use crate::support::{OLLAMA_MODELS, OPENAI_MODELS, ndjson};

#[tokio::test]
async fn serve_prints_its_address_and_finishes_in_flight_work_on_sigterm() {
    let fake = Fake::start(OLLAMA_MODELS, OPENAI_MODELS).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mars"))
        .args(["serve", "--listen", "127.0.0.1:0", "--ollama", &fake.url()])
        .env_remove("MARS_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let url = first
        .strip_prefix("mars serve listening on http://")
        .map(|addr| format!("http://{addr}"))
        .unwrap_or_else(|| panic!("first line: {first:?}"));
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0, "port 0 picks a free port");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    assert_eq!(
        client
            .get(format!("{url}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A slow stream is in flight when the signal comes; it still finishes.
    let response = client
        .post(format!("{url}/api/chat"))
        .json(&json!({"model": "re2-llama3", "messages": [{"role": "user", "content": "SLOW"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let records = ndjson(&response.text().await.unwrap());
    let text: String = records
        .iter()
        .filter_map(|r| r["message"]["content"].as_str())
        .collect();
    assert_eq!(text, TOKENS.concat());
    assert_eq!(records.last().unwrap()["done"], true);
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status:?}");
}
