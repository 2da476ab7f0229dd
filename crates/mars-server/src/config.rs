//! The server's settings: a plain struct with `Default`, and the `mars serve` flags that fill
//! it.

use std::net::SocketAddr;
use std::time::Duration;

/// Everything `mars serve` can be told. `Default` never reads the environment; the command
/// line (`ServeArgs`) reads `OPENAI_API_KEY` and `MARS_API_KEY`, visibly.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// An Ollama upstream.
    pub ollama: Option<String>,
    /// An OpenAI-compatible upstream (`/v1` added when the URL has no path).
    pub openai: Option<String>,
    /// The OpenAI upstream's key.
    pub openai_key: Option<String>,
    /// The embedded model: a preset name or a GGUF path.
    pub embedded: Option<String>,
    /// The key clients must send as `Authorization: Bearer`; `None` leaves the server open.
    pub api_key: Option<String>,
    /// Forward the client's `Authorization` header to the OpenAI upstream instead of
    /// `openai_key`.
    pub forward_key: bool,
    /// Concurrent upstream calls, over every request and every inner call.
    pub max_concurrency: usize,
    /// Requests admitted beyond `max_concurrency`; past both, 429.
    pub max_queue: usize,
    /// Longest a request may run (504 after it).
    pub request_timeout: Duration,
    /// Largest request body (413 over it).
    pub max_body_bytes: usize,
    /// Largest OpenAI `n`.
    pub max_n: usize,
    /// Log prompt text (off by default).
    pub log_prompts: bool,
    /// How long in-flight requests may finish after SIGINT/SIGTERM.
    pub shutdown_grace: Duration,
    /// Gap after which a streaming response sends a keep-alive.
    pub keep_alive: Duration,
    /// Whether code strategies (`codet`, `repair`, the `_verifier` variants) are served, which
    /// compile and run model-written code on this host in the sandbox.
    pub sandbox: SandboxMode,
    /// Sandbox runs (a candidate's compile and its tests) at once, over every request.
    pub max_sandbox_runs: usize,
    /// Sandbox time one request may spend, waiting for a run included; past it, its
    /// remaining candidates are not checked (and score 0).
    pub sandbox_budget: Duration,
}

/// `--sandbox`: whether `mars serve` runs the code strategies' checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SandboxMode {
    /// Served when the sandbox starts on this host; else not served, and the server says why.
    #[default]
    Auto,
    /// Served; the server does not start without a sandbox.
    On,
    /// Not served.
    Off,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            ollama: None,
            openai: None,
            openai_key: None,
            embedded: None,
            api_key: None,
            forward_key: false,
            max_concurrency: 8,
            max_queue: 64,
            request_timeout: Duration::from_secs(600),
            max_body_bytes: 4 * 1024 * 1024,
            max_n: 8,
            log_prompts: false,
            shutdown_grace: Duration::from_secs(10),
            keep_alive: Duration::from_secs(10),
            sandbox: SandboxMode::Auto,
            max_sandbox_runs: DEFAULT_SANDBOX_RUNS,
            sandbox_budget: Duration::from_secs(120),
        }
    }
}

/// The default of `--max-sandbox-runs`. On the project's 2-core machine, candidates checked
/// at once doubled throughput at 2 and gained 5% more at 4 (README, "Measured":
/// `sandbox_throughput`).
pub const DEFAULT_SANDBOX_RUNS: usize = 2;

/// `mars serve`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Ollama upstream URL, e.g. http://127.0.0.1:11434.
    #[arg(long)]
    pub ollama: Option<String>,
    /// OpenAI-compatible upstream URL, e.g. http://127.0.0.1:8080/v1 (`/v1` added when the
    /// URL has no path).
    #[arg(long)]
    pub openai: Option<String>,
    /// Key of the OpenAI upstream.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_key: Option<String>,
    /// Serve a model in process: a mars-llama preset name (e.g. smollm2-135m) or a GGUF path.
    #[arg(long)]
    pub embedded: Option<String>,
    /// Key clients must send as `Authorization: Bearer KEY`.
    #[arg(long, env = "MARS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Forward the client's Authorization header to the OpenAI upstream.
    #[arg(long)]
    pub forward_key: bool,
    /// Concurrent upstream calls (every inner call of every strategy counts).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: u32,
    /// Requests admitted beyond those running; past both, 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub max_queue: u32,
    /// Longest a request may run, in seconds (504 after it).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout: u64,
    /// Largest request body in bytes (413 over it).
    #[arg(long, default_value_t = 4_194_304)]
    pub max_body_bytes: usize,
    /// Largest OpenAI `n`.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_n: u32,
    /// Log prompt text (never logged otherwise).
    #[arg(long)]
    pub log_prompts: bool,
    /// Seconds in-flight requests may run after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace: u64,
    /// Seconds without output after which a streaming response sends a keep-alive.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_alive: u64,
    /// Serve the code strategies (codet, repair, bon_verifier and the other _verifier
    /// variants), which compile and run model-written Rust on this host in the sandbox:
    /// `auto` when the sandbox starts here, `on` (refuse to start without it), `off`.
    #[arg(long, value_enum, default_value_t = SandboxMode::Auto)]
    pub sandbox: SandboxMode,
    /// Sandbox runs (a candidate's compile and tests) at once, over every request.
    #[arg(long, default_value_t = DEFAULT_SANDBOX_RUNS as u32,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub max_sandbox_runs: u32,
    /// Seconds of sandbox time one request may spend (waiting for a run included); past it,
    /// its remaining candidates are not checked and score 0.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub sandbox_budget: u64,
}

impl From<ServeArgs> for ServerConfig {
    fn from(args: ServeArgs) -> Self {
        let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        ServerConfig {
            listen: args.listen,
            ollama: args.ollama,
            openai: args.openai,
            openai_key: non_empty(args.openai_key),
            embedded: args.embedded,
            api_key: non_empty(args.api_key),
            forward_key: args.forward_key,
            max_concurrency: args.max_concurrency as usize,
            max_queue: args.max_queue as usize,
            request_timeout: Duration::from_secs(args.request_timeout),
            max_body_bytes: args.max_body_bytes,
            max_n: args.max_n as usize,
            log_prompts: args.log_prompts,
            shutdown_grace: Duration::from_secs(args.shutdown_grace),
            keep_alive: Duration::from_secs(args.keep_alive),
            sandbox: args.sandbox,
            max_sandbox_runs: args.max_sandbox_runs as usize,
            sandbox_budget: Duration::from_secs(args.sandbox_budget),
        }
    }
}
