//! The environment values this crate uses, read once by [`Environment::from_env`] and passed in
//! everywhere else, so that decisions are pure functions of their inputs.

use std::ffi::OsString;
use std::path::PathBuf;

/// The environment variable that names the model: a preset name or a GGUF file.
pub const MODEL_ENV: &str = "MARS_MODEL";

/// The environment variable naming a `llama-server` binary to use instead of the cached build.
pub const SERVER_ENV: &str = "MARS_LLAMA_SERVER";

/// The environment values this crate uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    /// `MARS_MODEL`: a preset name or a GGUF file, used when no model is given.
    pub mars_model: Option<OsString>,
    /// `MARS_LLAMA_SERVER`: a `llama-server` binary to use instead of the cached build.
    pub llama_server: Option<OsString>,
    /// `XDG_CACHE_HOME`.
    pub xdg_cache_home: Option<OsString>,
    /// `HOME`.
    pub home: Option<OsString>,
}

impl Environment {
    /// Reads `MARS_MODEL`, `MARS_LLAMA_SERVER`, `XDG_CACHE_HOME` and `HOME` from the process.
    pub fn from_env() -> Self {
        Environment {
            mars_model: std::env::var_os(MODEL_ENV),
            llama_server: std::env::var_os(SERVER_ENV),
            xdg_cache_home: std::env::var_os("XDG_CACHE_HOME"),
            home: std::env::var_os("HOME"),
        }
    }

    /// The cache directory of mars (see [`mars::fetch::cache_root`]).
    pub fn cache_root(&self) -> Option<PathBuf> {
        mars::fetch::cache_root(self.xdg_cache_home.as_deref(), self.home.as_deref())
    }

    /// The cache directory for models: `<cache root>/models`.
    pub fn model_cache_dir(&self) -> Option<PathBuf> {
        self.cache_root().map(|root| root.join("models"))
    }
}
