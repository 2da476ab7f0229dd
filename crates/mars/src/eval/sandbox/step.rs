//! One step of a jail (compile or run): the command chain that applies limits, enters the
//! namespaces and drops privileges; output capture; wall-clock enforcement; the verdict.
//!
//! The chain is `prlimit LIMITS -- [nsenter --target HOLDER --mount --net --pid --wd --]
//! [setpriv --reuid=U --regid=U --clear-groups --no-new-privs --bounding-set=-all --]
//! PROGRAM ARGS`, started with an empty environment except `PATH`. `prlimit` comes first so
//! the limits (core dumps off included) also cover `nsenter`, which re-raises the signal that
//! killed the step's main process so its exit status reaches the sandbox unchanged.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::SandboxError;
use super::cgroup::JailCgroup;
use super::host::{CHILD_PATH, Owner, Tools, sweep};
use super::{Captured, Execution, Isolation, LimitHit, Limits, Termination};
use crate::error::Result;

/// How long output pipes may stay open after every process of the step is dead.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

const SIGABRT: i32 = 6;
const SIGXCPU: i32 = 24;
const SIGXFSZ: i32 = 25;

/// Joins the cgroups named before `--` (writing its pid to each `cgroup.procs`), then `exec`s
/// the rest: everything the step starts is counted by the jail's cgroups.
const JOIN_CGROUPS: &str = r#"while [ "$1" != -- ]; do
  echo $$ > "$1" || { echo "mars-sandbox: cannot join the cgroup $1" >&2; exit 125; }
  shift
done
shift
unset PWD OLDPWD
exec "$@"
"#;

/// What to start, where, as whom.
#[derive(Debug)]
pub(crate) struct StepSpec<'a> {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    /// Host working directory of the chain (inside a jail `nsenter --wd` moves to the work dir).
    pub(crate) cwd: PathBuf,
    /// `(nsenter, holder pid)` when the step runs inside a jail's namespaces.
    pub(crate) enter: Option<(PathBuf, u32)>,
    /// The unprivileged uid (and gid) the program runs as.
    pub(crate) uid: Option<u32>,
    /// Bytes written to the program's stdin, then closed; `None`: stdin is `/dev/null`.
    pub(crate) stdin: Option<Vec<u8>>,
    pub(crate) isolation: Isolation,
    /// The jail's cgroups, joined before the chain starts.
    pub(crate) cgroup: Option<&'a JailCgroup>,
}

