//! `contentdist get`: ask the local agent for a content version and wait for it;
//! `contentdist jobs watch` (`get --attach`): wait for a job already submitted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use contentdist::codes::Code;
use contentdist::control::{ClientError, ControlClient};
use contentdist::job::{JobId, JobInfo, JobRequest, JobState};
use tracing::debug;

use crate::exit::Exit;
use crate::format;
use crate::progress::Progress;
use crate::settings::SettingsArgs;

/// How long one request for the job waits for its state to change: the agent
/// answers as soon as it does (so `get` returns within a millisecond or two of the
/// delivery; polling every 50 ms, as before, added 25 ms on average, 2-3 % of a
/// 1 GiB peer copy on loopback), else after this long, for the progress shown.
const WAIT_FOR_CHANGE: Duration = Duration::from_millis(250);

/// Requests for the job go out at most this often, whatever the agent does (one
/// that answers at once, or a job whose state changes quickly, is not asked in a
/// tight loop).
const MIN_ASK_INTERVAL: Duration = Duration::from_millis(50);

/// How long polling rides out an agent that does not answer (a restart, a stall)
/// before giving up with exit status 4.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(10);

/// `contentdist get ID --version N`
#[derive(Args, Debug)]
pub struct GetArgs {
    /// Content id, as published (PKG00001)
    #[arg(value_parser = parse_content_id, required_unless_present = "attach")]
    content_id: Option<String>,

    /// Content version, as published
    #[arg(long, value_name = "N", required_unless_present = "attach")]
    version: Option<u32>,

    /// Directory to deliver the content into (default: keep it in the cache only)
    #[arg(long, value_name = "DIR")]
    dest: Option<PathBuf>,

    /// The content hash to insist on (hex, from `contentdist publish`)
    #[arg(long, value_name = "HEX", value_parser = parse_hash)]
    hash: Option<String>,

    /// Cache priority: 1 (evicted first) to 9 (evicted last)
    #[arg(long, value_name = "1-9", default_value_t = 5,
          value_parser = clap::value_parser!(u8).range(1..=9))]
    priority: u8,

    /// Print the final job and the duration as JSON on stdout
    #[arg(long)]
    json: bool,

    /// Submit the job and return at once
    #[arg(long)]
    no_wait: bool,

    /// Follow job ID (whose `get` was interrupted) instead of submitting one: the
    /// same as `contentdist jobs watch ID`
    #[arg(long, value_name = "ID",
          conflicts_with_all = ["content_id", "version", "dest", "hash", "no_wait"])]
    attach: Option<JobId>,
}

/// A content id the agent accepts, by the library's own rule, so a bad one is a
/// usage error (exit 2) before the agent is asked, not a refusal (exit 4).
fn parse_content_id(text: &str) -> Result<String, String> {
    contentdist::manifest::validate_content_id(text)
        .map(|()| text.to_string())
        .map_err(|e| e.to_string())
}

/// A BLAKE3 content hash (64 hex digits, as `contentdist publish` prints it), lower-cased.
fn parse_hash(text: &str) -> Result<String, String> {
    blake3::Hash::from_hex(text)
        .map(|hash| hash.to_hex().to_string())
        .map_err(|e| {
            format!("'{text}' is not a content hash (64 hexadecimal digits, as `contentdist publish` prints): {e}")
        })
}

impl GetArgs {
    /// The request to send; `--dest` is made absolute here, because the agent runs in
    /// another working directory.
    fn request(&self) -> anyhow::Result<JobRequest> {
        let dest = match &self.dest {
            Some(dest) => Some(
                std::path::absolute(dest)
                    .with_context(|| format!("cannot make {} absolute", dest.display()))?,
            ),
            None => None,
        };
        Ok(JobRequest {
            content_id: self
                .content_id
                .clone()
                .expect("clap requires CONTENT_ID without --attach"),
            version: self
                .version
                .expect("clap requires --version without --attach"),
            dest,
            content_hash: self.hash.clone(),
            priority: self.priority,
        })
    }
}

