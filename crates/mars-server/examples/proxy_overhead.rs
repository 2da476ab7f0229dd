//! The proxy's own overhead, measured in one run against an instant fake upstream on loopback:
//! the same requests sent directly to the fake and through `mars serve`.
//!
//! - Non-streaming: p50 latency per request, direct and through the proxy, for the baseline
//!   relay (bytes forwarded) and for a strategy (`re2-`: parsed, run through `OpenAiClient`
//!   and written back).
//! - Streaming: time per relayed token, from a response of `--tokens` one-token SSE events.
//!
//! `cargo run --release -p mars-server --no-default-features --example proxy_overhead`

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use mars_server::upstream::Upstream;
use mars_server::{App, ServerConfig};
use serde_json::{Value, json};

const MODEL: &str = "fake";

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut requests = 2000usize;
    let mut tokens = 20_000usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--requests" => {
                requests = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--requests N")
            }
            "--tokens" => {
                tokens = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--tokens N")
            }
            other => panic!("unknown argument {other} (--requests N, --tokens N)"),
        }
    }
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let fake = start_fake(tokens).await;
    let proxy = start_proxy(&fake).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    // Non-streaming requests ask for one token (a strategy's upstream call streams it);
    // streaming ones for `tokens`.
    let body = |model: &str, stream: bool| {
        let max_tokens = if stream { tokens } else { 1 };
        json!({"model": model, "stream": stream, "max_tokens": max_tokens,
               "messages": [{"role": "user", "content": "hi"}]})
    };

    println!("mars serve proxy overhead ({requests} requests per row, {tokens} tokens per stream)");
    println!();
    println!("| request | direct p50 | proxy p50 | overhead p50 |");
    println!("|---|---|---|---|");
    let direct = p50(&client, &fake, &body(MODEL, false), requests).await;
    for (label, model) in [
        ("baseline relay", MODEL.to_owned()),
        ("re2 strategy", format!("re2-{MODEL}")),
    ] {
        let through = p50(&client, &proxy, &body(&model, false), requests).await;
        println!(
            "| non-streaming, {label} | {} | {} | {} |",
            micros(direct),
            micros(through),
            signed_micros(through.as_secs_f64() - direct.as_secs_f64())
        );
    }
    println!();
    println!("| stream | direct | proxy | overhead per token |");
    println!("|---|---|---|---|");
    let direct = best_stream(&client, &fake, &body(MODEL, true), tokens).await;
    for (label, model) in [
        ("baseline relay", MODEL.to_owned()),
        ("re2 strategy", format!("re2-{MODEL}")),
    ] {
        let through = best_stream(&client, &proxy, &body(&model, true), tokens).await;
        // Signed: through the proxy can be faster than direct, as the proxy writes events that
        // are ready together in one chunk and the client then reads fewer, larger chunks.
        let per_token = (through.as_secs_f64() - direct.as_secs_f64()) * 1e6 / tokens as f64;
        println!(
            "| {tokens} tokens, {label} | {:.1} ms | {:.1} ms | {per_token:.2} µs |",
            direct.as_secs_f64() * 1e3,
            through.as_secs_f64() * 1e3
        );
    }
}

fn signed_micros(secs: f64) -> String {
    format!("{:.0} µs", secs * 1e6)
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// The median latency of `n` sequential non-streaming requests (after 50 to warm up).
async fn p50(client: &reqwest::Client, base: &str, body: &Value, n: usize) -> Duration {
    let url = format!("{base}/v1/chat/completions");
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 50 {
        let start = Instant::now();
        let response = client.post(&url).json(body).send().await.unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        response.bytes().await.unwrap();
        if i >= 50 {
            times.push(start.elapsed());
        }
    }
    times.sort();
    times[times.len() / 2]
}

/// The fastest of 10 full reads of a streamed response (after one to warm up), checking that
/// every token arrived.
async fn best_stream(
    client: &reqwest::Client,
    base: &str,
    body: &Value,
    tokens: usize,
) -> Duration {
    let url = format!("{base}/v1/chat/completions");
    let mut best = Duration::MAX;
    for i in 0..11 {
        let start = Instant::now();
        let text = client
            .post(&url)
            .json(body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let elapsed = start.elapsed();
        let got = text.matches("\"content\":\"t\"").count();
        assert_eq!(got, tokens, "every token relayed");
        if i > 0 {
            best = best.min(elapsed);
        }
    }
    best
}

async fn start_proxy(fake: &str) -> String {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_concurrency: 64,
        ..ServerConfig::default()
    };
    let upstreams = vec![Upstream::openai(fake, None).unwrap()];
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(App::new(config, upstreams).serve(listener, std::future::pending()));
    url
}

/// An OpenAI-wire upstream that answers at once: one word, or `max_tokens` one-token SSE
/// events.
async fn start_fake(tokens: usize) -> String {
    let chunk = |delta: Value, finish: Value| {
        Bytes::from(format!(
            "data: {}\n\n",
            json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        ))
    };
    let token = chunk(json!({"content": "t"}), Value::Null);
    let first = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    let end = chunk(json!({}), json!("stop"));
    let answer = move |body: Bytes| {
        let (token, first, end) = (token.clone(), first.clone(), end.clone());
        async move {
            let body: Value = serde_json::from_slice(&body).unwrap();
            if body["stream"].as_bool().unwrap_or(false) {
                let n = body["max_tokens"].as_u64().map_or(tokens, |n| n as usize);
                let usage = Bytes::from(format!(
                    "data: {}\n\ndata: [DONE]\n\n",
                    json!({"id": "x", "object": "chat.completion.chunk", "created": 1,
                           "model": MODEL, "choices": [], "usage": {"prompt_tokens": 1,
                           "completion_tokens": n, "total_tokens": n + 1}})
                ));
                let mut events = vec![first];
                events.extend(std::iter::repeat_n(token, n));
                events.extend([end, usage]);
                let chunks = events.into_iter().map(Ok::<_, std::io::Error>);
                (
                    [("content-type", "text/event-stream")],
                    Body::from_stream(futures::stream::iter(chunks)),
                )
                    .into_response()
            } else {
                axum::Json(json!({"id": "x", "object": "chat.completion", "created": 1, "model": MODEL,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "t"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}))
                .into_response()
            }
        }
    };
    let router = Router::new()
        .route(
            "/v1/models",
            get(|| async { axum::Json(json!({"data": [{"id": MODEL}]})) }),
        )
        .route("/v1/chat/completions", post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let listener = listener.tap_io(|tcp| tcp.set_nodelay(true).unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}
