//! The OpenAI front end: models, routing, strategies, usage, streaming and errors.

use serde_json::{Value, json};

use crate::fake::TOKENS;
use crate::support::{Harness, header, recorded_prompt_tokens, sse_data};

fn chat(model: &str, prompt: &str) -> Value {
    json!({"model": model, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": prompt}]})
}

#[tokio::test]
async fn models_list_bases_and_variants_and_retrieve_them() {
    let h = Harness::start().await;
    let body: Value = h.get("/v1/models").await.json().await.unwrap();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for id in [
        "llama3:latest",
        "gpt-fake",
        "moa-llama3:latest",
        "re2-gpt-fake",
        "bon-gpt-fake",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let one = h.get("/v1/models/moa-gpt-fake").await;
    assert_eq!(one.status(), 200);
    let one: Value = one.json().await.unwrap();
    assert_eq!(
        (one["id"].as_str(), one["owned_by"].as_str()),
        (Some("moa-gpt-fake"), Some("mars"))
    );
    let missing = h.get("/v1/models/nope").await;
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn a_strategy_prefix_runs_every_inner_call_and_usage_sums_them() {
    let h = Harness::start().await;
    let response = h
        .post("/v1/chat/completions", chat("moa-llama3", "What is 2+2?"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-mars-strategy"), "mixture_of_agents");
    assert_eq!(header(&response, "x-mars-model-calls"), "4");
    assert!(!header(&response, "x-request-id").is_empty());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["model"], "moa-llama3");
    assert_eq!(body["choices"][0]["message"]["content"], TOKENS.concat());
    let calls = h.fake.chat_requests();
    assert_eq!(calls.len(), 4, "three proposals and the aggregation");
    assert!(calls.iter().all(|c| c.body["model"] == "llama3:latest"));
    // The real message list reaches the upstream: the caller's system prompt included.
    assert!(calls.iter().all(|c| {
        c.body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Be brief.")
    }));
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], recorded_prompt_tokens(&h.fake));
    assert_eq!(usage["completion_tokens"], 16);
    assert_eq!(
        usage["mars"],
        json!({"strategy": "mixture_of_agents", "model_calls": 4})
    );
}

#[tokio::test]
async fn a_model_named_like_a_prefix_is_a_model() {
    let h = Harness::start().await;
    let response = h
        .post(
            "/api/chat",
            json!({"model": "moa-lookalike", "stream": false,
        "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-mars-strategy"), "baseline");
    let calls = h.fake.chat_requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].body["model"], "moa-lookalike");
}

#[tokio::test]
async fn body_field_and_tag_choose_strategies_and_the_tag_is_stripped() {
    let h = Harness::start().await;
    let mut body = chat("gpt-fake", "What is 2+2?");
    body["mars_strategy"] = json!("re2");
    let response = h.post("/v1/chat/completions", body).await;
    assert_eq!(header(&response, "x-mars-strategy"), "reread");
    let tagged = chat(
        "gpt-fake",
        "<optillm_approach>re2&cot_reflection</optillm_approach> What is 2+2?",
    );
    let response = h.post("/v1/chat/completions", tagged).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-mars-strategy"),
        "reread&cot_reflection"
    );
    let calls = h.fake.chat_requests();
    assert_eq!(calls.len(), 3);
    for call in &calls {
        let text = call.body["messages"].to_string();
        assert!(
            !text.contains("optillm_approach"),
            "tag reached the upstream: {text}"
        );
    }
}

#[tokio::test]
async fn alternatives_and_n_give_one_choice_each() {
    let h = Harness::start().await;
    let mut body = chat("re2|none-gpt-fake", "q");
    body["n"] = json!(2);
    let response = h.post("/v1/chat/completions", body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-mars-strategy"), "reread|baseline");
    let body: Value = response.json().await.unwrap();
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
        assert_eq!(choice["finish_reason"], "stop");
    }
    assert_eq!(body["usage"]["mars"]["model_calls"], 4);
}

#[tokio::test]
async fn baseline_relays_the_request_unchanged() {
    let h = Harness::start().await;
    let mut body = chat("gpt-fake", "q");
    body["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
    body["response_format"] = json!({"type": "json_object"});
    body["stream"] = json!(true);
    let response = h.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(
        usage["usage"]["mars"],
        json!({"strategy": "baseline", "model_calls": 1}),
        "the relayed usage chunk gets usage.mars"
    );
    assert_eq!(
        usage["usage"]["prompt_tokens"],
        recorded_prompt_tokens(&h.fake)
    );
    let calls = h.fake.chat_requests();
    assert_eq!(calls[0].body, body, "the upstream saw the body as sent");
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some("Bearer upstream-secret")
    );
}

#[tokio::test]
async fn a_strategy_refuses_fields_it_cannot_honour() {
    let h = Harness::start().await;
    let mut body = chat("moa-gpt-fake", "q");
    body["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
    let response = h.post("/v1/chat/completions", body).await;
    assert_eq!(response.status(), 400);
    let err: Value = response.json().await.unwrap();
    assert_eq!(err["error"]["param"], "tools");
    assert!(h.fake.chat_requests().is_empty());
}

#[tokio::test]
async fn streaming_a_strategy_sends_one_finish_per_choice_and_usage_last() {
    let h = Harness::start().await;
    let mut body = chat("re2|moa-llama3", "What is 2+2?");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = h.post("/v1/chat/completions", body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-mars-strategy"),
        "reread|mixture_of_agents"
    );
    let text = response.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let mut finishes = [0, 0];
    let mut texts = [String::new(), String::new()];
    for chunk in &chunks[..chunks.len() - 1] {
        let choice = &chunk["choices"][0];
        let i = choice["index"].as_u64().unwrap() as usize;
        if !choice["finish_reason"].is_null() {
            finishes[i] += 1;
        }
        texts[i].push_str(choice["delta"]["content"].as_str().unwrap_or(""));
    }
    assert_eq!(finishes, [1, 1]);
    assert_eq!(texts, [TOKENS.concat(), TOKENS.concat()]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["mars"]["model_calls"], 5);
    assert_eq!(usage["prompt_tokens"], recorded_prompt_tokens(&h.fake));
    assert_eq!(usage["completion_tokens"], 20);
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field() {
    let h = Harness::start().await;
    let cases = [
        (json!({"model": "moa-gpt-fake", "messages": []}), "messages"),
        (
            json!({"model": "moa-gpt-fake", "messages": [{"role": "user", "content": "q"}], "max_tokens": -1}),
            "max_tokens",
        ),
        (
            json!({"model": "moa-gpt-fake", "messages": [{"role": "user", "content": "q"}], "n": 9}),
            "n",
        ),
        (
            json!({"model": "moa-gpt-fake", "messages": [{"role": "user", "content": "q"}], "temperature": "hot"}),
            "temperature",
        ),
        (
            json!({"model": "gpt-fake", "optillm_approach": "nope", "messages": [{"role": "user", "content": "q"}]}),
            "optillm_approach",
        ),
        (
            json!({"model": "bon_verifier-gpt-fake", "messages": [{"role": "user", "content": "q"}]}),
            "model",
        ),
        (
            json!({"model": "re2&nosuch-gpt-fake", "messages": [{"role": "user", "content": "q"}]}),
            "model",
        ),
        (
            json!({"model": "gpt-fake", "max_tokens": -1, "messages": [{"role": "user", "content": "q"}]}),
            "max_tokens",
        ),
    ];
    for (body, field) in cases {
        let response = h.post("/v1/chat/completions", body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(header(&response, "x-should-retry"), "false");
        let err: Value = response.json().await.unwrap();
        assert_eq!(err["error"]["param"], field, "{body}: {err}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
    }
    let malformed = h
        .client
        .post(format!("{}/v1/chat/completions", h.url))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let err: Value = h
        .post(
            "/v1/chat/completions",
            json!({"model": "gpt-fake", "optillm_approach": "nope",
        "messages": [{"role": "user", "content": "q"}]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mixture_of_agents (moa)"),
        "{err}"
    );
    assert!(h.fake.chat_requests().is_empty(), "nothing ran");
}

#[tokio::test]
async fn an_unknown_model_is_404_listing_the_models() {
    let h = Harness::start().await;
    let response = h.post("/v1/chat/completions", chat("moa-nope", "q")).await;
    assert_eq!(response.status(), 404);
    let err: Value = response.json().await.unwrap();
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("llama3:latest") && message.contains("gpt-fake"),
        "{message}"
    );
    assert_eq!(err["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn upstream_failures_keep_their_class() {
    let h = Harness::start().await;
    let response = h
        .post("/v1/chat/completions", chat("re2-gpt-fake", "FAIL500"))
        .await;
    assert_eq!(response.status(), 502);
    assert_eq!(header(&response, "x-should-retry"), "false");
    let err: Value = response.json().await.unwrap();
    assert!(err["error"]["message"].is_string());
    let response = h
        .post("/v1/chat/completions", chat("re2-llama3", "FAIL429"))
        .await;
    assert_eq!(response.status(), 429);
    assert!(!header(&response, "retry-after").is_empty());
    // The server does not retry on the strategy path: the client decides.
    let calls = h.fake.chat_requests();
    let tried = |word: &str| {
        calls
            .iter()
            .filter(|c| c.body.to_string().contains(word))
            .count()
    };
    assert_eq!((tried("FAIL500"), tried("FAIL429")), (1, 1), "{calls:?}");
}

#[tokio::test]
async fn a_failure_after_streaming_began_is_an_error_event() {
    let h = Harness::start().await;
    let mut body = chat("re2-llama3", "MIDFAIL");
    body["stream"] = json!(true);
    let response = h.post("/v1/chat/completions", body).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let data = sse_data(&text);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fake failure"),
        "{text}"
    );
    assert!(!text.contains("[DONE]"));
}

#[tokio::test]
async fn auth_guards_every_route_but_health() {
    let h = Harness::with(|c| c.api_key = Some("sekrit".into())).await;
    assert_eq!(h.get("/health").await.status(), 200);
    assert_eq!(h.get("/v1/models").await.status(), 401);
    assert_eq!(h.get("/api/tags").await.status(), 401);
    let response = h.post("/v1/chat/completions", chat("gpt-fake", "q")).await;
    assert_eq!(response.status(), 401);
    let ok = h
        .client
        .get(format!("{}/v1/models", h.url))
        .bearer_auth("sekrit")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    for (header, status) in [
        ("bearer sekrit", 200),
        ("BEARER sekrit", 200),
        ("Bearer sekri", 401),
        ("Bearer sekrit2", 401),
        ("sekrit", 401),
    ] {
        let response = h
            .client
            .get(format!("{}/api/tags", h.url))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{header}");
    }
    let relayed = h
        .client
        .post(format!("{}/v1/chat/completions", h.url))
        .bearer_auth("sekrit")
        .json(&chat("gpt-fake", "q"))
        .send()
        .await
        .unwrap();
    assert_eq!(relayed.status(), 200);
    let calls = h.fake.chat_requests();
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some("Bearer upstream-secret"),
        "the client's key stays here"
    );
}

#[tokio::test]
async fn metrics_count_requests_calls_and_tokens() {
    let h = Harness::start().await;
    h.post("/v1/chat/completions", chat("moa-llama3", "q"))
        .await;
    let text = h.get("/metrics").await.text().await.unwrap();
    assert!(text.contains("mars_requests_total{route=\"openai_chat\",strategy=\"mixture_of_agents\",status=\"200\"} 1"), "{text}");
    assert!(text.contains("mars_model_calls_total 4"), "{text}");
    assert!(
        text.contains("mars_tokens_total{kind=\"completion\"} 16"),
        "{text}"
    );
    assert!(text.contains("mars_requests_in_flight 0"), "{text}");
    assert_eq!(h.get("/ready").await.status(), 200);
}

#[tokio::test]
async fn forward_key_sends_the_clients_key_upstream() {
    let h = Harness::with(|c| c.forward_key = true).await;
    for model in ["gpt-fake", "re2-gpt-fake"] {
        let response = h
            .client
            .post(format!("{}/v1/chat/completions", h.url))
            .bearer_auth("client-key")
            .json(&chat(model, "q"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let calls = h.fake.chat_requests();
    assert_eq!(calls.len(), 2);
    for call in calls {
        assert_eq!(call.authorization.as_deref(), Some("Bearer client-key"));
    }
}

#[tokio::test]
async fn ready_names_an_upstream_that_does_not_answer() {
    let fake = crate::fake::Fake::start(&["llama3:latest"], &[]).await;
    // A port that refuses connections: bound, then closed.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let upstreams = vec![
        mars_server::upstream::Upstream::ollama(&fake.url()).unwrap(),
        mars_server::upstream::Upstream::openai(&dead_url, None).unwrap(),
    ];
    let config = mars_server::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..mars_server::ServerConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(mars_server::App::new(config, upstreams).serve(listener, std::future::pending()));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let ready = client.get(format!("{url}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert!(
        body["failed"][0]
            .as_str()
            .unwrap()
            .starts_with("openai-upstream"),
        "{body}"
    );
    // The upstream that answers still serves.
    let tags: Value = client
        .get(format!("{url}/api/tags"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["models"][0]["name"], "llama3:latest");
}
