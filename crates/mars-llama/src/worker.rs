//! The decode worker: one thread that owns the llama.cpp context and decodes every request
//! together (continuous batching).
//!
//! Each of the `slots` sequences has a KV stream of its own (llama.cpp's non-unified cache).
//! A request's samples wait in a queue served round-robin across requests, take free slots,
//! have their prompt evaluated, then join one decode loop: each step samples every running
//! sequence and decodes their next tokens together (at most [`EXACT_ROWS_PER_CALL`] per
//! `llama_decode` call while `deterministic` is on). Finished or cancelled
//! sequences free their slot before the next step; new ones join between steps.
//!
//! Determinism (the same request and seed give the same text whatever else runs or ran) rests
//! on three rules, each measured with `examples/determinism_probe.rs` and the benchmark:
//! - a prompt is evaluated alone, in `llama_decode` calls of its own, in blocks of
//!   `batch_size` tokens counted from its first token: the same calls for the same prompt,
//!   whatever else is running (mixing a prompt chunk with other sequences' tokens changes its
//!   logits on Qwen2.5);
//! - decoded tokens of different sequences share calls, at most [`EXACT_ROWS_PER_CALL`] per
//!   call: with one KV stream per sequence and a quantized V cache (which sends llama.cpp's CPU
//!   flash attention down its row-by-row path), each sequence's logits are then bit-identical
//!   alone or batched. Without `deterministic`, every running sequence shares one call, which
//!   is faster and makes texts depend on what runs beside;
//! - prefix reuse copies only cells that a cold evaluation would compute with the same calls:
//!   whole blocks of a shared prefix, or a whole identical prompt together with the logits of
//!   its last token, kept when it was evaluated.

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
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
    /// Context window of one slot.
    pub(crate) context_size: u32,
    pub(crate) slots: u32,
    /// Prompt block.
    pub(crate) batch_size: u32,
    pub(crate) prefix_cache: bool,
    pub(crate) deterministic: bool,
}

/// Most sequences whose next tokens share one `llama_decode` call when results must not
/// depend on what runs beside a request. From 4 rows on, llama.cpp's CPU backend sends a
/// matrix product down other kernels (the repacked Q4_K/Q4_0/Q8_0 GEMM takes rows 4 at a time,
/// the tiled K-quant product from 8), whose arithmetic differs from the one-row path: measured
/// on Qwen2.5-Coder-0.5B Q4_K_M, whose texts changed with the number of concurrent requests.
pub(crate) const EXACT_ROWS_PER_CALL: usize = 3;

/// What the worker reports once its context exists.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ready {
    /// Context window of one slot, as llama.cpp sized it.
    pub(crate) context_size: u32,
}

/// Counters the worker keeps; read through [`crate::LlamaEngine::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) prompt_tokens_evaluated: AtomicU64,
    pub(crate) prompt_tokens_reused: AtomicU64,
    pub(crate) decode_calls: AtomicU64,
    pub(crate) decoded_tokens: AtomicU64,
    pub(crate) most_sequences_in_a_call: AtomicU64,
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

/// Runs the worker on the current thread until every job sender is gone and all work is done.
pub(crate) fn run(
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    backend: &'static LlamaBackend,
    settings: Settings,
    jobs: Receiver<Job>,
    ready: SyncSender<Result<Ready>>,
) {
    let slots = settings.slots.max(1);
    let n_batch = settings.batch_size.max(slots);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(settings.context_size.saturating_mul(slots)))
        .with_n_batch(n_batch)
        .with_n_ubatch(n_batch)
        .with_n_seq_max(slots)
        .with_n_threads(settings.threads)
        .with_n_threads_batch(settings.threads)
        .with_kv_unified(false)
        .with_type_k(KvCacheType::F16)
        .with_type_v(KvCacheType::Q8_0);
    let ctx = match shared.model.new_context(backend, params) {
        Ok(ctx) => ctx,
        Err(err) => {
            // The engine's constructor is waiting for this; if it is gone there is no one to tell.
            let _ = ready.send(Err(engine_error("create a context", err)));
            return;
        }
    };
    // llama.cpp rounds the context up and caps the batch at the context: use what it chose.
    let context_size = ctx.n_ctx() / slots;
    let block = (ctx.n_batch() as usize).min(settings.batch_size.max(1) as usize);
    let mut worker = Worker {
        shared: &shared,
        counters: &counters,
        ctx,
        batch: LlamaBatch::new(block.max(slots as usize), 1),
        block,
        context_size: context_size as usize,
        prefix_cache: settings.prefix_cache,
        rows_per_call: if settings.deterministic {
            EXACT_ROWS_PER_CALL
        } else {
            slots as usize
        },
        slots: (0..slots as i32).map(Slot::new).collect(),
        jobs: BTreeMap::new(),
        next_job: 0,
        last_admitted: None,
        clock: 0,
    };
    if ready.send(Ok(Ready { context_size })).is_err() {
        return;
    }
    worker.run(&jobs);
    tracing::debug!("llama.cpp worker stopped: the engine was dropped");
}

