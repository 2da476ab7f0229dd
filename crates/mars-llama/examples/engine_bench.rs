//! engine_bench: the embedded engine against llama.cpp's own llama-server, same GGUF, same
//! threads, measured only through the public API, so it reflects whichever decode worker the
//! engine has. `--model` takes a preset name or a GGUF path (default: `MARS_MODEL`, else the
//! default preset).
//!
//! ```text
//! scripts/build-llama-server.sh
//! cargo run --release -p mars-llama --example engine_bench -- [--model PRESET-OR-GGUF]
//!     [--threads N] [--max-tokens N] [--runs N] [--slots N] [--batch-size N]
//!     [--sections speed,concurrent,samples,prefix] [--no-server] [--nondeterministic]
//! ```
//!
//! Sections (each figure the median of `--runs`; the two sides take turns, so that a busy
//! machine slows both alike):
//! - `speed`: prompt tokens/s of a long prompt (one token generated) and generation tokens/s of
//!   a greedy answer of `--max-tokens`, as each side reports them.
//! - `concurrent`: 1, 2 and 4 distinct greedy prompts started together; aggregate generation
//!   tokens/s is all completion tokens over the wall time until the last one finishes.
//! - `samples`: 1 and 4 seeded samples (temperature 0.8) of one prompt: the engine's
//!   `complete_batch`, llama-server's concurrent requests with different seeds.
//! - `prefix`: time to the first streamed token of a repeated long prompt, cold (the engine
//!   loaded with `prefix_cache: false`; llama-server with `cache_prompt: false`) and warm (a
//!   second engine with `prefix_cache: true`; `cache_prompt: true`), each after one priming
//!   request.
//!
//! The other sections use the engine without prefix reuse, so that their repeated runs
//! evaluate every prompt, as llama-server does with `cache_prompt: false`.
//!
//! llama-server runs with 4 slots sharing 4 × 4096 tokens of context. It is sent the engine's
//! rendering of each request on `/completion` (it adds BOS itself, as the engine does when it
//! tokenizes), with `ignore_eos: true`; the engine cannot ignore end-of-generation, so the
//! prompts ask for long answers and every table shows the tokens each side generated.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::future::Future;
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures::StreamExt;
use futures::future::join_all;
use mars::{BatchRequest, ChatRequest, ModelClient, ModelClientExt, SamplingOptions, Usage};
use mars_llama::model::{Environment, resolve_model};
use mars_llama::server::{LlamaServer, ServerConfig, find_server};
use mars_llama::{LlamaConfig, LlamaEngine};

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// The embedded llama.cpp engine against llama-server: speed, concurrency, batched samples and
/// prefix reuse.
#[derive(Debug, Parser)]
struct Args {
    /// Preset name or GGUF path [default: MARS_MODEL, else the default preset]
    #[arg(long, value_name = "PRESET-OR-GGUF")]
    model: Option<String>,
    /// Decode threads, for both sides
    #[arg(long, default_value_t = all_cores())]
    threads: NonZeroUsize,
    /// Tokens to generate per answer
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    /// Repetitions; every figure is their median
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Engine slots (sequences decoded together)
    #[arg(long, default_value_t = LlamaConfig::DEFAULT_SLOTS)]
    slots: u32,
    /// Engine prompt block (prompt tokens per llama.cpp call)
    #[arg(long, default_value_t = LlamaConfig::DEFAULT_BATCH_SIZE)]
    batch_size: u32,
    /// Sections to run, in this order
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "speed,concurrent,samples,prefix"
    )]
    sections: Vec<Section>,
    /// Measure the engine only, without llama-server
    #[arg(long)]
    no_server: bool,
    /// Load the engine with `deterministic: false`: every running sequence in one decode call
    #[arg(long)]
    nondeterministic: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    Speed,
    Concurrent,
    Samples,
    Prefix,
}

/// llama-server's slots; its context is shared by them.
const SERVER_SLOTS: u32 = 4;
const SERVER_CONTEXT_PER_SLOT: u32 = 4096;

