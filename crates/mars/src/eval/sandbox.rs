//! The sandbox that compiles and runs untrusted, model-written Rust: `rustc --test` on one
//! source file, then the test binary, each under limits, with a structured verdict.
//!
//! A [`Sandbox`] holds the configuration and the tools it found; each candidate gets a fresh
//! [`Jail`]; each step returns an [`Execution`]: how the process ended, which limit (if any)
//! ended it, capped stdout/stderr with the count of discarded bytes, the wall time, and the
//! [`Isolation`] actually in force. No `unsafe` is involved: the sandbox composes util-linux
//! (`prlimit`, `unshare`, `nsenter`, `setpriv`) and `/bin/sh` through `tokio::process`.
//!
//! # What is isolated
//!
//! As root on Linux with namespaces (the normal case on CI and benchmark machines), both
//! steps run as a uid leased for the jail alone, with no capabilities and `no_new_privs`, in
//! the jail's own PID, network and mount namespaces, and (where the host's cgroup memory and
//! pids controllers are writable) in cgroups of its own ([`Isolation::is_complete`]):
//! - files: the jail's root holds only the system's `/usr` (without `/usr/local`), `/bin`,
//!   `/sbin` and `/lib*`, the toolchain, a minimal `/etc` and `/dev`; every mount is read-only;
//!   the only writable place is a size-capped tmpfs on `/tmp` (the work dir is `/tmp/work`),
//!   private to the jail and gone with it; `/proc` shows only the jail's processes;
//! - network: a fresh namespace whose loopback is down, so no connection can be made;
//! - processes: `RLIMIT_NPROC` counts the jail's uid only; on the wall-clock limit and after
//!   every step, every process of that uid is killed and `/proc` is checked until none is left;
//!   closing the jail ends the namespace's PID 1, which makes the kernel kill what remains;
//! - memory and tasks of the whole jail: one memory cgroup ([`SandboxConfig::memory`]) and one
//!   pids cgroup that every process of both steps joins, removed with the jail;
//! - environment: empty except `PATH=/usr/local/bin:/usr/bin:/bin`;
//! - resources, per process: address space, CPU time, file size, open files; no core dumps.
//!
//! Without namespaces (unshare refused, `config.namespaces == false`), root still runs the
//! test binary as a leased uid (process cap, tree kill by uid, root-owned files protected) in
//! a mode-700 host temp dir, but compiles as root, and the host's files, the network, `/tmp`
//! and other world-writable places stay reachable. Not root: limits and process-group kill
//! only; no process cap. The sandbox says so in [`Execution::isolation`]. Other platforms than
//! Linux get [`SandboxError::Unavailable`].
//!
//! ```no_run
//! use mars::eval::sandbox::{Sandbox, SandboxConfig};
//!
//! # async fn grade() -> mars::Result<()> {
//! let sandbox = Sandbox::new(SandboxConfig::default()).await?;
//! let source = "pub fn add(a: i32, b: i32) -> i32 { a + b }\n\
//!               #[test] fn adds() { assert_eq!(add(2, 2), 4); }\n";
//! let outcome = sandbox.compile_and_test(source, &["--test-threads=1".into()]).await?;
//! assert!(outcome.passed());
//! # Ok(()) }
//! ```

mod cgroup;
mod config;
mod error;
mod holder;
mod host;
mod outcome;
mod step;

pub use self::config::{Limits, SandboxConfig};
pub use self::error::SandboxError;
pub use self::outcome::{Captured, Execution, Isolation, LimitHit, Termination, TestOutcome};

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::process::Command;

use self::cgroup::{Cgroups, JailCgroup};
use self::holder::{Holder, TOOLCHAIN_DIR};
use self::host::{Owner, Tools, UidLease, blocking, sweep};
use self::step::{StepSpec, run_step};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
enum Mode {
    /// Root, namespaces available.
    Namespaces { unshare: PathBuf, nsenter: PathBuf },
    /// Root without namespaces: the test binary runs as a leased uid in a host temp dir.
    UidOnly,
    /// Not root: limits and process groups only.
    LimitsOnly,
}