type JobId = u64;

struct Worker<'m> {
    shared: &'m Shared,
    counters: &'m Counters,
    ctx: LlamaContext<'m>,
    /// One call's tokens: a prompt block, or the next tokens of decoding sequences.
    batch: LlamaBatch<'static>,
    /// Prompt tokens per call, the unit of prefix reuse.
    block: usize,
    /// Context window of one slot.
    context_size: usize,
    prefix_cache: bool,
    /// Most sequences per decode call.
    rows_per_call: usize,
    /// Slot `i` is llama.cpp sequence `i`, with KV stream `i`.
    slots: Vec<Slot>,
    /// Jobs not yet delivered, in arrival order.
    jobs: BTreeMap<JobId, JobState>,
    next_job: JobId,
    /// The job that last got a slot: admission goes round-robin from there.
    last_admitted: Option<JobId>,
    /// Ticks on every admission, for least-recently-used eviction.
    clock: u64,
}

struct JobState {
    prompt: Vec<LlamaToken>,
    sink: Sink,
    submitted: Instant,
    results: Vec<Option<mars::Result<Completion>>>,
    /// Samples not admitted yet: (index in the job, sampler, options).
    waiting: VecDeque<(usize, LlamaSampler, SamplingOptions)>,
    /// Time spent evaluating this job's prompt.
    prompt_time: Duration,
}

/// One llama.cpp sequence and its KV stream.
struct Slot {
    seq: i32,
    /// The prompt tokens whose cells this stream holds as a cold evaluation computes them
    /// (whole blocks, or a whole prompt).
    cached: Vec<LlamaToken>,
    /// The logits after `cached`'s last token, when `cached` is a whole evaluated prompt.
    logits: Option<Arc<[f32]>>,
    /// The job whose prompt the cells belong to: without `prefix_cache`, only its own samples
    /// reuse them.
    owner: Option<JobId>,
    last_used: u64,
    state: State,
}

enum State {
    Idle,
    /// Evaluating the prompt: `cached` holds what is done.
    Prefill(Sample),
    /// Generating, with the logits to sample the next token from.
    Decode(Sample, Arc<[f32]>),
}

/// One sample being generated.
struct Sample {
    job: JobId,
    /// Index of the sample in its job.
    index: usize,
    sampler: LlamaSampler,
    prompt_len: usize,
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

impl Slot {
    fn new(seq: i32) -> Self {
        Slot {
            seq,
            cached: Vec::new(),
            logits: None,
            owner: None,
            last_used: 0,
            state: State::Idle,
        }
    }

