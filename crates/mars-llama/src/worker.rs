//! The decode worker: one thread that owns the llama.cpp context and serves jobs in order.
//!
//! A job is one conversation and one or more sampling configurations. The worker clears the KV
//! cache, evaluates the prompt once into sequence 0, copies its cells to the other sequences,
//! then decodes every live sequence together, one batch per step, each with its own seeded
//! sampler. Nothing is cached between jobs, so a result never depends on what ran before.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use mars::{ChatRequest, Completion, Finish, FinishReason, SamplingOptions, StreamEvent, Usage};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::sampling::SamplerSpec;
use crate::shared::Shared;
use crate::text::{Scan, StopScanner, Utf8Assembler};

/// Context settings the worker creates its context with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) threads: i32,
    pub(crate) context_size: u32,
    pub(crate) max_sequences: u32,
    pub(crate) batch_size: u32,
}

/// Where a job's results go.
pub(crate) enum Sink {
    /// One sample, streamed.
    Stream(mpsc::UnboundedSender<mars::Result<StreamEvent>>),
    /// Several samples, returned together in order.
    Batch(oneshot::Sender<Vec<mars::Result<Completion>>>),
}

/// One request for the worker.
pub(crate) struct Job {
    pub(crate) request: ChatRequest,
    pub(crate) samples: Vec<SamplingOptions>,
    pub(crate) sink: Sink,
    pub(crate) submitted: Instant,
}

/// Runs the worker on the current thread until every job sender is gone.
pub(crate) fn run(
    shared: Arc<Shared>,
    backend: &'static LlamaBackend,
    settings: Settings,
    jobs: Receiver<Job>,
    ready: SyncSender<Result<u32>>,
) {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(settings.context_size))
        .with_n_batch(settings.batch_size)
        .with_n_ubatch(settings.batch_size.min(512))
        .with_n_seq_max(settings.max_sequences)
        .with_n_threads(settings.threads)
        .with_n_threads_batch(settings.threads)
        .with_kv_unified(true);
    let ctx = match shared.model.new_context(backend, params) {
        Ok(ctx) => ctx,
        Err(err) => {
            // The engine's constructor is waiting for this; if it is gone there is no one to tell.
            let _ = ready.send(Err(engine_error("create a context", err)));
            return;
        }
    };
    // llama.cpp rounds the context up and caps the batch at the requested context: use what
    // it chose.
    let context_size = ctx.n_ctx();
    let batch_size = ctx.n_batch().max(1);
    let mut worker = Worker {
        shared: &shared,
        ctx,
        batch: LlamaBatch::new(batch_size as usize, 1),
        batch_size: batch_size as usize,
        max_sequences: settings.max_sequences.clamp(1, batch_size) as usize,
    };
    if ready.send(Ok(context_size)).is_err() {
        return;
    }
    while let Ok(job) = jobs.recv() {
        worker.serve(job);
    }
    tracing::debug!("llama.cpp worker stopped: the engine was dropped");
}

struct Worker<'m> {
    shared: &'m Shared,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    /// Most tokens per decode call.
    batch_size: usize,
    /// Most sequences decoded together (at most `batch_size`).
    max_sequences: usize,
}

/// Per-sample state while decoding.
struct Seq {
    /// Index of the sample in the job.
    slot: usize,
    sampler: LlamaSampler,
    max_tokens: usize,
    generated: usize,
    utf8: Utf8Assembler,
    stops: StopScanner,
    text: String,
    first_delta: Option<Instant>,
    eval: Duration,
    finished: Option<FinishReason>,
    cancelled: bool,
}

