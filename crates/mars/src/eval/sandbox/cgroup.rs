//! Per-jail control groups: one memory and one pids cgroup per jail, so that everything the
//! jail starts shares one memory limit and one process limit.
//!
//! cgroup v1 (separate `memory` and `pids` hierarchies under `/sys/fs/cgroup`): a jail's groups
//! are created below the caller's own groups, so the caller's limits still apply to them.
//! cgroup v2 (a unified hierarchy with both controllers): a jail's group is created below
//! `/sys/fs/cgroup/mars-sandbox`, whose parent must be the hierarchy's root (a non-root v2
//! group that holds processes cannot hand controllers down). Where neither works,
//! [`Cgroups::detect`] finds nothing and the sandbox keeps to per-process limits.
//!
//! Steps join a jail's groups before anything else runs (a shell writes its own pid to each
//! `cgroup.procs`, then `exec`s the step's chain), so every descendant is counted. The groups
//! are removed when the jail closes, once nothing is left in them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::SandboxError;
use crate::error::Result;

const V2_PARENT: &str = "mars-sandbox";

/// Where jail groups are created on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cgroups {
    /// Parent dirs of the memory and the pids hierarchy.
    V1 { memory: PathBuf, pids: PathBuf },
    /// The parent dir in the unified hierarchy.
    V2 { parent: PathBuf },
}

/// One jail's groups.
#[derive(Debug)]
pub(crate) struct JailCgroup {
    dirs: Vec<PathBuf>,
    /// The file whose `oom_kill N` line counts OOM kills in the group.
    oom_file: PathBuf,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl Cgroups {
    /// Finds writable memory and pids controllers (blocking: reads `/proc` and `/sys`), by
    /// creating, configuring and removing a trial group; `None` where that fails.
    pub(crate) fn detect() -> Option<Cgroups> {
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let v1 = own_path(&own, "memory")
            .zip(own_path(&own, "pids"))
            .map(|(m, p)| Cgroups::V1 {
                memory: Path::new("/sys/fs/cgroup/memory").join(m),
                pids: Path::new("/sys/fs/cgroup/pids").join(p),
            });
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers")
            .is_file()
            .then(|| Cgroups::V2 {
                parent: Path::new("/sys/fs/cgroup").join(V2_PARENT),
            });
        for candidate in v1.into_iter().chain(v2) {
            match candidate.prepare().and_then(|()| {
                let trial = candidate.create(64 << 20, 8)?;
                trial.remove()
            }) {
                Ok(()) => return Some(candidate),
                Err(error) => tracing::debug!(%error, ?candidate, "sandbox: no per-jail cgroup"),
            }
        }
        None
    }

    /// v2: makes the parent group and hands it the controllers.
    fn prepare(&self) -> Result<()> {
        let Cgroups::V2 { parent } = self else {
            return Ok(());
        };
        let root = parent.parent().unwrap_or(Path::new("/sys/fs/cgroup"));
        let enabled = read(&root.join("cgroup.subtree_control"))?;
        if !(enabled.contains("memory") && enabled.contains("pids")) {
            write(&root.join("cgroup.subtree_control"), "+memory +pids")?;
        }
        mkdir(parent)?;
        write(&parent.join("cgroup.subtree_control"), "+memory +pids")
    }

    /// Creates a jail's groups with `memory` bytes (swap included where it is accounted) and
    /// `processes` tasks at most (blocking).
    pub(crate) fn create(&self, memory: u64, processes: u64) -> Result<JailCgroup> {
        let name = format!(
            "mars-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let group = match self {
            Cgroups::V1 { memory: m, pids } => JailCgroup {
                dirs: vec![m.join(&name), pids.join(&name)],
                oom_file: m.join(&name).join("memory.oom_control"),
            },
            Cgroups::V2 { parent } => JailCgroup {
                dirs: vec![parent.join(&name)],
                oom_file: parent.join(&name).join("memory.events"),
            },
        };
        for dir in &group.dirs {
            mkdir(dir)?;
        }
        let configured = match self {
            Cgroups::V1 { .. } => {
                let (m, p) = (&group.dirs[0], &group.dirs[1]);
                write(&m.join("memory.limit_in_bytes"), &memory.to_string())
                    .and_then(|()| optional(&m.join("memory.memsw.limit_in_bytes"), memory))
                    .and_then(|()| write(&p.join("pids.max"), &processes.to_string()))
            }
            Cgroups::V2 { .. } => {
                let g = &group.dirs[0];
                write(&g.join("memory.max"), &memory.to_string())
                    .and_then(|()| optional(&g.join("memory.swap.max"), 0))
                    .and_then(|()| write(&g.join("pids.max"), &processes.to_string()))
            }
        };
        if let Err(error) = configured {
            let _ = group.remove();
            return Err(error);
        }
        Ok(group)
    }
}

impl JailCgroup {
    /// The `cgroup.procs` files a step writes its pid to.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// How many processes the OOM killer has ended in this group (blocking).
    pub(crate) fn oom_kills(&self) -> u64 {
        let text = std::fs::read_to_string(&self.oom_file).unwrap_or_default();
        parse_oom_kills(&text)
    }

    /// Removes the groups; they must be empty (blocking: retries for up to a second while the
    /// kernel finishes reaping).
    pub(crate) fn remove(&self) -> Result<()> {
        for dir in self.dirs.iter().rev() {
            let mut attempt = 0;
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) if attempt < 100 => {
                        attempt += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(source) => {
                        return Err(SandboxError::Io {
                            action: format!("remove the jail's cgroup {}", dir.display()),
                            source,
                        }
                        .into());
                    }
                }
            }
        }
        Ok(())
    }
}

/// The caller's group in the v1 hierarchy of `controller`, from `/proc/self/cgroup`.
fn own_path<'a>(proc_cgroup: &'a str, controller: &str) -> Option<&'a str> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.trim_start_matches('/'))
    })
}

/// The `oom_kill N` count of a v1 `memory.oom_control` or a v2 `memory.events`.
pub(crate) fn parse_oom_kills(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .unwrap_or(0)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(SandboxError::io(format!("read {}", path.display())))
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(SandboxError::io(format!(
        "write {value:?} to {}",
        path.display()
    )))
}

/// Writes `value` where the file exists (swap accounting is optional).
fn optional(path: &Path, value: u64) -> Result<()> {
    if path.exists() {
        write(path, &value.to_string())
    } else {
        Ok(())
    }
}

fn mkdir(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(SandboxError::io(format!("create {}", dir.display()))(e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_groups_and_oom_counts_are_parsed() {
        let own = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n0::/user.slice\n";
        assert_eq!(own_path(own, "memory"), Some("process_api/abc"));
        assert_eq!(own_path(own, "pids"), Some(""));
        assert_eq!(own_path(own, "cpu"), None);
        assert_eq!(own_path("1:cpu,cpuacct:/x\n", "cpuacct"), Some("x"));
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_oom_kills(v1), 3);
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_oom_kills(v2), 2);
        assert_eq!(parse_oom_kills(""), 0);
    }
}
