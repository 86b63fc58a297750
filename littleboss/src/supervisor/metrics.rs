//! The metrics, rendered from the supervisor's state through `prometheus-client`: the
//! state's counts and [`Tally`] are copied into a [`Collector`] on each scrape, and
//! encoded in the OpenMetrics or the Prometheus text format.
//!
//! Every counter lives in the state, which an upgrade hands over, so none ever goes
//! back for the supervisor's whole life. The metrics:
//!
//! | name | type | labels |
//! |---|---|---|
//! | `littleboss_reloads_total` | counter | `outcome`: `succeeded`, `failed`, `rolled_back` |
//! | `littleboss_upgrades_total` | counter | |
//! | `littleboss_restarts_total` | counter | |
//! | `littleboss_child_exits_total` | counter | `cause`: `exited`, `signaled`, `killed` |
//! | `littleboss_reload_duration_seconds` | histogram | |
//! | `littleboss_connections_moved_total` | counter | |
//! | `littleboss_children` | gauge | `state`: `serving`, `starting`, `standby`, `retiring` |
//! | `littleboss_generation` | gauge | |
//! | `littleboss_supervisor_start_time_seconds` | gauge | |
//! | `littleboss_info` | info | `littleboss_version`, `protocol` |
//! | `littleboss_metrics_refused_total` | counter | `reason`: `too_large`, `too_slow`, `too_many` |
//! | `littleboss_http_requests_total` | counter | `listener`, `code`: `1xx` to `5xx` |
//! | `littleboss_http_request_duration_seconds` | histogram | `listener` |
//! | `littleboss_http_connections_open` | gauge | `listener` |

use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::control::protocol::{HTTP_DURATION_BOUNDS_US, PROTOCOL};
use crate::supervisor::machine::State;
use crate::supervisor::machine::tally::{Buckets, Cause, HttpTotals, RELOAD_BOUNDS_MS};

/// Why a connection to the metrics' listener was refused, as
/// `littleboss_metrics_refused_total{reason}` says it.
pub(crate) const REFUSALS: [&str; 3] = ["too_large", "too_slow", "too_many"];

/// Which text format a scrape is answered in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `application/openmetrics-text; version=1.0.0; charset=utf-8`.
    OpenMetrics,
    /// `text/plain; version=0.0.4`.
    Prometheus,
}

impl Format {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The state's metrics in `format`, with the refusals of the metrics' listener by
/// [`REFUSALS`].
pub(crate) fn render(state: &State, format: Format, refused: [u64; 3]) -> String {
    let mut registry = Registry::default();
    let mut snapshot = Snapshot::of(state);
    snapshot.refused = refused;
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    let encoded = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        }
    };
    if let Err(e) = encoded {
        // Writing into a String does not fail; if it did, the scrape says so.
        out.clear();
        let _ = writeln!(out, "# littleboss: the metrics could not be encoded: {e}");
    }
    out
}