/// Submit, wait, report. The exit status tells the caller whether to fall back.
pub async fn run(args: GetArgs, settings: &SettingsArgs) -> anyhow::Result<Exit> {
    if let Some(id) = args.attach {
        return watch(id, args.json, settings).await;
    }
    let request = args.request()?;
    let client = settings.client()?;
    let started = Instant::now();
    let job = client.submit(&request).await?;
    if args.no_wait {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&job)?);
        } else {
            println!(
                "job {} submitted ({}); follow it with `contentdist jobs watch {}`",
                job.id,
                describe_state(&job),
                job.id
            );
        }
        return Ok(Exit::Success);
    }
    follow(&client, job, Some(started), args.json).await
}

/// `contentdist jobs watch ID` (and `get --attach ID`): follow a job already in the
/// agent, typically one whose `get` was interrupted, and end as `get` would have.
/// A finished job is reported at once.
pub async fn watch(id: JobId, json: bool, settings: &SettingsArgs) -> anyhow::Result<Exit> {
    let client = settings.client()?;
    let job = match client.get(id).await {
        Ok(job) => job,
        // The agent refuses `get` only for an id it does not know.
        Err(ClientError::Refused(e)) if Code(e.code) == Code::BAD_REQUEST => {
            eprintln!(
                "error: the agent has no job {id} ({}); `contentdist jobs` lists its jobs",
                e.message
            );
            return Ok(Exit::Usage);
        }
        Err(e) => return Err(e.into()),
    };
    follow(&client, job, None, json).await
}

/// Show the job's progress until it is final, then report it. `started`: when `get`
/// submitted it, for the time reported; otherwise the job's own running time is.
/// Ctrl-C stops following (exit 130), never the job.
async fn follow(
    client: &ControlClient,
    job: JobInfo,
    started: Option<Instant>,
    json: bool,
) -> anyhow::Result<Exit> {
    let id = job.id;
    let job = if job.state.is_final() {
        job
    } else {
        let mut progress = Progress::for_stderr();
        let waited = tokio::select! {
            waited = wait(client, job, &mut progress) => waited,
            _ = tokio::signal::ctrl_c() => {
                progress.finish();
                eprintln!(
                    "stopped waiting; job {id} keeps running in the agent. Follow it again with `contentdist jobs watch {id}`, cancel it with `contentdist jobs cancel {id}`."
                );
                return Ok(Exit::Interrupted);
            }
        };
        progress.finish();
        waited?
    };
    let elapsed = match started {
        Some(started) => started.elapsed(),
        None => Duration::from_millis(job.elapsed_ms),
    };
    report(&job, elapsed, json)?;
    Ok(Exit::for_job(&job))
}

/// Follow the job until it is final.
async fn wait(
    client: &ControlClient,
    mut job: JobInfo,
    progress: &mut Progress,
) -> Result<JobInfo, ClientError> {
    let mut unreachable_since: Option<Instant> = None;
    let mut asked: Option<Instant> = None;
    loop {
        progress.update(&job);
        if job.state.is_final() {
            return Ok(job);
        }
        if let Some(asked) = asked {
            tokio::time::sleep_until((asked + MIN_ASK_INTERVAL).into()).await;
        }
        asked = Some(Instant::now());
        match client
            .get_when_changed(job.id, job.state, WAIT_FOR_CHANGE)
            .await
        {
            Ok(latest) => {
                job = latest;
                unreachable_since = None;
            }
            Err(e) if e.code() == Code::AGENT_UNREACHABLE => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= UNREACHABLE_GRACE {
                    return Err(e);
                }
                debug!(error = %e, "agent did not answer; polling again");
            }
            Err(e) => return Err(e),
        }
    }
}

/// `queued`, `done`, `failed 0x205D`...
fn describe_state(job: &JobInfo) -> String {
    let state = job.state.to_string();
    match job.code {
        0 => state,
        code => format!("{state} {}", format::code(code)),
    }
}

