//! A job's membership in one content's election, and the master policy around it:
//! when a job that cannot be master stops waiting and downloads itself, how long a
//! failed copy waits for the election to notice a dead master, and how long a
//! master keeps announcing after it holds everything. Jobs ask; this module decides.

use std::time::Duration;

use tokio::sync::watch;

use super::{Role, SubnetHandle};
use crate::manifest::ContentKey;
use crate::tasks::Tasks;

/// The subnet's policy for masters and followers.
#[derive(Clone, Debug)]
pub struct RolePolicy {
    /// False for preboot agents and weight 0: they never become master, so when no
    /// master appears they download from the origin themselves, serving nobody.
    pub can_be_master: bool,
    /// How long such an agent waits for a master before that fallback.
    pub fallback_after: Duration,
    /// After a failed copy, how long to wait for the election to notice a dead
    /// master (its heartbeats stop: `master_timeout`, 3.5 s) before counting it.
    pub master_grace: Duration,
    /// Consecutive failed copies from one master that the election still reports
    /// alive before the job gives up with the failure's code (the product's 0x2EFD
    /// / 0x4CF: the master's peer-copy server is off or on another port).
    pub copy_attempts: u32,
    /// How long a master keeps announcing a content after it holds all of it: peers
    /// still copying need it; after that it resigns and stays a plain holder (it
    /// still answers elections, so a late peer elects it again at once).
    pub linger: Duration,
}

impl Default for RolePolicy {
    fn default() -> Self {
        RolePolicy {
            can_be_master: true,
            fallback_after: Duration::from_secs(10),
            master_grace: Duration::from_secs(5),
            copy_attempts: 3,
            linger: Duration::from_secs(600),
        }
    }
}

/// What a job waiting in an election should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// The role changed: look at it again.
    RoleChanged,
    /// No master appeared and this agent cannot be one: download from the origin.
    FallBack,
}

/// What a job should do after a copy from a master failed.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// The election moved on (a new master, or this agent): go on with the new role.
    RoleChanged,
    /// The master still counts as alive: try it again.
    Retry,
    /// It failed `copy_attempts` times in a row while alive: give up.
    GiveUp,
}

/// One job's part in the election for one content.
pub struct Membership {
    subnet: SubnetHandle,
    key: ContentKey,
    role: watch::Receiver<Role>,
    failures: u32,
    /// When this job joined: the first wait for a master counts from here, so that a
    /// job that waited for its role before it had the manifest (`job::manifest`)
    /// does not wait the fallback delay on top. Later waits (after a master was
    /// lost) count from when they start.
    joined: Option<tokio::time::Instant>,
}

impl SubnetHandle {
    /// Join (or start) the election for `key`, holding `share_permille` of it.
    pub fn join(&self, key: &ContentKey, share_permille: u16) -> Membership {
        Membership {
            subnet: self.clone(),
            key: key.clone(),
            role: self.want(key, share_permille),
            failures: 0,
            joined: Some(tokio::time::Instant::now()),
        }
    }
}

impl Membership {
    /// The role now (and marks it seen, for [`Membership::changed`]).
    pub fn role(&mut self) -> Role {
        self.role.borrow_and_update().clone()
    }

    /// The role was last seen as master.
    pub fn is_master(&self) -> bool {
        *self.role.borrow() == Role::Master
    }

    /// Wait until the role changes. The driver outlives every membership; if it
    /// stopped (agent shutdown), this waits for ever and the job's token ends it.
    pub async fn changed(&mut self) {
        if self.role.changed().await.is_err() {
            std::future::pending::<()>().await
        }
    }

    /// While electing: wait for a role, or, for an agent that cannot be master, for
    /// the fallback delay.
    pub async fn wait_electing(&mut self) -> Waited {
        let policy = self.subnet.policy().clone();
        let from = self.joined.take().unwrap_or_else(tokio::time::Instant::now);
        let fallback = async {
            if policy.can_be_master {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep_until(from + policy.fallback_after).await
            }
        };
        tokio::select! {
            _ = self.changed() => Waited::RoleChanged,
            _ = fallback => Waited::FallBack,
        }
    }

    /// Leave the election (the job ends without the content): this agent no
    /// longer stands for it, nor follows anyone for it.
    pub fn leave(self) {
        self.subnet.forget(&self.key);
    }

    /// A copy made progress or the role changed: failures start counting anew.
    pub fn reset_failures(&mut self) {
        self.failures = 0;
    }

    /// A copy from the master failed as if it were lost: give the election the
    /// grace time to notice, then say whether to retry or give up.
    pub async fn after_copy_failure(&mut self) -> AfterFailure {
        let policy = self.subnet.policy().clone();
        tokio::select! {
            _ = self.changed() => {
                self.failures = 0;
                AfterFailure::RoleChanged
            }
            _ = tokio::time::sleep(policy.master_grace) => {
                self.failures += 1;
                if self.failures >= policy.copy_attempts {
                    AfterFailure::GiveUp
                } else {
                    AfterFailure::Retry
                }
            }
        }
    }

    /// Every block is verified: answer elections for it from now on. A master keeps
    /// announcing for the linger time (a task in `tasks`), then resigns and stays a
    /// plain holder.
    pub fn complete(self, tasks: &Tasks) {
        self.subnet.complete(&self.key);
        if !self.is_master() {
            return;
        }
        let linger = self.subnet.policy().linger;
        let (subnet, key) = (self.subnet, self.key);
        tasks.spawn("master linger", move |stop| async move {
            tokio::select! {
                // Only a master resigns: a head start (the role is master from its
                // first moment) may have finished the content and then lost the
                // election, and a later job for the same content must keep its slot.
                _ = tokio::time::sleep(linger) => if subnet.is_master_of(&key) {
                    subnet.forget(&key);
                    subnet.complete(&key);
                },
                _ = stop.cancelled() => {}
            }
        });
    }
}
