//! The namespace holder: a root-owned process that owns a jail's mount, network and PID
//! namespaces while the jail lives; steps enter them with `nsenter`.
//!
//! `unshare --mount --net --pid --fork --kill-child` starts [`SETUP_SCRIPT`] as PID 1 of a new
//! PID namespace. The script makes every mount of its private copy of the mount table
//! read-only, mounts a size-capped tmpfs on `/tmp` (the jail's scratch, with the work dir
//! `/tmp/work` owned by the jail's uid), binds the Rust sysroot read-only at
//! `/tmp/.toolchain` (so an unprivileged uid can run `rustc` even when the toolchain sits
//! under a mode-700 `/root`), hides `/root` and `/home` under empty read-only tmpfs, mounts a
//! `/proc` of the new PID namespace, prints its host pid and `exec`s `cat` on a pipe the jail
//! holds. Closing that pipe ends `cat`; when PID 1 of a namespace exits the kernel kills every
//! process left in it, and the mounts (scratch included) vanish with the namespace.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use super::host::{CHILD_PATH, Tools};
use crate::error::{Error, Result};

/// Where the sysroot appears inside a jail.
pub(crate) const TOOLCHAIN_DIR: &str = "/tmp/.toolchain";

/// How long the setup script may take before the jail is given up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long teardown waits for the namespace to empty before killing the holder.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Arguments: uid, gid, scratch size in bytes, sysroot path (host).
///
/// Prints `<host pid> <mounts left writable>` once the jail is ready. Mount points whose names
/// `/proc/self/mounts` escapes (spaces, tabs, backslashes) cannot be named by the shell and
/// are counted as left writable.
pub(crate) const SETUP_SCRIPT: &str = r#"set -eu
read -r host_pid _rest < /proc/self/stat
uid=$1 gid=$2 size=$3 sysroot=$4
left_writable=0
while read -r _dev mnt _rest; do
  case $mnt in *\\*) left_writable=$((left_writable + 1)); continue ;; esac
  mount -o remount,bind,ro "$mnt" 2>/dev/null || left_writable=$((left_writable + 1))
done < /proc/self/mounts
mount -t tmpfs -o "size=$size,mode=1777,nosuid,nodev" mars-scratch /tmp
mkdir /tmp/.toolchain /tmp/work
mount --bind "$sysroot" /tmp/.toolchain
mount -o remount,bind,ro /tmp/.toolchain
chown "$uid:$gid" /tmp/work
chmod 0700 /tmp/work
for d in /root /home; do
  if [ -d "$d" ]; then mount -t tmpfs -o ro,mode=0755,size=4k mars-empty "$d"; fi
done
mount -t proc -o nosuid,nodev,noexec proc /proc
cd /tmp/work
echo "$host_pid $left_writable"
exec cat > /dev/null
"#;

/// A running namespace holder.
#[derive(Debug)]
pub(crate) struct Holder {
    child: Child,
    /// Closing this ends the holder (and so the namespace).
    stdin: Option<ChildStdin>,
    /// The holder's pid as this host sees it: the target of `nsenter`.
    pub(crate) pid: u32,
    /// Mounts the script could not make read-only.
    pub(crate) left_writable: u32,
}

impl Holder {
    /// Starts a holder for `uid` and waits until its namespaces are ready.
    pub(crate) async fn start(
        tools: &Tools,
        unshare: &Path,
        uid: u32,
        scratch_size: u64,
        sysroot: &Path,
    ) -> Result<Holder> {
        let mut child = Command::new(unshare)
            .args([
                "--mount",
                "--net",
                "--pid",
                "--fork",
                "--kill-child",
                "--propagation",
                "private",
                "--",
            ])
            .arg(&tools.sh)
            .args(["-c", SETUP_SCRIPT, "mars-jail"])
            .arg(uid.to_string())
            .arg(uid.to_string())
            .arg(scratch_size.to_string())
            .arg(sysroot)
            .env_clear()
            .env("PATH", CHILD_PATH)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| Error::SandboxIo {
                action: format!("spawn {}", unshare.display()),
                source,
            })?;
        let stdin = child.stdin.take();
        let ready = match child.stdout.take() {
            Some(stdout) => {
                let mut line = String::new();
                let mut reader = BufReader::new(stdout);
                match tokio::time::timeout(SETUP_TIMEOUT, reader.read_line(&mut line)).await {
                    Ok(Ok(_)) => parse_ready(&line),
                    _ => None,
                }
            }
            None => None,
        };
        match ready {
            Some((pid, left_writable)) => Ok(Holder {
                child,
                stdin,
                pid,
                left_writable,
            }),
            None => Err(setup_failure(child).await),
        }
    }

    /// Ends the namespace and waits until the kernel has killed and reaped everything in it.
    pub(crate) async fn close(mut self) -> Result<()> {
        drop(self.stdin.take());
        match tokio::time::timeout(TEARDOWN_TIMEOUT, self.child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(Error::SandboxIo {
                action: "wait for the jail's holder".into(),
                source,
            }),
            Err(_) => {
                tracing::warn!(pid = self.pid, "sandbox: holder did not exit; killing it");
                // `--kill-child` turns the death of `unshare` into SIGKILL for PID 1.
                self.child.kill().await.map_err(|source| Error::SandboxIo {
                    action: "kill the jail's holder".into(),
                    source,
                })
            }
        }
    }
}

/// Parses the script's ready line: `<host pid> <mounts left writable>`.
pub(crate) fn parse_ready(line: &str) -> Option<(u32, u32)> {
    let mut fields = line.split_ascii_whitespace();
    let pid = fields.next()?.parse().ok()?;
    let left_writable = fields.next()?.parse().ok()?;
    Some((pid, left_writable))
}

async fn setup_failure(mut child: Child) -> Error {
    // Killing `unshare` kills PID 1 of the namespace (`--kill-child`) and with it the script.
    let _ = child.start_kill();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let mut bytes = Vec::new();
        let _ = tokio::time::timeout(SETUP_TIMEOUT, pipe.read_to_end(&mut bytes)).await;
        stderr = String::from_utf8_lossy(&bytes).trim().to_owned();
    }
    let status = match tokio::time::timeout(SETUP_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        _ => "no exit status".to_owned(),
    };
    Error::SandboxSetup {
        detail: format!(
            "the namespace setup script did not become ready ({status}): {}",
            crate::error::truncate_for_error(&stderr, 2048)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_carries_pid_and_count() {
        assert_eq!(parse_ready("4242 0\n"), Some((4242, 0)));
        assert_eq!(parse_ready("4242 3"), Some((4242, 3)));
        assert_eq!(parse_ready("mount: permission denied\n"), None);
        assert_eq!(parse_ready(""), None);
    }
}