/// Print the outcome: the result on stdout, a failure and its fix on stderr.
fn report(job: &JobInfo, elapsed: Duration, json: bool) -> anyhow::Result<()> {
    if json {
        let mut value = serde_json::to_value(job)?;
        value["duration_ms"] = (elapsed.as_millis() as u64).into();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else if job.state == JobState::Done {
        println!("{}", done_line(job, elapsed));
    }
    if job.state != JobState::Done {
        eprint!("{}", failure_text(job));
    }
    Ok(())
}

/// `done: PKG00001 3 into /srv/pkg: 1.2 GiB (1.0 GiB from origin, 200.0 MiB from peers) in 12.3 s`
fn done_line(job: &JobInfo, elapsed: Duration) -> String {
    let place = match &job.request.dest {
        Some(dest) => format!("into {}", dest.display()),
        None => "in the cache".to_string(),
    };
    format!(
        "done: {} {} {place}: {} ({} from origin, {} from peers) in {}",
        job.request.content_id,
        job.request.version,
        format::bytes(job.bytes_total),
        format::bytes(job.bytes_from_origin),
        format::bytes(job.bytes_from_peers),
        format::duration_ms(elapsed.as_millis() as u64),
    )
}

/// `failed: 0x205D ORIGIN_NOT_FOUND: <message>`, the catalogue's fix, and what the
/// exit status means for the caller.
fn failure_text(job: &JobInfo) -> String {
    let code = job.code();
    let verb = if job.state == JobState::Cancelled {
        "cancelled"
    } else {
        "failed"
    };
    let message = job.message.as_deref().unwrap_or("no message");
    let mut text = format!("{verb}: {code} {}: {message}\n", code.name());
    if let Some(info) = code.info() {
        text.push_str(&format!("fix: {}\n", info.fix));
    }
    if job.code_in_success_codes {
        text.push_str(&format!(
            "{code} is in SuccessCodes: do not download directly from the origin\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::job_with_code as job;

    #[test]
    fn failure_names_code_name_message_and_fix() {
        let text = failure_text(&job(JobState::Failed, Code::ORIGIN_NOT_FOUND, true));
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "failed: 0x205D ORIGIN_NOT_FOUND: GET http://origin/PKG00001/3/manifest.json: 404"
        );
        assert_eq!(
            lines.next().unwrap(),
            format!("fix: {}", Code::ORIGIN_NOT_FOUND.info().unwrap().fix)
        );
        assert!(lines.next().unwrap().contains("is in SuccessCodes"));
        let text = failure_text(&job(JobState::Failed, Code::CANNOT_CONNECT, false));
        assert!(!text.contains("SuccessCodes"), "{text}");
    }

    #[test]
    fn cancelled_job_says_cancelled() {
        let text = failure_text(&job(JobState::Cancelled, Code::CANCELLED, false));
        assert!(text.starts_with("cancelled: 0x4C7 CANCELLED: "), "{text}");
    }

    #[test]
    fn done_line_gives_sizes_by_source() {
        assert_eq!(
            done_line(&job(JobState::Done, Code::OK, false), Duration::from_millis(12_300)),
            "done: PKG00001 3 into /srv/pkg: 3.0 MiB (2.0 MiB from origin, 1.0 MiB from peers) in 12.3 s"
        );
    }

    #[test]
    fn dest_is_made_absolute_and_hash_lowercased() {
        let args = GetArgs {
            content_id: Some("PKG00001".into()),
            version: Some(3),
            dest: Some("relative/dir".into()),
            hash: Some(parse_hash(&"ABCDEF01".repeat(8)).unwrap()),
            priority: 9,
            json: false,
            no_wait: false,
            attach: None,
        };
        let request = args.request().unwrap();
        let dest = request.dest.unwrap();
        assert!(dest.is_absolute());
        assert!(dest.ends_with("relative/dir"));
        assert_eq!(
            request.content_hash.as_deref(),
            Some("abcdef01".repeat(8).as_str())
        );
        assert_eq!(request.priority, 9);
    }

    #[test]
    fn a_hash_must_be_64_hex_digits_and_an_id_must_be_valid() {
        for bad in ["", "xyz", "abcdef01", &"ab".repeat(33), &"g".repeat(64)] {
            let e = parse_hash(bad).unwrap_err();
            assert!(e.contains("is not a content hash"), "{bad}: {e}");
        }
        assert_eq!(parse_content_id("PKG00001").unwrap(), "PKG00001");
        for bad in ["a/b", "", "..", "a b"] {
            let e = parse_content_id(bad).unwrap_err();
            assert!(e.contains("invalid content id"), "{bad}: {e}");
        }
    }

    #[test]
    fn state_is_described_with_its_code() {
        assert_eq!(
            describe_state(&job(JobState::Failed, Code::ORIGIN_NOT_FOUND, true)),
            "failed 0x205D"
        );
        assert_eq!(
            describe_state(&job(JobState::Queued, Code::OK, false)),
            "queued"
        );
    }
}
