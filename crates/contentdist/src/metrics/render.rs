//! A [`Sample`] as Prometheus text, through a `prometheus-client` registry of its
//! own (one collector encoding the sample's numbers).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::Sample;

/// `sample` in the Prometheus text exposition format (OpenMetrics text, which
/// Prometheus reads; it ends with `# EOF`).
pub fn render(sample: &Sample) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SampleCollector(sample.clone())));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String does not fail");
    out
}

/// `sample` in the classic Prometheus text format (version 0.0.4), for clients that
/// do not ask for OpenMetrics (curl, `promtool check metrics`): the same series,
/// with counters typed under their `_total` names, the info metric as a gauge, and
/// no `# EOF`.
pub fn render_classic(sample: &Sample) -> String {
    to_classic(&render(sample))
}

/// OpenMetrics text as prometheus-client writes it (each family's `# HELP`, then
/// its `# TYPE`, then its samples) to the classic format.
fn to_classic(open: &str) -> String {
    let mut out = String::with_capacity(open.len());
    let mut help: Option<&str> = None;
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                other => (name.to_string(), other),
            };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[derive(Debug)]
struct SampleCollector(Sample);

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// Write one family: its descriptor, then a value per label set.
fn family<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: Vec<(Labels<'_>, M)>,
) -> Result<(), std::fmt::Error> {
    let Some((_, first)) = values.first() else {
        return Ok(());
    };
    let mut d = enc.encode_descriptor(name, help, None, first.metric_type())?;
    for (labels, metric) in &values {
        metric.encode(d.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

/// A counter per reason.
fn by_reason<'a>(counts: &[(&'static str, u64)]) -> Vec<(Labels<'a>, ConstCounter<u64>)> {
    counts
        .iter()
        .map(|(reason, n)| (vec![("reason", *reason)], counter(*n)))
        .collect()
}

