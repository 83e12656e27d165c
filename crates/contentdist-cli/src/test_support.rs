//! What the command modules' unit tests share.

use contentdist::codes::Code;
use contentdist::job::{JobInfo, JobRequest, JobState, Source};

const MIB: u64 = 1024 * 1024;

/// Job 7 for PKG00001 version 3 into /srv/pkg, in `state`, code 0: 3 MiB verified,
/// 2 MiB from the origin and 1 MiB from peers. Tests change the fields they need.
pub fn job(state: JobState) -> JobInfo {
    JobInfo {
        id: 7,
        request: JobRequest {
            content_id: "PKG00001".into(),
            version: 3,
            dest: Some("/srv/pkg".into()),
            content_hash: None,
            priority: 5,
        },
        state,
        code: 0,
        message: Some("GET http://origin/PKG00001/3/manifest.json: 404".into()),
        code_in_success_codes: false,
        bytes_total: 3 * MIB,
        bytes_verified: 3 * MIB,
        bytes_from_origin: 2 * MIB,
        bytes_from_peers: MIB,
        bytes_from_peers_by_protocol: contentdist::peer::PeerBytesByProtocol {
            http: MIB,
            ..Default::default()
        },
        master: None,
        source: Source::None,
        waiting_for: None,
        cert_wait_until_unix: None,
        elapsed_ms: 1500,
        final_stats: None,
    }
}

/// [`job`] finished with `code`, in SuccessCodes or not.
pub fn job_with_code(state: JobState, code: Code, in_success_codes: bool) -> JobInfo {
    JobInfo {
        code: code.0,
        code_in_success_codes: in_success_codes,
        ..job(state)
    }
}