    fn job(&self) -> Option<JobId> {
        match &self.state {
            State::Idle => None,
            State::Prefill(sample) | State::Decode(sample, _) => Some(sample.job),
        }
    }
}

impl Worker<'_> {
    fn run(&mut self, jobs: &Receiver<Job>) {
        let mut open = true;
        loop {
            // Take every job that has arrived; wait for one when there is nothing to do.
            while open {
                let busy = !self.jobs.is_empty();
                let job = if busy {
                    match jobs.try_recv() {
                        Ok(job) => job,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                } else {
                    match jobs.recv() {
                        Ok(job) => job,
                        Err(_) => {
                            open = false;
                            break;
                        }
                    }
                };
                self.accept_job(job);
            }
            if self.jobs.is_empty() {
                if open {
                    continue;
                }
                return;
            }
            self.drop_cancelled();
            self.admit();
            self.compact();
            self.step();
        }
    }

    /// Tokenizes the request and queues its samples; errors are delivered at once.
    fn accept_job(&mut self, job: Job) {
        let Job {
            request,
            samples,
            sink,
            submitted,
        } = job;
        let mut results: Vec<Option<mars::Result<Completion>>> =
            samples.iter().map(|_| None).collect();
        let prompt = self.shared.prompt_tokens(&request).and_then(|prompt| {
            if prompt.is_empty() || prompt.len() >= self.context_size {
                return Err(Error::ContextWindow {
                    needed: prompt.len() as u64 + 1,
                    available: self.context_size as u64,
                });
            }
            Ok(prompt)
        });
        let mut waiting = VecDeque::new();
        for (index, options) in samples.into_iter().enumerate() {
            let sampler = SamplerSpec::from_options(&options).map(|spec| spec.build());
            match (&prompt, sampler) {
                (_, Err(err)) => results[index] = Some(Err(err)),
                (Err(err), Ok(_)) => results[index] = Some(Err(err.duplicate().into())),
                (Ok(_), Ok(sampler)) => waiting.push_back((index, sampler, options)),
            }
        }
        let state = JobState {
            prompt: prompt.unwrap_or_default(),
            sink,
            submitted,
            results,
            waiting,
            prompt_time: Duration::ZERO,
        };
        if state.waiting.is_empty() {
            return deliver(state.sink, state.results);
        }
        self.jobs.insert(self.next_job, state);
        self.next_job += 1;
    }

    /// Frees the slots and queue places of jobs whose caller went away.
    fn drop_cancelled(&mut self) {
        let gone: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, job)| sink_closed(&job.sink))
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.jobs.remove(&id);
            for i in 0..self.slots.len() {
                if self.slots[i].job() == Some(id) {
                    self.release(i);
                }
            }
        }
    }

    /// Gives free slots to waiting samples, round-robin across jobs.
    fn admit(&mut self) {
        while self.slots.iter().any(|s| matches!(s.state, State::Idle)) {
            let Some(id) = self.next_admissible() else {
                return;
            };
            let Some(job) = self.jobs.get_mut(&id) else {
                return;
            };
            let Some((index, sampler, options)) = job.waiting.pop_front() else {
                return;
            };
            let prompt = job.prompt.clone();
            let sample = Sample::new(
                id,
                index,
                sampler,
                &options,
                prompt.len(),
                self.context_size,
            );
            self.last_admitted = Some(id);
            if let Err(err) = self.place(sample, &prompt) {
                // The sample went into `place`: its result is the error.
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.results[index] = Some(Err(err.duplicate().into()));
                }
                self.fail_job(id, &err);
            }
        }
    }

    /// The job after the last admitted one (wrapping) with a waiting sample that can start: a
    /// job whose prompt is being evaluated waits for it, so that its other samples reuse it.
    fn next_admissible(&self) -> Option<JobId> {
        let prefilling: Vec<JobId> = self
            .slots
            .iter()
            .filter_map(|s| match &s.state {
                State::Prefill(sample) => Some(sample.job),
                _ => None,
            })
            .collect();
        let ready = |(&id, job): (&JobId, &JobState)| {
            (!job.waiting.is_empty() && !prefilling.contains(&id)).then_some(id)
        };
        let after = self.last_admitted.map_or(0, |id| id + 1);
        self.jobs
            .range(after..)
            .find_map(ready)
            .or_else(|| self.jobs.range(..after).find_map(ready))
    }

    /// How many leading tokens of job `job`'s `prompt` slot `i`'s cells can stand for: all of
    /// them when they hold the whole prompt and its logits, else whole blocks.
    fn reusable(&self, i: usize, job: JobId, prompt: &[LlamaToken]) -> usize {
        let slot = &self.slots[i];
        if !self.prefix_cache && slot.owner != Some(job) {
            return 0;
        }
        if slot.logits.is_some() && slot.cached == prompt {
            return prompt.len();
        }
        let common = slot
            .cached
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        // Whole blocks only, and at least the prompt's last token left to evaluate.
        common.min(prompt.len() - 1) / self.block * self.block
    }

    /// Puts `sample` in a free slot, with as much of its prompt as can be reused.
    fn place(&mut self, sample: Sample, prompt: &[LlamaToken]) -> Result<()> {
        let reuse: Vec<usize> = (0..self.slots.len())
            .map(|i| self.reusable(i, sample.job, prompt))
            .collect();
        let idle = |i: &usize| matches!(self.slots[*i].state, State::Idle);
        // The free slot: the one that reuses most itself, else the least recently used.
        let target = (0..self.slots.len())
            .filter(idle)
            .max_by_key(|&i| (reuse[i], std::cmp::Reverse(self.slots[i].last_used)))
            .ok_or_else(|| engine_error("place a sample", "no free slot"))?;
        let source = (0..self.slots.len())
            .max_by_key(|&i| (reuse[i], i == target))
            .unwrap_or(target);
        let reused = reuse[source];
        self.clock += 1;
        let target_seq = self.slots[target].seq;
        if source != target && reused > reuse[target] {
            let source_seq = self.slots[source].seq;
            self.ctx
                .kv_cache_seq_cp(source_seq, target_seq, None, None)
                .map_err(|e| engine_error("copy a prompt's cells", e))?;
            let from = &self.slots[source];
            let cached = from.cached[..reused].to_vec();
            // The logits belong to the whole cached prompt only.
            let logits = from.logits.clone().filter(|_| reused == from.cached.len());
            let slot = &mut self.slots[target];
            slot.cached = cached;
            slot.logits = logits;
        }
        self.trim(target, reused)?;
        self.counters
            .prompt_tokens_reused
            .fetch_add(reused as u64, Ordering::Relaxed);
        let slot = &mut self.slots[target];
        slot.last_used = self.clock;
        slot.owner = Some(sample.job);
        slot.state = match (&slot.logits, reused == prompt.len()) {
            (Some(logits), true) => State::Decode(sample, Arc::clone(logits)),
            _ => State::Prefill(sample),
        };
        Ok(())
    }

    /// Keeps only the first `keep` cached tokens of slot `i`'s stream.
    fn trim(&mut self, i: usize, keep: usize) -> Result<()> {
        let slot = &mut self.slots[i];
        let p0 = u32::try_from(keep).unwrap_or(u32::MAX);
        self.ctx
            .kv_cache_seq_rm(slot.seq, Some(p0), None)
            .map_err(|e| engine_error("free a slot's cells", e))?;
        if keep < slot.cached.len() {
            slot.cached.truncate(keep);
            slot.logits = None;
        }
        Ok(())
    }

    /// Ends slot `i`'s sample (if any) without a result and frees its slot, keeping the cells
    /// of its evaluated prompt for reuse.
    fn release(&mut self, i: usize) {
        self.slots[i].state = State::Idle;
        let keep = self.slots[i].cached.len();
        if self.trim(i, keep).is_err() {
            // The cells could not be trimmed: forget them all.
            self.forget(i);
        }
    }

    /// Empties slot `i`'s stream and what is known of it.
    fn forget(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        // Clearing a whole sequence cannot fail in llama.cpp; if it did, `cached` is empty
        // anyway, so nothing is reused from the stream.
        let _ = self
            .ctx
            .clear_kv_cache_seq(Some(slot.seq as u32), None, None);
        slot.cached.clear();
        slot.logits = None;
    }

    /// Moves decoding sequences down into free slots below them, so that the sequences of a
    /// step have consecutive ids unless a slot evaluating a prompt sits between them: llama.cpp
    /// runs each run of consecutive ids as a separate micro-batch, which costs a pass over the
    /// weights each.
    fn compact(&mut self) {
        loop {
            let Some(high) = self
                .slots
                .iter()
                .rposition(|s| matches!(s.state, State::Decode(..)))
            else {
                return;
            };
            // The least recently used free slot below it: its cached prompt is the one to lose.
            let Some(low) = (0..high)
                .filter(|&i| matches!(self.slots[i].state, State::Idle))
                .min_by_key(|&i| self.slots[i].last_used)
            else {
                return;
            };
            let (from, to) = (self.slots[high].seq, self.slots[low].seq);
            if self.ctx.kv_cache_seq_cp(from, to, None, None).is_err() {
                return;
            }
            let state = std::mem::replace(&mut self.slots[high].state, State::Idle);
            let cached = self.slots[high].cached.clone();
            let logits = self.slots[high].logits.clone();
            let (owner, last_used) = (self.slots[high].owner, self.slots[high].last_used);
            let slot = &mut self.slots[low];
            slot.state = state;
            slot.cached = cached;
            slot.logits = logits;
            slot.owner = owner;
            slot.last_used = last_used;
            self.release(high);
        }
    }

    /// One round: samples every decoding sequence, evaluates one prompt block, then decodes the
    /// sampled tokens, `rows_per_call` sequences per call.
    fn step(&mut self) {
        let step_start = Instant::now();
        // (slot, token, position) of every sequence that goes on.
        let mut stepped = Vec::new();
        for i in 0..self.slots.len() {
            let token = match &mut self.slots[i].state {
                State::Decode(sample, logits) => sample_from(&mut sample.sampler, logits),
                _ => continue,
            };
            match self.advance(i, token) {
                Some(position) => stepped.push((i, token, position)),
                None => self.finish(i),
            }
        }
        let sampling = step_start.elapsed();

        self.prefill_next();

        for call in stepped.chunks(self.rows_per_call) {
            let start = Instant::now();
            let outcome = self.decode_call(call);
            let share = (sampling / stepped.len() as u32) + start.elapsed() / call.len() as u32;
            match outcome {
                Ok(logits) => {
                    for (&(i, _, _), logits) in call.iter().zip(logits) {
                        if let State::Decode(sample, next) = &mut self.slots[i].state {
                            sample.eval += share;
                            *next = logits;
                        }
                    }
                }
                Err(err) => {
                    for &(i, _, _) in call {
                        self.fail_slot(i, &err);
                    }
                }
            }
        }
    }

    /// Evaluates `tokens` (token, position, sequence, whether its logits are wanted) in one
    /// `llama_decode` call.
    fn decode(
        &mut self,
        tokens: &[(LlamaToken, i32, i32, bool)],
        operation: &'static str,
    ) -> Result<()> {
        self.batch.clear();
        for &(token, position, seq, logits) in tokens {
            self.batch
                .add(token, position, &[seq], logits)
                .map_err(|e| engine_error("fill a batch", e))?;
        }
        self.ctx
            .decode(&mut self.batch)
            .map_err(|e| engine_error(operation, e))
    }

    /// Decodes one token for each of `call`'s (slot, token, position) in one `llama_decode`
    /// call; returns their logits, in order.
    fn decode_call(&mut self, call: &[(usize, LlamaToken, i32)]) -> Result<Vec<Arc<[f32]>>> {
        let tokens: Vec<_> = call
            .iter()
            .map(|&(i, token, position)| (token, position, self.slots[i].seq, true))
            .collect();
        self.decode(&tokens, "decode a batch")?;
        let n = call.len() as u64;
        self.counters.decode_calls.fetch_add(1, Ordering::Relaxed);
        self.counters.decoded_tokens.fetch_add(n, Ordering::Relaxed);
        self.counters
            .most_sequences_in_a_call
            .fetch_max(n, Ordering::Relaxed);
        Ok((0..call.len() as i32)
            .map(|idx| Arc::from(self.ctx.get_logits_ith(idx)))
            .collect())
    }

    /// Takes slot `i`'s sampled token; returns its position when it must be decoded (the
    /// sequence goes on).
    fn advance(&mut self, i: usize, token: LlamaToken) -> Option<i32> {
        let State::Decode(sample, _) = &mut self.slots[i].state else {
            return None;
        };
        let job = self.jobs.get(&sample.job)?;
        sample
            .accept(token, self.shared, &job.sink)
            .then(|| (sample.prompt_len + sample.generated - 1) as i32)
    }

    /// Evaluates the next block of the oldest job's prompt being evaluated, in a call of its
    /// own.
    fn prefill_next(&mut self) {
        let Some(i) = (0..self.slots.len())
            .filter(|&i| matches!(self.slots[i].state, State::Prefill(_)))
            .min_by_key(|&i| self.slots[i].job())
        else {
            return;
        };
        let Some(job_id) = self.slots[i].job() else {
            return;
        };
        let Some(job) = self.jobs.get(&job_id) else {
            return self.release(i);
        };
        let start = Instant::now();
        let done = self.slots[i].cached.len();
        let end = (done + self.block).min(job.prompt.len());
        let complete = end == job.prompt.len();
        let block = job.prompt[done..end].to_vec();
        let seq = self.slots[i].seq;
        let tokens: Vec<_> = (done..end)
            .zip(&block)
            .map(|(pos, &token)| (token, pos as i32, seq, complete && pos + 1 == end))
            .collect();
        if let Err(err) = self.decode(&tokens, "evaluate the prompt") {
            // The block's cells are in an unknown state: `fail_slot` forgets the stream's cells.
            return self.fail_slot(i, &err);
        }
        self.counters
            .prompt_tokens_evaluated
            .fetch_add(block.len() as u64, Ordering::Relaxed);
        let logits: Option<Arc<[f32]>> =
            complete.then(|| Arc::from(self.ctx.get_logits_ith(self.batch.n_tokens() - 1)));
        if let Some(job) = self.jobs.get_mut(&job_id) {
            job.prompt_time += start.elapsed();
        }
        let slot = &mut self.slots[i];
        slot.cached.extend(block);
        // The logits go with `cached` as it now is: none until the prompt is complete.
        slot.logits = logits.clone();
        if let Some(logits) = logits {
            let state = std::mem::replace(&mut slot.state, State::Idle);
            if let State::Prefill(sample) = state {
                slot.state = State::Decode(sample, logits);
            }
        }
    }

    /// Slot `i`'s sample has finished: records its result and frees the slot.
    fn finish(&mut self, i: usize) {
        let state = std::mem::replace(&mut self.slots[i].state, State::Idle);
        self.release(i);
        let (State::Decode(sample, _) | State::Prefill(sample)) = state else {
            return;
        };
        let Some(job) = self.jobs.get_mut(&sample.job) else {
            return;
        };
        if sample.cancelled {
            // The stream's receiver is gone; the job is dropped on the next round.
            return;
        }
        let share = job.results.len() as u32;
        let prompt_time = job.prompt_time / share.max(1);
        let id = sample.job;
        let index = sample.index;
        job.results[index] = Some(sample.completion(prompt_time, job.submitted));
        self.deliver_if_done(id);
    }

    /// Slot `i`'s sample failed: its result is the error.
    fn fail_slot(&mut self, i: usize, err: &Error) {
        let state = std::mem::replace(&mut self.slots[i].state, State::Idle);
        // The stream's cells may be half-written.
        self.forget(i);
        let (State::Decode(sample, _) | State::Prefill(sample)) = state else {
            return;
        };
        if let Some(job) = self.jobs.get_mut(&sample.job) {
            job.results[sample.index] = Some(Err(err.duplicate().into()));
            self.deliver_if_done(sample.job);
        }
    }

    /// Every sample of job `id` that is still waiting or running fails with `err`.
    fn fail_job(&mut self, id: JobId, err: &Error) {
        if let Some(job) = self.jobs.get_mut(&id) {
            for (index, _, _) in job.waiting.drain(..) {
                job.results[index] = Some(Err(err.duplicate().into()));
            }
        }
        for i in 0..self.slots.len() {
            if self.slots[i].job() == Some(id) {
                self.fail_slot(i, err);
            }
        }
        self.deliver_if_done(id);
    }

    fn deliver_if_done(&mut self, id: JobId) {
        let done = self
            .jobs
            .get(&id)
            .is_some_and(|job| job.results.iter().all(Option::is_some));
        if done && let Some(job) = self.jobs.remove(&id) {
            deliver(job.sink, job.results);
        }
    }
}

