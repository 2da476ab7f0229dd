//! The HTTP transport shared by the Ollama and OpenAI-compatible clients: timeouts, retries
//! before the first byte, and the driver that turns a response body into an [`EventStream`].

use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::client::{ChatRequest, EventStream, Finish, SamplingOptions, StreamEvent};
use crate::error::{Error, Result, TimeoutPhase, truncate_for_error};

/// Timeouts and retries of an HTTP client.
///
/// Retries happen only before the first byte of a successful response: on a refused or failed
/// connection, and on HTTP 429 or 503. Once a response has started, nothing is retried, so no
/// answer is ever generated twice or spliced from two attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOptions {
    /// Longest wait to establish a TCP connection.
    pub connect_timeout: Duration,
    /// Longest wait from sending the request to the response head (a server loading a model
    /// can take a while).
    pub first_byte_timeout: Duration,
    /// Longest gap between two chunks of a response body.
    pub idle_timeout: Duration,
    /// How many times a request is retried before its first byte (0 = never).
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further retry.
    pub initial_backoff: Duration,
    /// Cap on the wait between retries, also applied to a server's `Retry-After`.
    pub max_backoff: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(120),
            max_retries: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl HttpOptions {
    pub(crate) fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("connect_timeout", self.connect_timeout),
            ("first_byte_timeout", self.first_byte_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::InvalidConfig {
                    field,
                    reason: "must be greater than zero".into(),
                });
            }
        }
        Ok(())
    }

    fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// A base URL without its trailing slashes, rejected when it does not parse.
pub(crate) fn checked_base_url(base_url: &str) -> Result<String> {
    let base = base_url.trim_end_matches('/').to_owned();
    reqwest::Url::parse(&base).map_err(|err| Error::InvalidConfig {
        field: "base_url",
        reason: format!("{base_url:?} is not a URL: {err}"),
    })?;
    Ok(base)
}

/// One entry of the `messages` array shared by Ollama's and the OpenAI chat APIs.
#[derive(Debug, serde::Serialize)]
pub(crate) struct WireMessage<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

/// The sampling options that Ollama's and the OpenAI chat APIs name alike (the token limit is
/// named differently, so each wire adds its own); unset ones are left out of the body.
#[derive(Debug, Default, PartialEq, serde::Serialize)]
pub(crate) struct WireSampling<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub stop: &'a [String],
}

impl<'a> From<&'a SamplingOptions> for WireSampling<'a> {
    fn from(options: &'a SamplingOptions) -> Self {
        WireSampling {
            temperature: options.temperature,
            top_p: options.top_p,
            top_k: options.top_k,
            seed: options.seed,
            stop: &options.stop,
        }
    }
}

/// The `messages` array shared by Ollama's and the OpenAI chat APIs: the system prompt first.
pub(crate) fn wire_messages(request: &ChatRequest) -> Vec<WireMessage<'_>> {
    let system = request.system.iter().map(|system| WireMessage {
        role: "system",
        content: system,
    });
    let rest = request.messages.iter().map(|m| WireMessage {
        role: m.role.as_str(),
        content: &m.content,
    });
    system.chain(rest).collect()
}

/// Largest error body kept in [`Error::Http`].
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A `reqwest::Client` with the options above.
///
/// Requests to loopback hosts (`localhost`, `127.0.0.0/8`, `::1`) never go through a proxy set
/// in the environment (`HTTP_PROXY` and friends): a local Ollama or llama-server is reached
/// directly, as a proxy elsewhere could not reach it anyway. Other hosts use the environment's
/// proxy settings.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    client: reqwest::Client,
    direct: reqwest::Client,
    options: HttpOptions,
}

impl Transport {
    pub(crate) fn new(options: HttpOptions) -> Result<Self> {
        options.validate()?;
        let build = |builder: reqwest::ClientBuilder| {
            builder
                .connect_timeout(options.connect_timeout)
                .build()
                .map_err(|err| Error::InvalidConfig {
                    field: "http",
                    reason: format!("could not build the HTTP client: {err}"),
                })
        };
        let client = build(reqwest::Client::builder())?;
        let direct = build(reqwest::Client::builder().no_proxy())?;
        Ok(Transport {
            client,
            direct,
            options,
        })
    }

    /// The client for `url`: the proxy-free one for loopback hosts.
    pub(crate) fn client_for(&self, url: &str) -> &reqwest::Client {
        let loopback = reqwest::Url::parse(url).is_ok_and(|url| {
            url.host_str().is_some_and(|host| {
                host.eq_ignore_ascii_case("localhost")
                    || host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            })
        });
        if loopback { &self.direct } else { &self.client }
    }

