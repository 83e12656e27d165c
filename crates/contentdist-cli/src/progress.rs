//! Progress of a job while `contentdist get` waits: a bar on a terminal, a plain
//! line about once a second otherwise (logs, CI, a configuration-management tool).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use contentdist::job::{JobInfo, JobState, Source};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::format;

/// How often the plain output prints a line.
const LINE_INTERVAL: Duration = Duration::from_secs(1);

/// Where progress goes: to stderr, so stdout holds only the result.
pub enum Progress {
    /// An interactive bar.
    Bar(ProgressBar),
    /// Plain lines; remembers the last line's time and bytes to compute the rate.
    Lines {
        /// When the last line was printed and the bytes verified then.
        last: Option<(Instant, u64)>,
    },
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn for_stderr() -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::Lines { last: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .expect("a valid progress template")
            .progress_chars("=> "),
        );
        Progress::Bar(bar)
    }

    /// Show the job as last reported.
    pub fn update(&mut self, job: &JobInfo) {
        match self {
            Progress::Bar(bar) => {
                bar.set_prefix(format!(
                    "{} {}",
                    job.request.content_id, job.request.version
                ));
                if job.bytes_total > 0 {
                    bar.set_length(job.bytes_total);
                }
                bar.set_position(job.bytes_verified);
                bar.set_message(activity(job));
            }
            Progress::Lines { last } => {
                let now = Instant::now();
                let rate = match *last {
                    Some((at, _)) if now.duration_since(at) < LINE_INTERVAL => return,
                    Some((at, bytes)) => {
                        job.bytes_verified.saturating_sub(bytes) as f64
                            / now.duration_since(at).as_secs_f64()
                    }
                    None => 0.0,
                };
                *last = Some((now, job.bytes_verified));
                eprintln!("{}", line(job, rate));
            }
        }
    }

    /// Remove the bar before the result is printed.
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// What the job is doing, in words: `from origin`, `queued`, `paused`, ...
fn activity(job: &JobInfo) -> String {
    match (job.state, job.source) {
        (JobState::Downloading, Source::Origin) => "from origin".into(),
        (JobState::Downloading, Source::Peer) => "from peer".into(),
        (JobState::Downloading, Source::Cache) => "from cache".into(),
        (JobState::Downloading, Source::None) => "starting".into(),
        (JobState::Queued, _) => match job.waiting_for {
            Some(other) => format!(
                "waiting for job {other} (it fetches the same content, or waits for a client certificate)"
            ),
            None => "queued".into(),
        },
        (JobState::WaitingForCertificate, _) => match job.cert_wait_until_unix {
            Some(t) => format!(
                "waiting for a client certificate until {} (P2PSslSettings 0x2; see contentdist certs)",
                contentdist::certstore::utc(t as i64)
            ),
            None => "waiting for a client certificate".into(),
        },
        (JobState::Delivering, _) => "delivering".into(),
        (JobState::Paused, _) => "paused (contentdist jobs resume ID)".into(),
        (JobState::Done, _) => "done".into(),
        (JobState::Failed, _) => "failed".into(),
        (JobState::Cancelled, _) => "cancelled".into(),
    }
}

/// One plain progress line: `PKG00001 3: 45% 12.3 MiB/s from origin`.
fn line(job: &JobInfo, rate: f64) -> String {
    let what = format!("{} {}", job.request.content_id, job.request.version);
    let percent = format::percent(job.bytes_verified, job.bytes_total);
    if job.state == JobState::Downloading {
        format!("{what}: {percent} {} {}", format::rate(rate), activity(job))
    } else {
        format!("{what}: {percent} {}", activity(job))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: JobState, source: Source, verified: u64, total: u64) -> JobInfo {
        JobInfo {
            source,
            bytes_verified: verified,
            bytes_total: total,
            ..crate::test_support::job(state)
        }
    }

    #[test]
    fn plain_line_shows_percent_rate_and_source() {
        let downloading = job(JobState::Downloading, Source::Origin, 45, 100);
        assert_eq!(
            line(&downloading, 12_897_485.0),
            "PKG00001 3: 45% 12.3 MiB/s from origin"
        );
        let from_peer = job(JobState::Downloading, Source::Peer, 10, 100);
        assert_eq!(line(&from_peer, 0.0), "PKG00001 3: 10% 0 B/s from peer");
    }

    #[test]
    fn a_job_behind_another_says_which_it_waits_for() {
        let waiting = JobInfo {
            waiting_for: Some(7),
            ..job(JobState::Queued, Source::None, 0, 100)
        };
        assert!(
            line(&waiting, 0.0).contains("waiting for job 7 (it fetches the same content"),
            "{}",
            line(&waiting, 0.0)
        );
    }

    #[test]
    fn plain_line_shows_state_when_not_transferring() {
        assert_eq!(
            line(&job(JobState::Queued, Source::None, 0, 0), 0.0),
            "PKG00001 3: - queued"
        );
        assert_eq!(
            line(&job(JobState::Paused, Source::None, 50, 100), 0.0),
            "PKG00001 3: 50% paused (contentdist jobs resume ID)"
        );
    }
}
