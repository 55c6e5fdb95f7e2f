//! Process metrics for Prometheus (`GET /metrics`): what the runs of this process did.
//! The engine records into it; the REST layer only asks for the encoded text. Every value
//! is per process: several servers on one store each count their own runs.

use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::model::{DeviceKind, ErrorCode, RunState};

/// The `Content-Type` of what [`Telemetry::encode`] writes (text exposition format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Run latency buckets, in seconds: 10 ms (a small k-means) to an hour (a large
/// agglomerative run), roughly ×2–2.5 apart.
pub const RUN_SECONDS_BUCKETS: [f64; 18] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1200.0, 1800.0, 3600.0,
];

/// Label sets are built from static names (algorithms, states, error codes, devices), so
/// every label has a small bounded set of values.
type Labels = Vec<(&'static str, &'static str)>;

fn run_histogram() -> Histogram {
    Histogram::new(RUN_SECONDS_BUCKETS)
}

/// How a run ended, for the counters.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd {
    pub algorithm: &'static str,
    pub state: RunState,
    /// The error code of a failed run.
    pub error: Option<ErrorCode>,
    /// From acceptance to the end, queueing included.
    pub elapsed: Duration,
    /// Documents the run clustered (after sampling); 0 unless completed.
    pub documents: u64,
    /// Documents a sample left out, placed after the fit; 0 unless completed.
    pub placed: u64,
}

pub fn device_name(device: DeviceKind) -> &'static str {
    match device {
        DeviceKind::Gpu => "gpu",
        DeviceKind::Cpu => "cpu",
    }
}

