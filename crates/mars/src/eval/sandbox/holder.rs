//! The namespace holder: a root-owned process that owns a jail's mount, network and PID
//! namespaces while the jail lives; steps enter them with `nsenter`.
//!
//! `unshare --mount --net --pid --fork --kill-child` starts [`SETUP_SCRIPT`] as PID 1 of a new
//! PID namespace. In its private copy of the mount table the script builds a new root on a
//! small tmpfs (mounted over `/tmp`, which only this namespace sees) holding only what compiling
//! and running need: `/usr` (with `/usr/local` hidden) and the `/bin`, `/sbin`, `/lib*` entries
//! of the host, a copy of `/etc`'s loader cache and `alternatives` links, a `/dev` with `null`,
//! `zero`, `full`, `random` and `urandom`, a size-capped tmpfs on `/tmp` (the jail's scratch,
//! with the work dir `/tmp/work` owned by the jail's uid), and the Rust sysroot at
//! `/tmp/.toolchain`. It then `pivot_root`s into it, detaches the host's tree, mounts a `/proc`
//! of the new PID namespace, makes every mount but `/tmp` and `/proc` read-only, prints its host
//! pid and `exec`s `cat` on a pipe the jail holds. Closing that pipe ends `cat`; when PID 1 of a
//! namespace exits the kernel kills every process left in it, and the mounts (scratch
//! included) vanish with the namespace.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use super::SandboxError;
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
/// are counted as left writable. The sysroot is opened before `/tmp` is covered, so a sysroot
/// under the host's `/tmp` still reaches the jail.
pub(crate) const SETUP_SCRIPT: &str = r#"set -eu
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
read -r host_pid _rest < /proc/self/stat
uid=$1 gid=$2 size=$3 sysroot=$4
exec 3< "$sysroot"
R=/tmp
mount -t tmpfs -o size=4m,mode=0755,nosuid mars-root "$R"
mkdir "$R/tmp" "$R/dev" "$R/proc" "$R/etc" "$R/.host"
links=
for d in usr bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$d" ]; then links="$links /$d"
  elif [ -d "/$d" ]; then mkdir "$R/$d"; mount --rbind "/$d" "$R/$d"; fi
done
if [ -n "$links" ]; then cp -a $links "$R/"; fi
if [ -d "$R/usr/local" ]; then mount -t tmpfs -o ro,mode=0755,size=4k mars-empty "$R/usr/local"; fi
etc=
for f in ld.so.cache ld.so.conf ld.so.conf.d alternatives; do
  if [ -e "/etc/$f" ]; then etc="$etc /etc/$f"; fi
done
if [ -n "$etc" ]; then cp -a $etc "$R/etc/"; fi
devices="null zero full random urandom"
if ! (cd /dev && cp -a $devices "$R/dev/") 2>/dev/null; then
  for n in $devices; do touch "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; done
fi
ln -s /proc/self/fd "$R/dev/fd"
mount -t tmpfs -o "size=$size,mode=1777,nosuid,nodev" mars-scratch "$R/tmp"
mkdir "$R/tmp/.toolchain"
install -d -o "$uid" -g "$gid" -m 0700 "$R/tmp/work"
mount --no-canonicalize --bind /proc/self/fd/3 "$R/tmp/.toolchain"
exec 3<&-
cd "$R"
pivot_root . .host
cd /
mount -t proc -o nosuid,nodev,noexec proc /proc
umount -l /.host
left_writable=0
while read -r _dev mnt _type opts _rest; do
  case $opts in ro|ro,*) continue ;; esac
  case $mnt in /tmp|/proc) continue ;; *\\*) left_writable=$((left_writable + 1)); continue ;; esac
  mount -o remount,bind,ro "$mnt" 2>/dev/null || left_writable=$((left_writable + 1))
done < /proc/self/mounts
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
            .map_err(|source| SandboxError::Io {
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
            Ok(Err(source)) => Err(SandboxError::Io {
                action: "wait for the jail's holder".into(),
                source,
            }
            .into()),
            Err(_) => {
                tracing::warn!(pid = self.pid, "sandbox: holder did not exit; killing it");
                // `--kill-child` turns the death of `unshare` into SIGKILL for PID 1.
                self.child
                    .kill()
                    .await
                    .map_err(SandboxError::io("kill the jail's holder"))
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
    SandboxError::Setup {
        detail: format!(
            "the namespace setup script did not become ready ({status}): {}",
            crate::error::truncate_for_error(&stderr, 2048)
        ),
    }
    .into()
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
