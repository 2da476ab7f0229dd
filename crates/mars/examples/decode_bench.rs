//! Decode cost per streamed token of the Ollama client, over a 10,000-token NDJSON stream.
//!
//! The stream is written in Ollama's exact `/api/chat` format (one line per token, metrics on
//! the final line). Two figures are printed:
//! 1. the pure decoder (framing + JSON), fed one line per chunk as Ollama flushes them, and again
//!    in 4 KiB chunks;
//! 2. the whole client, reading the stream from a loopback server, minus nothing: socket reads,
//!    framing, JSON, events.
//!
//! Run with `cargo run --release -p mars --example decode_bench`.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use mars::backends::ollama::OllamaDecoder;
use mars::{ModelClientExt, OllamaClient, OllamaConfig, StreamEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKENS: usize = 10_000;
const ROUNDS: usize = 20;

fn recorded_stream() -> Vec<Vec<u8>> {
    let words = [
        "fn", " is", "_prime", "(n", ":", " u", "64", ")", " ->", " bool", " {", "\n", "    ",
        "if", " n", " <", " 2", " {", " return", " false", ";", " }", " é", "—", "✓",
    ];
    let mut lines = Vec::with_capacity(TOKENS + 1);
    for i in 0..TOKENS {
        let value = serde_json::json!({
            "model": "tinyllama",
            "created_at": "2026-11-28T10:00:00.123456789Z",
            "message": {"role": "assistant", "content": words[i % words.len()]},
            "done": false
        });
        lines.push(format!("{value}\n").into_bytes());
    }
    let last = serde_json::json!({
        "model": "tinyllama", "created_at": "2026-11-28T10:00:09Z",
        "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop",
        "total_duration": 9_000_000_000u64, "load_duration": 1_000_000u64,
        "prompt_eval_count": 26, "prompt_eval_duration": 100_000_000u64,
        "eval_count": TOKENS, "eval_duration": 8_900_000_000u64
    });
    lines.push(format!("{last}\n").into_bytes());
    lines
}

fn decode_all(chunks: &[Vec<u8>]) -> usize {
    let mut decoder = OllamaDecoder::default();
    let mut events = Vec::with_capacity(4);
    let mut deltas = 0;
    for chunk in chunks {
        decoder.decode_chunk(chunk, &mut events).unwrap();
        deltas += events
            .drain(..)
            .filter(|e| matches!(e, StreamEvent::Delta(_)))
            .count();
    }
    decoder.decode_end(&mut events).unwrap();
    deltas
}

fn best_of(rounds: usize, mut run: impl FnMut() -> Duration) -> Duration {
    (0..rounds).map(|_| run()).min().unwrap()
}

fn per_token(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6 / TOKENS as f64
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let lines = recorded_stream();
    let bytes: Vec<u8> = lines.concat();
    let blocks: Vec<Vec<u8>> = bytes.chunks(4096).map(<[u8]>::to_vec).collect();
    println!("stream: {TOKENS} tokens, {} bytes of NDJSON", bytes.len());

    let per_line = best_of(ROUNDS, || {
        let start = Instant::now();
        assert_eq!(decode_all(&lines), TOKENS);
        start.elapsed()
    });
    let per_block = best_of(ROUNDS, || {
        let start = Instant::now();
        assert_eq!(decode_all(&blocks), TOKENS);
        start.elapsed()
    });
    println!(
        "decoder, one line per chunk:  {:.3} µs/token ({:?} per stream, best of {ROUNDS})",
        per_token(per_line),
        per_line
    );
    println!(
        "decoder, 4 KiB chunks:        {:.3} µs/token ({:?} per stream, best of {ROUNDS})",
        per_token(per_block),
        per_block
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_lines = lines.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = vec![0u8; 64 * 1024];
            let _ = socket.read(&mut request).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n")
                .await;
            let _ = socket.write_all(&server_lines.concat()).await;
            let _ = socket.shutdown().await;
        }
    });
    let config = OllamaConfig {
        base_url: format!("http://{addr}"),
        ..OllamaConfig::new("tinyllama")
    };
    let client = OllamaClient::new(config).unwrap();
    let mut client_best = Duration::MAX;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut stream = client.stream("bench");
        let mut deltas = 0;
        while let Some(event) = stream.next().await {
            if let StreamEvent::Delta(_) = event.unwrap() {
                deltas += 1;
            }
        }
        client_best = client_best.min(start.elapsed());
        assert_eq!(deltas, TOKENS);
    }
    println!(
        "whole client over loopback:   {:.3} µs/token ({:?} per stream incl. connect, best of {ROUNDS})",
        per_token(client_best),
        client_best
    );
    println!("goal: under 5 µs/token");
}