/// Distinct prompts with long answers, for the concurrent section (the first one also for
/// `speed` and `samples`).
const PROMPTS: [&str; 4] = [
    "Write a long, detailed story about a dragon who learns to bake bread.",
    "Write a Python module implementing a binary search tree with insert, delete and in-order \
     traversal, with docstrings and unit tests.",
    "Write a long story about a lighthouse keeper and a storm that lasts a whole week.",
    "Write a Rust program that reads a CSV file and prints summary statistics for each column, \
     with comments explaining every step.",
];

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let model = resolve_model(args.model.as_deref())?;
    // Without prefix reuse: the repeated runs of a section evaluate their prompts every time,
    // as llama-server does with `cache_prompt: false`.
    let engine = load_engine(&args, &model, false).await?;
    let peer = if args.no_server {
        None
    } else {
        Some(Peer::start(&model, args.threads, &engine).await?)
    };
    println!("model: {}", model.display());
    println!(
        "threads: {}  max tokens: {}  runs: {} (medians)  engine: {} slots, prompt block {}, \
         {}  llama-server: {}",
        args.threads,
        args.max_tokens,
        args.runs,
        args.slots,
        args.batch_size,
        if args.nondeterministic {
            "nondeterministic"
        } else {
            "deterministic"
        },
        if args.no_server {
            "off".to_owned()
        } else {
            format!("{SERVER_SLOTS} slots")
        },
    );

    let server = |cache_prompt| {
        peer.as_ref()
            .map(|peer| Side::Server { peer, cache_prompt })
    };
    let sides: Vec<Side> = [Some(Side::Engine(&engine)), server(false)]
        .into_iter()
        .flatten()
        .collect();
    for &side in &sides {
        side.generate(&greedy(PROMPTS[0], args.max_tokens.min(16)))
            .await?;
    }
    for section in &args.sections {
        println!();
        match section {
            Section::Speed => speed(&sides, &args).await?,
            Section::Concurrent => concurrent(&sides, &args).await?,
            Section::Samples => samples(&sides, &args).await?,
            Section::Prefix => {
                let warm_engine = load_engine(&args, &model, true).await?;
                let cold = [Some(Side::Engine(&engine)), server(false)];
                let warm = [Some(Side::Engine(&warm_engine)), server(true)];
                let pairs: Vec<_> = cold
                    .into_iter()
                    .zip(warm)
                    .flat_map(|(c, w)| c.zip(w))
                    .collect();
                let tokens = engine.count_prompt_tokens(&long_request())?;
                prefix(&pairs, tokens, args.runs).await?;
            }
        }
    }
    Ok(())
}

