//! determinism_probe: does one sequence's output depend on what llama.cpp decodes with it?
//!
//! A probe sequence (a long prompt, then greedy tokens) runs four ways, each in a fresh context
//! with the same settings, and the bits of its logits are compared at every step:
//! - alone;
//! - mixed with other sequences in the same `llama_decode` calls: its prompt chunks and tokens
//!   ride with their tokens; one of them is removed before the probe starts and another half-way,
//!   which leaves holes in a shared KV cache;
//! - warm: its prompt is evaluated in another sequence, copied, and only its last token is
//!   evaluated again;
//! - alone with another thread count.
//!
//! The later runs feed the tokens the first run chose, so any difference is a difference in
//! the logits, not a divergence of texts. The first run also times prompt evaluation and decoding.
//! The KV layout (`--unified`: one stream for all sequences, the engine's layout before
//! continuous batching), the V cache type (`--type-v q8_0`: K and V of different types, which
//! sends llama.cpp's CPU flash attention down its one-row-at-a-time path; the engine's choice)
//! and the thread counts are flags;
//! `GGML_CPU_TILED_MM=0` in the environment turns off ggml's tiled K-quant matmul.
//!
//! ```text
//! cargo run --release -p mars-llama --example determinism_probe -- [--model PRESET-OR-GGUF]
//!     [--unified] [--type-v f16|q8_0] [--threads 2] [--other-threads 1] [--others 3]
//!     [--chunk 128] [--prompt-repeat 20] [--steps 48] [--context 2048] [--no-repack]
//!     [--separate-prefill]
//! ```
#![allow(clippy::print_stdout)]

use std::hash::{DefaultHasher, Hash, Hasher};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{LogOptions, send_logs_to_tracing};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The V cache type; K stays F16.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ValueType {
    #[value(name = "f16")]
    F16,
    #[value(name = "q8_0")]
    Q8_0,
}

#[derive(Debug, Parser)]
#[command(about = "Compares one sequence's logits alone, mixed, warm and with other threads")]
struct Args {
    /// A preset name or a GGUF path (default: MARS_MODEL, else the default preset).
    #[arg(long)]
    model: Option<String>,
    /// One KV stream shared by all sequences, the engine's layout before continuous batching
    /// (default: one stream per sequence, as the engine has it now).
    #[arg(long)]
    unified: bool,
    /// The V cache type; with q8_0, K (F16) and V differ.
    #[arg(long, value_enum, default_value_t = ValueType::F16)]
    type_v: ValueType,
    /// Decode threads of the first three runs.
    #[arg(long, default_value_t = 2)]
    threads: i32,
    /// Decode threads of the last run.
    #[arg(long, default_value_t = 1)]
    other_threads: i32,
    /// Other sequences decoded with the probe in the mixed run.
    #[arg(long, default_value_t = 3)]
    others: usize,
    /// Prompt tokens per `llama_decode` call.
    #[arg(long, default_value_t = 128)]
    chunk: usize,
    /// Repetitions of the probe prompt's filler line (about 17 tokens each).
    #[arg(long, default_value_t = 20)]
    prompt_repeat: usize,
    /// Greedy steps compared.
    #[arg(long, default_value_t = 48)]
    steps: usize,
    /// Context window per sequence, in tokens.
    #[arg(long, default_value_t = 2048)]
    context: u32,
    /// Keep every weight in the plain CPU buffer: no repacked (\"extra buffer type\") kernels.
    #[arg(long)]
    no_repack: bool,
    /// In the mixed run, give each of the probe's prompt chunks a `llama_decode` call of its
    /// own; only decoded tokens share calls.
    #[arg(long)]
    separate_prefill: bool,
}

const OTHER_PROMPTS: [&str; 4] = [
    "Write a short poem about the sea.",
    "List three prime numbers and explain why each is prime.",
    "Describe how a bicycle works.",
    "Tell a joke about computers.",
];

/// The probe's logits digests, the tokens it was fed after each, and the first run's timings.
#[derive(Debug, Default)]
struct Trace {
    digests: Vec<u64>,
    tokens: Vec<LlamaToken>,
    prompt_time: Duration,
    decode_time: Duration,
}

/// Another sequence of the mixed run: where it is and the token it decodes next.
#[derive(Debug)]
struct Other {
    seq: i32,
    pos: usize,
    next: LlamaToken,
}

