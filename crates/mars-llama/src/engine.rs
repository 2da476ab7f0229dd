//! [`LlamaEngine`]: a GGUF model loaded once and served by a dedicated decode thread.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Sender, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use futures::future::BoxFuture;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::{LogOptions, send_logs_to_tracing};
use mars::{BatchRequest, ChatRequest, Completion, EventStream, ModelClient};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::model::resolve_model;
use crate::prompt::default_system_prompt;
use crate::shared::Shared;
use crate::worker::{self, Counters, Job, Settings, Sink};

/// How to load and run a model. Plain data; [`LlamaConfig::new`] fills in the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlamaConfig {
    /// The model: a preset name (see [`crate::presets`]) or the path of a GGUF file, resolved
    /// by [`crate::model::resolve_model`] (a preset not in the cache is fetched on load).
    pub model: PathBuf,
    /// Decode threads; `None` uses every available core.
    pub threads: Option<NonZeroUsize>,
    /// Context window of each slot in tokens (prompt and answer); capped at the model's
    /// training context. Each slot has a KV stream of its own of this size.
    pub context_size: u32,
    /// Sequences decoded together: requests and samples beyond this wait in a fair queue.
    pub slots: u32,
    /// Prompt tokens per llama.cpp call. Every prompt is evaluated in blocks of this size from
    /// its first token; a block is also the unit of prefix reuse.
    pub batch_size: u32,
    /// Reuse the KV cells of earlier or running prompts that share whole blocks (or the whole
    /// prompt) with a new one. Without it, only the samples of one request share their
    /// prompt's cells. Results are the same either way; only time differs.
    pub prefix_cache: bool,
    /// The same request and seed give the same text whatever runs beside it: a decode call
    /// carries the next tokens of at most 3 sequences (llama.cpp's CPU kernels change a row's
    /// arithmetic from 4 rows on). When false, every running sequence shares one call, which
    /// is faster with many concurrent requests, and a text may then depend on what ran beside.
    pub deterministic: bool,
}

impl LlamaConfig {
    /// Default context window of a slot.
    pub const DEFAULT_CONTEXT_SIZE: u32 = 4096;
    /// Default number of slots.
    pub const DEFAULT_SLOTS: u32 = 8;
    /// Default prompt block.
    pub const DEFAULT_BATCH_SIZE: u32 = 128;

    /// The defaults for this model: a preset name or a GGUF path.
    pub fn new(model: impl Into<PathBuf>) -> Self {
        LlamaConfig {
            model: model.into(),
            threads: None,
            context_size: Self::DEFAULT_CONTEXT_SIZE,
            slots: Self::DEFAULT_SLOTS,
            batch_size: Self::DEFAULT_BATCH_SIZE,
            prefix_cache: true,
            deterministic: true,
        }
    }
}

/// The embedded llama.cpp backend.
///
/// Loads a GGUF once; one worker thread owns the llama.cpp context, so the async runtime is
/// never blocked. The model's own chat template renders the conversation (with its default
/// system prompt when the request has none). Every sampling option is honoured; options left
/// `None` take llama-server's defaults (see [`crate::sampling`]).
///
/// Requests are decoded together (continuous batching): every running sample is a sequence in
/// one decode loop, with its own seeded sampler, stop strings and token limit, up to
/// [`LlamaConfig::slots`] at once; more wait in a queue served round-robin across requests.
/// New requests join between decode steps; a finished sample, or a dropped stream, frees its
/// slot before the next step. [`ModelClient::complete_batch`] is one prompt with several
/// samples: the prompt is evaluated once and its cells copied to the others.
///
/// Prompts are evaluated in blocks of [`LlamaConfig::batch_size`] tokens, and a new prompt
/// reuses the cells of whole blocks it shares with a prompt evaluated earlier or running (or
/// all of an identical prompt), least recently used evicted first; see
/// [`LlamaConfig::prefix_cache`]. Results are deterministic (unless
/// [`LlamaConfig::deterministic`] is turned off): the same request and seed give the same text
/// whatever runs beside it or ran before, with or without reuse. This holds on the CPU backend,
/// where it is tested; llama.cpp's CUDA kernels (feature `cuda`) have not been checked.
/// Durations that samples share (a prompt's evaluation, each decode call) are divided among
/// them in their usage.
///
/// `completion_tokens` counts the generated tokens that make up the text (including those of a
/// stop string, which were generated, but not the end-of-generation token).
pub struct LlamaEngine {
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    jobs: Sender<Job>,
    threads: usize,
    slots: u32,
    context_size: u32,
}

/// What the engine has done since it was loaded: see [`LlamaEngine::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Prompt tokens evaluated by the model.
    pub prompt_tokens_evaluated: u64,
    /// Prompt tokens whose cells were copied from an earlier or running prompt instead.
    pub prompt_tokens_reused: u64,
    /// `llama_decode` calls for generated tokens (each carries the next token of one or more
    /// running sequences).
    pub decode_calls: u64,
    /// Tokens decoded by those steps.
    pub decoded_tokens: u64,
    /// The most sequences one call decoded together.
    pub most_sequences_in_a_call: u64,
}

impl std::fmt::Debug for LlamaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaEngine")
            .field("model_path", &self.shared.path)
            .field("threads", &self.threads)
            .field("context_size", &self.context_size)
            .finish_non_exhaustive()
    }
}