impl Worker<'_> {
    fn serve(&mut self, job: Job) {
        let Job {
            request,
            samples,
            sink,
            submitted,
        } = job;
        let mut results: Vec<Option<mars::Result<Completion>>> =
            samples.iter().map(|_| None).collect();
        let mut seqs = Vec::with_capacity(samples.len());
        for (slot, options) in samples.iter().enumerate() {
            match SamplerSpec::from_options(options) {
                Ok(spec) => seqs.push(Seq::new(slot, spec.build(), options)),
                Err(err) => results[slot] = Some(Err(err)),
            }
        }
        let prompt = match self.shared.prompt_tokens(&request) {
            Ok(prompt) => prompt,
            Err(err) => {
                for seq in &seqs {
                    results[seq.slot] = Some(Err(err.duplicate().into()));
                }
                return deliver(sink, results);
            }
        };
        let group_size = self.max_sequences;
        let mut remaining = seqs.into_iter().peekable();
        while remaining.peek().is_some() {
            let mut group: Vec<Seq> = remaining.by_ref().take(group_size).collect();
            let prompt_time = match self.decode_group(&prompt, &mut group, &sink) {
                Ok(Outcome::Timed(prompt_time)) => prompt_time,
                Ok(Outcome::Cancelled) => return,
                Err(err) => {
                    for seq in &group {
                        results[seq.slot] = Some(Err(err.duplicate().into()));
                    }
                    continue;
                }
            };
            for seq in group {
                let slot = seq.slot;
                results[slot] = Some(seq.completion(prompt.len(), prompt_time, submitted));
            }
        }
        deliver(sink, results);
    }

    /// Decodes one group of at most `max_sequences` samples of `prompt`.
    fn decode_group(
        &mut self,
        prompt: &[LlamaToken],
        seqs: &mut [Seq],
        sink: &Sink,
    ) -> Result<Outcome> {
        let n_ctx = self.ctx.n_ctx() as usize;
        let n = seqs.len();
        if prompt.is_empty() || prompt.len() + n > n_ctx {
            return Err(Error::ContextWindow {
                needed: (prompt.len() + n) as u64,
                available: n_ctx as u64,
            });
        }
        // Each sequence's tokens but its last take one cell; share what the prompt leaves.
        let cap = (n_ctx - prompt.len()) / n + 1;
        self.ctx.clear_kv_cache();

        let prompt_start = Instant::now();
        let mut pos = 0i32;
        for chunk in prompt.chunks(self.batch_size) {
            self.batch.clear();
            for &token in chunk {
                let last = pos as usize == prompt.len() - 1;
                self.batch
                    .add(token, pos, &[0], last)
                    .map_err(|e| engine_error("fill a batch", e))?;
                pos += 1;
            }
            self.ctx
                .decode(&mut self.batch)
                .map_err(|e| engine_error("evaluate the prompt", e))?;
        }
        for seq_id in 1..n as i32 {
            self.ctx
                .kv_cache_seq_cp(0, seq_id, None, None)
                .map_err(|e| engine_error("copy the prompt cells", e))?;
        }
        let prompt_time = prompt_start.elapsed();

        // (index into seqs, index of its logits in the last batch)
        let mut live: Vec<(usize, i32)> = (0..n).map(|i| (i, self.batch.n_tokens() - 1)).collect();
        let mut step_start = Instant::now();
        loop {
            let mut sampled = Vec::with_capacity(live.len());
            for &(i, logits) in &live {
                sampled.push((i, seqs[i].sampler.sample(&self.ctx, logits)));
            }
            let share = step_start.elapsed() / live.len() as u32;
            self.batch.clear();
            live.clear();
            for (i, token) in sampled {
                let seq = &mut seqs[i];
                seq.eval += share;
                if !seq.accept(token, self.shared, cap, sink) {
                    continue;
                }
                let position = (prompt.len() + seq.generated - 1) as i32;
                self.batch
                    .add(token, position, &[i as i32], true)
                    .map_err(|e| engine_error("fill a batch", e))?;
                live.push((i, self.batch.n_tokens() - 1));
            }
            if seqs.iter().all(|s| s.cancelled) || sink_closed(sink) {
                return Ok(Outcome::Cancelled);
            }
            if live.is_empty() {
                break;
            }
            step_start = Instant::now();
            self.ctx
                .decode(&mut self.batch)
                .map_err(|e| engine_error("decode a batch", e))?;
        }
        Ok(Outcome::Timed(prompt_time / n as u32))
    }
}

/// How a group ended.
enum Outcome {
    /// Every sequence finished; the prompt evaluation time charged to each.
    Timed(Duration),
    /// The caller went away.
    Cancelled,
}

