//! engine_bench: the embedded engine against llama.cpp's own llama-server, same GGUF, same
//! threads; and the wall time of 1 vs 4 samples through the batched path. `--model` takes a
//! preset name or a GGUF path (default: `MARS_MODEL`, else the default preset).
//!
//! ```text
//! scripts/build-llama-server.sh
//! cargo run --release -p mars-llama --example engine_bench -- [--threads N] [--max-tokens N]
//!     [--runs N] [--model PRESET-OR-GGUF]
//! ```
//!
//! llama-server runs with 4 slots. Prompt tokens/s come from a long prompt (one token generated), generation tokens/s from a
//! greedy answer of `--max-tokens`; both sides evaluate the same prompt tokens (the engine's
//! rendering, sent to llama-server's `/completion` with `cache_prompt: false`) and report their
//! own timings. Each figure is the median of `--runs`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::{Duration, Instant};

use mars::{BatchRequest, ChatRequest, ModelClient, ModelClientExt, SamplingOptions};
use mars_llama::model::{Environment, resolve_model};
use mars_llama::server::{LlamaServer, ServerConfig, find_server};
use mars_llama::{LlamaConfig, LlamaEngine};

const GEN_PROMPT: &str = "Write a long, detailed story about a dragon who learns to bake bread.";

struct Args {
    model: Option<String>,
    threads: usize,
    max_tokens: u32,
    runs: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        model: None,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        max_tokens: 128,
        runs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: std::num::ParseIntError| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--model" => args.model = Some(value),
            "--threads" => args.threads = value.parse().map_err(bad)?,
            "--max-tokens" => args.max_tokens = value.parse().map_err(bad)?,
            "--runs" => args.runs = value.parse().map_err(bad)?,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(args)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

fn per_second(tokens: Option<u64>, time: Option<Duration>) -> f64 {
    match (tokens, time) {
        (Some(n), Some(t)) if !t.is_zero() => n as f64 / t.as_secs_f64(),
        _ => f64::NAN,
    }
}

/// A prompt of a few hundred tokens, for prompt throughput.
fn long_prompt() -> String {
    let line = "The quick brown fox jumps over the lazy dog while the river runs to the sea. ";
    format!("Summarize this text in one word.\n\n{}", line.repeat(20))
}

fn greedy(max_tokens: u32) -> SamplingOptions {
    SamplingOptions {
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
        ..SamplingOptions::default()
    }
}

/// (prompt tok/s, generation tok/s, prompt tokens, generated tokens) of llama-server.
async fn server_timings(
    client: &reqwest::Client,
    url: &str,
    prompt: &str,
    n_predict: u32,
) -> Result<(f64, f64, u64, u64), Box<dyn std::error::Error>> {
    let body = serde_json::json!({
        "prompt": prompt,
        "n_predict": n_predict,
        "temperature": 0.0,
        "cache_prompt": false,
    });
    let response: serde_json::Value = client
        .post(format!("{url}/completion"))
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let t = &response["timings"];
    let f = |key: &str| t[key].as_f64().unwrap_or(f64::NAN);
    let n = |key: &str| t[key].as_u64().unwrap_or(0);
    Ok((
        f("prompt_per_second"),
        f("predicted_per_second"),
        n("prompt_n"),
        n("predicted_n"),
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let env = Environment::from_env();
    let model = resolve_model(args.model.as_deref())?;
    let threads = std::num::NonZeroUsize::new(args.threads).ok_or("--threads must be > 0")?;
    let engine = LlamaEngine::load(LlamaConfig {
        threads: Some(threads),
        ..LlamaConfig::new(&model)
    })?;
    println!("model: {}", model.display());
    println!(
        "threads: {}  max tokens: {}  runs: {} (medians)",
        args.threads, args.max_tokens, args.runs
    );

    let long = ChatRequest::new(long_prompt()).with_options(greedy(1));
    let generate = ChatRequest::new(GEN_PROMPT).with_options(greedy(args.max_tokens));
    let long_text = engine.render_prompt(&long)?;
    let gen_text = engine.render_prompt(&generate)?;

    let config = ServerConfig {
        threads: args.threads,
        parallel: 4,
        ..ServerConfig::new(find_server(&env)?, &model)
    };
    let server = tokio::task::spawn_blocking(move || LlamaServer::start(&config)).await??;
    let client = reqwest::Client::new();
    let url = server.base_url();

    // Warm-up, then the two sides alternate, so that a busy machine slows both alike.
    engine.complete(generate.clone()).await?;
    server_timings(&client, &url, &gen_text, args.max_tokens).await?;
    let (mut e_prompt, mut e_gen, mut s_prompt, mut s_gen) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut e_prompt_n, mut e_gen_n, mut s_prompt_n, mut s_gen_n) = (0, 0, 0, 0);
    for _ in 0..args.runs {
        let p = engine.complete(long.clone()).await?;
        e_prompt.push(per_second(
            p.usage.prompt_tokens,
            p.usage.prompt_eval_duration,
        ));
        e_prompt_n = p.usage.prompt_tokens.unwrap_or(0);
        let (pps, _, pn, _) = server_timings(&client, &url, &long_text, 1).await?;
        s_prompt.push(pps);
        s_prompt_n = pn;
        let g = engine.complete(generate.clone()).await?;
        e_gen.push(per_second(g.usage.completion_tokens, g.usage.eval_duration));
        e_gen_n = g.usage.completion_tokens.unwrap_or(0);
        let (_, gps, _, gn) = server_timings(&client, &url, &gen_text, args.max_tokens).await?;
        s_gen.push(gps);
        s_gen_n = gn;
    }

    let (ep, eg, sp, sg) = (
        median(e_prompt),
        median(e_gen),
        median(s_prompt),
        median(s_gen),
    );
    println!();
    println!(
        "{:<14} {:>16} {:>20}",
        "", "prompt tok/s", "generation tok/s"
    );
    println!(
        "{:<14} {:>9.1} ({:>4}) {:>13.1} ({:>4})",
        "embedded", ep, e_prompt_n, eg, e_gen_n
    );
    println!(
        "{:<14} {:>9.1} ({:>4}) {:>13.1} ({:>4})",
        "llama-server", sp, s_prompt_n, sg, s_gen_n
    );
    println!(
        "{:<14} {:>15.1}% {:>19.1}%",
        "embedded/server",
        100.0 * ep / sp,
        100.0 * eg / sg
    );

    let sampled = |seed| SamplingOptions {
        temperature: Some(0.8),
        seed: Some(seed),
        max_tokens: Some(args.max_tokens),
        ..SamplingOptions::default()
    };
    // N=1 vs N=4: the engine's batched path, and llama-server's 4 slots with 4 concurrent
    // requests as the reference for what llama.cpp gains from decoding sequences together.
    let mut walls = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    let mut tokens = [[0u64; 2]; 2];
    for _ in 0..args.runs {
        for (slot, n) in [1u64, 4].into_iter().enumerate() {
            let batch =
                BatchRequest::new(ChatRequest::new(GEN_PROMPT), (0..n).map(sampled).collect());
            let start = Instant::now();
            let results = engine.complete_batch(batch).await;
            walls[0][slot].push(start.elapsed().as_secs_f64());
            tokens[0][slot] = results
                .iter()
                .map(|r| {
                    r.as_ref()
                        .map_or(0, |c| c.usage.completion_tokens.unwrap_or(0))
                })
                .sum();

            let start = Instant::now();
            let replies = futures::future::join_all(
                (0..n).map(|seed| server_sample(&client, &url, &gen_text, args.max_tokens, seed)),
            )
            .await;
            walls[1][slot].push(start.elapsed().as_secs_f64());
            tokens[1][slot] = replies.into_iter().map(|r| r.unwrap_or(0)).sum();
        }
    }
    drop(server);
    println!();
    println!(
        "N samples of one prompt, temperature 0.8, {} max tokens each:",
        args.max_tokens
    );
    for (side, name) in ["embedded (batched)", "llama-server (4 slots)"]
        .iter()
        .enumerate()
    {
        let [one, four] = walls[side].clone().map(median);
        println!(
            "  {name:<24} N=1 {one:>6.2} s ({:>3} tok)   N=4 {four:>6.2} s ({:>3} tok)   N=4/N=1 {:.2}x",
            tokens[side][0],
            tokens[side][1],
            four / one
        );
    }
    Ok(())
}

/// Generated tokens of one sampled llama-server completion.
async fn server_sample(
    client: &reqwest::Client,
    url: &str,
    prompt: &str,
    n_predict: u32,
    seed: u64,
) -> Result<u64, reqwest::Error> {
    let body = serde_json::json!({
        "prompt": prompt,
        "n_predict": n_predict,
        "temperature": 0.8,
        "seed": seed,
        "cache_prompt": false,
    });
    let response: serde_json::Value = client
        .post(format!("{url}/completion"))
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(response["timings"]["predicted_n"].as_u64().unwrap_or(0))
}
