//! Progress of a job while `contentdist get` or `contentdist jobs watch` waits: a bar
//! on a terminal, a plain line about once a second otherwise (logs, CI, a
//! configuration-management tool). Both say the same, from [`status`]: percent and
//! bytes, rate and ETA while bytes move (never while paused or queued), the job's
//! elapsed time, and what it is doing.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use contentdist::job::{JobInfo, JobState, Source};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::format;

/// How often the plain output prints a line (and at once when the state changes).
const LINE_INTERVAL: Duration = Duration::from_secs(1);

/// The rate is measured over this much of the recent past.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// A rate is shown once the samples span this long (one poll says nothing).
const RATE_MIN_SPAN: Duration = Duration::from_millis(500);

/// Where progress goes: to stderr, so stdout holds only the result.
pub struct Progress {
    output: Output,
    meter: RateMeter,
}

enum Output {
    /// An interactive bar.
    Bar(ProgressBar),
    /// Plain lines: when the last one was printed, and for which state.
    Lines { last: Option<(Instant, JobState)> },
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn for_stderr() -> Progress {
        let output = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {wide_msg}")
                    .expect("a valid progress template")
                    .progress_chars("=> "),
            );
            Output::Bar(bar)
        } else {
            Output::Lines { last: None }
        };
        Progress {
            output,
            meter: RateMeter::default(),
        }
    }

    /// Show the job as last reported.
    pub fn update(&mut self, job: &JobInfo) {
        let now = Instant::now();
        if job.state == JobState::Downloading {
            self.meter.sample(now, job.bytes_verified);
        } else {
            // A pause or a queue is no transfer: the rate starts afresh after it.
            self.meter.reset();
        }
        let rate = self.meter.rate();
        match &mut self.output {
            Output::Bar(bar) => {
                bar.set_prefix(format!(
                    "{} {}",
                    job.request.content_id, job.request.version
                ));
                if job.bytes_total > 0 {
                    bar.set_length(job.bytes_total);
                }
                bar.set_position(job.bytes_verified);
                bar.set_message(status(job, rate));
            }
            Output::Lines { last } => {
                if let Some((at, state)) = *last {
                    if state == job.state && now.duration_since(at) < LINE_INTERVAL {
                        return;
                    }
                }
                *last = Some((now, job.state));
                eprintln!("{}", line(job, rate));
            }
        }
    }

    /// Remove the bar before the result is printed.
    pub fn finish(&self) {
        if let Output::Bar(bar) = &self.output {
            bar.finish_and_clear();
        }
    }
}