/// What one scrape shows, copied out of the state.
#[derive(Debug)]
struct Snapshot {
    reloads: [(&'static str, u64); 3],
    upgrades: u64,
    restarts: u64,
    exits: Vec<(&'static str, u64)>,
    reload_ms: Buckets,
    moved: u64,
    children: [(&'static str, u64); 4],
    generation: u64,
    start_time: f64,
    http: Vec<(String, HttpTotals, u64)>,
    refused: [u64; 3],
}

impl Snapshot {
    fn of(state: &State) -> Snapshot {
        let tally = &state.tally;
        let [serving, starting, standby, retiring] = state.children_by_state();
        Snapshot {
            reloads: [
                ("succeeded", state.reloads),
                ("failed", tally.reloads_failed),
                ("rolled_back", tally.reloads_rolled_back),
            ],
            upgrades: state.upgrades,
            restarts: state.restarts,
            exits: (Cause::ALL.iter())
                .map(|c| (c.name(), tally.exits_of(*c)))
                .collect(),
            reload_ms: tally.reload_ms.clone(),
            moved: tally.moved,
            children: [
                ("serving", serving),
                ("starting", starting),
                ("standby", standby),
                ("retiring", retiring),
            ],
            generation: state.serving_id().map_or(0, |c| c.0),
            start_time: (state.started.duration_since(UNIX_EPOCH)).map_or(0.0, |d| d.as_secs_f64()),
            http: (tally.http.iter())
                .map(|(name, totals)| (name.clone(), totals.clone(), tally.open(name)))
                .collect(),
            refused: [0; 3],
        }
    }
}

/// `buckets` against `bounds` (in `unit`s per second) as the encoder takes them: each
/// bucket's upper bound in seconds and its own count, the last one `+Inf`.
fn seconds_buckets(bounds: &[u64], unit: f64, buckets: &Buckets) -> Vec<(f64, u64)> {
    (bounds.iter().map(|b| *b as f64 / unit))
        .chain([f64::INFINITY])
        .zip(buckets.counts.iter().copied())
        .collect()
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        // Counters are named without `_total`: the encoder adds it.
        let mut family = encoder.encode_descriptor(
            "littleboss_reloads",
            "Reloads of the child, by outcome (an upgrade's reload included)",
            None,
            MetricType::Counter,
        )?;
        for (outcome, n) in self.reloads {
            ConstCounter::new(n).encode(family.encode_family(&[("outcome", outcome)])?)?;
        }
        for (name, help, n) in [
            (
                "littleboss_upgrades",
                "Times the supervisor re-executed itself as a new binary",
                self.upgrades,
            ),
            (
                "littleboss_restarts",
                "Times the supervisor started a child again by itself (persist or fallback)",
                self.restarts,
            ),
            (
                "littleboss_connections_moved",
                "Idle connections a child took from another at a reload",
                self.moved,
            ),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(n).encode(metric)?;
        }
        let mut family = encoder.encode_descriptor(
            "littleboss_child_exits",
            "Children that ended, by cause: exited, signaled (by another), killed (by the supervisor)",
            None,
            MetricType::Counter,
        )?;
        for (cause, n) in &self.exits {
            ConstCounter::new(*n).encode(family.encode_family(&[("cause", *cause)])?)?;
        }
        let reload = seconds_buckets(&RELOAD_BOUNDS_MS, 1_000.0, &self.reload_ms);
        encoder
            .encode_descriptor(
                "littleboss_reload_duration_seconds",
                "Time from a reload's request to its new child ready",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(
                self.reload_ms.sum as f64 / 1_000.0,
                self.reload_ms.total(),
                &reload,
                None,
            )?;
        let mut family = encoder.encode_descriptor(
            "littleboss_children",
            "Children by what they are to the supervisor",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in self.children {
            ConstGauge::new(n as i64).encode(family.encode_family(&[("state", state)])?)?;
        }
        let metric = encoder.encode_descriptor(
            "littleboss_generation",
            "The serving child's sequence number: 1 for the first child, and each child started since counts, one that failed too",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.generation as i64).encode(metric)?;
        let metric = encoder.encode_descriptor(
            "littleboss_supervisor_start_time_seconds",
            "When the supervisor started, in seconds since the Unix epoch",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.start_time).encode(metric)?;
        encoder
            .encode_descriptor(
                "littleboss",
                "The supervisor's release and newest protocol version",
                None,
                MetricType::Info,
            )?
            .encode_info(&[
                ("littleboss_version", env!("CARGO_PKG_VERSION").to_string()),
                ("protocol", PROTOCOL.to_string()),
            ])?;
        let mut family = encoder.encode_descriptor(
            "littleboss_metrics_refused",
            "Connections to the metrics' listener refused, by reason: too_large (a request over 8 KiB), too_slow (not sent within 5 s), too_many (over 100 at once)",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in REFUSALS.iter().zip(self.refused) {
            ConstCounter::new(n).encode(family.encode_family(&[("reason", *reason)])?)?;
        }
        if self.http.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "littleboss_http_requests",
            "Responses the HTTP helpers gave, by listener and status class",
            None,
            MetricType::Counter,
        )?;
        for (listener, totals, _) in &self.http {
            for (class, n) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().zip(totals.codes) {
                let labels = [("listener", listener.as_str()), ("code", class)];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "littleboss_http_request_duration_seconds",
            "Time from a request's head read to its response's head sent, by listener",
            None,
            MetricType::Histogram,
        )?;
        for (listener, totals, _) in &self.http {
            let d = &totals.durations;
            let buckets = seconds_buckets(&HTTP_DURATION_BOUNDS_US, 1_000_000.0, d);
            family
                .encode_family(&[("listener", listener.as_str())])?
                .encode_histogram::<NoLabelSet>(
                    d.sum as f64 / 1_000_000.0,
                    d.total(),
                    &buckets,
                    None,
                )?;
        }
        let mut family = encoder.encode_descriptor(
            "littleboss_http_connections_open",
            "Connections open on the HTTP helpers, by listener",
            None,
            MetricType::Gauge,
        )?;
        for (listener, _, open) in &self.http {
            let labels = [("listener", listener.as_str())];
            ConstGauge::new(*open as i64).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_carry_every_metric() {
        let state = crate::supervisor::machine::sample_state();
        let prometheus = render(&state, Format::Prometheus, [1, 0, 2]);
        for line in [
            "# TYPE littleboss_reloads_total counter",
            "littleboss_reloads_total{outcome=\"succeeded\"} 0",
            "littleboss_reloads_total{outcome=\"rolled_back\"} 0",
            "littleboss_child_exits_total{cause=\"killed\"} 0",
            "littleboss_reload_duration_seconds_bucket{le=\"+Inf\"} 0",
            "littleboss_children{state=\"serving\"} 1",
            "littleboss_generation 1",
            "littleboss_http_requests_total{listener=\"http\",code=\"2xx\"} 5",
            "littleboss_http_requests_total{listener=\"http\",code=\"5xx\"} 1",
            "littleboss_http_request_duration_seconds_bucket{listener=\"http\",le=\"0.005\"} 6",
            "littleboss_http_request_duration_seconds_count{listener=\"http\"} 6",
            "littleboss_http_connections_open{listener=\"http\"} 2",
            "littleboss_metrics_refused_total{reason=\"too_many\"} 2",
        ] {
            assert!(
                prometheus.lines().any(|l| l == line),
                "{line} in\n{prometheus}"
            );
        }
        let version = env!("CARGO_PKG_VERSION");
        let info = format!(
            "littleboss_info{{littleboss_version=\"{version}\",protocol=\"{PROTOCOL}\"}} 1"
        );
        assert!(prometheus.contains(&info), "{prometheus}");
        assert!(!prometheus.contains("# EOF"));
        let openmetrics = render(&state, Format::OpenMetrics, [0; 3]);
        assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
        assert!(
            openmetrics.contains("# TYPE littleboss_reloads counter"),
            "{openmetrics}"
        );
        assert!(openmetrics.contains(&info), "{openmetrics}");
    }
}