#[derive(Debug)]
struct Inner {
    config: SandboxConfig,
    tools: Tools,
    sysroot: PathBuf,
    mode: Mode,
    /// Where jail cgroups go; `None`: per-process limits only.
    cgroups: Option<Cgroups>,
}

/// Compiles and runs untrusted Rust; cheap to clone, shareable across tasks.
#[derive(Debug, Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl Sandbox {
    /// Validates `config`, finds the tools and the toolchain, and checks by a trial run which
    /// isolation the host allows (falling back, with a warning in the log, when namespaces
    /// are refused).
    pub async fn new(config: SandboxConfig) -> Result<Sandbox> {
        if !cfg!(target_os = "linux") {
            return Err(SandboxError::Unavailable {
                reason: "the sandbox needs Linux (rlimits via prlimit, namespaces)".into(),
            }
            .into());
        }
        config.compile.validate("compile")?;
        config.run.validate("run")?;
        if config.uid_base == 0
            || config.uid_count == 0
            || config
                .uid_base
                .checked_add(config.uid_count)
                .is_none_or(|end| end == u32::MAX)
        {
            return Err(Error::InvalidConfig {
                field: "uid_base",
                reason: "the uid range must be non-empty, exclude 0 and end below u32::MAX".into(),
            });
        }
        let path_var = std::env::var_os("PATH");
        let tools = Tools::find(path_var.as_deref())?;
        let sysroot = match &config.sysroot {
            Some(sysroot) => sysroot.clone(),
            None => detect_sysroot(path_var.as_deref()).await?,
        };
        if !sysroot.join("bin/rustc").is_file() {
            return Err(SandboxError::Unavailable {
                reason: format!("no rustc in sysroot {}", sysroot.display()),
            }
            .into());
        }
        let root = blocking("read /proc/self/status", host::effective_uid).await? == Some(0);
        let cgroups = match root {
            true => blocking("look for writable cgroups", Cgroups::detect).await?,
            false => None,
        };
        let namespaces = match (&tools.unshare, &tools.nsenter, &tools.setpriv) {
            (Some(unshare), Some(nsenter), Some(_)) if root && config.namespaces => {
                Some(Mode::Namespaces {
                    unshare: unshare.clone(),
                    nsenter: nsenter.clone(),
                })
            }
            _ => None,
        };
        let fallback = match (root, &tools.setpriv) {
            (true, Some(_)) => Mode::UidOnly,
            (true, None) => {
                return Err(SandboxError::Unavailable {
                    reason: "running as root needs `setpriv` to drop privileges".into(),
                }
                .into());
            }
            (false, _) => Mode::LimitsOnly,
        };
        let build = |mode| Sandbox {
            inner: Arc::new(Inner {
                config: config.clone(),
                tools: tools.clone(),
                sysroot: sysroot.clone(),
                mode,
                cgroups: cgroups.clone(),
            }),
        };
        if let Some(mode) = namespaces {
            let sandbox = build(mode);
            match sandbox.probe().await {
                Ok(()) => return Ok(sandbox),
                Err(error) => tracing::warn!(
                    %error,
                    "sandbox: namespaces unavailable; falling back to reduced isolation"
                ),
            }
        }
        let sandbox = build(fallback);
        sandbox.probe().await?;
        Ok(sandbox)
    }

    /// The configuration in force.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// The isolation test binaries get on this host (compiles get the same, except without
    /// namespaces, where they run as the caller).
    pub fn isolation(&self) -> Isolation {
        self.isolation_of(StepKind::Run, 0)
    }

    /// A fresh jail for one candidate.
    pub async fn jail(&self) -> Result<Jail> {
        let config = &self.inner.config;
        let (base, count) = (config.uid_base, config.uid_count);
        let lease = match self.inner.mode {
            Mode::LimitsOnly => None,
            _ => Some(blocking("lease a uid", move || UidLease::acquire(base, count)).await??),
        };
        let place = match (&self.inner.mode, &lease) {
            (Mode::Namespaces { unshare, .. }, Some(lease)) => Place::Namespaces(Box::new(
                Holder::start(
                    &self.inner.tools,
                    unshare,
                    lease.uid(),
                    config.scratch_size,
                    &self.inner.sysroot,
                )
                .await?,
            )),
            _ => {
                let uid = lease.as_ref().map(UidLease::uid);
                Place::Dir(blocking("create a scratch dir", move || scratch_dir(uid)).await??)
            }
        };
        let cgroup = match &self.inner.cgroups {
            Some(cgroups) => {
                let cgroups = cgroups.clone();
                let (memory, tasks) = (
                    config.memory,
                    config.compile.processes.max(config.run.processes),
                );
                Some(
                    blocking("create the jail's cgroup", move || {
                        cgroups.create(memory, tasks)
                    })
                    .await??,
                )
            }
            None => None,
        };
        Ok(Jail {
            sandbox: self.clone(),
            lease,
            place: Some(place),
            cgroup,
            compiled: false,
        })
    }

    /// Compiles `source` with `rustc --test` in a fresh jail and, if that succeeded, runs the
    /// test binary with `test_args` (e.g. `--test-threads=1`); then closes the jail.
    pub async fn compile_and_test(
        &self,
        source: &str,
        test_args: &[String],
    ) -> Result<TestOutcome> {
        let mut jail = self.jail().await?;
        let compile = jail.compile_test(source).await?;
        let run = if compile.success() {
            Some(jail.run_test(test_args).await?)
        } else {
            None
        };
        jail.close().await?;
        Ok(TestOutcome { compile, run })
    }

    /// Runs `rustc --version` and `sh -c 'exit 0'` the way steps run, to prove the chain works.
    async fn probe(&self) -> Result<()> {
        let mut jail = self.jail().await?;
        let rustc = self.rustc_in_jail();
        let limits = &self.inner.config.compile;
        let version = jail
            .step(
                StepKind::Compile,
                rustc,
                vec!["--version".into()],
                None,
                limits,
            )
            .await;
        let sh = self.inner.tools.sh.clone();
        let args = vec!["-c".into(), "exit 0".into()];
        let shell = jail.step(StepKind::Run, sh, args, None, limits).await;
        jail.close().await?;
        for (what, execution) in [("rustc --version", version?), ("sh -c 'exit 0'", shell?)] {
            if !execution.success() {
                return Err(SandboxError::Setup {
                    detail: format!(
                        "trial `{what}` failed ({:?}): {}",
                        execution.termination,
                        execution.stderr.text().trim()
                    ),
                }
                .into());
            }
        }
        Ok(())
    }

    fn rustc_in_jail(&self) -> PathBuf {
        match self.inner.mode {
            Mode::Namespaces { .. } => Path::new(TOOLCHAIN_DIR).join("bin/rustc"),
            _ => self.inner.sysroot.join("bin/rustc"),
        }
    }

    fn isolation_of(&self, kind: StepKind, left_writable: u32) -> Isolation {
        let jail_cgroup = self.inner.cgroups.is_some();
        let isolation = match (&self.inner.mode, kind) {
            (Mode::Namespaces { .. }, _) => Isolation {
                network: true,
                pid: true,
                filesystem: left_writable == 0,
                unprivileged: true,
                process_cap: true,
                jail_cgroup,
            },
            (Mode::UidOnly, StepKind::Run) => Isolation {
                unprivileged: true,
                process_cap: true,
                ..Isolation::default()
            },
            (Mode::UidOnly, StepKind::Compile) | (Mode::LimitsOnly, _) => Isolation::default(),
        };
        Isolation {
            jail_cgroup,
            ..isolation
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepKind {
    Compile,
    Run,
}

#[derive(Debug)]
enum Place {
    Namespaces(Box<Holder>),
    Dir(PathBuf),
}

/// One candidate's private place: compile into it, run there, close it.
///
/// Dropping a jail without [`close`](Jail::close) still tears it down (the namespace dies with
/// its holder; without namespaces a cleanup task is spawned), but only `close` reports whether
/// anything survived.
#[derive(Debug)]
pub struct Jail {
    sandbox: Sandbox,
    lease: Option<UidLease>,
    place: Option<Place>,
    cgroup: Option<JailCgroup>,
    compiled: bool,
}

impl Jail {
    /// The uid this jail's processes run as (when running as root).
    pub fn uid(&self) -> Option<u32> {
        self.lease.as_ref().map(UidLease::uid)
    }

    /// Compiles `source` as a test crate (`rustc --test --edition E -o candidate -`, the source
    /// on stdin) within the compile limits.
    pub async fn compile_test(&mut self, source: &str) -> Result<Execution> {
        let config = &self.sandbox.inner.config;
        let mut args: Vec<OsString> = vec!["--test".into(), "--edition".into()];
        args.push(config.edition.clone().into());
        // No symbol names in the binary: code inside it cannot look the harness's statics up.
        args.extend(["-C".into(), "strip=symbols".into()]);
        args.extend(config.rustc_args.iter().map(OsString::from));
        args.extend(["-o".into(), "candidate".into(), "-".into()]);
        let rustc = self.sandbox.rustc_in_jail();
        let limits = config.compile.clone();
        let stdin = Some(source.as_bytes().to_vec());
        let execution = self
            .step(StepKind::Compile, rustc, args, stdin, &limits)
            .await?;
        self.compiled = execution.success();
        Ok(execution)
    }

    /// Runs the test binary built by [`compile_test`](Jail::compile_test) with `args` within the
    /// run limits.
    pub async fn run_test(&mut self, args: &[String]) -> Result<Execution> {
        if !self.compiled {
            return Err(SandboxError::Setup {
                detail: "run_test needs a successful compile_test in the same jail".into(),
            }
            .into());
        }
        let program = match &self.place {
            Some(Place::Dir(dir)) => dir.join("candidate"),
            _ => PathBuf::from("./candidate"),
        };
        let args = args.iter().map(OsString::from).collect();
        let limits = self.sandbox.inner.config.run.clone();
        self.step(StepKind::Run, program, args, None, &limits).await
    }

    /// Tears the jail down and checks that none of its processes survived.
    pub async fn close(mut self) -> Result<()> {
        let tools = self.sandbox.inner.tools.clone();
        let mut scratch = None;
        match self.place.take() {
            Some(Place::Namespaces(holder)) => holder.close().await?,
            Some(Place::Dir(dir)) => scratch = Some(dir),
            None => {}
        }
        if let Some(uid) = self.uid() {
            // With namespaces this finds nothing once the holder is reaped; it is the check.
            sweep(Owner::Uid(uid), &tools).await?;
        }
        if let Some(cgroup) = self.cgroup.take() {
            blocking("remove the jail's cgroup", move || cgroup.remove()).await??;
        }
        if let Some(dir) = scratch {
            blocking("remove the scratch dir", move || {
                std::fs::remove_dir_all(dir)
            })
            .await?
            .map_err(|source| SandboxError::Io {
                action: "remove the scratch dir".into(),
                source,
            })?;
        }
        Ok(())
    }

    async fn step(
        &mut self,
        kind: StepKind,
        program: PathBuf,
        args: Vec<OsString>,
        stdin: Option<Vec<u8>>,
        limits: &Limits,
    ) -> Result<Execution> {
        let lease_uid = self.uid();
        let (cwd, enter, left_writable) = match (&self.place, &self.sandbox.inner.mode) {
            (Some(Place::Namespaces(holder)), Mode::Namespaces { nsenter, .. }) => (
                PathBuf::from("/"),
                Some((nsenter.clone(), holder.pid)),
                holder.left_writable,
            ),
            (Some(Place::Dir(dir)), _) => (dir.clone(), None, 0),
            _ => {
                return Err(SandboxError::Setup {
                    detail: "the jail is closed".into(),
                }
                .into());
            }
        };
        let isolation = self.sandbox.isolation_of(kind, left_writable);
        let spec = StepSpec {
            program,
            args,
            cwd,
            enter,
            uid: lease_uid.filter(|_| isolation.unprivileged),
            stdin,
            isolation,
            cgroup: self.cgroup.as_ref(),
        };
        tracing::debug!(?kind, program = %spec.program.display(), uid = ?spec.uid, "sandbox: step");
        run_step(&self.sandbox.inner.tools, spec, limits).await
    }
}

impl Drop for Jail {
    fn drop(&mut self) {
        let cgroup = self.cgroup.take();
        // A holder dies with its `Child` (kill-on-drop), taking the namespace with it; the
        // cgroup can go once the kernel has reaped what was in it.
        let Some(Place::Dir(dir)) = self.place.take() else {
            if let Some(cgroup) = cgroup {
                remove_later(cgroup);
            }
            return;
        };
        // Without namespaces nothing else would stop the jail's processes: kill them now
        // (blocking for milliseconds), then check and remove the scratch dir in the background.
        let uid = self.uid();
        let tools = self.sandbox.inner.tools.clone();
        if let Some(uid) = uid {
            host::kill_all_blocking(Owner::Uid(uid), &tools);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let _ = std::fs::remove_dir_all(&dir);
            if let Some(cgroup) = cgroup {
                remove_later(cgroup);
            }
            return;
        };
        let lease = self.lease.take();
        runtime.spawn(async move {
            if let Some(uid) = uid
                && let Err(error) = sweep(Owner::Uid(uid), &tools).await
            {
                tracing::warn!(%error, "sandbox: cleanup of a dropped jail failed");
            }
            let _ = blocking("remove the scratch dir", move || {
                std::fs::remove_dir_all(dir)
            })
            .await;
            if let Some(cgroup) = cgroup {
                remove_later(cgroup);
            }
            drop(lease);
        });
    }
}

/// Removes a dropped jail's cgroup in the background (or now, outside a runtime).
fn remove_later(cgroup: JailCgroup) {
    let remove = move || {
        if let Err(error) = cgroup.remove() {
            tracing::warn!(%error, "sandbox: cgroup of a dropped jail not removed");
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(remove)),
        Err(_) => remove(),
    }
}

static SCRATCH_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates a mode-700 scratch dir in the host's temp dir, owned by `uid` when given.
fn scratch_dir(uid: Option<u32>) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let n = SCRATCH_COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("mars-sandbox-{}-{n}", std::process::id()));
    let io = |action: &str| {
        let action = format!("{action} {}", dir.display());
        move |source| SandboxError::Io { action, source }
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(io("create"))?;
    if let Some(uid) = uid {
        std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).map_err(io("chown"))?;
    }
    Ok(dir)
}

/// Asks `rustc --print sysroot` (through rustup's proxy, with the caller's environment).
async fn detect_sysroot(path_var: Option<&std::ffi::OsStr>) -> Result<PathBuf> {
    let rustc = host::find_program("rustc", path_var).ok_or_else(|| SandboxError::Unavailable {
        reason: "rustc not found on PATH; set SandboxConfig::sysroot".into(),
    })?;
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(&rustc)
            .args(["--print", "sysroot"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| SandboxError::Unavailable {
        reason: "`rustc --print sysroot` did not answer within 120 s".into(),
    })?
    .map_err(|source| SandboxError::Io {
        action: format!("run {} --print sysroot", rustc.display()),
        source,
    })?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || text.is_empty() {
        return Err(SandboxError::Unavailable {
            reason: format!(
                "`rustc --print sysroot` failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }
        .into());
    }
    Ok(PathBuf::from(text))
}