struct Probe<'a> {
    args: &'a Args,
    backend: &'a LlamaBackend,
    model: &'a LlamaModel,
    prompt: Vec<LlamaToken>,
    others: Vec<Vec<LlamaToken>>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    send_logs_to_tracing(LogOptions::default());
    let path = mars_llama::model::resolve_model(args.model.as_deref())?;
    let backend = LlamaBackend::init()?;
    let mut params = std::pin::pin!(LlamaModelParams::default());
    if args.no_repack {
        params.as_mut().add_cpu_buft_override(c".");
    }
    let model = LlamaModel::load_from_file(&backend, &path, &params)?;
    let line = "The quick brown fox jumps over the lazy dog while the river runs to the sea. ";
    let text = format!(
        "Summarize this text in one word.\n\n{}",
        line.repeat(args.prompt_repeat)
    );
    let tokenize = |text: &str| model.vocab().tokenize(text.as_bytes(), true, false);
    let probe = Probe {
        args: &args,
        backend: &backend,
        model: &model,
        prompt: tokenize(&text),
        others: (0..args.others)
            .map(|i| {
                let base = OTHER_PROMPTS[i % OTHER_PROMPTS.len()];
                tokenize(&format!("{base} (request {i})"))
            })
            .collect(),
    };
    let kv = if args.unified {
        "one stream for all sequences"
    } else {
        "one stream per sequence"
    };
    println!("model: {}", path.display());
    println!(
        "KV: {kv}, V type {:?}, threads {}",
        args.type_v, args.threads
    );
    println!(
        "probe: {} prompt tokens in chunks of {}, {} greedy steps",
        probe.prompt.len(),
        args.chunk,
        args.steps
    );

    let first = probe.alone(args.threads, None)?;
    let prompt_s = first.prompt_time.as_secs_f64();
    println!(
        "alone: prompt {prompt_s:.2} s ({:.1} tok/s), decode {:.1} ms/step",
        probe.prompt.len() as f64 / prompt_s,
        first.decode_time.as_secs_f64() * 1000.0 / args.steps.saturating_sub(1).max(1) as f64
    );
    let mixed = probe.mixed(&first.tokens)?;
    println!(
        "mixed with {} others (one removed before the probe, one half-way): {}",
        args.others,
        verdict(&first.digests, &mixed)
    );
    let warm = probe.warm(&first.tokens)?;
    println!(
        "warm from a copied prefix (last prompt token evaluated again): {}",
        verdict(&first.digests, &warm)
    );
    let threads = probe.alone(args.other_threads, Some(&first.tokens))?;
    println!(
        "alone with {} threads: {}",
        args.other_threads,
        verdict(&first.digests, &threads.digests)
    );
    Ok(())
}

impl<'a> Probe<'a> {
    /// Sequence ids: 0 the probe, 1..=others the others, others + 1 the warm run's donor.
    fn n_seq(&self) -> u32 {
        self.others.len() as u32 + 2
    }

    fn n_batch(&self) -> usize {
        self.args.chunk + self.others.len() + 1
    }

