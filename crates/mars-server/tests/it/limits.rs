//! Limits and cancellation: the concurrency bound, admission, timeouts, body size, and a
//! client that goes away.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::support::{Harness, header};

fn chat(model: &str, prompt: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": prompt}]})
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_every_inner_call() {
    let h = Harness::start().await;
    // MoA's three proposals run at once; each sends one token and then waits.
    let mut response = h
        .post("/v1/chat/completions", chat("moa-llama3", "HANG", true))
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        h.fake
            .wait_for(|e| e.iter().filter(|e| e.starts_with("start")).count() == 3)
            .await
    );
    // A keep-alive comment arrives while the proposals run.
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b": keep-alive"), "{first:?}");
    drop(response);
    let all_dropped = h
        .fake
        .wait_for(|e| e.iter().filter(|e| e.starts_with("dropped")).count() == 3)
        .await;
    assert!(all_dropped, "events: {:?}", h.fake.events());
    let metrics = h.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("mars_requests_in_flight 0"), "{metrics}");
}

#[tokio::test]
async fn a_non_streaming_client_that_goes_away_cancels_too() {
    let h = Harness::start().await;
    let client = h.client.clone();
    let url = format!("{}/api/chat", h.url);
    let request = tokio::spawn(async move {
        client
            .post(url)
            .json(&chat("re2-llama3", "HANG", false))
            .send()
            .await
    });
    assert!(h.fake.wait_for(|e| e.iter().any(|e| e == "start 0")).await);
    request.abort();
    assert!(
        h.fake
            .wait_for(|e| e.iter().any(|e| e == "dropped 0"))
            .await,
        "{:?}",
        h.fake.events()
    );
}

#[tokio::test]
async fn the_concurrency_bound_holds_and_overflow_is_429() {
    let h = Harness::with(|c| {
        c.max_concurrency = 4;
        c.max_queue = 4;
    })
    .await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let client = h.client.clone();
            let url = format!("{}/v1/chat/completions", h.url);
            tokio::spawn(async move {
                let body = json!({"model": "re2-llama3", "messages": [{"role": "user", "content": format!("SLOW {i}")}]});
                let response = client.post(url).json(&body).send().await.unwrap();
                let status = response.status().as_u16();
                let retry = response.headers().contains_key("retry-after");
                (status, retry)
            })
        })
        .collect();
    let mut ok = 0;
    let mut busy = 0;
    for task in tasks {
        match task.await.unwrap() {
            (200, _) => ok += 1,
            (429, true) => busy += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ok + busy, 50);
    assert!(busy > 0, "50 at once past a bound of 8 must overflow");
    assert!(
        h.fake.max_in_flight() <= 4,
        "the fake saw {} at once",
        h.fake.max_in_flight()
    );
    // Nothing lost or duplicated: one upstream call per admitted request, each prompt once.
    let calls = h.fake.chat_requests();
    assert_eq!(calls.len(), ok);
    let mut prompts: Vec<String> = calls
        .iter()
        .map(|c| c.body["messages"].to_string())
        .collect();
    prompts.sort();
    prompts.dedup();
    assert_eq!(prompts.len(), ok);
}

#[tokio::test]
async fn a_request_past_its_time_limit_is_504() {
    let h = Harness::with(|c| c.request_timeout = Duration::from_millis(300)).await;
    let response = h
        .post("/v1/chat/completions", chat("re2-llama3", "HANG", false))
        .await;
    assert_eq!(response.status(), 504);
    assert_eq!(header(&response, "x-should-retry"), "false");
    assert!(
        h.fake
            .wait_for(|e| e.iter().any(|e| e == "dropped 0"))
            .await
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let h = Harness::with(|c| c.max_body_bytes = 1024).await;
    let big = "x".repeat(4096);
    let response = h
        .post("/v1/chat/completions", chat("re2-llama3", &big, false))
        .await;
    assert_eq!(response.status(), 413);
    let err: Value = response.json().await.unwrap();
    assert!(err["error"]["message"].as_str().unwrap().contains("1024"));
    let response = h.post("/api/chat", chat("re2-llama3", &big, false)).await;
    assert_eq!(response.status(), 413);
    let err: Value = response.json().await.unwrap();
    assert!(err["error"].is_string());
}

#[tokio::test]
async fn streaming_baseline_relays_chunks_as_they_come() {
    let h = Harness::start().await;
    let response = h
        .post("/v1/chat/completions", chat("gpt-fake", "HANG", true))
        .await;
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "), "{first:?}");
    // The fake has sent one token and is still waiting: the chunk came before it finished.
    assert!(!h.fake.events().iter().any(|e| e.starts_with("done")));
    drop(body);
    assert!(
        h.fake
            .wait_for(|e| e.iter().any(|e| e == "dropped 0"))
            .await
    );
}

#[tokio::test]
async fn an_ollama_stream_keeps_alive_with_empty_records_and_cancels_on_close() {
    let h = Harness::start().await;
    let mut response = h.post("/api/chat", chat("moa-llama3", "HANG", true)).await;
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    let record: Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(record["done"], false);
    assert_eq!(record["message"]["content"], "");
    drop(response);
    let all_dropped = h
        .fake
        .wait_for(|e| e.iter().filter(|e| e.starts_with("dropped")).count() == 3)
        .await;
    assert!(all_dropped, "events: {:?}", h.fake.events());
}

#[tokio::test]
async fn a_relay_waiting_for_a_permit_is_504_at_its_deadline() {
    let h = Harness::with(|c| {
        c.max_concurrency = 1;
        c.request_timeout = Duration::from_millis(300);
    })
    .await;
    // The only permit is held: the relay waits for it until its deadline, not forever.
    let _held = h.state.gate.acquire().await.unwrap();
    for (path, model) in [
        ("/v1/chat/completions", "gpt-fake"),
        ("/api/chat", "llama3"),
    ] {
        let response = tokio::time::timeout(
            Duration::from_secs(60),
            h.post(path, chat(model, "hello", false)),
        )
        .await
        .expect("the relay never gave up waiting for a permit");
        assert_eq!(response.status(), 504, "{path}");
    }
    assert!(h.fake.chat_requests().is_empty());
}

#[tokio::test]
async fn an_upstream_failure_on_a_relay_is_502_in_the_callers_shape() {
    let h = Harness::start().await;
    let response = h
        .post("/v1/chat/completions", chat("gpt-fake", "FAIL500", false))
        .await;
    assert_eq!(response.status(), 502);
    assert_eq!(header(&response, "x-should-retry"), "false");
    let err: Value = response.json().await.unwrap();
    assert!(
        err["error"]["message"].as_str().unwrap().contains("boom"),
        "{err}"
    );
    let response = h.post("/api/chat", chat("llama3", "FAIL500", true)).await;
    assert_eq!(response.status(), 502);
    let err: Value = response.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("boom"), "{err}");
    // A 429 stays as it is.
    let response = h
        .post("/v1/chat/completions", chat("gpt-fake", "FAIL429", false))
        .await;
    assert_eq!(response.status(), 429);
}

