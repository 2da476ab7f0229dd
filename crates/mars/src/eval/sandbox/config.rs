//! Configuration of the sandbox: per-step resource limits and sandbox-wide settings.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

#[cfg(doc)]
use super::{Isolation, Sandbox};

/// Resource limits of one step; applied per process (`setrlimit`) except `wall` and `processes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time before every process of the step is killed.
    pub wall: Duration,
    /// CPU time per process (`RLIMIT_CPU`, rounded up to whole seconds, at least 1): SIGXCPU
    /// at the limit, SIGKILL a second later.
    pub cpu: Duration,
    /// Address space per process in bytes (`RLIMIT_AS`).
    pub address_space: u64,
    /// Largest file a process may write, in bytes (`RLIMIT_FSIZE`); beyond it, SIGXFSZ.
    pub file_size: u64,
    /// Open file descriptors per process (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Processes and threads of the jail's uid together (`RLIMIT_NPROC`); only applied where
    /// the step runs as a leased uid ([`Isolation::process_cap`]).
    pub processes: u64,
    /// Bytes kept of stdout and, separately, of stderr; the rest is read, discarded, counted.
    pub max_output: usize,
}

impl Limits {
    /// Limits for `rustc --test` on one small file: 10 s wall and CPU, 2 GiB address space,
    /// 256 MiB files, 256 open files, 128 processes/threads, 64 KiB of each output stream.
    pub fn compile_default() -> Limits {
        Limits {
            wall: Duration::from_secs(10),
            cpu: Duration::from_secs(10),
            address_space: 2 << 30,
            file_size: 256 << 20,
            open_files: 256,
            processes: 128,
            max_output: 64 << 10,
        }
    }

    /// Limits for a test binary: 5 s wall and CPU, 1 GiB address space, 16 MiB files, 64 open
    /// files, 64 processes/threads (pass `--test-threads` below that), 64 KiB per stream.
    pub fn run_default() -> Limits {
        Limits {
            wall: Duration::from_secs(5),
            cpu: Duration::from_secs(5),
            address_space: 1 << 30,
            file_size: 16 << 20,
            open_files: 64,
            processes: 64,
            max_output: 64 << 10,
        }
    }

    pub(crate) fn validate(&self, field: &'static str) -> Result<()> {
        let reject = |reason: &str| {
            Err(Error::InvalidConfig {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.wall.is_zero() {
            return reject("wall must be positive");
        }
        if self.address_space == 0 || self.file_size == 0 {
            return reject("address_space and file_size must be positive");
        }
        if self.open_files < 3 || self.processes == 0 {
            return reject("open_files must be at least 3 and processes at least 1");
        }
        Ok(())
    }
}

/// Configuration of a [`Sandbox`]. `Default` reads nothing from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Limits of the compile step.
    pub compile: Limits,
    /// Limits of the test binary.
    pub run: Limits,
    /// `--edition` passed to rustc (default `2021`).
    pub edition: String,
    /// Extra rustc arguments, e.g. `-O` (default none).
    pub rustc_args: Vec<String>,
    /// Memory of a whole jail in bytes (every process it starts, and what they write to its
    /// `/tmp`), enforced by a cgroup of its own where the host's memory and pids controllers
    /// are writable ([`Isolation::jail_cgroup`]); default 1 GiB. The same cgroup caps the jail's
    /// tasks at the larger of the two steps' [`Limits::processes`].
    pub memory: u64,
    /// Size in bytes of a jail's private tmpfs (`/tmp`, holding the binary and all the
    /// candidate writes); default 256 MiB. Used with namespaces only.
    pub scratch_size: u64,
    /// The Rust sysroot to compile with; `None`: `rustc --print sysroot` in [`Sandbox::new`]
    /// (which honours the caller's rustup toolchain selection).
    pub sysroot: Option<PathBuf>,
    /// Use namespaces where the host allows them (default `true`); `false` forces the reduced
    /// isolation described in the module docs.
    pub namespaces: bool,
    /// First uid leased to jails when running as root (default 2,000,000,000).
    pub uid_base: u32,
    /// How many uids from `uid_base` may be leased (default 65,536).
    pub uid_count: u32,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            compile: Limits::compile_default(),
            run: Limits::run_default(),
            edition: "2021".to_owned(),
            rustc_args: Vec::new(),
            memory: 1 << 30,
            scratch_size: 256 << 20,
            sysroot: None,
            namespaces: true,
            uid_base: 2_000_000_000,
            uid_count: 65_536,
        }
    }
}