/// Runs one step to its end (or its wall-clock limit) and kills whatever it left behind.
pub(crate) async fn run_step(
    tools: &Tools,
    spec: StepSpec<'_>,
    limits: &Limits,
) -> Result<Execution> {
    let mut command = match spec.cgroup {
        Some(cgroup) => {
            let mut command = Command::new(&tools.sh);
            command
                .args(["-c", JOIN_CGROUPS, "mars-cgroup"])
                .args(cgroup.procs_files())
                .arg("--")
                .arg(&tools.prlimit);
            command
        }
        None => Command::new(&tools.prlimit),
    };
    let ooms_before = spec.cgroup.map(JailCgroup::oom_kills);
    command.args(prlimit_args(limits, spec.uid.is_some()));
    command.arg("--");
    if let Some((nsenter, holder_pid)) = &spec.enter {
        command.arg(nsenter).args([
            "--target",
            &holder_pid.to_string(),
            "--mount",
            "--net",
            "--pid",
            "--wd",
            "--",
        ]);
    }
    if let Some(uid) = spec.uid {
        let setpriv = tools
            .setpriv
            .as_ref()
            .ok_or_else(|| SandboxError::Unavailable {
                reason: "`setpriv` is needed to drop to an unprivileged uid".into(),
            })?;
        command.arg(setpriv).args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
            "--no-new-privs".into(),
            "--bounding-set=-all".into(),
            "--".into(),
        ]);
    }
    command
        .arg(&spec.program)
        .args(&spec.args)
        .env_clear()
        .env("PATH", CHILD_PATH)
        .current_dir(&spec.cwd)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);

    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| SandboxError::Io {
        action: format!("spawn {}", tools.prlimit.display()),
        source,
    })?;
    let owner = match (spec.uid, child.id()) {
        (Some(uid), _) => Owner::Uid(uid),
        (None, Some(pid)) => Owner::Group(pid),
        (None, None) => {
            return Err(SandboxError::Setup {
                detail: "the step exited before its pid could be read".into(),
            }
            .into());
        }
    };
    let stdout = Arc::new(Mutex::new(Captured::default()));
    let stderr = Arc::new(Mutex::new(Captured::default()));
    let readers = [
        child
            .stdout
            .take()
            .map(|pipe| tokio::spawn(capture(pipe, limits.max_output, Arc::clone(&stdout)))),
        child
            .stderr
            .take()
            .map(|pipe| tokio::spawn(capture(pipe, limits.max_output, Arc::clone(&stderr)))),
    ];
    if let (Some(mut pipe), Some(input)) = (child.stdin.take(), spec.stdin) {
        // A program that exits without reading its input makes this fail; that is its business.
        tokio::spawn(async move {
            let _ = pipe.write_all(&input).await;
        });
    }

    let waited = tokio::time::timeout(limits.wall, child.wait()).await;
    let timed_out = waited.is_err();
    let status = match waited {
        Ok(status) => status,
        Err(_) => {
            tracing::debug!(%owner, wall = ?limits.wall, "sandbox: wall-clock limit reached");
            let _ = child.start_kill();
            child.wait().await
        }
    }
    .map_err(|source| SandboxError::Io {
        action: "wait for a sandboxed step".into(),
        source,
    })?;
    let wall = started.elapsed();

    // The main process is gone; its descendants may not be. None survives this.
    let leftovers = sweep(owner, tools).await?;
    if leftovers > 0 {
        tracing::debug!(%owner, leftovers, "sandbox: killed processes the step left behind");
    }
    for reader in readers.into_iter().flatten() {
        let abort = reader.abort_handle();
        if tokio::time::timeout(DRAIN_GRACE, reader).await.is_err() {
            tracing::warn!(%owner, "sandbox: an output pipe stayed open after the step; cut off");
            abort.abort();
        }
    }
    let take = |c: &Arc<Mutex<Captured>>| {
        std::mem::take(&mut *c.lock().unwrap_or_else(|e| e.into_inner()))
    };
    let (stdout, stderr) = (take(&stdout), take(&stderr));

    let termination = termination(status);
    let oom_killed = spec
        .cgroup
        .zip(ooms_before)
        .is_some_and(|(cgroup, before)| cgroup.oom_kills() > before);
    let limit = match classify(termination, timed_out, &stderr.bytes) {
        None | Some(LimitHit::AddressSpace) if oom_killed => Some(LimitHit::Memory),
        limit => limit,
    };
    Ok(Execution {
        termination,
        limit,
        stdout,
        stderr,
        wall,
        isolation: spec.isolation,
    })
}

/// `prlimit` options for `limits`; the process cap only where a uid of its own makes it hold.
pub(crate) fn prlimit_args(limits: &Limits, cap_processes: bool) -> Vec<String> {
    let cpu = limits.cpu.as_secs() + u64::from(limits.cpu.subsec_nanos() > 0);
    let cpu = cpu.max(1);
    let mut args = vec![
        format!("--as={}", limits.address_space),
        // SIGXCPU at the limit, SIGKILL one second later if SIGXCPU is caught.
        format!("--cpu={cpu}:{}", cpu + 1),
        format!("--fsize={}", limits.file_size),
        format!("--nofile={}", limits.open_files),
        "--core=0".to_owned(),
    ];
    if cap_processes {
        args.push(format!("--nproc={}", limits.processes));
    }
    args
}

/// How the main process ended.
pub(crate) fn termination(status: ExitStatus) -> Termination {
    match (status.code(), status.signal()) {
        (Some(code), _) => Termination::Exited(code),
        (None, Some(signal)) => Termination::Signaled(signal),
        (None, None) => Termination::Other(status.into_raw()),
    }
}

