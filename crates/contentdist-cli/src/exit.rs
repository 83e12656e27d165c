//! Exit statuses: what a caller (a script, a configuration-management tool) learns
//! from `contentdist` without parsing its output.

use std::process::ExitCode;

use contentdist::codes::Code;
use contentdist::control::ClientError;
use contentdist::job::{JobInfo, JobState};

/// The exit statuses, as `--help` documents them (`get` and `jobs watch` alike).
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0    success (for `get` and `jobs watch`: the content is delivered)
  1    failure; for `get`, `jobs watch`: the job failed with a code NOT in
       SuccessCodes, so the caller may fall back to downloading directly from
       the origin
  2    usage error (unknown option, missing argument, bad content id or hash,
       a job id the agent does not know)
  3    `get`, `jobs watch`: the job failed with a code in SuccessCodes: do NOT
       fall back
  4    the agent is unreachable or refused the request (control socket error)
  78   `agent` only: the settings file is invalid (systemd does not restart it)
  130  `get` or `jobs watch` interrupted while waiting; the job keeps running in
       the agent (`contentdist jobs watch ID` follows it again)

`contentdist explain CODE` tells what a code means and how to fix it.";

/// How the process ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything worked.
    Success = 0,
    /// Failed; for a job: its code is not in SuccessCodes (falling back is allowed).
    Failed = 1,
    /// A usage error clap cannot see: an id the agent does not know.
    Usage = 2,
    /// The job failed with a code in SuccessCodes: the caller must not fall back.
    DoNotFallBack = 3,
    /// The agent could not be reached or refused the request.
    Control = 4,
    /// `agent`: the settings do not load (sysexits' EX_CONFIG); the unit's
    /// `RestartPreventExitStatus` lists it, so a bad file does not loop.
    Config = 78,
    /// Ctrl-C while waiting for a job, which keeps running.
    Interrupted = 130,
}

impl Exit {
    /// The status for a finished job: the agent decides whether its code is in
    /// SuccessCodes, because its settings are the ones that count.
    pub fn for_job(job: &JobInfo) -> Exit {
        match job.state {
            JobState::Done => Exit::Success,
            _ if job.code_in_success_codes => Exit::DoNotFallBack,
            _ => Exit::Failed,
        }
    }

    /// The status for a command that ended with an error: commands that talk to the
    /// agent (`control`) end with 4, the others with 1.
    pub fn for_error(control: bool) -> Exit {
        if control {
            Exit::Control
        } else {
            Exit::Failed
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// Print a command's error, with the catalogue's fix line when the error carries a
/// code, and return the exit status.
pub fn report_error(error: &anyhow::Error, control: bool) -> Exit {
    match error_code(error) {
        Some(code) => eprintln!("error: {code} {}: {}", code.name(), chain_text(error)),
        None => eprintln!("error: {}", chain_text(error)),
    }
    if let Some(info) = error_code(error).and_then(Code::info) {
        eprintln!("fix: {}", info.fix);
    }
    Exit::for_error(control)
}

/// The catalogue code of the first library error in the chain, so every failure
/// prints its number as job failures do.
fn error_code(error: &anyhow::Error) -> Option<Code> {
    error.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            return Some(e.code());
        }
        if let Some(e) = cause.downcast_ref::<contentdist::config::ConfigError>() {
            return Some(e.code());
        }
        if let Some(e) = cause.downcast_ref::<contentdist::publish::PublishError>() {
            return Some(e.code());
        }
        if let Some(e) = cause.downcast_ref::<contentdist::agent::AgentError>() {
            return Some(e.code());
        }
        if let Some(e) = cause.downcast_ref::<contentdist::lab::office::LabRunError>() {
            return Some(e.code());
        }
        None
    })
}

/// The error and its causes joined by `: `, leaving out a cause whose text the
/// message already holds (the library's messages often end with their cause).
fn chain_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::job_with_code as job;

    #[test]
    fn done_job_exits_0() {
        assert_eq!(
            Exit::for_job(&job(JobState::Done, Code::OK, false)),
            Exit::Success
        );
        assert_eq!(ExitCode::from(Exit::Success), ExitCode::SUCCESS);
    }

    #[test]
    fn failure_outside_success_codes_exits_1_so_the_caller_may_fall_back() {
        let failed = job(JobState::Failed, Code::CANNOT_CONNECT, false);
        assert_eq!(Exit::for_job(&failed), Exit::Failed);
        assert_eq!(Exit::Failed as u8, 1);
        let cancelled = job(JobState::Cancelled, Code::CANCELLED, false);
        assert_eq!(Exit::for_job(&cancelled), Exit::Failed);
    }

    #[test]
    fn failure_in_success_codes_exits_3_so_the_caller_does_not_fall_back() {
        let failed = job(JobState::Failed, Code::ORIGIN_NOT_FOUND, true);
        assert_eq!(Exit::for_job(&failed), Exit::DoNotFallBack);
        assert_eq!(Exit::DoNotFallBack as u8, 3);
    }

    #[test]
    fn control_errors_exit_4_and_other_errors_1() {
        assert_eq!(Exit::for_error(true) as u8, 4);
        assert_eq!(Exit::for_error(false) as u8, 1);
        let unreachable = anyhow::Error::new(ClientError::Timeout {
            path: "/run/x.sock".into(),
            after: std::time::Duration::from_secs(30),
        });
        assert_eq!(report_error(&unreachable, true), Exit::Control);
    }

    #[test]
    fn error_text_does_not_repeat_a_cause_the_message_holds() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let unreachable = ClientError::Unreachable {
            path: "/run/x.sock".into(),
            source: io,
        };
        let error = anyhow::Error::new(unreachable).context("listing jobs");
        assert_eq!(
            chain_text(&error),
            "listing jobs: agent unreachable at /run/x.sock (is `contentdist agent` running?): no such file"
        );
    }

    #[test]
    fn help_documents_every_exit_status() {
        for exit in [
            Exit::Success,
            Exit::Failed,
            Exit::Usage,
            Exit::DoNotFallBack,
            Exit::Control,
            Exit::Interrupted,
        ] {
            let line = format!("\n  {:<5}", exit as u8);
            assert!(EXIT_STATUS_HELP.contains(&line), "{exit:?} undocumented");
        }
    }
}
