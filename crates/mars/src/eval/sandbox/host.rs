//! Host-side helpers of the sandbox: finding tools, reading `/proc`, leasing uids, killing
//! what a step left behind.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::process::Command;

use super::SandboxError;
use crate::error::Result;

/// `PATH` of every process the sandbox starts; nothing else of the parent's environment passes.
pub(crate) const CHILD_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Where tools are looked for after the parent's `PATH` (root's tools live in `sbin`).
const SEARCH_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Absolute paths of the programs the sandbox composes (util-linux and a POSIX shell).
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub(crate) prlimit: PathBuf,
    pub(crate) sh: PathBuf,
    pub(crate) setpriv: Option<PathBuf>,
    pub(crate) unshare: Option<PathBuf>,
    pub(crate) nsenter: Option<PathBuf>,
}

impl Tools {
    /// Looks the tools up in `path_var` (the parent's `PATH`), then in the usual system dirs.
    pub(crate) fn find(path_var: Option<&OsStr>) -> Result<Tools> {
        let required = |name: &str| {
            find_program(name, path_var).ok_or_else(|| SandboxError::Unavailable {
                reason: format!("`{name}` not found (util-linux and a POSIX shell are required)"),
            })
        };
        Ok(Tools {
            prlimit: required("prlimit")?,
            sh: required("sh")?,
            setpriv: find_program("setpriv", path_var),
            unshare: find_program("unshare", path_var),
            nsenter: find_program("nsenter", path_var),
        })
    }
}

/// The first executable file called `name` in `path_var`'s absolute dirs or [`SEARCH_DIRS`].
pub(crate) fn find_program(name: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let from_env = path_var.into_iter().flat_map(std::env::split_paths);
    from_env
        .chain(SEARCH_DIRS.iter().map(PathBuf::from))
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Whose processes a step's leftovers are: everything of a leased uid, or one process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    Uid(u32),
    Group(u32),
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Uid(uid) => write!(f, "uid {uid}"),
            Owner::Group(pgid) => write!(f, "process group {pgid}"),
        }
    }
}

/// What the sandbox needs to know about one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcInfo {
    pub(crate) pid: u32,
    pub(crate) real_uid: u32,
    pub(crate) effective_uid: u32,
    pub(crate) pgrp: u32,
    /// A zombie (`Z`) or dead (`X`) task: it holds no resources but a pid.
    pub(crate) dead: bool,
}

impl ProcInfo {
    fn belongs_to(&self, owner: Owner) -> bool {
        match owner {
            Owner::Uid(uid) => self.real_uid == uid || self.effective_uid == uid,
            Owner::Group(pgid) => self.pgrp == pgid,
        }
    }
}

/// Parses the state and process group out of `/proc/PID/stat`; the command name may hold
/// spaces and parentheses, so fields are counted after the last `)`.
pub(crate) fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Parses the real and effective uid out of `/proc/PID/status`.
pub(crate) fn parse_status_uids(status: &str) -> Option<(u32, u32)> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    let mut ids = line["Uid:".len()..].split_ascii_whitespace();
    Some((ids.next()?.parse().ok()?, ids.next()?.parse().ok()?))
}

fn read_proc(pid: u32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let (state, pgrp) = parse_stat(&stat)?;
    let (real_uid, effective_uid) = parse_status_uids(&status)?;
    Some(ProcInfo {
        pid,
        real_uid,
        effective_uid,
        pgrp,
        dead: matches!(state, 'Z' | 'X' | 'x'),
    })
}

/// Every process this host's `/proc` shows (blocking: reads a few small files per process).
pub(crate) fn all_processes() -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_proc)
        .collect()
}

/// Pids of the live (not zombie) processes of `owner` (blocking).
pub(crate) fn live_processes(owner: Owner) -> Vec<u32> {
    all_processes()
        .into_iter()
        .filter(|p| !p.dead && p.belongs_to(owner))
        .map(|p| p.pid)
        .collect()
}

/// The effective uid of this process, from `/proc/self/status`.
pub(crate) fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_uids(&status).map(|(_, effective)| effective)
}

/// Runs blocking `/proc` or file-system work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    action: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| SandboxError::io(action)(std::io::Error::other(e)))
}

/// Kills every live process of `owner` and checks `/proc` until none is left.
///
/// Returns how many were alive at the first look. A fork loop may create processes while a
/// kill is under way, so the kill is repeated; [`SandboxError::Leak`] after ~2 s of trying.
pub(crate) async fn sweep(owner: Owner, tools: &Tools) -> Result<usize> {
    let mut first = None;
    let mut survivors = 0;
    for attempt in 0..40u64 {
        let live = blocking("scan /proc", move || live_processes(owner)).await?;
        let seen = *first.get_or_insert(live.len());
        if live.is_empty() {
            return Ok(seen);
        }
        survivors = live.len();
        tracing::debug!(%owner, alive = survivors, attempt, "sandbox: killing leftovers");
        kill_all(owner, tools).await?;
        tokio::time::sleep(Duration::from_millis(5 * (attempt + 1).min(10))).await;
    }
    Err(SandboxError::Leak {
        owner: owner.to_string(),
        survivors,
    }
    .into())
}

