//! The shared core both front ends call: choosing the upstream and the strategies of a request,
//! building them (validated before anything runs), and running their choices as streams owned
//! by the response, so that a client that goes away cancels every inner call.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use mars::strategies::registry::{self, Defaults, StrategyName};
use mars::{ChatRequest, Completion, EventStream, ModelClient, StreamEvent, Usage};
use tokio::time::Instant;

use crate::code::{CodeChecks, VerifyGuard};
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::fields::{self, Body};
use crate::limit::{Gate, Limited};
use crate::metrics::Metrics;
use crate::select::{self, Strategies};
use crate::upstream::{Route, RouteError, Upstreams, Wire};

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The server's settings.
    pub config: ServerConfig,
    /// The upstreams and their model lists.
    pub upstreams: Upstreams,
    /// `--max-concurrency`'s permits.
    pub gate: Arc<Gate>,
    /// `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The strategies served: every registered one that builds without a verifier, and with
    /// [`AppState::code`] the code strategies too.
    pub servable: Vec<StrategyName>,
    /// The sandbox and its limits, when code strategies are served.
    pub code: Option<CodeChecks>,
}

/// A request's model and strategies, before its messages are read.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The model string as requested, echoed in responses.
    pub requested: String,
    /// Where the base model lives.
    pub route: Route,
    /// The strategies chosen, if any (none: the request is relayed or sent as it is).
    pub strategies: Option<Strategies>,
}

/// The choices of a started request, each a stream owned by the response.
pub struct Started {
    /// `X-Mars-Strategy`.
    pub label: String,
    /// One stream per choice, in choice order.
    pub choices: Vec<EventStream<'static>>,
    /// The request's code verifier, when a strategy uses one: what it ran and passed
    /// (`usage.mars.verification`); its counts reach `/metrics` when every choice is gone.
    pub verification: Option<Arc<VerifyGuard>>,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("label", &self.label)
            .field("choices", &self.choices.len())
            .finish()
    }
}

/// The label of a request without a strategy.
pub const BASELINE: &str = "baseline";

impl AppState {
    /// The strategies the server can run without a verifier: those the registry does not
    /// mark as needing one (`repair`, `codet`), and that build without one.
    pub fn servable_strategies() -> Vec<StrategyName> {
        Self::servable_strategies_with(false)
    }

    /// The strategies the server can run, with a code verifier (`verifiers`) or without.
    pub fn servable_strategies_with(verifiers: bool) -> Vec<StrategyName> {
        let client = mars::ScriptedClient::new([]);
        let defaults = Defaults {
            verifier: verifiers.then(|| {
                mars::strategies::Verifier::new(|_, _| async { 0.0 })
                    .with_tests(|_, _, _| async { Vec::new() })
            }),
            ..Defaults::default()
        };
        StrategyName::ALL
            .iter()
            .copied()
            .filter(|name| verifiers || !name.needs_verifier())
            .filter(|name| {
                let spec = registry::StrategySpec::single(*name);
                registry::build(&spec, &client, &defaults).is_ok()
            })
            .collect()
    }

    /// Parses `text` (read from `field`) against what this server serves.
    fn parse_strategies(&self, text: &str, field: &str) -> Result<Strategies, ApiError> {
        select::parse_strategies(text, field, &self.servable, self.code.is_some())
    }

    /// The strategy prefixes `/v1/models` and `/api/tags` list before each base model: every
    /// servable strategy's slug, and with code strategies the `_verifier` variants.
    pub fn listed_prefixes(&self) -> Vec<String> {
        let mut prefixes: Vec<String> = self
            .servable
            .iter()
            .filter(|s| s.slug() != "none")
            .map(|s| s.slug().to_owned())
            .collect();
        if self.code.is_some() {
            prefixes.extend(
                self.servable
                    .iter()
                    .filter(|s| s.takes_verifier())
                    .map(|s| format!("{}_verifier", s.slug())),
            );
        }
        prefixes
    }

    /// Routes the body's `model` and reads a strategy from its prefix or from the
    /// `optillm_approach` / `mars_strategy` field. A name that is exactly an upstream model is
    /// never parsed as a prefix.
    pub async fn plan(&self, body: &Body) -> Result<Plan, ApiError> {
        let requested = fields::string(body, "model")?;
        // The cached model lists first; fetched again once when the name leads nowhere.
        let mut found = self.route_with_prefix(&requested, false).await;
        if matches!(found, Err(RouteError::Unknown(_))) {
            found = self.route_with_prefix(&requested, true).await;
        }
        let (route, prefix) = match found {
            Ok(found) => found,
            Err(RouteError::Ambiguous(names)) => return Err(ambiguous(&requested, &names)),
            Err(RouteError::Unknown(names)) => {
                return Err(match select::split_prefix(&requested) {
                    Some((_, rest)) => unknown(rest, &names, true),
                    None => unknown(&requested, &names, false),
                });
            }
        };
        let mut strategies = match prefix {
            Some(prefix) => Some(self.parse_strategies(&prefix, "model")?),
            None => None,
        };
        for field in ["optillm_approach", "mars_strategy"] {
            if let Some(text) = fields::opt_string(body, field)?
                && strategies.is_none()
            {
                strategies = Some(self.parse_strategies(&text, field)?);
            }
        }
        Ok(Plan {
            requested,
            route,
            strategies,
        })
    }