/// Samples from `logits` as llama.cpp's `llama_sampler_sample` does, and accepts the token.
fn sample_from(sampler: &mut LlamaSampler, logits: &[f32]) -> LlamaToken {
    let mut candidates = LlamaTokenDataArray::from_iter(
        logits
            .iter()
            .enumerate()
            .map(|(id, &logit)| LlamaTokenData::new(LlamaToken(id as i32), logit, 0.0)),
        false,
    );
    sampler.apply(&mut candidates);
    // Every chain ends in a greedy or seeded draw, which selects a token.
    let token = candidates.selected_token().unwrap_or(LlamaToken(0));
    sampler.accept(token);
    token
}

impl Sample {
    fn new(
        job: JobId,
        index: usize,
        sampler: LlamaSampler,
        options: &SamplingOptions,
        prompt_len: usize,
        context_size: usize,
    ) -> Self {
        // Every token but the last takes one cell of the slot's window.
        let cap = context_size - prompt_len + 1;
        Sample {
            job,
            index,
            sampler,
            prompt_len,
            max_tokens: options.max_tokens.map_or(cap, |m| (m as usize).min(cap)),
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
    fn accept(&mut self, token: LlamaToken, shared: &Shared, sink: &Sink) -> bool {
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
        if self.generated >= self.max_tokens {
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

    fn completion(self, prompt_time: Duration, submitted: Instant) -> mars::Result<Completion> {
        let finish_reason = self.finished.unwrap_or(FinishReason::Length);
        Ok(Completion {
            text: self.text,
            finish_reason,
            usage: Usage {
                prompt_tokens: Some(self.prompt_len as u64),
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
