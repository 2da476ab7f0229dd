//! What the sandbox reports about a step: how it ended, which limit fired, captured output,
//! time, and the isolation in force.

use std::time::Duration;

#[cfg(doc)]
use super::{Jail, Limits, SandboxConfig};

/// The isolation a step actually ran under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Isolation {
    /// A network namespace of its own: no interface is up, nothing can be reached.
    pub network: bool,
    /// A PID namespace of its own: host processes are invisible and unreachable.
    pub pid: bool,
    /// A mount namespace of its own whose root holds only what compiling and running need
    /// (system libraries and tools, the toolchain, a minimal `/etc` and `/dev`), all
    /// read-only but the private `/tmp`.
    pub filesystem: bool,
    /// The step ran as an unprivileged uid (and gid) leased to its jail alone
    /// ([`Jail::uid`]), without capabilities; `false`: as the caller.
    pub unprivileged: bool,
    /// Whether [`Limits::processes`] was enforced.
    pub process_cap: bool,
    /// The jail had cgroups of its own: one memory limit ([`SandboxConfig::memory`]) and one
    /// task limit for everything it started; `false`: limits per process only.
    pub jail_cgroup: bool,
}

impl Isolation {
    /// Everything listed in the module docs was in force.
    pub fn is_complete(&self) -> bool {
        self.network
            && self.pid
            && self.filesystem
            && self.unprivileged
            && self.process_cap
            && self.jail_cgroup
    }
}

/// In words for reports: `complete (...)` or `partial (...)`, naming what was missing.
impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts = [
            (self.network, "network namespace"),
            (self.pid, "PID namespace"),
            (
                self.filesystem,
                "minimal read-only filesystem with private /tmp",
            ),
            (self.unprivileged, "unprivileged uid"),
            (self.process_cap, "process cap"),
            (self.jail_cgroup, "per-jail memory and task cgroup"),
        ];
        let have: Vec<&str> = parts.iter().filter(|p| p.0).map(|p| p.1).collect();
        let missing: Vec<&str> = parts.iter().filter(|p| !p.0).map(|p| p.1).collect();
        if missing.is_empty() {
            write!(f, "complete ({})", have.join(", "))
        } else {
            write!(f, "partial (without {}", missing.join(", "))?;
            if !have.is_empty() {
                write!(f, "; with {}", have.join(", "))?;
            }
            f.write_str("; rlimits and wall-clock kill always)")
        }
    }
}

/// How a step's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it (9 also when the sandbox killed it at the wall-clock limit).
    Signaled(i32),
    /// Neither (a raw wait status the platform could not decode).
    Other(i32),
}

/// The limit that ended a step, as far as the evidence shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// [`Limits::wall`]: the sandbox killed the step.
    WallClock,
    /// [`Limits::cpu`]: the process died of SIGXCPU.
    CpuTime,
    /// [`Limits::address_space`]: an allocation failed and the Rust runtime aborted
    /// (recognised by its `memory allocation of N bytes failed` message).
    AddressSpace,
    /// [`Limits::file_size`]: the process died of SIGXFSZ.
    FileSize,
    /// The jail's memory cgroup ([`SandboxConfig::memory`]): the kernel's OOM killer ended a
    /// process of the jail.
    Memory,
}

/// The first bytes of an output stream, and how many more were discarded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// Up to [`Limits::max_output`] bytes, as written (not necessarily UTF-8).
    pub bytes: Vec<u8>,
    /// Bytes read after the cap and thrown away.
    pub discarded: u64,
}

impl Captured {
    /// The kept bytes as text, invalid UTF-8 replaced.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes)
    }

    /// Whether anything was discarded.
    pub fn truncated(&self) -> bool {
        self.discarded > 0
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// How the main process ended.
    pub termination: Termination,
    /// The limit that ended it, if one did.
    pub limit: Option<LimitHit>,
    /// Its standard output.
    pub stdout: Captured,
    /// Its standard error.
    pub stderr: Captured,
    /// Wall time from start to the end of the main process.
    pub wall: Duration,
    /// The isolation it ran under.
    pub isolation: Isolation,
}

impl Execution {
    /// Exited with code 0 and no limit fired.
    pub fn success(&self) -> bool {
        self.termination == Termination::Exited(0) && self.limit.is_none()
    }
}

/// Both steps for one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    /// `rustc --test`.
    pub compile: Execution,
    /// The test binary; `None` when compilation failed.
    pub run: Option<Execution>,
}

impl TestOutcome {
    /// Compiled, and every test passed within the limits.
    pub fn passed(&self) -> bool {
        self.run.as_ref().is_some_and(Execution::success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_in_words_names_what_is_missing() {
        let complete = Isolation {
            network: true,
            pid: true,
            filesystem: true,
            unprivileged: true,
            process_cap: true,
            jail_cgroup: true,
        };
        assert!(complete.is_complete());
        assert!(
            complete
                .to_string()
                .starts_with("complete (network namespace")
        );
        let uid_only = Isolation {
            unprivileged: true,
            process_cap: true,
            ..Isolation::default()
        };
        assert!(!uid_only.is_complete());
        assert_eq!(
            uid_only.to_string(),
            "partial (without network namespace, PID namespace, minimal read-only filesystem \
             with private /tmp, per-jail memory and task cgroup; with unprivileged uid, process \
             cap; rlimits and wall-clock kill always)"
        );
        assert!(
            Isolation::default()
                .to_string()
                .starts_with("partial (without network")
        );
    }
}