/// Which limit ended the step, as far as the evidence shows.
///
/// Exhausting the address space is seen through the Rust runtime: the allocation fails,
/// `memory allocation of N bytes failed` goes to stderr and the process aborts.
pub(crate) fn classify(
    termination: Termination,
    timed_out: bool,
    stderr: &[u8],
) -> Option<LimitHit> {
    if timed_out {
        return Some(LimitHit::WallClock);
    }
    match termination {
        Termination::Signaled(SIGXCPU) => Some(LimitHit::CpuTime),
        Termination::Signaled(SIGXFSZ) => Some(LimitHit::FileSize),
        Termination::Signaled(SIGABRT) if is_alloc_failure(stderr) => Some(LimitHit::AddressSpace),
        _ => None,
    }
}

fn is_alloc_failure(stderr: &[u8]) -> bool {
    let needle = b"memory allocation of ";
    stderr
        .windows(needle.len())
        .enumerate()
        .any(|(at, window)| window == needle && stderr[at..].windows(6).any(|w| w == b"failed"))
}

/// Reads `pipe` to its end, keeping the first `cap` bytes and counting the rest.
async fn capture(mut pipe: impl AsyncRead + Unpin, cap: usize, into: Arc<Mutex<Captured>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut captured = into.lock().unwrap_or_else(|e| e.into_inner());
        let keep = cap.saturating_sub(captured.bytes.len()).min(n);
        captured.bytes.extend_from_slice(&buf[..keep]);
        captured.discarded += (n - keep) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let oom = b"memory allocation of 8589934592 bytes failed\n";
        let table: &[(Termination, bool, &[u8], Option<LimitHit>)] = &[
            (
                Termination::Signaled(9),
                true,
                b"",
                Some(LimitHit::WallClock),
            ),
            (Termination::Exited(0), true, b"", Some(LimitHit::WallClock)),
            (
                Termination::Signaled(SIGXCPU),
                false,
                b"",
                Some(LimitHit::CpuTime),
            ),
            (
                Termination::Signaled(SIGXFSZ),
                false,
                b"",
                Some(LimitHit::FileSize),
            ),
            (
                Termination::Signaled(SIGABRT),
                false,
                oom,
                Some(LimitHit::AddressSpace),
            ),
            (
                Termination::Signaled(SIGABRT),
                false,
                b"explicit abort",
                None,
            ),
            (Termination::Exited(134), false, oom, None),
            (Termination::Signaled(9), false, b"", None),
            (Termination::Exited(101), false, b"test failed", None),
        ];
        for (termination, timed_out, stderr, expected) in table {
            assert_eq!(
                classify(*termination, *timed_out, stderr),
                *expected,
                "{termination:?}"
            );
        }
    }

    #[test]
    fn cpu_limit_rounds_up_to_whole_seconds() {
        let limits = Limits {
            cpu: Duration::from_millis(1500),
            ..Limits::run_default()
        };
        let args = prlimit_args(&limits, false);
        assert!(args.contains(&"--cpu=2:3".to_owned()), "{args:?}");
        assert!(!args.iter().any(|a| a.starts_with("--nproc")));
        let args = prlimit_args(
            &Limits {
                cpu: Duration::ZERO,
                ..limits
            },
            true,
        );
        assert!(args.contains(&"--cpu=1:2".to_owned()), "{args:?}");
        assert!(args.iter().any(|a| a.starts_with("--nproc=")));
    }

    #[tokio::test]
    async fn capture_keeps_the_cap_and_counts_the_rest() {
        let data = vec![b'x'; 200_000];
        let into = Arc::new(Mutex::new(Captured::default()));
        capture(&data[..], 1000, Arc::clone(&into)).await;
        let captured = into.lock().unwrap();
        assert_eq!(captured.bytes.len(), 1000);
        assert_eq!(captured.discarded, 199_000);
    }
}