    /// `model` as an upstream's model, else as a strategy prefix and a model; the prefix is
    /// returned unparsed.
    async fn route_with_prefix(
        &self,
        model: &str,
        fresh: bool,
    ) -> Result<(Route, Option<String>), RouteError> {
        match self.upstreams.route(model, fresh).await {
            Err(RouteError::Unknown(names)) => match select::split_prefix(model) {
                Some((prefix, rest)) => {
                    let route = self.upstreams.route(rest, fresh).await?;
                    Ok((route, Some(prefix.to_owned())))
                }
                None => Err(RouteError::Unknown(names)),
            },
            other => other.map(|route| (route, None)),
        }
    }

    /// Strips an `<optillm_approach>` tag from the request's messages and, when the plan has
    /// no strategy yet, takes it from the tag.
    pub fn apply_tag(&self, plan: &mut Plan, request: &mut ChatRequest) -> Result<(), ApiError> {
        let texts = request
            .system
            .iter_mut()
            .chain(request.messages.iter_mut().map(|m| &mut m.content));
        for text in texts {
            if let Some((value, rest)) = select::strip_tag(text) {
                *text = rest;
                if plan.strategies.is_none() {
                    plan.strategies = Some(self.parse_strategies(&value, "optillm_approach")?);
                }
                break;
            }
        }
        Ok(())
    }

    /// The wire of the plan's upstream.
    pub fn wire(&self, plan: &Plan) -> Wire {
        self.upstreams
            .get(plan.route.upstream)
            .map_or(Wire::Embedded, |u| u.wire())
    }

    /// Builds the plan's strategies over its upstream (every stage validated now, before any
    /// call) and returns one stream per choice: each alternative `n` times, alternative-major.
    /// Choice `i > 0` of an alternative gets the request's seed plus `i`.
    pub fn start(
        &self,
        plan: &Plan,
        request: &ChatRequest,
        n: usize,
        keep_alive: Option<String>,
        key: Option<String>,
    ) -> Result<Started, ApiError> {
        let upstream = self
            .upstreams
            .get(plan.route.upstream)
            .ok_or_else(|| ApiError::internal("the routed upstream is gone"))?;
        let client = Limited::new(
            upstream.client(&plan.route.model, keep_alive, key),
            Arc::clone(&self.gate),
            upstream.wire() == Wire::Embedded,
        );
        let verification = match (&plan.strategies, &self.code) {
            (Some(strategies), Some(code)) if strategies.uses_verifier() => {
                let verifier = code.verifier(request, &strategies.label())?;
                Some(Arc::new(VerifyGuard::new(
                    verifier,
                    Arc::clone(&self.metrics),
                )))
            }
            _ => None,
        };
        let defaults = Defaults {
            verifier: verification.as_ref().map(|guard| guard.verifier()),
            ..Defaults::default()
        };
        let specs: Vec<Option<&registry::StrategySpec>> = match &plan.strategies {
            None => vec![None],
            Some(s) => s.alternatives.iter().map(Some).collect(),
        };
        let mut choices = Vec::with_capacity(specs.len() * n);
        for spec in specs {
            for i in 0..n {
                let mut request = request.clone();
                if i > 0 {
                    request.options.seed = request.options.seed.map(|s| s.wrapping_add(i as u64));
                }
                let runner: Box<dyn ModelClient> = match spec {
                    None => Box::new(client.clone()),
                    Some(spec) => registry::build(spec, client.clone(), &defaults)
                        .map_err(|err| build_error(spec.as_str(), &err))?,
                };
                choices.push(owned_stream(runner, request, verification.clone()));
            }
        }
        let label = plan
            .strategies
            .as_ref()
            .map_or_else(|| BASELINE.to_owned(), Strategies::label);
        Ok(Started {
            label,
            choices,
            verification,
        })
    }
}

fn build_error(spec: &str, err: &mars::Error) -> ApiError {
    match err {
        mars::Error::InvalidConfig {
            field: "verifier", ..
        } => select::needs_verifier("model", spec),
        other => ApiError::bad_request(format!("strategy {spec:?} cannot be built: {other}")),
    }
}

fn ambiguous(model: &str, names: &[String]) -> ApiError {
    ApiError::model_not_found(format!(
        "model {model:?} is served by more than one upstream: {}",
        names.join(", ")
    ))
}

fn unknown(model: &str, names: &[String], after_prefix: bool) -> ApiError {
    let what = if after_prefix { "base model" } else { "model" };
    let list = if names.is_empty() {
        "none (no upstream answered)".to_owned()
    } else {
        names.join(", ")
    };
    ApiError::model_not_found(format!(
        "{what} {model:?} not found; available models: {list} (each also with a strategy \
         prefix such as `moa-`)"
    ))
}