    pub(crate) fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// Sends the request that `make` builds, retrying before the first byte as
    /// [`HttpOptions`] describes, and returns a response with a success status.
    pub(crate) async fn send(
        &self,
        url: &str,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let retries_left = attempt <= self.options.max_retries;
            let sent = tokio::time::timeout(
                self.options.first_byte_timeout,
                make(self.client_for(url)).send(),
            )
            .await;
            let response = match sent {
                Err(_) => {
                    return Err(Error::Timeout {
                        phase: TimeoutPhase::FirstByte,
                        after: self.options.first_byte_timeout,
                        url: url.to_owned(),
                    });
                }
                Ok(Err(err)) if err.is_connect() && err.is_timeout() => {
                    return Err(Error::Timeout {
                        phase: TimeoutPhase::Connect,
                        after: self.options.connect_timeout,
                        url: url.to_owned(),
                    });
                }
                Ok(Err(err)) => {
                    if err.is_connect() && retries_left {
                        let wait = self.options.backoff(attempt);
                        tracing::debug!(%url, attempt, ?wait, error = %err, "connection failed; retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(Error::Connect {
                        url: url.to_owned(),
                        attempts: attempt,
                        source: Box::new(err),
                    });
                }
                Ok(Ok(response)) => response,
            };
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let retryable = status.as_u16() == 429 || status.as_u16() == 503;
            if retryable && retries_left {
                let wait = retry_after(&response)
                    .unwrap_or_else(|| self.options.backoff(attempt))
                    .min(self.options.max_backoff);
                tracing::debug!(%url, attempt, status = status.as_u16(), ?wait, "server busy; retrying");
                drop(response);
                tokio::time::sleep(wait).await;
                continue;
            }
            let body = self.read_error_body(response).await;
            return Err(Error::Http {
                status: status.as_u16(),
                body,
                url: url.to_owned(),
            });
        }
    }

    /// Sends the GET request that `make` builds (retried as [`Transport::send`] retries) and
    /// decodes its whole body as JSON, waiting at most the idle timeout for it.
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<T> {
        let response = self.send(url, make).await?;
        let idle = self.options.idle_timeout;
        let bytes = tokio::time::timeout(idle, response.bytes())
            .await
            .map_err(|_| Error::Timeout {
                phase: TimeoutPhase::Idle,
                after: idle,
                url: url.to_owned(),
            })?
            .map_err(|err| Error::Transport {
                url: url.to_owned(),
                source: Box::new(err),
            })?;
        serde_json::from_slice(&bytes).map_err(|err| Error::Decode {
            line_number: 1,
            line: truncate_for_error(&String::from_utf8_lossy(&bytes), 512),
            reason: err.to_string(),
        })
    }

    async fn read_error_body(&self, response: reqwest::Response) -> String {
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(self.options.idle_timeout, chunks.next()).await
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ERROR_BODY {
                break;
            }
        }
        truncate_for_error(String::from_utf8_lossy(&body).trim(), MAX_ERROR_BODY)
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// Turns raw body chunks into stream events for one wire format.
pub(crate) trait WireDecoder: Send {
    /// Decodes what `chunk` completes, appending events to `out`.
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<()>;
    /// Decodes whatever is left at the end of the body.
    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<()>;
}

/// Sends a request and streams the decoded answer, filling in the client-side timings of the
/// terminal event. Dropping the stream drops the response, which closes the connection.
pub(crate) fn event_stream<'a, D, F, M>(
    transport: &'a Transport,
    url: String,
    make: F,
    mut decoder: D,
    map_error: M,
) -> EventStream<'a>
where
    D: WireDecoder + 'a,
    F: Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + 'a,
    M: Fn(Error) -> Error + Send + 'a,
{
    async_stream::stream! {
        let started = Instant::now();
        let response = match transport.send(&url, make).await {
            Ok(response) => response,
            Err(err) => {
                yield Err(map_error(err));
                return;
            }
        };
        let idle = transport.options().idle_timeout;
        let mut body = response.bytes_stream();
        let mut events = Vec::new();
        let mut first_token = None;
        let mut text_bytes = 0usize;
        loop {
            let next = match tokio::time::timeout(idle, body.next()).await {
                Err(_) => Err(Error::Timeout { phase: TimeoutPhase::Idle, after: idle, url: url.clone() }),
                Ok(Some(Err(err))) => Err(Error::Transport { url: url.clone(), source: Box::new(err) }),
                Ok(Some(Ok(chunk))) => decoder.feed(&chunk, &mut events).map(|()| true),
                Ok(None) => decoder.finish(&mut events).map(|()| false),
            };
            for event in events.drain(..) {
                match event {
                    StreamEvent::Delta(text) => {
                        if text.is_empty() {
                            continue;
                        }
                        first_token.get_or_insert_with(|| started.elapsed());
                        text_bytes += text.len();
                        yield Ok(StreamEvent::Delta(text));
                    }
                    StreamEvent::Done(Finish { reason, mut usage }) => {
                        usage.time_to_first_token = first_token;
                        usage.total_time = started.elapsed();
                        usage.model_calls = 1;
                        yield Ok(StreamEvent::Done(Finish { reason, usage }));
                        return;
                    }
                }
            }
            // Events decoded before a failure in the same chunk are delivered first.
            match next {
                Ok(true) => {}
                Ok(false) => {
                    yield Err(Error::Truncated { text_bytes });
                    return;
                }
                Err(err) => {
                    yield Err(err);
                    return;
                }
            }
        }
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let options = HttpOptions {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            ..HttpOptions::default()
        };
        let waits: Vec<_> = (1..=4).map(|r| options.backoff(r).as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
    }

    #[test]
    fn zero_timeouts_are_rejected() {
        let options = HttpOptions {
            idle_timeout: Duration::ZERO,
            ..HttpOptions::default()
        };
        assert!(matches!(
            options.validate(),
            Err(Error::InvalidConfig {
                field: "idle_timeout",
                ..
            })
        ));
    }
}
