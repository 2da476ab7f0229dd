//! Code strategies in `mars serve`: the sandbox found at start (`--sandbox`), the bound on
//! sandbox runs over every request (`--max-sandbox-runs`), each request's sandbox budget
//! (`--sandbox-budget`), and one [`RequestVerifier`] per request, whose counts reach
//! `usage.mars.verification` and `/metrics`.
//!
//! Model-written code from strangers' prompts runs on this host: every candidate gets the
//! sandbox's jail and limits (the README's "The sandbox"), and each request a grader of its
//! own, so no verdict or compiled program is shared between requests.

use std::sync::Arc;
use std::time::Duration;

use mars::ChatRequest;
use mars::eval::grade::Grader;
use mars::eval::sandbox::{Sandbox, SandboxConfig};
use mars::eval::verify::{RequestVerifier, VerifyCounts, VerifyLimits};
use tokio::sync::Semaphore;

use crate::config::{SandboxMode, ServerConfig};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// What the server needs to verify code: present only when the sandbox started.
#[derive(Debug, Clone)]
pub struct CodeChecks {
    sandbox: Sandbox,
    permits: Arc<Semaphore>,
    max_runs: usize,
    budget: Duration,
}

impl CodeChecks {
    /// Starts the sandbox as `config.sandbox` says: `Ok(None)` when code strategies are not
    /// served (`off`, or `auto` on a host where the sandbox does not start; the reason is
    /// returned with it), an error for `on` without a sandbox.
    pub async fn start(config: &ServerConfig) -> Result<(Option<CodeChecks>, String), String> {
        if config.sandbox == SandboxMode::Off {
            return Ok((None, "not served (--sandbox off)".into()));
        }
        match Sandbox::new(SandboxConfig::default()).await {
            Ok(sandbox) => {
                let checks =
                    CodeChecks::new(sandbox, config.max_sandbox_runs, config.sandbox_budget);
                let said = checks.describe();
                Ok((Some(checks), said))
            }
            Err(err) if config.sandbox == SandboxMode::Auto => Ok((
                None,
                format!("not served: the sandbox does not start here: {err}"),
            )),
            Err(err) => Err(format!(
                "--sandbox on, but the sandbox does not start: {err}"
            )),
        }
    }

    /// Checks over `sandbox`, at most `max_runs` sandbox runs at once, `budget` per request.
    pub fn new(sandbox: Sandbox, max_runs: usize, budget: Duration) -> Self {
        let max_runs = max_runs.max(1);
        CodeChecks {
            sandbox,
            permits: Arc::new(Semaphore::new(max_runs)),
            max_runs,
            budget,
        }
    }

    /// One line for the start-up message: served, with the isolation in force and the limits.
    pub fn describe(&self) -> String {
        format!(
            "served (codet, repair, *_verifier); sandbox isolation: {}; at most {} sandbox \
             runs at once; {} s of sandbox time per request",
            self.sandbox.isolation(),
            self.max_runs,
            self.budget.as_secs()
        )
    }

    /// The verifier of one request, or a 400 saying why its code cannot be checked.
    pub fn verifier(
        &self,
        request: &ChatRequest,
        strategy: &str,
    ) -> Result<RequestVerifier, ApiError> {
        let limits = VerifyLimits {
            permits: Some(Arc::clone(&self.permits)),
            budget: Some(self.budget),
        };
        RequestVerifier::with_limits(request, Grader::new(self.sandbox.clone()), limits).map_err(
            |err| {
                ApiError::bad_field(
                    "messages",
                    format!("strategy {strategy:?} cannot verify this request: {err}"),
                )
            },
        )
    }

    /// Sandbox runs in flight now, over every request.
    pub fn runs_in_flight(&self) -> usize {
        self.max_runs - self.permits.available_permits()
    }
}

/// Adds a request's verification counts to `/metrics` once its work is gone (every choice's
/// stream dropped, finished or not).
#[derive(Debug)]
pub struct VerifyGuard {
    verifier: RequestVerifier,
    metrics: Arc<Metrics>,
}

impl VerifyGuard {
    /// A guard over `verifier`'s counts.
    pub fn new(verifier: RequestVerifier, metrics: Arc<Metrics>) -> Self {
        VerifyGuard { verifier, metrics }
    }

    /// The counts so far.
    pub fn counts(&self) -> VerifyCounts {
        self.verifier.counts()
    }

    /// The verifier the request's strategies take.
    pub fn verifier(&self) -> mars::strategies::Verifier {
        self.verifier.verifier()
    }
}

impl Drop for VerifyGuard {
    fn drop(&mut self) {
        self.metrics.verification(&self.verifier.counts());
    }
}
