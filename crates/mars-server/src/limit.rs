//! The global bound on concurrent upstream calls: [`Limited`] wraps an upstream client so that
//! every call (every inner call of a strategy included) holds a permit of one shared
//! semaphore while its stream lives, and counts calls, tokens and errors.

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use mars::{BatchRequest, ChatRequest, Completion, EventStream, ModelClient, StreamEvent};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// The permits of `--max-concurrency`, shared by every upstream, and the metrics the calls
/// update.
#[derive(Debug)]
pub struct Gate {
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Gate {
    /// A gate of `permits` concurrent calls.
    pub fn new(permits: usize, metrics: Arc<Metrics>) -> Self {
        Gate {
            permits: Arc::new(Semaphore::new(permits.max(1))),
            metrics,
        }
    }

    /// Waits for a permit, counted in the queue-depth gauge while waiting (a wait dropped
    /// before it ends, by a timeout or a client that went away, leaves the gauge too).
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        let _queued = Queued::new(&self.metrics);
        Arc::clone(&self.permits).acquire_owned().await.ok()
    }

    /// The metrics the gate's calls update.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// One call in the queue-depth gauge while it lives.
struct Queued<'a>(&'a Metrics);

impl<'a> Queued<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.add_queued(1);
        Queued(metrics)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.add_queued(-1);
    }
}

/// An upstream client whose every call holds a [`Gate`] permit while its stream lives.
///
/// A stream dropped early (the client went away) drops the inner stream and the permit with
/// it, so the upstream connection closes and the permit returns at once. Generic over what it
/// wraps, as tower's `Timeout<S>`.
#[derive(Debug, Clone)]
pub struct Limited<C> {
    inner: C,
    gate: Arc<Gate>,
    batches: bool,
}

impl<C> Limited<C> {
    /// Wraps `inner`. `batches`: the client decodes a [`BatchRequest`] in one job (the
    /// embedded engine), so a batch takes one permit; otherwise each sample is its own call
    /// with its own permit.
    pub fn new(inner: C, gate: Arc<Gate>, batches: bool) -> Self {
        Limited {
            inner,
            gate,
            batches,
        }
    }

    /// The wrapped client.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// Gives the wrapped client back.
    pub fn into_inner(self) -> C {
        self.inner
    }
}

impl<C: ModelClient> ModelClient for Limited<C> {
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        let gate = Arc::clone(&self.gate);
        let inner = &self.inner;
        Box::pin(async_stream::stream! {
            let Some(_permit) = gate.acquire().await else {
                yield Err(mars::Error::Backend { message: "the server is shutting down".into() });
                return;
            };
            gate.metrics().model_call();
            let mut events = inner.stream_chat(request);
            while let Some(event) = events.next().await {
                match &event {
                    Ok(StreamEvent::Done(finish)) => gate.metrics().tokens(&finish.usage),
                    Err(_) => gate.metrics().upstream_error(),
                    Ok(StreamEvent::Delta(_)) => {}
                }
                yield event;
            }
        })
    }

    fn complete_batch(&self, batch: BatchRequest) -> BoxFuture<'_, Vec<mars::Result<Completion>>> {
        if !self.batches {
            return Box::pin(mars::client::complete_concurrently(self, batch));
        }
        let gate = Arc::clone(&self.gate);
        Box::pin(async move {
            let Some(_permit) = gate.acquire().await else {
                return batch
                    .samples
                    .iter()
                    .map(|_| {
                        Err(mars::Error::Backend {
                            message: "the server is shutting down".into(),
                        })
                    })
                    .collect();
            };
            let results = self.inner.complete_batch(batch).await;
            for result in &results {
                gate.metrics().model_call();
                match result {
                    Ok(completion) => gate.metrics().tokens(&completion.usage),
                    Err(_) => gate.metrics().upstream_error(),
                }
            }
            results
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mars::{ModelClientExt, ScriptedClient, Turn};
    use std::time::Duration;

    #[tokio::test]
    async fn calls_are_counted_and_permits_returned() {
        let metrics = Arc::new(Metrics::default());
        let gate = Arc::new(Gate::new(1, Arc::clone(&metrics)));
        let turns =
            (0..3).map(|i| Turn::text(format!("a{i}")).with_delay(Duration::from_millis(5)));
        let client = Limited::new(ScriptedClient::new(turns), Arc::clone(&gate), false);
        let batch = BatchRequest::new("q".into(), vec![Default::default(); 3]);
        let results = client.complete_batch(batch).await;
        assert_eq!(results.len(), 3);
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(metrics.model_calls(), 3);
        assert_eq!(gate.permits.available_permits(), 1);
        client.complete("q").await.unwrap_err();
        assert!(metrics.render().contains("mars_upstream_errors_total 1"));
    }

    #[tokio::test]
    async fn a_dropped_wait_leaves_the_queue_gauge() {
        let metrics = Arc::new(Metrics::default());
        let gate = Gate::new(1, Arc::clone(&metrics));
        let held = gate.acquire().await.unwrap();
        {
            let waiting = gate.acquire();
            futures::pin_mut!(waiting);
            assert!(futures::poll!(waiting.as_mut()).is_pending());
            assert!(metrics.render().contains("mars_queue_depth 1"));
        }
        assert!(
            metrics.render().contains("mars_queue_depth 0"),
            "{}",
            metrics.render()
        );
        drop(held);
    }
}
