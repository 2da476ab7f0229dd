//! The Ollama front end: the surface real clients call, streaming by default, final records.

use serde_json::{Value, json};

use crate::fake::TOKENS;
use crate::support::{Harness, header, ndjson, recorded_prompt_tokens};

#[tokio::test]
async fn the_surface_clients_probe() {
    let h = Harness::start().await;
    let root = h.get("/").await;
    assert_eq!(root.status(), 200);
    assert_eq!(root.text().await.unwrap(), "Ollama is running");
    let head = h.client.head(format!("{}/", h.url)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let version: Value = h.get("/api/version").await.json().await.unwrap();
    assert!(version["version"].is_string());
    let tags: Value = h.get("/api/tags").await.json().await.unwrap();
    let models = tags["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    for name in [
        "llama3:latest",
        "gpt-fake",
        "moa-llama3:latest",
        "re2-gpt-fake",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    for model in models {
        for field in ["name", "model", "modified_at", "size", "digest", "details"] {
            assert!(model.get(field).is_some(), "{field} missing in {model}");
        }
    }
    for body in [json!({"model": "llama3"}), json!({"name": "moa-gpt-fake"})] {
        let show = h.post("/api/show", body.clone()).await;
        assert_eq!(show.status(), 200, "{body}");
        let show: Value = show.json().await.unwrap();
        for field in [
            "model_info",
            "details",
            "template",
            "parameters",
            "capabilities",
        ] {
            assert!(show.get(field).is_some(), "{field} missing in {show}");
        }
    }
    let ps: Value = h.get("/api/ps").await.json().await.unwrap();
    assert!(ps["models"].is_array());
}

#[tokio::test]
async fn chat_streams_by_default_and_ends_with_totals() {
    let h = Harness::start().await;
    let response = h
        .post(
            "/api/chat",
            json!({"model": "moa-gpt-fake",
        "messages": [{"role": "user", "content": "What is 2+2?"}],
        "options": {"temperature": 0.3, "num_predict": 64, "seed": 7}, "keep_alive": 300}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "application/x-ndjson");
    assert_eq!(header(&response, "x-mars-strategy"), "mixture_of_agents");
    let records = ndjson(&response.text().await.unwrap());
    let (last, deltas) = records.split_last().unwrap();
    let text: String = deltas
        .iter()
        .map(|r| r["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, TOKENS.concat());
    assert!(deltas.iter().all(|r| r["done"] == false));
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["model"], "moa-gpt-fake");
    assert_eq!(last["prompt_eval_count"], recorded_prompt_tokens(&h.fake));
    assert_eq!(last["eval_count"], 16);
    assert!(last["total_duration"].as_u64().unwrap() > 0);
    let calls = h.fake.chat_requests();
    assert_eq!(calls.len(), 4);
    // Options reach every inner call (the request's temperature wins over MoA's own; the
    // proposals' seeds are derived from the request's).
    for call in &calls {
        assert!(call.body["seed"].is_u64(), "{}", call.body);
        assert_eq!(call.body["max_tokens"], 64, "{}", call.body);
        assert_eq!(
            call.body["temperature"]
                .as_f64()
                .map(|t| (t * 10.0).round()),
            Some(3.0)
        );
    }
}

#[tokio::test]
async fn chat_without_streaming_and_generate() {
    let h = Harness::start().await;
    let response = h
        .post(
            "/api/chat",
            json!({"model": "re2-llama3", "stream": false,
        "messages": [{"role": "user", "content": "q"}], "keep_alive": "5m"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-mars-model-calls"), "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"]["content"], TOKENS.concat());
    assert_eq!(body["done_reason"], "stop");
    assert_eq!(body["eval_count"], 4);
    assert_eq!(h.fake.chat_requests()[0].body["keep_alive"], "5m");
    let seconds = h
        .post(
            "/api/chat",
            json!({"model": "re2-llama3", "stream": false,
                   "messages": [{"role": "user", "content": "q"}], "keep_alive": 300}),
        )
        .await;
    assert_eq!(seconds.status(), 200);
    assert_eq!(h.fake.chat_requests()[1].body["keep_alive"], "300s");
    let generated = h
        .post(
            "/api/generate",
            json!({"model": "re2-gpt-fake", "prompt": "q", "system": "s"}),
        )
        .await;
    let records = ndjson(&generated.text().await.unwrap());
    let text: String = records
        .iter()
        .map(|r| r["response"].as_str().unwrap())
        .collect();
    assert_eq!(text, TOKENS.concat());
    assert_eq!(records.last().unwrap()["done"], true);
    let load: Value = h
        .post("/api/generate", json!({"model": "llama3"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(load["done_reason"], "load");
}

#[tokio::test]
async fn baseline_on_ollama_relays_images_unchanged() {
    let h = Harness::start().await;
    let body = json!({"model": "llama3", "messages": [{"role": "user", "content": "q", "images": ["aGk="]}],
        "format": "json"});
    let response = h.post("/api/chat", body.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(h.fake.chat_requests()[0].body, body);
    let refused = h
        .post(
            "/api/chat",
            json!({"model": "moa-llama3",
        "messages": [{"role": "user", "content": "q", "images": ["aGk="]}]}),
        )
        .await;
    assert_eq!(refused.status(), 400);
    let err: Value = refused.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("images"), "{err}");
}

#[tokio::test]
async fn errors_take_ollamas_shape() {
    let h = Harness::start().await;
    let response = h
        .post(
            "/api/chat",
            json!({"model": "nope", "messages": [{"role": "user", "content": "q"}]}),
        )
        .await;
    assert_eq!(response.status(), 404);
    let err: Value = response.json().await.unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("llama3:latest"),
        "{err}"
    );
    let response = h
        .post(
            "/api/chat",
            json!({"model": "re2-llama3", "messages": [{"role": "user", "content": "MIDFAIL"}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let records = ndjson(&response.text().await.unwrap());
    assert!(
        records.last().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("fake failure")
    );
}

#[tokio::test]
async fn a_chat_without_messages_is_a_model_load() {
    let h = Harness::start().await;
    for body in [
        json!({"model": "re2-llama3", "messages": []}),
        json!({"model": "gpt-fake"}),
    ] {
        let response = h.post("/api/chat", body.clone()).await;
        assert_eq!(response.status(), 200, "{body}");
        let record: Value = response.json().await.unwrap();
        assert_eq!(record["done_reason"], "load", "{record}");
        assert_eq!(record["done"], true);
        assert_eq!(record["model"], body["model"]);
        assert_eq!(record["message"]["content"], "");
    }
    assert!(h.fake.chat_requests().is_empty());
    // On an Ollama model without a strategy it is relayed: the upstream loads the model.
    let response = h
        .post("/api/chat", json!({"model": "llama3", "messages": []}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(h.fake.chat_requests().len(), 1);
    let record: Value = response.json().await.unwrap();
    assert_eq!(record["done_reason"], "load");
    let response = h
        .post("/api/chat", json!({"model": "llama3", "messages": "hi"}))
        .await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn options_a_strategy_cannot_honour_are_a_400_and_relays_keep_them() {
    let h = Harness::start().await;
    let ask = |model: &str, extra: Value| {
        let mut body = json!({"model": model, "stream": false,
                              "messages": [{"role": "user", "content": "q"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for (extra, field) in [
        (json!({"options": {"num_ctx": 4096}}), "options.num_ctx"),
        (
            json!({"options": {"temperature": 0.1, "repeat_penalty": 1.1}}),
            "options.repeat_penalty",
        ),
        (json!({"think": true}), "think"),
    ] {
        let response = h.post("/api/chat", ask("re2-llama3", extra.clone())).await;
        assert_eq!(response.status(), 400, "{extra}");
        let err: Value = response.json().await.unwrap();
        assert!(err["error"].as_str().unwrap().contains(field), "{err}");
    }
    assert!(h.fake.chat_requests().is_empty());
    let mapped = json!({"options": {"temperature": 0.1, "num_predict": 8, "stop": null}});
    let response = h.post("/api/chat", ask("re2-llama3", mapped)).await;
    assert_eq!(response.status(), 200);
    let relayed = json!({"options": {"num_ctx": 4096, "min_p": 0.05}, "think": true});
    let response = h.post("/api/chat", ask("llama3", relayed)).await;
    assert_eq!(response.status(), 200);
    let calls = h.fake.chat_requests();
    let last = &calls.last().unwrap().body;
    assert_eq!(last["options"]["num_ctx"], 4096);
    assert_eq!(last["think"], true);
}
