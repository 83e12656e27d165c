//! Accounted background work: every task an agent starts has a name, a tracing
//! span and a child of the agent's cancellation token, and is counted until it
//! ends, so `shutdown` can wait for all of them and say by name which did not stop.
//!
//! Many agents live in one process (tests, the lab), so nothing here is global: each
//! agent owns one [`Tasks`] and hands clones of it to the parts it starts.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// The background tasks of one agent. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Tasks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    stop: CancellationToken,
    tracker: TaskTracker,
    live: Mutex<BTreeMap<u64, String>>,
    next: AtomicU64,
}

/// Marks one task live while it exists; dropped when the task ends, however it ends
/// (returned, panicked, aborted), so the live list never keeps a dead task.
struct LiveGuard {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.inner.live.lock().expect("tasks lock").remove(&self.id);
    }
}

impl Tasks {
    /// Tasks stopped by `stop` (or by [`Tasks::shutdown`], which cancels it).
    pub fn new(stop: CancellationToken) -> Tasks {
        Tasks {
            inner: Arc::new(Inner {
                stop,
                tracker: TaskTracker::new(),
                live: Mutex::new(BTreeMap::new()),
                next: AtomicU64::new(1),
            }),
        }
    }

    /// The token every task's own token is a child of.
    pub fn token(&self) -> &CancellationToken {
        &self.inner.stop
    }

    fn register(&self, name: &str) -> LiveGuard {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.inner
            .live
            .lock()
            .expect("tasks lock")
            .insert(id, name.to_string());
        LiveGuard {
            inner: Arc::clone(&self.inner),
            id,
        }
    }

    /// Start `make(stop)` as a task named `name`; `stop` is a child of the agent's
    /// token that the task must watch. The task runs inside a `task` span.
    pub fn spawn<F, Fut>(&self, name: &str, make: F) -> JoinHandle<Fut::Output>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let guard = self.register(name);
        let span = tracing::info_span!("task", name);
        let fut = make(self.inner.stop.child_token());
        self.inner.tracker.spawn(
            async move {
                let _live = guard;
                fut.await
            }
            .instrument(span),
        )
    }

    /// Run `f` on the blocking pool as a task named `name`. Blocking work cannot be
    /// interrupted: it should be bounded (a hash of one entry, one delivery).
    pub fn spawn_blocking<F, R>(&self, name: &str, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let guard = self.register(name);
        let span = tracing::info_span!("task", name);
        self.inner.tracker.spawn_blocking(move || {
            let _live = guard;
            let _span = span.enter();
            f()
        })
    }

    /// Names of the tasks still running, sorted.
    pub fn live(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .live
            .lock()
            .expect("tasks lock")
            .values()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Ask every task to stop.
    pub fn shutdown(&self) {
        self.inner.stop.cancel();
    }

    /// Wait up to `deadline` for every task to end. No new task can start after
    /// this is called. `Err` names the tasks still running at the deadline.
    pub async fn join(&self, deadline: Duration) -> Result<(), Vec<String>> {
        self.inner.tracker.close();
        match tokio::time::timeout(deadline, self.inner.tracker.wait()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.live()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn join_waits_for_tasks_that_watch_their_token() {
        let tasks = Tasks::new(CancellationToken::new());
        tasks.spawn("waiter", |stop| async move { stop.cancelled().await });
        tasks.spawn("another", |stop| async move { stop.cancelled().await });
        assert_eq!(tasks.live(), vec!["another", "waiter"]);
        tasks.shutdown();
        tasks.join(Duration::from_secs(5)).await.unwrap();
        assert!(tasks.live().is_empty());
    }

    #[tokio::test]
    async fn join_names_the_tasks_that_did_not_stop() {
        let tasks = Tasks::new(CancellationToken::new());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn("deaf", |_stop| async move {
            let _ = rx.await;
        });
        tasks.shutdown();
        let left = tasks.join(Duration::from_millis(50)).await.unwrap_err();
        assert_eq!(left, vec!["deaf"]);
        drop(tx);
        tasks.join(Duration::from_secs(5)).await.unwrap();
    }

    #[tokio::test]
    async fn a_panicking_task_leaves_the_live_list() {
        let tasks = Tasks::new(CancellationToken::new());
        let h = tasks.spawn("boom", |_stop| async move { panic!("on purpose") });
        assert!(h.await.unwrap_err().is_panic());
        let b = tasks.spawn_blocking("blocking boom", || panic!("on purpose"));
        assert!(b.await.unwrap_err().is_panic());
        assert!(tasks.live().is_empty());
    }
}