impl Seq {
    fn new(slot: usize, sampler: LlamaSampler, options: &SamplingOptions) -> Self {
        Seq {
            slot,
            sampler,
            max_tokens: options.max_tokens.map_or(usize::MAX, |m| m as usize),
            generated: 0,
            utf8: Utf8Assembler::default(),
            stops: StopScanner::new(&options.stop),
            text: String::new(),
            first_delta: None,
            eval: Duration::ZERO,
            finished: None,
            cancelled: false,
        }
    }

    /// Takes a sampled token; returns whether it must be decoded (the sequence goes on).
    fn accept(&mut self, token: LlamaToken, shared: &Shared, cap: usize, sink: &Sink) -> bool {
        let vocab = shared.model.vocab();
        if self.max_tokens == 0 {
            return self.finish(FinishReason::Length, sink);
        }
        if vocab.is_eog(token) {
            return self.finish(FinishReason::Stop, sink);
        }
        self.generated += 1;
        let piece = vocab.token_to_piece(token, false, None);
        let text = self.utf8.push(&piece);
        match self.stops.push(&text) {
            Scan::Stopped(before) => {
                self.emit(before, sink);
                self.finished = Some(FinishReason::Stop);
                return false;
            }
            Scan::Continue(safe) => self.emit(safe, sink),
        }
        if self.cancelled {
            return false;
        }
        if self.generated >= self.max_tokens.min(cap) {
            return self.finish(FinishReason::Length, sink);
        }
        true
    }

    /// Flushes held text and records why the sequence ended; always returns false.
    fn finish(&mut self, reason: FinishReason, sink: &Sink) -> bool {
        let tail = self.utf8.finish();
        match self.stops.push(&tail) {
            Scan::Stopped(before) => {
                self.emit(before, sink);
                self.finished = Some(FinishReason::Stop);
            }
            Scan::Continue(safe) => {
                self.emit(safe, sink);
                let rest = self.stops.finish();
                self.emit(rest, sink);
                self.finished = Some(reason);
            }
        }
        false
    }

    fn emit(&mut self, text: String, sink: &Sink) {
        if text.is_empty() {
            return;
        }
        if self.first_delta.is_none() {
            self.first_delta = Some(Instant::now());
        }
        match sink {
            Sink::Stream(tx) => {
                self.text.push_str(&text);
                if tx.send(Ok(StreamEvent::Delta(text))).is_err() {
                    self.cancelled = true;
                }
            }
            Sink::Batch(_) => self.text.push_str(&text),
        }
    }

    fn completion(
        self,
        prompt_tokens: usize,
        prompt_time: Duration,
        submitted: Instant,
    ) -> mars::Result<Completion> {
        let finish_reason = self.finished.unwrap_or(FinishReason::Length);
        Ok(Completion {
            text: self.text,
            finish_reason,
            usage: Usage {
                prompt_tokens: Some(prompt_tokens as u64),
                completion_tokens: Some(self.generated as u64),
                time_to_first_token: self.first_delta.map(|t| t.duration_since(submitted)),
                total_time: submitted.elapsed(),
                prompt_eval_duration: Some(prompt_time),
                eval_duration: Some(self.eval),
                load_duration: None,
                model_calls: 1,
            },
        })
    }
}

fn sink_closed(sink: &Sink) -> bool {
    match sink {
        Sink::Stream(tx) => tx.is_closed(),
        Sink::Batch(tx) => tx.is_closed(),
    }
}

/// Sends the job's results: a streamed sample ends with `Done` (its deltas went out already).
fn deliver(sink: Sink, results: Vec<Option<mars::Result<Completion>>>) {
    let results: Vec<mars::Result<Completion>> = results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(Error::Engine {
                    operation: "finish a sample",
                    detail: "the worker produced no result for this sample".into(),
                }
                .into())
            })
        })
        .collect();
    // A closed channel means the caller went away; there is no one left to tell.
    match sink {
        Sink::Stream(tx) => {
            for result in results {
                let event = result.map(|c| {
                    StreamEvent::Done(Finish {
                        reason: c.finish_reason,
                        usage: c.usage,
                    })
                });
                let _ = tx.send(event);
            }
        }
        Sink::Batch(tx) => {
            let _ = tx.send(results);
        }
    }
}

fn engine_error(operation: &'static str, err: impl std::fmt::Display) -> Error {
    Error::Engine {
        operation,
        detail: err.to_string(),
    }
}