impl LlamaEngine {
    /// Resolves the model (fetching a preset on first use), loads it and starts the worker
    /// thread. Blocking (a second or so for a cached model): from async code, call it inside
    /// `tokio::task::spawn_blocking`.
    pub fn load(config: LlamaConfig) -> Result<Self> {
        let path = match config.model.to_str() {
            Some(model) if !model.is_empty() => resolve_model(Some(model))?,
            _ => {
                return Err(Error::ModelNotFound {
                    path: config.model,
                    via: "the model given",
                    presets: crate::presets::names(),
                });
            }
        };
        let backend = backend()?;
        let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default())
            .map_err(|e| Error::Engine {
                operation: "load the model",
                detail: format!("{}: {e}", path.display()),
            })?;
        let template = model.chat_template(None).map_err(|e| Error::Engine {
            operation: "read the chat template",
            detail: format!("{}: {e}", path.display()),
        })?;
        let default_system = template.to_str().ok().and_then(default_system_prompt);
        let threads = config
            .threads
            .or_else(|| std::thread::available_parallelism().ok())
            .map_or(1, NonZeroUsize::get);
        let settings = Settings {
            threads: i32::try_from(threads).unwrap_or(i32::MAX),
            context_size: config.context_size.min(model.n_ctx_train()).max(2),
            slots: config.slots.max(1),
            batch_size: config.batch_size.max(1),
            prefix_cache: config.prefix_cache,
            deterministic: config.deterministic,
        };
        let shared = Arc::new(Shared {
            model,
            template,
            default_system,
            path,
        });
        let counters = Arc::new(Counters::default());
        let (jobs, receiver) = std::sync::mpsc::channel();
        let (ready_tx, ready_rx) = sync_channel(1);
        let worker_shared = Arc::clone(&shared);
        let worker_counters = Arc::clone(&counters);
        std::thread::Builder::new()
            .name("mars-llama-decode".into())
            .spawn(move || {
                worker::run(
                    worker_shared,
                    worker_counters,
                    backend,
                    settings,
                    receiver,
                    ready_tx,
                )
            })
            .map_err(|e| Error::Engine {
                operation: "start the decode thread",
                detail: e.to_string(),
            })?;
        let context_size = ready_rx.recv().map_err(|_| worker_gone())??.context_size;
        tracing::info!(
            path = %shared.path.display(),
            threads,
            context_size,
            "llama.cpp engine ready"
        );
        Ok(LlamaEngine {
            shared,
            counters,
            jobs,
            threads,
            slots: settings.slots,
            context_size,
        })
    }

    /// The GGUF file this engine runs.
    pub fn model_path(&self) -> &Path {
        &self.shared.path
    }

    /// Decode threads in use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The context window of one slot in tokens, as llama.cpp sized it (it rounds the
    /// configured size up).
    pub fn context_size(&self) -> u32 {
        self.context_size
    }

    /// Sequences decoded together.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Counters of the work done so far.
    pub fn stats(&self) -> EngineStats {
        let c = &self.counters;
        let read = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        EngineStats {
            prompt_tokens_evaluated: read(&c.prompt_tokens_evaluated),
            prompt_tokens_reused: read(&c.prompt_tokens_reused),
            decode_calls: read(&c.decode_calls),
            decoded_tokens: read(&c.decoded_tokens),
            most_sequences_in_a_call: read(&c.most_sequences_in_a_call),
        }
    }

    /// The system prompt used when a request has none (the chat template's default).
    pub fn default_system_prompt(&self) -> Option<&str> {
        self.shared.default_system.as_deref()
    }

    /// The prompt text the model sees for `request`, rendered by the model's chat template.
    pub fn render_prompt(&self, request: &ChatRequest) -> Result<String> {
        self.shared.render(request)
    }

    /// How many tokens the engine evaluates for `request` (its `prompt_tokens` usage).
    pub fn count_prompt_tokens(&self, request: &ChatRequest) -> Result<usize> {
        Ok(self.shared.prompt_tokens(request)?.len())
    }

    /// How many tokens the model's tokenizer makes of plain `text` (no special tokens).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.shared
            .model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .len()
    }

    fn submit(
        &self,
        request: ChatRequest,
        samples: Vec<mars::SamplingOptions>,
        sink: Sink,
    ) -> bool {
        let job = Job {
            request,
            samples,
            sink,
            submitted: Instant::now(),
        };
        self.jobs.send(job).is_ok()
    }
}

impl ModelClient for LlamaEngine {
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        Box::pin(async_stream::stream! {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let samples = vec![request.options.clone()];
            if !self.submit(request, samples, Sink::Stream(tx)) {
                yield Err(worker_gone().into());
                return;
            }
            let mut ended = false;
            while let Some(event) = rx.recv().await {
                ended = !matches!(event, Ok(mars::StreamEvent::Delta(_)));
                yield event;
            }
            if !ended {
                yield Err(worker_gone().into());
            }
        })
    }

    /// Decodes the samples together (see the type's documentation); `batch.concurrency` does
    /// not apply, the engine decodes up to [`LlamaConfig::slots`] sequences at once.
    fn complete_batch(&self, batch: BatchRequest) -> BoxFuture<'_, Vec<mars::Result<Completion>>> {
        Box::pin(async move {
            let n = batch.samples.len();
            let failed = || (0..n).map(|_| Err(worker_gone().into())).collect();
            if n == 0 {
                return Vec::new();
            }
            let (tx, rx) = oneshot::channel();
            if !self.submit(batch.request, batch.samples, Sink::Batch(tx)) {
                return failed();
            }
            rx.await.unwrap_or_else(|_| failed())
        })
    }
}

/// llama.cpp's process-wide backend, initialized once, with its logs sent to `tracing`.
fn backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            send_logs_to_tracing(LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|detail| Error::Engine {
            operation: "initialize llama.cpp",
            detail: detail.clone(),
        })
}

fn worker_gone() -> Error {
    Error::Engine {
        operation: "serve the request",
        detail: "the decode thread has stopped".into(),
    }
}