impl Collector for SampleCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        {
            let info = Info::new(vec![
                ("version", s.version.clone()),
                ("site", s.site.clone()),
            ]);
            let d = enc.encode_descriptor(
                "contentdist_agent",
                "The agent: its version and its Site setting (group agents by site by joining on this)",
                None,
                info.metric_type(),
            )?;
            info.encode(d)?;
        }
        family(
            &mut enc,
            "contentdist_start_time_seconds",
            "When the agent started, Unix seconds",
            vec![(vec![], ConstGauge::new(s.start_time_unix))],
        )?;
        family(
            &mut enc,
            "contentdist_received_bytes",
            "Body bytes received (verified or not), by source (origin: the WAN; peer: the LAN) and protocol",
            vec![
                (
                    vec![("source", "origin"), ("protocol", s.origin_protocol)],
                    counter(s.origin_bytes),
                ),
                (
                    vec![("source", "peer"), ("protocol", "http")],
                    counter(s.peer_bytes_http),
                ),
                (
                    vec![("source", "peer"), ("protocol", "https")],
                    counter(s.peer_bytes_https),
                ),
                (
                    vec![("source", "peer"), ("protocol", "smb")],
                    counter(s.peer_bytes_smb),
                ),
            ],
        )?;
        family(
            &mut enc,
            "contentdist_served_bytes",
            "Body bytes this agent's peer-copy server sent to peers, by protocol",
            vec![
                (vec![("protocol", "http")], counter(s.served_bytes_http)),
                (vec![("protocol", "https")], counter(s.served_bytes_https)),
                (vec![("protocol", "smb")], counter(s.served_bytes_smb)),
            ],
        )?;
        family(
            &mut enc,
            "contentdist_blocks_rejected",
            "Blocks that arrived whole but failed verification (never stored), by source",
            vec![
                (
                    vec![("source", "origin")],
                    counter(s.blocks_rejected_origin),
                ),
                (vec![("source", "peer")], counter(s.blocks_rejected_peer)),
            ],
        )?;
        family(
            &mut enc,
            "contentdist_jobs",
            "Jobs in the job list, by state",
            s.jobs_by_state
                .iter()
                .map(|(state, n)| (vec![("state", state.as_str())], ConstGauge::new(*n as i64)))
                .collect(),
        )?;
        family(
            &mut enc,
            "contentdist_job_ends",
            "Jobs ended since the agent started, by outcome and catalogue code",
            s.job_ends
                .iter()
                .map(|(outcome, code, n)| {
                    (
                        vec![("outcome", *outcome), ("code", code.as_str())],
                        counter(*n),
                    )
                })
                .collect(),
        )?;
        family(
            &mut enc,
            "contentdist_elections",
            "Elections this agent takes part in now, by its role",
            s.elections_by_role
                .iter()
                .map(|(role, n)| (vec![("role", *role)], ConstGauge::new(*n as i64)))
                .collect(),
        )?;
        family(
            &mut enc,
            "contentdist_masterships",
            "Times the election made this agent master (of any content)",
            vec![(vec![], counter(s.masterships))],
        )?;
        family(
            &mut enc,
            "contentdist_election_results",
            "Elections this agent took part in that gave a master, by result: won (this agent became master) or lost (it follows another); held = won + lost",
            vec![
                (vec![("result", "won")], counter(s.masterships)),
                (vec![("result", "lost")], counter(s.elections_lost)),
            ],
        )?;
        family(
            &mut enc,
            "contentdist_master_changes",
            "Times the master of a content this agent takes part in became another agent (a failover, a better master)",
            vec![(vec![], counter(s.master_changes))],
        )?;
        family(
            &mut enc,
            "contentdist_head_starts",
            "Origin downloads this agent began as the best candidate so far, before the election window ended, by result: kept (they went on as the master's download) or ended (a better candidate or a master answered, or the job left; their blocks stay in the cache)",
            vec![
                (vec![("result", "kept")], counter(s.head_starts.0)),
                (vec![("result", "ended")], counter(s.head_starts.1)),
            ],
        )?;
        family(
            &mut enc,
            "contentdist_election_datagrams_dropped",
            "Election datagrams refused (undecodable, wrong site key, replayed) or lost (the socket's queue was full), by reason",
            by_reason(&s.datagrams_dropped),
        )?;
        family(
            &mut enc,
            "contentdist_peer_refusals",
            "Peer-copy requests or connections this agent's server refused, by reason",
            by_reason(&s.refusals),
        )?;
        family(
            &mut enc,
            "contentdist_serving",
            "Responses sending content to peers now",
            vec![(vec![], ConstGauge::new(s.serving_now as i64))],
        )?;
        family(
            &mut enc,
            "contentdist_wan_throttle_bytes_per_second",
            "The configured WAN throttle in bytes per second (WanRateKbps x MaxWorkRate / 8); 0: not throttled",
            vec![(
                vec![],
                ConstGauge::new(s.wan_throttle_bytes_per_second as i64),
            )],
        )?;
        family(
            &mut enc,
            "contentdist_wan_throttled_seconds",
            "Time the WAN throttle held this agent's origin downloads back to protect the link (wall clock, once however many downloads waited)",
            vec![(vec![], ConstCounter::new(s.wan_throttled_seconds))],
        )?;
        family(
            &mut enc,
            "contentdist_cache_verified_bytes",
            "Bytes verified in the cache",
            vec![(vec![], ConstGauge::new(s.cache_bytes_verified as i64))],
        )?;
        family(
            &mut enc,
            "contentdist_cache_free_bytes",
            "Free bytes on the cache's file system",
            vec![(vec![], ConstGauge::new(s.cache_bytes_free as i64))],
        )?;
        family(
            &mut enc,
            "contentdist_cache_entries",
            "Contents in the cache",
            vec![(vec![], ConstGauge::new(s.cache_entries as i64))],
        )?;
        family(
            &mut enc,
            "contentdist_certificate_expiry_seconds",
            "Seconds until the selected certificate expires (negative: expired), by use; alert well before 0 (a job without a valid client certificate waits, 0x209A)",
            s.cert_expiry_seconds
                .iter()
                .map(|(usage, secs)| (vec![("usage", *usage)], ConstGauge::new(*secs)))
                .collect(),
        )?;
        Ok(())
    }
}