/// Prompt and generation throughput of one request at a time.
async fn speed(sides: &[Side<'_>], args: &Args) -> Result<()> {
    let long = long_request();
    let answer = greedy(PROMPTS[0], args.max_tokens);
    let (long, answer) = (&long, &answer);
    let runs = take_turns(sides, args.runs, |side| async move {
        Ok((side.generate(long).await?, side.generate(answer).await?))
    })
    .await?;
    println!("speed: one request; prompt tok/s of a long prompt, generation tok/s of an answer");
    let mut rows = Vec::new();
    let mut rates = Vec::new();
    for (side, runs) in sides.iter().zip(&runs) {
        let prompt = median(runs.iter().map(|(p, _)| p.prompt_rate));
        let generation = median(runs.iter().map(|(_, g)| g.generation_rate));
        let last = runs.last();
        rows.push(vec![
            side.name().to_owned(),
            format!("{prompt:.1}"),
            last.map_or(0, |(p, _)| p.prompt_tokens).to_string(),
            format!("{generation:.1}"),
            last.map_or(0, |(_, g)| g.completion_tokens).to_string(),
        ]);
        rates.push([prompt, generation]);
    }
    if let [embedded, server] = rates[..] {
        rows.push(vec![
            "embedded / server".into(),
            percent(embedded[0] / server[0]),
            String::new(),
            percent(embedded[1] / server[1]),
            String::new(),
        ]);
    }
    print_table(
        &["", "prompt tok/s", "tokens", "generation tok/s", "tokens"],
        &rows,
    );
    Ok(())
}

/// Aggregate generation throughput of 1, 2 and 4 distinct requests started together.
async fn concurrent(sides: &[Side<'_>], args: &Args) -> Result<()> {
    let counts = [1, 2, 4];
    let mut walls = vec![Vec::new(); sides.len()];
    for n in counts {
        let requests: Vec<_> = PROMPTS[..n]
            .iter()
            .map(|prompt| greedy(prompt, args.max_tokens))
            .collect();
        let runs = take_turns(sides, args.runs, |side| {
            let requests = &requests;
            timed(async move {
                let answers = join_all(requests.iter().map(|r| side.generate(r))).await;
                answers.into_iter().collect()
            })
        })
        .await?;
        for (side_walls, runs) in walls.iter_mut().zip(runs) {
            side_walls.push(Wall::median(&runs));
        }
    }
    println!(
        "concurrent: N distinct greedy prompts started together, {} max tokens each",
        args.max_tokens
    );
    print_walls(sides, &counts, &walls, "concurrent");
    Ok(())
}

/// Wall time of 1 and 4 seeded samples of one prompt.
async fn samples(sides: &[Side<'_>], args: &Args) -> Result<()> {
    let counts = [1, 4];
    let request = ChatRequest::new(PROMPTS[0]);
    let mut walls = vec![Vec::new(); sides.len()];
    for n in counts {
        let options: Vec<_> = (0..n as u64)
            .map(|seed| SamplingOptions {
                temperature: Some(0.8),
                seed: Some(seed),
                max_tokens: Some(args.max_tokens),
                ..SamplingOptions::default()
            })
            .collect();
        let runs = take_turns(sides, args.runs, |side| {
            timed(side.samples(&request, options.clone()))
        })
        .await?;
        for (side_walls, runs) in walls.iter_mut().zip(runs) {
            side_walls.push(Wall::median(&runs));
        }
    }
    println!(
        "samples: N seeded samples of one prompt, temperature 0.8, {} max tokens each \
         (embedded: complete_batch; llama-server: N requests)",
        args.max_tokens
    );
    print_walls(sides, &counts, &walls, "samples");
    Ok(())
}

/// Time to the first token of a repeated long prompt of `tokens` tokens, cold and warm;
/// `pairs` holds each side's cold and warm form.
async fn prefix(pairs: &[(Side<'_>, Side<'_>)], tokens: usize, runs: u32) -> Result<()> {
    let request = long_request();
    let sides: Vec<_> = pairs
        .iter()
        .flat_map(|&(cold, warm)| [cold, warm])
        .collect();
    // Priming: the warm sides get the prompt into their cache, the cold ones get going.
    for side in &sides {
        side.first_token(&request).await?;
    }
    let runs = take_turns(&sides, runs, |side| side.first_token(&request)).await?;
    let ms = |runs: &[Duration]| median(runs.iter().map(|t| t.as_secs_f64() * 1e3));
    println!("prefix: time to first token of a repeated {tokens}-token prompt, 1 token generated");
    let rows: Vec<_> = pairs
        .iter()
        .zip(runs.chunks(2))
        .map(|((side, _), runs)| {
            let (cold, warm) = (ms(&runs[0]), ms(&runs[1]));
            vec![
                side.name().to_owned(),
                format!("{cold:.1}"),
                format!("{warm:.1}"),
                percent(warm / cold),
            ]
        })
        .collect();
    print_table(&["", "cold ms", "warm ms", "warm / cold"], &rows);
    Ok(())
}

/// One side of the comparison.
#[derive(Clone, Copy)]
enum Side<'a> {
    Engine(&'a LlamaEngine),
    /// llama-server, sent the engine's rendering of each request.
    Server {
        peer: &'a Peer<'a>,
        cache_prompt: bool,
    },
}

impl Side<'_> {
    fn name(&self) -> &'static str {
        match self {
            Side::Engine(_) => "embedded",
            Side::Server { .. } => "llama-server",
        }
    }

    /// One answer, waited for whole.
    async fn generate(self, request: &ChatRequest) -> Result<Generated> {
        match self {
            Side::Engine(engine) => Ok(Generated::from(
                &engine.complete(request.clone()).await?.usage,
            )),
            Side::Server { peer, cache_prompt } => {
                let body = peer.body(request, cache_prompt, false)?;
                let reply: serde_json::Value = peer.post(&body).await?.json().await?;
                Ok(Generated::from_timings(&reply["timings"]))
            }
        }
    }

    /// Samples of one request: the engine's batched path, or concurrent server requests.
    async fn samples(
        self,
        request: &ChatRequest,
        options: Vec<SamplingOptions>,
    ) -> Result<Vec<Generated>> {
        match self {
            Side::Engine(engine) => {
                let batch = BatchRequest::new(request.clone(), options);
                let results = engine.complete_batch(batch).await.into_iter();
                Ok(results
                    .map(|r| r.map(|c| Generated::from(&c.usage)))
                    .collect::<Result<_, _>>()?)
            }
            Side::Server { .. } => {
                let requests: Vec<_> = options
                    .into_iter()
                    .map(|o| request.clone().with_options(o))
                    .collect();
                join_all(requests.iter().map(|r| self.generate(r)))
                    .await
                    .into_iter()
                    .collect()
            }
        }
    }

    /// Wall time from sending `request` to its first streamed piece; the rest is drained.
    async fn first_token(self, request: &ChatRequest) -> Result<Duration> {
        let start = Instant::now();
        match self {
            Side::Engine(engine) => {
                let mut events = engine.stream_chat(request.clone());
                events.next().await.ok_or("the stream ended at once")??;
                let elapsed = start.elapsed();
                while let Some(event) = events.next().await {
                    event?;
                }
                Ok(elapsed)
            }
            Side::Server { peer, cache_prompt } => {
                let body = peer.body(request, cache_prompt, true)?;
                let mut chunks = peer.post(&body).await?.bytes_stream();
                let mut elapsed = None;
                while let Some(chunk) = chunks.next().await {
                    if !chunk?.is_empty() {
                        elapsed.get_or_insert_with(|| start.elapsed());
                    }
                }
                Ok(elapsed.ok_or("llama-server sent an empty body")?)
            }
        }
    }
}

/// A running llama-server and the engine whose rendering it is sent.
struct Peer<'a> {
    http: reqwest::Client,
    url: String,
    render: &'a LlamaEngine,
    _server: LlamaServer,
}

