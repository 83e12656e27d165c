//! `contentdist jobs`: list the agent's jobs; pause, resume, cancel or watch one.

use clap::{Args, Subcommand};
use contentdist::job::{JobId, JobInfo};

use crate::exit::Exit;
use crate::format;
use crate::settings::SettingsArgs;

/// `contentdist jobs [--json] | jobs pause|resume|cancel|watch ID`
#[derive(Args, Debug)]
pub struct JobsArgs {
    #[command(subcommand)]
    action: Option<JobAction>,

    /// Print the jobs (or the watched job at its end) as JSON
    #[arg(long, global = true)]
    json: bool,
}

/// What to do to one job.
#[derive(Subcommand, Debug)]
enum JobAction {
    /// Pause a queued or running job; verified blocks are kept
    Pause {
        /// The job's number (first column of `contentdist jobs`)
        id: JobId,
    },
    /// Resume a paused job from its verified blocks
    Resume {
        /// The job's number
        id: JobId,
    },
    /// Cancel a job that has not finished
    Cancel {
        /// The job's number
        id: JobId,
    },
    /// Follow a job's progress to its end (after an interrupted `get`) and exit
    /// with its status as `get` does; a finished job is reported at once
    Watch {
        /// The job's number
        id: JobId,
    },
}

/// List the jobs, or act on one and show it.
pub async fn run(args: JobsArgs, settings: &SettingsArgs) -> anyhow::Result<Exit> {
    let client = settings.client()?;
    let jobs = match args.action {
        None => client.list().await?,
        Some(JobAction::Pause { id }) => vec![client.pause(id).await?],
        Some(JobAction::Resume { id }) => vec![client.resume(id).await?],
        Some(JobAction::Cancel { id }) => vec![client.cancel(id).await?],
        Some(JobAction::Watch { id }) => return crate::get::watch(id, args.json, settings).await,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
    } else if jobs.is_empty() {
        println!("no jobs");
    } else {
        print!("{}", table(&jobs));
    }
    Ok(Exit::Success)
}

/// One line per job: id, content, version, state, code, progress, bytes by source.
fn table(jobs: &[JobInfo]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|job| {
            vec![
                job.id.to_string(),
                job.request.content_id.clone(),
                job.request.version.to_string(),
                match (job.waiting_for, job.cert_wait_until_unix) {
                    (Some(other), _) => format!("{} (after job {other})", job.state),
                    (None, Some(t))
                        if job.state == contentdist::job::JobState::WaitingForCertificate =>
                    {
                        format!(
                            "{} (until {})",
                            job.state,
                            contentdist::certstore::utc(t as i64)
                        )
                    }
                    _ => job.state.to_string(),
                },
                format::code(job.code),
                format::percent(job.bytes_verified, job.bytes_total),
                format::bytes(job.bytes_from_origin),
                format::bytes(job.bytes_from_peers),
            ]
        })
        .collect();
    format::table(
        &[
            "ID", "CONTENT", "VERSION", "STATE", "CODE", "PROGRESS", "ORIGIN", "PEERS",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use contentdist::job::JobState;

    #[test]
    fn table_shows_state_code_progress_and_bytes_by_source() {
        let job = JobInfo {
            id: 12,
            code: 0x205D,
            bytes_total: 4096,
            bytes_verified: 1024,
            bytes_from_origin: 1024,
            bytes_from_peers: 0,
            ..crate::test_support::job(JobState::Failed)
        };
        let text = table(&[job]);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "ID  CONTENT   VERSION  STATE   CODE    PROGRESS  ORIGIN   PEERS"
        );
        assert_eq!(
            lines.next().unwrap(),
            "12  PKG00001  3        failed  0x205D  25%       1.0 KiB  0 B"
        );
    }
}