pub struct Telemetry {
    registry: Registry,
    runs: Family<Labels, Counter>,
    run_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    documents: Counter,
    documents_placed: Counter,
    device_runs: Family<Labels, Counter>,
    queued: Gauge,
    running: Gauge,
    /// REST requests by route template (never the raw path: bounded) and status code.
    http_requests: Family<[(&'static str, String); 2], Counter>,
}

impl Telemetry {
    /// `store_bytes_read` is the store's own counter (`Store::bytes_read`), registered here
    /// so that one registry answers for the process.
    pub fn new(store_bytes_read: Counter) -> Self {
        let mut registry = Registry::with_prefix("clusterd");
        let runs = Family::<Labels, Counter>::default();
        registry.register(
            "runs",
            "Runs that ended, by algorithm, final status (completed, failed, cancelled) and, \
             for failures, error code",
            runs.clone(),
        );
        let run_seconds: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(run_histogram);
        registry.register_with_unit(
            "run_duration",
            "Time from a run's acceptance to its end (queueing included), by algorithm",
            Unit::Seconds,
            run_seconds.clone(),
        );
        let documents = Counter::default();
        registry.register(
            "documents_clustered",
            "Documents clustered by completed runs (after sampling)",
            documents.clone(),
        );
        let documents_placed = Counter::default();
        registry.register(
            "documents_placed",
            "Documents a sample left out, placed into the clusters after the fit",
            documents_placed.clone(),
        );
        let device_runs = Family::<Labels, Counter>::default();
        registry.register(
            "device_runs",
            "Runs that started computing, by device (gpu or cpu)",
            device_runs.clone(),
        );
        let queued = Gauge::default();
        registry.register("runs_queued", "Runs waiting for a run slot", queued.clone());
        let running = Gauge::default();
        registry.register(
            "runs_in_progress",
            "Runs holding a run slot (computing)",
            running.clone(),
        );
        registry.register_with_unit(
            "store_read",
            "Bytes read from the object store",
            Unit::Bytes,
            store_bytes_read,
        );
        let http_requests = Family::<[(&'static str, String); 2], Counter>::default();
        registry.register(
            "http_requests",
            "REST requests answered, by route template (\"unmatched\" for unknown paths) and \
             HTTP status",
            http_requests.clone(),
        );
        Telemetry {
            registry,
            http_requests,
            runs,
            run_seconds,
            documents,
            documents_placed,
            device_runs,
            queued,
            running,
        }
    }

    /// A run took its slot on `device`.
    pub fn run_started(&self, device: DeviceKind) {
        self.device_runs
            .get_or_create(&vec![("device", device_name(device))])
            .inc();
    }

    pub fn run_ended(&self, end: &RunEnd) {
        let mut labels = vec![("algorithm", end.algorithm), ("status", end.state.as_str())];
        if let Some(code) = end.error {
            labels.push(("error_code", code.as_str()));
        }
        self.runs.get_or_create(&labels).inc();
        self.run_seconds
            .get_or_create(&vec![("algorithm", end.algorithm)])
            .observe(end.elapsed.as_secs_f64());
        self.documents.inc_by(end.documents);
        self.documents_placed.inc_by(end.placed);
    }

    /// A REST request answered: `route` is the route template (`/v1/clusters/runs/{run_id}`),
    /// or `None` for a path no route matched.
    pub fn http_request(&self, route: Option<&str>, status: u16) {
        self.http_requests
            .get_or_create(&[
                ("route", route.unwrap_or("unmatched").to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    /// The admission queue as it is now (read when metrics are scraped).
    pub fn set_admission(&self, queued: usize, running: usize) {
        self.queued.set(i64::try_from(queued).unwrap_or(i64::MAX));
        self.running.set(i64::try_from(running).unwrap_or(i64::MAX));
    }

    /// The text exposition format (0.0.4).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, start: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?} in\n{text}"))
    }

    #[test]
    fn a_run_lands_in_the_first_bucket_at_or_above_its_latency_and_in_every_later_one() {
        let t = Telemetry::new(Counter::default());
        t.run_ended(&RunEnd {
            algorithm: "kmeans",
            state: RunState::Completed,
            error: None,
            elapsed: Duration::from_millis(45),
            documents: 10,
            placed: 0,
        });
        let text = t.encode().unwrap();
        let bucket = |le: &str| {
            line(
                &text,
                &format!(
                    "clusterd_run_duration_seconds_bucket{{algorithm=\"kmeans\",le=\"{le}\"}} "
                ),
            )
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
        };
        assert_eq!(bucket("0.025"), "0");
        assert_eq!(bucket("0.05"), "1");
        assert_eq!(bucket("3600"), "1");
        assert_eq!(bucket("+Inf"), "1");
        assert_eq!(
            line(
                &text,
                "clusterd_run_duration_seconds_count{algorithm=\"kmeans\"}"
            ),
            "clusterd_run_duration_seconds_count{algorithm=\"kmeans\"} 1"
        );
    }

    #[test]
    fn encoding_names_each_metric_with_help_type_and_unit_and_labels_failures_by_code() {
        let read = Counter::default();
        let t = Telemetry::new(read.clone());
        read.inc_by(4096);
        t.run_started(DeviceKind::Cpu);
        t.run_ended(&RunEnd {
            algorithm: "dbscan",
            state: RunState::Failed,
            error: Some(ErrorCode::NotFound),
            elapsed: Duration::from_secs(2),
            documents: 0,
            placed: 0,
        });
        t.run_ended(&RunEnd {
            algorithm: "kmeans",
            state: RunState::Completed,
            error: None,
            elapsed: Duration::from_secs(1),
            documents: 300,
            placed: 700,
        });
        t.set_admission(3, 2);
        t.http_request(Some("/v1/clusters/runs/{run_id}"), 404);
        t.http_request(None, 404);
        t.http_request(None, 404);
        let text = t.encode().unwrap();
        for (name, kind) in [
            ("clusterd_runs_total", "counter"),
            ("clusterd_run_duration_seconds", "histogram"),
            ("clusterd_documents_clustered_total", "counter"),
            ("clusterd_documents_placed_total", "counter"),
            ("clusterd_device_runs_total", "counter"),
            ("clusterd_runs_queued", "gauge"),
            ("clusterd_runs_in_progress", "gauge"),
            ("clusterd_store_read_bytes_total", "counter"),
            ("clusterd_http_requests_total", "counter"),
        ] {
            line(&text, &format!("# HELP {name} "));
            line(&text, &format!("# TYPE {name} {kind}"));
        }
        line(
            &text,
            "clusterd_runs_total{algorithm=\"dbscan\",status=\"failed\",error_code=\"not_found\"} 1",
        );
        line(
            &text,
            "clusterd_runs_total{algorithm=\"kmeans\",status=\"completed\"} 1",
        );
        line(&text, "clusterd_documents_clustered_total 300");
        line(&text, "clusterd_documents_placed_total 700");
        line(&text, "clusterd_device_runs_total{device=\"cpu\"} 1");
        line(&text, "clusterd_runs_queued 3");
        line(&text, "clusterd_runs_in_progress 2");
        line(&text, "clusterd_store_read_bytes_total 4096");
        line(
            &text,
            "clusterd_http_requests_total{route=\"/v1/clusters/runs/{run_id}\",status=\"404\"} 1",
        );
        line(
            &text,
            "clusterd_http_requests_total{route=\"unmatched\",status=\"404\"} 2",
        );
    }
}