impl<'a> Peer<'a> {
    async fn start(model: &Path, threads: NonZeroUsize, render: &'a LlamaEngine) -> Result<Self> {
        let config = ServerConfig {
            threads: threads.get(),
            parallel: SERVER_SLOTS,
            context_size: SERVER_SLOTS * SERVER_CONTEXT_PER_SLOT,
            ..ServerConfig::new(find_server(&Environment::from_env())?, model)
        };
        let server = tokio::task::spawn_blocking(move || LlamaServer::start(&config)).await??;
        Ok(Peer {
            // A fresh connection per request: llama-server closes idle keep-alive connections
            // after a few seconds, and a pooled one it has just closed fails the next request.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()?,
            url: server.base_url(),
            render,
            _server: server,
        })
    }

    /// A `/completion` body: the engine's rendering and the request's sampling options.
    fn body(
        &self,
        request: &ChatRequest,
        cache_prompt: bool,
        stream: bool,
    ) -> Result<serde_json::Value> {
        let options = &request.options;
        let mut body = serde_json::json!({
            "prompt": self.render.render_prompt(request)?,
            "n_predict": options.max_tokens.map_or(-1, i64::from),
            "ignore_eos": true,
            "cache_prompt": cache_prompt,
            "stream": stream,
        });
        if let Some(temperature) = options.temperature {
            body["temperature"] = temperature.into();
        }
        if let Some(seed) = options.seed {
            body["seed"] = seed.into();
        }
        Ok(body)
    }

    async fn post(&self, body: &serde_json::Value) -> Result<reqwest::Response> {
        let url = format!("{}/completion", self.url);
        Ok(self
            .http
            .post(url)
            .json(body)
            .send()
            .await?
            .error_for_status()?)
    }
}

/// What one answer cost, as its side reports it.
struct Generated {
    prompt_tokens: u64,
    completion_tokens: u64,
    prompt_rate: f64,
    generation_rate: f64,
}

impl From<&Usage> for Generated {
    fn from(usage: &Usage) -> Self {
        Generated {
            prompt_tokens: usage.prompt_tokens.unwrap_or(0),
            completion_tokens: usage.completion_tokens.unwrap_or(0),
            prompt_rate: per_second(usage.prompt_tokens, usage.prompt_eval_duration),
            generation_rate: per_second(usage.completion_tokens, usage.eval_duration),
        }
    }
}

impl Generated {
    /// From llama-server's `timings` object.
    fn from_timings(timings: &serde_json::Value) -> Self {
        let rate = |key: &str| timings[key].as_f64().unwrap_or(f64::NAN);
        let count = |key: &str| timings[key].as_u64().unwrap_or(0);
        Generated {
            prompt_tokens: count("prompt_n"),
            completion_tokens: count("predicted_n"),
            prompt_rate: rate("prompt_per_second"),
            generation_rate: rate("predicted_per_second"),
        }
    }
}

/// Answers finished together: wall time and completion tokens.
#[derive(Debug, Clone, Copy)]
struct Wall {
    seconds: f64,
    tokens: u64,
}