/// Sends SIGKILL to every process of `owner`, without libc: the shell's `kill` builtin, run
/// as the owner's uid for `kill -1` (which reaches exactly the processes of that uid).
async fn kill_all(owner: Owner, tools: &Tools) -> Result<()> {
    let mut command = Command::from(kill_command(owner, tools)?);
    command
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|source| SandboxError::Io {
            action: "run the kill helper".into(),
            source,
        })?;
    Ok(())
}

/// [`kill_all`] for `Drop`, where nothing can be awaited: blocks for the few milliseconds a
/// kill helper takes, three times over to catch processes forked during a kill.
pub(crate) fn kill_all_blocking(owner: Owner, tools: &Tools) {
    for _ in 0..3 {
        match kill_command(owner, tools).map(|mut c| c.status()) {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, %owner, "sandbox: kill helper failed"),
            Err(error) => tracing::warn!(%error, %owner, "sandbox: no kill helper"),
        }
    }
}

fn kill_command(owner: Owner, tools: &Tools) -> Result<std::process::Command> {
    let mut command = match (owner, &tools.setpriv) {
        (Owner::Uid(uid), Some(setpriv)) => {
            let mut c = std::process::Command::new(setpriv);
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(&tools.sh)
                .args(["-c", "kill -s KILL -- -1 2>/dev/null; exit 0"]);
            c
        }
        (Owner::Uid(_), None) => {
            return Err(SandboxError::Unavailable {
                reason: "`setpriv` is needed to kill the processes of a sandbox uid".into(),
            }
            .into());
        }
        (Owner::Group(pgid), _) => {
            let mut c = std::process::Command::new(&tools.sh);
            c.args(["-c", "kill -s KILL -- \"-$0\" 2>/dev/null; exit 0"])
                .arg(pgid.to_string());
            c
        }
    };
    command
        .env_clear()
        .env("PATH", CHILD_PATH)
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    Ok(command)
}

static LEASED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());
static NEXT_UID: AtomicU32 = AtomicU32::new(0);

/// A uid reserved for one jail of this process; released on drop.
///
/// Uids are picked from the configured range, skipping any that a process on the host
/// currently uses, so the jail's `RLIMIT_NPROC` count and its `kill -1` see only its own
/// processes.
#[derive(Debug)]
pub(crate) struct UidLease {
    uid: u32,
}

impl UidLease {
    /// Leases a uid in `base..base + count` (blocking: scans `/proc`).
    pub(crate) fn acquire(base: u32, count: u32) -> Result<UidLease> {
        let busy: BTreeSet<u32> = all_processes()
            .iter()
            .flat_map(|p| [p.real_uid, p.effective_uid])
            .collect();
        let mut leased = LEASED.lock().unwrap_or_else(|e| e.into_inner());
        // Spread processes over the range so two benchmark processes rarely pick the same uid.
        let start = std::process::id()
            .wrapping_mul(2_654_435_761)
            .wrapping_add(NEXT_UID.fetch_add(1, Ordering::Relaxed));
        for i in 0..count {
            let uid = base + start.wrapping_add(i) % count;
            if !busy.contains(&uid) && leased.insert(uid) {
                return Ok(UidLease { uid });
            }
        }
        Err(SandboxError::Unavailable {
            reason: format!(
                "no free uid in {base}..{}",
                u64::from(base) + u64::from(count)
            ),
        }
        .into())
    }

    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        LEASED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (evil) name) S 1 4240 4240 0 -1 4194560 100 0 0 0";
        assert_eq!(parse_stat(stat), Some(('S', 4240)));
        assert_eq!(parse_stat("12 (z) Z 1 12 12"), Some(('Z', 12)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_uids_are_real_then_effective() {
        let status = "Name:\tcat\nUid:\t2000000001\t2000000002\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(
            parse_status_uids(status),
            Some((2_000_000_001, 2_000_000_002))
        );
        assert_eq!(parse_status_uids("Name:\tx\n"), None);
    }

    #[test]
    fn programs_are_found_only_in_absolute_dirs() {
        let sh = find_program("sh", Some(OsStr::new("relative/dir")));
        assert!(sh.is_some_and(|p| p.is_absolute()));
        assert_eq!(find_program("no-such-program-mars", None), None);
    }

    #[test]
    fn leases_are_unique_while_held() {
        let a = UidLease::acquire(3_000_000_000, 4).unwrap();
        let b = UidLease::acquire(3_000_000_000, 4).unwrap();
        assert_ne!(a.uid(), b.uid());
        let held = [a.uid(), b.uid()];
        drop(a);
        let c = UidLease::acquire(3_000_000_000, 4).unwrap();
        assert!(held[1] != c.uid());
    }
}
