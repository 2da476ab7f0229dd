//! Shared fixtures: one engine per test binary, over the model the resolver finds.

use std::future::Future;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use mars::SamplingOptions;
use mars_llama::model::resolve_model_with_notice;
use mars_llama::{LlamaConfig, LlamaEngine};

/// The model every test uses: `MARS_MODEL`, the cache, or a fetch of the default model.
pub fn model_path() -> PathBuf {
    static PATH: LazyLock<PathBuf> = LazyLock::new(|| {
        resolve_model_with_notice(None, &mut |notice| eprintln!("{notice}"))
            .unwrap_or_else(|e| panic!("no model for the tests: {e}"))
    });
    PATH.clone()
}

/// The engine shared by the tests of this binary (loaded once).
pub fn engine() -> &'static LlamaEngine {
    static ENGINE: LazyLock<LlamaEngine> = LazyLock::new(|| {
        LlamaEngine::load(LlamaConfig::new(model_path()))
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