impl Wall {
    fn rate(&self) -> f64 {
        self.tokens as f64 / self.seconds
    }

    /// The median seconds and the median tokens of several runs.
    fn median(runs: &[Wall]) -> Wall {
        Wall {
            seconds: median(runs.iter().map(|w| w.seconds)),
            tokens: median(runs.iter().map(|w| w.tokens as f64)) as u64,
        }
    }
}

/// The wall time of `answers` and the completion tokens they generated.
async fn timed(answers: impl Future<Output = Result<Vec<Generated>>>) -> Result<Wall> {
    let start = Instant::now();
    let answers = answers.await?;
    Ok(Wall {
        seconds: start.elapsed().as_secs_f64(),
        tokens: answers.iter().map(|a| a.completion_tokens).sum(),
    })
}

/// Runs `measure` `runs` times on every side, the sides taking turns; one list per side.
async fn take_turns<'s, T, F, Fut>(
    sides: &[Side<'s>],
    runs: u32,
    mut measure: F,
) -> Result<Vec<Vec<T>>>
where
    F: FnMut(Side<'s>) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut results: Vec<Vec<T>> = sides.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for (side, results) in sides.iter().zip(&mut results) {
            results.push(measure(*side).await?);
        }
    }
    Ok(results)
}

/// One row per side and count, the ratio of the largest count to 1 and embedded to server.
fn print_walls(sides: &[Side<'_>], counts: &[usize], walls: &[Vec<Wall>], what: &str) {
    let mut rows = Vec::new();
    for (side, walls) in sides.iter().zip(walls) {
        for (n, wall) in counts.iter().zip(walls) {
            rows.push(vec![
                side.name().to_owned(),
                n.to_string(),
                wall.tokens.to_string(),
                format!("{:.2}", wall.seconds),
                format!("{:.1}", wall.rate()),
                format!("{:.2}x", wall.rate() / walls[0].rate()),
            ]);
        }
    }
    print_table(
        &["", "N", "tokens", "wall s", "tok/s", "tok/s vs N=1"],
        &rows,
    );
    let n = counts.len() - 1;
    for (side, walls) in sides.iter().zip(walls) {
        let (one, most) = (walls[0], walls[n]);
        println!(
            "  {}: {} {what} / 1: {:.2}x aggregate tok/s, {:.2}x wall time",
            side.name(),
            counts[n],
            most.rate() / one.rate(),
            most.seconds / one.seconds,
        );
    }
    if let [embedded, server] = walls {
        for (n, (e, s)) in counts.iter().zip(embedded.iter().zip(server)) {
            println!(
                "  embedded / server, N={n}: {} aggregate tok/s",
                percent(e.rate() / s.rate())
            );
        }
    }
}

/// Prints `rows` under `header`: the first column left-aligned, the others right-aligned.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::from(" ");
        for (i, (cell, width)) in cells.into_iter().zip(&widths).enumerate() {
            match i {
                0 => out.push_str(&format!(" {cell:<width$}")),
                _ => out.push_str(&format!("  {cell:>width$}")),
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

async fn load_engine(args: &Args, model: &Path, prefix_cache: bool) -> Result<LlamaEngine> {
    let config = LlamaConfig {
        threads: Some(args.threads),
        slots: args.slots,
        batch_size: args.batch_size,
        prefix_cache,
        deterministic: !args.nondeterministic,
        ..LlamaConfig::new(model)
    };
    Ok(tokio::task::spawn_blocking(move || LlamaEngine::load(config)).await??)
}

fn greedy(prompt: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest::new(prompt).with_options(SamplingOptions {
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
        ..SamplingOptions::default()
    })
}

/// A prompt of about 350 tokens, one token generated.
fn long_request() -> ChatRequest {
    let line = "The quick brown fox jumps over the lazy dog while the river runs to the sea. ";
    let prompt = format!("Summarize this text in one word.\n\n{}", line.repeat(20));
    greedy(&prompt, 1)
}

fn all_cores() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

fn median(xs: impl Iterator<Item = f64>) -> f64 {
    let mut xs: Vec<f64> = xs.collect();
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

fn per_second(tokens: Option<u64>, time: Option<Duration>) -> f64 {
    match (tokens, time) {
        (Some(n), Some(t)) if !t.is_zero() => n as f64 / t.as_secs_f64(),
        _ => f64::NAN,
    }
}

fn percent(ratio: f64) -> String {
    format!("{:.1}%", 100.0 * ratio)
}
