//! llama.cpp's own `llama-server`, run on loopback as the reference peer of the engine and of
//! the OpenAI-compatible client.
//!
//! `scripts/build-llama-server.sh` builds the binary from the llama.cpp sources vendored in
//! `llama-cpp-python==0.3.36` and caches it under `<cache>/mars/llama-server/0.3.36/`.
//! [`LlamaServer::start`] runs it on `127.0.0.1` with a free port, waits until `/health`
//! answers 200, and kills it when dropped.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::environment::Environment;
pub use crate::environment::SERVER_ENV;
use crate::error::{Error, Result};

/// The `llama-cpp-python` version whose vendored llama.cpp the build script compiles.
pub const SERVER_SOURCE_VERSION: &str = "0.3.36";

/// Where `scripts/build-llama-server.sh` caches the binary.
pub fn cached_server_path(env: &Environment) -> Option<PathBuf> {
    env.cache_root().map(|root| {
        root.join("llama-server")
            .join(SERVER_SOURCE_VERSION)
            .join("llama-server")
    })
}

/// The `llama-server` binary: `MARS_LLAMA_SERVER`, else the cached build.
pub fn find_server(env: &Environment) -> Result<PathBuf> {
    let program = "llama-server".to_owned();
    if let Some(path) = env.llama_server.as_ref().filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::Process {
                program,
                detail: format!("{SERVER_ENV}={} is not a file", path.display()),
            })
        };
    }
    match cached_server_path(env) {
        Some(path) if path.is_file() => Ok(path),
        cached => Err(Error::Process {
            program,
            detail: format!(
                "no binary at {} and {SERVER_ENV} is unset; build it with \
                 scripts/build-llama-server.sh",
                cached.map_or_else(
                    || "<no cache directory>".into(),
                    |p| p.display().to_string()
                )
            ),
        }),
    }
}

/// How to run `llama-server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The binary (see [`find_server`]).
    pub binary: PathBuf,
    /// The GGUF file to serve.
    pub model_path: PathBuf,
    /// Threads for generation and prompt evaluation.
    pub threads: usize,
    /// Context window in tokens, shared by the slots.
    pub context_size: u32,
    /// Parallel slots (sequences decoded together).
    pub parallel: u32,
    /// How long to wait for `/health` to answer 200.
    pub ready_timeout: Duration,
}

impl ServerConfig {
    /// Defaults for this binary and model: every core, 8192 tokens of context, 4 slots,
    /// 120 s to become ready.
    pub fn new(binary: impl Into<PathBuf>, model_path: impl Into<PathBuf>) -> Self {
        ServerConfig {
            binary: binary.into(),
            model_path: model_path.into(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            context_size: 8192,
            parallel: 4,
            ready_timeout: Duration::from_secs(120),
        }
    }
}

/// A running `llama-server` on loopback; killed when dropped.
#[derive(Debug)]
pub struct LlamaServer {
    child: Child,
    port: u16,
    log_path: PathBuf,
}

impl LlamaServer {
    /// Starts the server and waits until it is ready. Blocking.
    pub fn start(config: &ServerConfig) -> Result<Self> {
        // The port is free when chosen but could be taken before the server binds it: retry.
        let mut last_error = None;
        for _ in 0..3 {
            match Self::start_once(config) {
                Ok(server) => return Ok(server),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| process_error(config, "no attempt was made".into())))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    fn start_once(config: &ServerConfig) -> Result<Self> {
        let port = free_port().map_err(|e| process_error(config, format!("no free port: {e}")))?;
        let log_path = std::env::temp_dir().join(format!(
            "mars-llama-server-{}-{port}.log",
            std::process::id()
        ));
        let log = File::create(&log_path)
            .map_err(|e| process_error(config, format!("{}: {e}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|e| process_error(config, format!("{}: {e}", log_path.display())))?;
        let threads = config.threads.to_string();
        let child = Command::new(&config.binary)
            .arg("-m")
            .arg(&config.model_path)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-t", &threads, "-tb", &threads])
            .args(["-c", &config.context_size.to_string()])
            .args(["-np", &config.parallel.to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| process_error(config, e.to_string()))?;
        let mut server = LlamaServer {
            child,
            port,
            log_path,
        };
        server.wait_ready(config)?;
        Ok(server)
    }

    fn wait_ready(&mut self, config: &ServerConfig) -> Result<()> {
        let deadline = Instant::now() + config.ready_timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(process_error(
                    config,
                    format!(
                        "exited with {status} before it was ready; log:\n{}",
                        self.log_tail()
                    ),
                ));
            }
            if health_status(self.port) == Some(200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(process_error(
                    config,
                    format!(
                        "not ready after {:?}; log:\n{}",
                        config.ready_timeout,
                        self.log_tail()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let start = log.len().saturating_sub(2000);
        let start = (start..log.len())
            .find(|&i| log.is_char_boundary(i))
            .unwrap_or(log.len());
        log[start..].to_owned()
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        if let Err(err) = self.child.kill() {
            tracing::warn!(%err, "could not kill llama-server");
        }
        if let Err(err) = self.child.wait() {
            tracing::warn!(%err, "could not reap llama-server");
        }
        if let Err(err) = std::fs::remove_file(&self.log_path) {
            tracing::debug!(%err, path = %self.log_path.display(), "could not remove the log");
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// The status code of `GET /health`, or `None` if the server does not answer.
fn health_status(port: u16) -> Option<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    parse_status(&head[..n])
}

/// The status code of an HTTP/1.x status line.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head.split(|&b| b == b'\r').next()?).ok()?;
    let mut parts = line.split(' ');
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn process_error(config: &ServerConfig, detail: String) -> Error {
    Error::Process {
        program: config.binary.display().to_string(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn status_lines_parse() {
        let cases: [(&[u8], Option<u16>); 5] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 15", Some(200)),
            (b"HTTP/1.1 503 Service Unavailable\r\n", Some(503)),
            (b"HTTP/1.0 404", Some(404)),
            (b"SSH-2.0-OpenSSH\r\n", None),
            (b"", None),
        ];
        for (head, want) in cases {
            assert_eq!(
                parse_status(head),
                want,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn a_missing_binary_names_the_build_script() {
        let env = Environment {
            home: Some(OsString::from("/nonexistent-home")),
            ..Environment::default()
        };
        let err = find_server(&env).unwrap_err().to_string();
        assert!(err.contains("scripts/build-llama-server.sh"), "{err}");
        let env = Environment {
            llama_server: Some(OsString::from("/nonexistent/llama-server")),
            ..env
        };
        let err = find_server(&env).unwrap_err().to_string();
        assert!(err.contains("MARS_LLAMA_SERVER"), "{err}");
    }

    #[test]
    fn the_cached_binary_lives_under_the_mars_cache() {
        let env = Environment {
            home: Some(OsString::from("/home/u")),
            ..Environment::default()
        };
        assert_eq!(
            cached_server_path(&env),
            Some(PathBuf::from(
                "/home/u/.cache/mars/llama-server/0.3.36/llama-server"
            ))
        );
    }
}
