//! A thread of its own running a single-threaded runtime: the lab's origin runs on
//! one, as the separate machine it stands for.
//!
//! Why: on the runtime the agents share, the origin's tasks waited in one queue
//! behind the copies of the other agents. With 128 agents on 2 cores its "400 Mbit/s"
//! link served 5 MB/s: the master's 64 MiB took 8 s instead of 1.4 s, and every peer
//! waited on it (the WAN was slow because this machine's CPU was busy, which a real
//! WAN is not). On its own thread, the kernel's scheduler gives the origin the CPU
//! soon after it wakes, and the master's download ends at 2 s.
//!
//! The agents stay on the shared runtime: each on a thread of its own took about a
//! fifth more CPU for the same copies (one runtime, one epoll and one writer thread
//! per agent), and 128 agents finished later (11–13 s against 9–10.5 s).

use std::future::Future;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// How long a host's runtime waits, once stopped, for blocking work still running.
/// The lab joins its agents first, so there should be none.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A thread and its runtime; stopped (and the thread joined) on drop.
pub(super) struct Host {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Host {
    /// Start a thread named `name` running a runtime of its own.
    pub(super) fn start(name: &str) -> std::io::Result<Host> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(format!("{name}-blocking"))
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                // A current-thread runtime runs its tasks while this thread is in
                // `block_on`: until the host is stopped.
                rt.block_on(async {
                    let _ = stopped.await;
                });
                rt.shutdown_timeout(STOP_GRACE);
            })?;
        Ok(Host {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Run `fut` on this host and wait for its result. `Err` when it panicked.
    pub(super) async fn run<F>(&self, fut: F) -> Result<F::Output, String>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(fut).await.map_err(|e| e.to_string())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_hosts_own_thread_and_the_thread_ends_with_the_host() {
        let host = Host::start("lab-test-host").unwrap();
        let name = host
            .run(async { std::thread::current().name().map(str::to_string) })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("lab-test-host"));
        // A task the host's work spawns stays on the host.
        let inner = host
            .run(async {
                tokio::spawn(async { std::thread::current().name().map(str::to_string) })
                    .await
                    .unwrap()
            })
            .await
            .unwrap();
        assert_eq!(inner.as_deref(), Some("lab-test-host"));
        let panicked = host.run(async { panic!("on purpose") }).await;
        assert!(panicked.is_err());
        drop(host);
    }
}