/// A stream that owns its client (a strategy, or the plain upstream client) and its share of
/// the request's verifier.
fn owned_stream(
    runner: Box<dyn ModelClient>,
    request: ChatRequest,
    verification: Option<Arc<VerifyGuard>>,
) -> EventStream<'static> {
    Box::pin(async_stream::stream! {
        let _verification = verification;
        let mut events = runner.stream_chat(request);
        while let Some(event) = events.next().await {
            yield event;
        }
    })
}

/// Drains every choice concurrently, within `timeout`; the first failure ends the request and
/// drops the other choices (their calls are cancelled). The summed usage covers every choice.
pub async fn collect_all(
    started: Started,
    timeout: Duration,
) -> Result<(Vec<Completion>, Usage), ApiError> {
    let all = futures::future::try_join_all(
        started
            .choices
            .into_iter()
            .map(mars::client::collect_completion),
    );
    let completions = tokio::time::timeout(timeout, all)
        .await
        .map_err(|_| ApiError::timeout(timeout))?
        .map_err(|err| ApiError::from_mars(&err))?;
    let mut usage = Usage::default();
    for completion in &completions {
        usage.accumulate(&completion.usage);
    }
    Ok((completions, usage))
}

/// What a streaming response does next.
#[derive(Debug)]
pub enum Tick {
    /// An event of choice `index`.
    Event(usize, mars::Result<StreamEvent>),
    /// Nothing came for the keep-alive interval.
    KeepAlive,
    /// The request ran past `--request-timeout`.
    TimedOut,
    /// Every choice has ended.
    End,
}

/// Every choice's events merged as they come, each tagged with its choice index; with a
/// keep-alive tick when none comes for `keep_alive`, and a timeout at `deadline`.
pub struct Ticker {
    merged: BoxStream<'static, (usize, mars::Result<StreamEvent>)>,
    deadline: Instant,
    timeout: Duration,
    keep_alive: Duration,
}

impl std::fmt::Debug for Ticker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticker")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Ticker {
    /// Merges `choices`.
    pub fn new(
        choices: Vec<EventStream<'static>>,
        timeout: Duration,
        keep_alive: Duration,
    ) -> Self {
        let tagged = choices
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.map(move |event| (i, event)).boxed());
        Ticker {
            merged: futures::stream::select_all(tagged).boxed(),
            deadline: Instant::now() + timeout,
            timeout,
            keep_alive,
        }
    }

    /// The error of a request that ran past its time limit.
    pub fn timed_out(&self) -> ApiError {
        ApiError::timeout(self.timeout)
    }

    /// An event that is ready now, without waiting: lets a response write several events in
    /// one chunk when the upstream is ahead of the client.
    pub fn ready(&mut self) -> Option<(usize, mars::Result<StreamEvent>)> {
        use futures::FutureExt;
        self.merged.next().now_or_never().flatten()
    }

    /// The first thing to send, waited for at most [`FIRST_WAIT`] (and the keep-alive
    /// interval): a failure that comes at once still gets its HTTP status, and otherwise the
    /// response's headers go out without waiting for a whole keep-alive interval.
    pub async fn first(&mut self) -> Tick {
        self.within(self.keep_alive.min(FIRST_WAIT)).await
    }

    /// The next thing to send.
    pub async fn next(&mut self) -> Tick {
        self.within(self.keep_alive).await
    }

    async fn within(&mut self, wait: Duration) -> Tick {
        let wait = wait.min(self.deadline.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(wait, self.merged.next()).await {
            Ok(Some((i, event))) => Tick::Event(i, event),
            Ok(None) => Tick::End,
            Err(_) if Instant::now() >= self.deadline => Tick::TimedOut,
            Err(_) => Tick::KeepAlive,
        }
    }
}

/// Longest a streaming response waits for its first event before sending its headers.
pub const FIRST_WAIT: Duration = Duration::from_secs(1);

/// Most bytes a response coalesces from events that are ready at once.
pub const COALESCE_BYTES: usize = 64 * 1024;

/// OpenAI's name of a finish reason.
pub fn finish_name(reason: &mars::FinishReason) -> &str {
    match reason {
        mars::FinishReason::Stop => "stop",
        mars::FinishReason::Length => "length",
        mars::FinishReason::Other(other) if other.is_empty() => "stop",
        mars::FinishReason::Other(other) => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_failed_choice_ends_the_request_without_waiting_for_the_others() {
        let failed: EventStream<'static> =
            Box::pin(futures::stream::iter([Err(mars::Error::Backend {
                message: "boom".into(),
            })]));
        let endless: EventStream<'static> = Box::pin(futures::stream::pending());
        let started = Started {
            label: BASELINE.into(),
            choices: vec![endless, failed],
            verification: None,
        };
        let err = collect_all(started, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::BAD_GATEWAY, "{err:?}");
    }
}