#[tokio::test]
async fn a_stream_past_its_time_limit_names_the_limit() {
    let h = Harness::with(|c| c.request_timeout = Duration::from_millis(300)).await;
    let response = h
        .post("/v1/chat/completions", chat("re2-llama3", "HANG", true))
        .await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains("limit of 300ms"), "{text}");
    for (path, model) in [
        ("/api/chat", "re2-llama3"),
        ("/api/chat", "llama3"),
        ("/v1/chat/completions", "gpt-fake"),
    ] {
        let response = h.post(path, chat(model, "HANG", true)).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(text.contains("limit of 300ms"), "{model}: {text}");
    }
}

#[tokio::test]
async fn a_relayed_answer_echoes_the_requested_model() {
    let h = Harness::start().await;
    for (path, model) in [
        ("/v1/chat/completions", "gpt-fake"),
        ("/api/chat", "llama3"),
    ] {
        let response = h.post(path, chat(model, "hello", false)).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["model"], model, "{body}");
        let response = h.post(path, chat(model, "hello", true)).await;
        let text = response.text().await.unwrap();
        let records: Vec<Value> = text
            .lines()
            .map(|l| l.strip_prefix("data: ").unwrap_or(l))
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(records.len() >= 4, "{text}");
        assert!(records.iter().all(|r| r["model"] == model), "{text}");
    }
}

#[tokio::test]
async fn a_relayed_answer_over_the_cap_is_502() {
    let h = Harness::start().await;
    for path in ["/v1/chat/completions", "/api/chat"] {
        let model = if path == "/api/chat" {
            "llama3"
        } else {
            "gpt-fake"
        };
        let response = h.post(path, chat(model, "HUGE", false)).await;
        assert_eq!(response.status(), 502, "{path}");
        let text = response.text().await.unwrap();
        assert!(text.contains("more than 16777216 bytes"), "{text}");
    }
}

#[tokio::test]
async fn a_stream_sends_its_headers_before_the_first_keep_alive_interval() {
    let h = Harness::with(|c| c.keep_alive = Duration::from_secs(3600)).await;
    // MoA's proposals hang: no event comes, yet the headers do, with a keep-alive.
    for path in ["/v1/chat/completions", "/api/chat"] {
        let mut response = tokio::time::timeout(
            Duration::from_secs(60),
            h.post(path, chat("moa-llama3", "HANG", true)),
        )
        .await
        .expect("the headers waited for a keep-alive interval");
        assert_eq!(response.status(), 200);
        let first = response.chunk().await.unwrap().unwrap();
        assert!(!first.is_empty());
    }
}

#[tokio::test]
async fn upstream_bodies_are_read_only_up_to_their_cap() {
    use mars_server::upstream::{MAX_ERROR_BYTES, error_text, read_capped};
    let h = Harness::start().await;
    let url = format!("{}/api/chat", h.fake.url());
    // The fake upstream answers the prompt directly (not through the proxy).
    let ask = |prompt: &str| {
        h.client
            .post(&url)
            .json(&chat("llama3", prompt, false))
            .send()
    };
    let huge = ask("HUGE").await.unwrap();
    let (bytes, more) = read_capped(huge, 1024).await.unwrap();
    assert_eq!((bytes.len(), more), (1024, true));
    let small = ask("hello").await.unwrap();
    let (bytes, more) = read_capped(small, 1024).await.unwrap();
    assert!(!more && serde_json::from_slice::<Value>(&bytes).is_ok());
    let failed = ask("FAIL500").await.unwrap();
    assert_eq!(error_text(failed).await, "boom");
    // A huge answer read as error text keeps its first 64 KiB.
    let huge = ask("HUGE").await.unwrap();
    let text = error_text(huge).await;
    assert!(text.len() <= MAX_ERROR_BYTES + 8 && text.ends_with(" [...]"));
}

#[tokio::test]
async fn a_relay_has_one_deadline_for_head_and_body() {
    // Head and body each come within the limit, but not both.
    let h = Harness::with(|c| c.request_timeout = Duration::from_millis(300)).await;
    for (path, model) in [
        ("/v1/chat/completions", "gpt-fake"),
        ("/api/chat", "llama3"),
    ] {
        let response = h.post(path, chat(model, "LATE", false)).await;
        assert_eq!(response.status(), 504, "{path}");
    }
}