    fn context(&self, threads: i32) -> Result<LlamaContext<'a>> {
        let n_batch = self.n_batch() as u32;
        let type_v = match self.args.type_v {
            ValueType::F16 => KvCacheType::F16,
            ValueType::Q8_0 => KvCacheType::Q8_0,
        };
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.args.context * self.n_seq()))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_seq_max(self.n_seq())
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_kv_unified(self.args.unified)
            .with_type_k(KvCacheType::F16)
            .with_type_v(type_v);
        Ok(self.model.new_context(self.backend, params)?)
    }

    /// The probe alone: its prompt, then greedy tokens (or `forced` ones).
    fn alone(&self, threads: i32, forced: Option<&[LlamaToken]>) -> Result<Trace> {
        let mut ctx = self.context(threads)?;
        let mut batch = LlamaBatch::new(self.n_batch(), 1);
        let start = Instant::now();
        let mut last = prefill(&mut ctx, &mut batch, 0, &self.prompt, 0, self.args.chunk)?;
        let mut trace = Trace {
            prompt_time: start.elapsed(),
            ..Trace::default()
        };
        let start = Instant::now();
        for step in 0..self.args.steps {
            let (bits, best) = digest(&ctx, last);
            let token = forced.and_then(|f| f.get(step).copied()).unwrap_or(best);
            trace.digests.push(bits);
            trace.tokens.push(token);
            if step + 1 == self.args.steps {
                break;
            }
            batch.clear();
            batch.add(token, (self.prompt.len() + step) as i32, &[0], true)?;
            ctx.decode(&mut batch)?;
            last = 0;
        }
        trace.decode_time = start.elapsed();
        Ok(trace)
    }

    /// The probe among other sequences, fed `forced` after each step.
    fn mixed(&self, forced: &[LlamaToken]) -> Result<Vec<u64>> {
        let mut ctx = self.context(self.args.threads)?;
        let mut batch = LlamaBatch::new(self.n_batch(), 1);
        let mut live = Vec::new();
        for (i, prompt) in self.others.iter().enumerate() {
            let seq = i as i32 + 1;
            let idx = prefill(&mut ctx, &mut batch, seq, prompt, 0, self.args.chunk)?;
            let next = digest(&ctx, idx).1;
            live.push(Other {
                seq,
                pos: prompt.len(),
                next,
            });
        }
        // The last other goes away before the probe starts (a hole in a shared cache).
        if let Some(gone) = live.pop() {
            ctx.clear_kv_cache_seq(Some(gone.seq as u32), None, None)?;
        }
        let prompt = &self.prompt;
        let mut submitted = 0;
        let mut digests = Vec::new();
        let mut halfway_done = false;
        while digests.len() < self.args.steps {
            // The probe's tokens first, then one token per other: with one stream per
            // sequence, llama.cpp puts consecutive sequence ids in one ubatch.
            batch.clear();
            let mut probe_idx = None;
            if submitted < prompt.len() {
                let end = (submitted + self.args.chunk).min(prompt.len());
                for (pos, &token) in prompt.iter().enumerate().take(end).skip(submitted) {
                    batch.add(token, pos as i32, &[0], pos + 1 == prompt.len())?;
                }
                submitted = end;
                if end == prompt.len() {
                    probe_idx = Some(batch.n_tokens() - 1);
                }
            } else {
                let step = digests.len() - 1;
                let token = forced.get(step).copied().ok_or("too few forced tokens")?;
                batch.add(token, (prompt.len() + step) as i32, &[0], true)?;
                probe_idx = Some(batch.n_tokens() - 1);
            }
            // With --separate-prefill, a prompt chunk gets a `llama_decode` call of its own and
            // only decoded tokens ride together.
            if self.args.separate_prefill && digests.is_empty() {
                ctx.decode(&mut batch)?;
                if let Some(idx) = probe_idx.take() {
                    digests.push(digest(&ctx, idx).0);
                }
                batch.clear();
            }
            let first_other = batch.n_tokens();
            for other in &live {
                batch.add(other.next, other.pos as i32, &[other.seq], true)?;
            }
            ctx.decode(&mut batch)?;
            for (i, other) in live.iter_mut().enumerate() {
                other.next = digest(&ctx, first_other + i as i32).1;
                other.pos += 1;
            }
            if let Some(idx) = probe_idx {
                digests.push(digest(&ctx, idx).0);
            }
            // Half-way, the first other ends: a hole below the probe's newer cells.
            if !halfway_done && digests.len() >= self.args.steps / 2 && !live.is_empty() {
                halfway_done = true;
                let gone = live.remove(0);
                ctx.clear_kv_cache_seq(Some(gone.seq as u32), None, None)?;
            }
        }
        Ok(digests)
    }

    /// The probe's prompt evaluated in the donor sequence, copied to the probe, its last token
    /// evaluated again, then `forced` after each step.
    fn warm(&self, forced: &[LlamaToken]) -> Result<Vec<u64>> {
        let mut ctx = self.context(self.args.threads)?;
        let mut batch = LlamaBatch::new(self.n_batch(), 1);
        let donor = self.n_seq() as i32 - 1;
        let n = self.prompt.len();
        prefill(
            &mut ctx,
            &mut batch,
            donor,
            &self.prompt,
            0,
            self.args.chunk,
        )?;
        ctx.kv_cache_seq_cp(donor, 0, None, None)?;
        ctx.kv_cache_seq_rm(0, Some(n as u32 - 1), None)?;
        let mut last = prefill(
            &mut ctx,
            &mut batch,
            0,
            &self.prompt,
            n - 1,
            self.args.chunk,
        )?;
        let mut digests = Vec::new();
        for step in 0..self.args.steps {
            digests.push(digest(&ctx, last).0);
            if step + 1 == self.args.steps {
                break;
            }
            let token = forced.get(step).copied().ok_or("too few forced tokens")?;
            batch.clear();
            batch.add(token, (n + step) as i32, &[0], true)?;
            ctx.decode(&mut batch)?;
            last = 0;
        }
        Ok(digests)
    }
}

/// Evaluates `tokens[from..]` into `seq` in chunks; returns the batch index of the last token,
/// the only one with logits.
fn prefill(
    ctx: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch<'_>,
    seq: i32,
    tokens: &[LlamaToken],
    from: usize,
    chunk: usize,
) -> Result<i32> {
    if from >= tokens.len() {
        return Err("nothing to evaluate".into());
    }
    for (i, piece) in tokens[from..].chunks(chunk.max(1)).enumerate() {
        batch.clear();
        let start = from + i * chunk.max(1);
        for (offset, &token) in piece.iter().enumerate() {
            let pos = start + offset;
            batch.add(token, pos as i32, &[seq], pos + 1 == tokens.len())?;
        }
        ctx.decode(batch)?;
    }
    Ok(batch.n_tokens() - 1)
}

/// A hash of the bits of the logits at batch index `idx`, and their argmax.
fn digest(ctx: &LlamaContext<'_>, idx: i32) -> (u64, LlamaToken) {
    let mut hasher = DefaultHasher::new();
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, &logit) in ctx.get_logits_ith(idx).iter().enumerate() {
        logit.to_bits().hash(&mut hasher);
        if logit > best.1 {
            best = (i, logit);
        }
    }
    (hasher.finish(), LlamaToken(best.0 as i32))
}

fn verdict(reference: &[u64], other: &[u64]) -> String {
    match reference.iter().zip(other).position(|(a, b)| a != b) {
        None if reference.len() == other.len() => "bit-identical logits at every step".into(),
        None => format!("{} of {} steps compared", other.len(), reference.len()),
        Some(step) => format!("logits differ from step {step} of {}", reference.len()),
    }
}