/// The rate of verified bytes over the last [`RATE_WINDOW`], from the polled counts.
#[derive(Debug, Default)]
struct RateMeter {
    samples: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    /// Record the bytes verified at `at`.
    fn sample(&mut self, at: Instant, bytes: u64) {
        if self.samples.back().is_some_and(|&(_, last)| bytes < last) {
            // Fewer than before (a resumed job re-verified less): start again.
            self.samples.clear();
        }
        self.samples.push_back((at, bytes));
        while self.samples.len() > 2
            && self
                .samples
                .front()
                .is_some_and(|&(t, _)| at.duration_since(t) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Forget the samples: the next rate is measured from scratch.
    fn reset(&mut self) {
        self.samples.clear();
    }

    /// Bytes per second over the samples, once they span [`RATE_MIN_SPAN`].
    fn rate(&self) -> Option<f64> {
        let (&(t0, b0), &(t1, b1)) = (self.samples.front()?, self.samples.back()?);
        let span = t1.duration_since(t0);
        (span >= RATE_MIN_SPAN).then(|| (b1 - b0) as f64 / span.as_secs_f64())
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
        (JobState::Paused, _) => format!("paused (contentdist jobs resume {})", job.id),
        (JobState::Done, _) => "done".into(),
        (JobState::Failed, _) => "failed".into(),
        (JobState::Cancelled, _) => "cancelled".into(),
    }
}

/// Everything the progress says of a job but its name:
/// `45% 1.4 MiB/3.0 MiB, 12.3 MiB/s, ETA 2 s, elapsed 1.5 s, from origin`.
/// Percent and bytes once the size is known; rate and ETA only while downloading,
/// with `rate` measured; elapsed once the job ran.
fn status(job: &JobInfo, rate: Option<f64>) -> String {
    let mut parts = Vec::new();
    if job.bytes_total > 0 {
        parts.push(format!(
            "{} {}/{}",
            format::percent(job.bytes_verified, job.bytes_total),
            format::bytes(job.bytes_verified),
            format::bytes(job.bytes_total)
        ));
    }
    if let (JobState::Downloading, Some(rate)) = (job.state, rate) {
        parts.push(format::rate(rate));
        let left = job.bytes_total.saturating_sub(job.bytes_verified);
        if rate >= 1.0 && left > 0 {
            let ms = (left as f64 / rate * 1000.0).min(u64::MAX as f64) as u64;
            parts.push(format!("ETA {}", format::duration_ms(ms)));
        }
    }
    if job.elapsed_ms > 0 {
        parts.push(format!("elapsed {}", format::duration_ms(job.elapsed_ms)));
    }
    parts.push(activity(job));
    parts.join(", ")
}

/// One plain progress line: `PKG00001 3: 45% 1.4 MiB/3.0 MiB, 12.3 MiB/s, ...`.
fn line(job: &JobInfo, rate: Option<f64>) -> String {
    format!(
        "{} {}: {}",
        job.request.content_id,
        job.request.version,
        status(job, rate)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn job(state: JobState, source: Source, verified: u64, total: u64) -> JobInfo {
        JobInfo {
            source,
            bytes_verified: verified,
            bytes_total: total,
            elapsed_ms: 12_345,
            ..crate::test_support::job(state)
        }
    }

    #[test]
    fn a_download_shows_percent_bytes_rate_eta_elapsed_and_source() {
        let downloading = job(JobState::Downloading, Source::Origin, 45 * MIB, 100 * MIB);
        assert_eq!(
            line(&downloading, Some(11.0 * MIB as f64)),
            "PKG00001 3: 45% 45.0 MiB/100.0 MiB, 11.0 MiB/s, ETA 5.0 s, elapsed 12.3 s, from origin"
        );
        let slow = job(JobState::Downloading, Source::Peer, 0, 100 * MIB);
        assert_eq!(
            line(&slow, Some(MIB as f64 / 60.0)),
            "PKG00001 3: 0% 0 B/100.0 MiB, 17.1 KiB/s, ETA 1 h 40 min, elapsed 12.3 s, from peer"
        );
    }

    #[test]
    fn no_rate_or_eta_before_one_is_measured_or_when_nothing_moves() {
        let downloading = job(JobState::Downloading, Source::Peer, 10 * MIB, 100 * MIB);
        assert_eq!(
            line(&downloading, None),
            "PKG00001 3: 10% 10.0 MiB/100.0 MiB, elapsed 12.3 s, from peer"
        );
        assert_eq!(
            line(&downloading, Some(0.0)),
            "PKG00001 3: 10% 10.0 MiB/100.0 MiB, 0 B/s, elapsed 12.3 s, from peer"
        );
    }

    #[test]
    fn a_paused_job_shows_no_rate_and_how_to_resume_it() {
        let paused = job(JobState::Paused, Source::None, 50 * MIB, 100 * MIB);
        assert_eq!(
            status(&paused, Some(3.0 * MIB as f64)),
            "50% 50.0 MiB/100.0 MiB, elapsed 12.3 s, paused (contentdist jobs resume 7)"
        );
    }

    #[test]
    fn a_queued_job_before_its_manifest_shows_its_state_only() {
        let queued = JobInfo {
            elapsed_ms: 0,
            ..job(JobState::Queued, Source::None, 0, 0)
        };
        assert_eq!(line(&queued, None), "PKG00001 3: queued");
    }

    #[test]
    fn a_job_behind_another_says_which_it_waits_for() {
        let waiting = JobInfo {
            waiting_for: Some(7),
            ..job(JobState::Queued, Source::None, 0, 100)
        };
        assert!(
            line(&waiting, None).contains("waiting for job 7 (it fetches the same content"),
            "{}",
            line(&waiting, None)
        );
    }

    #[test]
    fn the_rate_is_measured_over_the_recent_samples_and_restarts_after_a_pause() {
        let t = Instant::now();
        let at = |ms| t + Duration::from_millis(ms);
        let mut meter = RateMeter::default();
        meter.sample(at(0), 0);
        assert_eq!(meter.rate(), None, "one sample is no rate");
        meter.sample(at(200), MIB);
        assert_eq!(meter.rate(), None, "too short a span");
        meter.sample(at(1000), 4 * MIB);
        assert_eq!(meter.rate(), Some(4.0 * MIB as f64));
        // Ten seconds on at 1 MiB/s: the fast start has left the window.
        for s in 2..=11 {
            meter.sample(at(s * 1000), 4 * MIB + (s - 1) * MIB);
        }
        let rate = meter.rate().unwrap();
        assert!((rate - MIB as f64).abs() < 1.0, "{rate}");
        meter.reset();
        assert_eq!(meter.rate(), None);
        // Fewer bytes than before: measured afresh, never negative.
        meter.sample(at(12_000), 20 * MIB);
        meter.sample(at(13_000), 2 * MIB);
        meter.sample(at(14_000), 3 * MIB);
        assert_eq!(meter.rate(), Some(MIB as f64));
    }
}
