//! The crate's error type; it converts into [`mars::Error::External`].

use std::path::PathBuf;

use mars::fetch::FetchError;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The name this crate's errors carry inside [`mars::Error::External`].
pub const BACKEND: &str = "mars-llama";

/// Everything that can go wrong in the embedded engine, the model resolver and the
/// `llama-server` runner. The type is `Send + Sync + 'static`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model was named by path, and there is no file there.
    #[error(
        "{} (from {via}) is not a file, nor a model preset ({presets}); set MARS_MODEL or pass \
         a preset name or the path of a GGUF file",
        path.display()
    )]
    ModelNotFound {
        /// The path given.
        path: PathBuf,
        /// Where it came from: `the model given` or `MARS_MODEL`.
        via: &'static str,
        /// The preset names, comma-separated.
        presets: String,
    },

    /// There is no cache directory to fetch a preset into.
    #[error(
        "no cache directory for model preset {preset}: neither XDG_CACHE_HOME (absolute) nor \
         HOME is set; set MARS_MODEL=/path/to/model.gguf to use a local GGUF file"
    )]
    NoCacheDir {
        /// The preset that needed fetching.
        preset: &'static str,
    },

    /// A preset could not be fetched or did not match its pins.
    #[error(
        "could not fetch model preset {preset}: {source}; to use a local GGUF file instead, \
         set MARS_MODEL=/path/to/model.gguf (or pass its path as the model)"
    )]
    Fetch {
        /// The preset.
        preset: &'static str,
        /// What went wrong.
        #[source]
        source: FetchError,
    },

    /// llama.cpp failed.
    #[error("llama.cpp engine could not {operation}: {detail}")]
    Engine {
        /// What the engine was doing, e.g. `load the model`, `decode a batch`.
        operation: &'static str,
        /// What llama.cpp reported.
        detail: String,
    },

    /// The prompt and the tokens asked for do not fit in the engine's context window.
    #[error("context window exceeded: {needed} tokens needed, {available} available")]
    ContextWindow {
        /// Tokens the request needs at least (its prompt, plus one generated token per sample).
        needed: u64,
        /// Tokens the context window holds.
        available: u64,
    },

    /// A local helper process (`llama-server`) could not be found, started or made ready.
    #[error("could not start {program}: {detail}")]
    Process {
        /// The program, as given.
        program: String,
        /// What went wrong, with the tail of its log where there is one.
        detail: String,
    },
}

impl Error {
    /// This crate's error inside a [`mars::Error`], if it holds one.
    pub fn downcast(err: &mars::Error) -> Option<&Error> {
        match err {
            mars::Error::External { backend, source } if *backend == BACKEND => {
                source.downcast_ref::<Error>()
            }
            _ => None,
        }
    }

    /// A copy of an engine-side failure, for each sample of a group that shares it.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::ContextWindow { needed, available } => Error::ContextWindow {
                needed: *needed,
                available: *available,
            },
            Error::Engine { operation, detail } => Error::Engine {
                operation,
                detail: detail.clone(),
            },
            other => Error::Engine {
                operation: "decode",
                detail: other.to_string(),
            },
        }
    }
}

impl From<Error> for mars::Error {
    fn from(err: Error) -> Self {
        mars::Error::External {
            backend: BACKEND,
            source: Box::new(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_into_mars_errors_and_back() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<Error>();
        let err: mars::Error = Error::ContextWindow {
            needed: 10,
            available: 8,
        }
        .into();
        assert!(err.to_string().contains("10 tokens needed"), "{err}");
        assert!(matches!(
            Error::downcast(&err),
            Some(Error::ContextWindow {
                needed: 10,
                available: 8
            })
        ));
        let other = mars::Error::Protocol { detail: "x".into() };
        assert!(Error::downcast(&other).is_none());
    }
}
