//! A loopback HTTP server for tests: answers each connection with a scripted reply, written in
//! chosen chunks with chosen delays, and records every request.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One piece of a scripted response.
#[derive(Debug, Clone)]
pub enum Part {
    /// Write these bytes (and flush).
    Bytes(Vec<u8>),
    /// Wait before the next part.
    Delay(Duration),
}

/// What the server answers to one connection.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    /// Extra response headers, e.g. `Retry-After`.
    pub headers: Vec<(&'static str, String)>,
    pub head_delay: Duration,
    pub parts: Vec<Part>,
    /// After the last part, keep the connection open until the client closes it (and report
    /// the close), instead of closing it.
    pub hold_open: bool,
}

impl Reply {
    pub fn ok(content_type: &'static str, parts: Vec<Part>) -> Self {
        Reply {
            status: 200,
            content_type,
            headers: Vec::new(),
            head_delay: Duration::ZERO,
            parts,
            hold_open: false,
        }
    }

    pub fn status(status: u16, body: &str) -> Self {
        Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            head_delay: Duration::ZERO,
            parts: vec![Part::Bytes(body.as_bytes().to_vec())],
            hold_open: false,
        }
    }
}

impl Reply {
    /// The reply with one more response header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// Splits `body` into parts of `size` bytes with `delay` between them.
pub fn chunked(body: &[u8], size: usize, delay: Duration) -> Vec<Part> {
    let mut parts = Vec::new();
    for chunk in body.chunks(size.max(1)) {
        if !parts.is_empty() && !delay.is_zero() {
            parts.push(Part::Delay(delay));
        }
        parts.push(Part::Bytes(chunk.to_vec()));
    }
    parts
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    closed: tokio::sync::Mutex<mpsc::UnboundedReceiver<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Starts a server that answers successive connections with `replies`, then with 500.
    pub async fn start(replies: Vec<Reply>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (closed_tx, closed_rx) = mpsc::unbounded_channel();
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let reply = replies.lock().unwrap().pop_front();
                let reply = reply.unwrap_or_else(|| Reply::status(500, "no reply scripted"));
                let recorded = recorded.clone();
                let closed = closed_tx.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, reply, recorded, closed).await;
                });
            }
        });
        TestServer {
            addr,
            requests,
            closed: tokio::sync::Mutex::new(closed_rx),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until a held-open connection is closed by the client; false on timeout.
    pub async fn client_closed_within(&self, limit: Duration) -> bool {
        let mut rx = self.closed.lock().await;
        matches!(tokio::time::timeout(limit, rx.recv()).await, Ok(Some(())))
    }
}

async fn serve(
    mut socket: TcpStream,
    reply: Reply,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    closed: mpsc::UnboundedSender<()>,
) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let request = read_request(&mut socket).await?;
    recorded.lock().unwrap().push(request);
    tokio::time::sleep(reply.head_delay).await;
    let extra: String = reply
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "HTTP/1.1 {} Scripted\r\nContent-Type: {}\r\n{extra}Connection: close\r\n\r\n",
        reply.status, reply.content_type
    );
    socket.write_all(head.as_bytes()).await?;
    socket.flush().await?;
    for part in reply.parts {
        match part {
            Part::Bytes(bytes) => {
                socket.write_all(&bytes).await?;
                socket.flush().await?;
            }
            Part::Delay(delay) => tokio::time::sleep(delay).await,
        }
    }
    if reply.hold_open {
        let mut buf = [0u8; 1024];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = closed.send(());
    } else {
        socket.shutdown().await?;
    }
    Ok(())
}

async fn read_request(socket: &mut TcpStream) -> std::io::Result<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or_default().split(' ');
    let method = start.next().unwrap_or_default().to_owned();
    let path = start.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Recorded {
        method,
        path,
        headers,
        body,
    })
}
