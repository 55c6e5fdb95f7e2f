//! What the load run measured, merged over the clients and printed (text and JSON).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

/// How one request ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    Ok,
    /// The run queue was full (`rate_limited`): the server's admission control doing its job.
    Refused,
    /// Anything else, keyed so that equal failures count together (e.g. `http 500
    /// internal`, `grpc Unavailable`, `transport timeout`).
    Error(String),
}

/// One client's record: per request kind, the latency of every request and how it ended.
#[derive(Default)]
pub struct Tally {
    pub kinds: BTreeMap<&'static str, KindTally>,
}

#[derive(Default)]
pub struct KindTally {
    /// Microseconds, one per successful request (a refusal answers at once and would
    /// only dilute the percentiles).
    pub micros: Vec<u64>,
    pub requests: u64,
    pub ok: u64,
    pub refused: u64,
    pub errors: BTreeMap<String, u64>,
    /// The first message seen for each error key, to show what went wrong.
    pub samples: BTreeMap<String, String>,
}

impl Tally {
    pub fn record(&mut self, kind: &'static str, took: Duration, outcome: Outcome, detail: &str) {
        let k = self.kinds.entry(kind).or_default();
        k.requests += 1;
        match outcome {
            Outcome::Ok => {
                k.ok += 1;
                k.micros.push(took.as_micros() as u64);
            }
            Outcome::Refused => k.refused += 1,
            Outcome::Error(key) => {
                k.samples
                    .entry(key.clone())
                    .or_insert_with(|| detail.chars().take(300).collect());
                *k.errors.entry(key).or_default() += 1;
            }
        }
    }

    pub fn merge(&mut self, other: Tally) {
        for (kind, o) in other.kinds {
            let k = self.kinds.entry(kind).or_default();
            k.micros.extend(o.micros);
            k.requests += o.requests;
            k.ok += o.ok;
            k.refused += o.refused;
            for (e, n) in o.errors {
                *k.errors.entry(e).or_default() += n;
            }
            for (e, s) in o.samples {
                k.samples.entry(e).or_insert(s);
            }
        }
    }

    pub fn unexpected_errors(&self) -> u64 {
        self.kinds
            .values()
            .map(|k| k.errors.values().sum::<u64>())
            .sum()
    }
}

/// Server memory over the run, from /proc/<pid>/status once a second.
#[derive(Default, Clone)]
pub struct Rss {
    /// (seconds since the load started, VmRSS in KiB).
    pub samples: Vec<(f64, u64)>,
    /// VmHWM (the peak resident set of the process's whole life) at the end, KiB.
    pub peak_kib: Option<u64>,
}

struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

/// Nearest-rank percentiles, in milliseconds.
fn percentiles(micros: &mut [u64]) -> Percentiles {
    micros.sort_unstable();
    let at = |q: f64| -> f64 {
        if micros.is_empty() {
            return 0.0;
        }
        let rank = ((q * micros.len() as f64).ceil() as usize).clamp(1, micros.len());
        micros[rank - 1] as f64 / 1000.0
    };
    Percentiles {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: at(1.0),
    }
}

pub struct Report {
    pub clients: usize,
    pub seconds: f64,
    pub setup: Value,
    pub tally: Tally,
    pub rss: Option<Rss>,
}

impl Report {
    pub fn summary(&mut self) -> Value {
        let mut kinds = serde_json::Map::new();
        let mut all: Vec<u64> = Vec::new();
        let (mut total, mut ok, mut refused) = (0u64, 0u64, 0u64);
        let mut errors = serde_json::Map::new();
        for (name, k) in &mut self.tally.kinds {
            all.extend_from_slice(&k.micros);
            let n = k.requests;
            total += n;
            ok += k.ok;
            refused += k.refused;
            let p = percentiles(&mut k.micros);
            for (e, count) in &k.errors {
                errors.insert(
                    format!("{name}: {e}"),
                    json!({"count": count, "first_message": k.samples.get(e)}),
                );
            }
            kinds.insert(
                (*name).to_owned(),
                json!({
                    "requests": n,
                    "ok": k.ok,
                    "refused_429": k.refused,
                    "errors": k.errors.values().sum::<u64>(),
                    "per_second": n as f64 / self.seconds,
                    "ok_per_second": k.ok as f64 / self.seconds,
                    "p50_ms": p.p50, "p90_ms": p.p90, "p99_ms": p.p99, "max_ms": p.max,
                }),
            );
        }
        let p = percentiles(&mut all);
        let rss = self.rss.as_ref().map(|r| {
            let values: Vec<u64> = r.samples.iter().map(|s| s.1).collect();
            json!({
                "start_mib": values.first().map(|v| mib(*v)),
                "max_mib": values.iter().max().map(|v| mib(*v)),
                "end_mib": values.last().map(|v| mib(*v)),
                "peak_vmhwm_mib": r.peak_kib.map(mib),
                "samples": r.samples.iter().map(|(t, v)| json!([t, mib(*v)])).collect::<Vec<_>>(),
            })
        });
        json!({
            "clients": self.clients,
            "duration_s": self.seconds,
            "setup": self.setup,
            "overall": {
                "requests": total,
                "ok": ok,
                "refused_429": refused,
                "errors": self.tally.unexpected_errors(),
                "per_second": total as f64 / self.seconds,
                "ok_per_second": ok as f64 / self.seconds,
                "p50_ms": p.p50, "p90_ms": p.p90, "p99_ms": p.p99, "max_ms": p.max,
            },
            "kinds": kinds,
            "errors": errors,
            "server_rss": rss,
        })
    }

    /// The human-readable report, from [`Report::summary`] so both always agree.
    pub fn to_text(report: &Value) -> String {
        let mut s = String::new();
        let o = &report["overall"];
        s += &format!(
            "clusterd load: {} clients for {:.1} s — {} requests ({:.1}/s, {:.1} ok/s), {} refused with 429 (queue full), {} errors\n\n",
            report["clients"],
            report["duration_s"].as_f64().unwrap_or(0.0),
            o["requests"],
            o["per_second"].as_f64().unwrap_or(0.0),
            o["ok_per_second"].as_f64().unwrap_or(0.0),
            o["refused_429"],
            o["errors"],
        );
        s += &format!(
            "{:<26} {:>8} {:>8} {:>6} {:>6} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9}\n",
            "kind",
            "requests",
            "ok",
            "429",
            "errors",
            "req/s",
            "ok/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms"
        );
        s += "(latency percentiles over the successful requests)\n";
        let row = |name: &str, k: &Value| {
            format!(
                "{:<26} {:>8} {:>8} {:>6} {:>6} {:>8.1} {:>8.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}\n",
                name,
                k["requests"].as_u64().unwrap_or(0),
                k["ok"].as_u64().unwrap_or(0),
                k["refused_429"].as_u64().unwrap_or(0),
                k["errors"].as_u64().unwrap_or(0),
                k["per_second"].as_f64().unwrap_or(0.0),
                k["ok_per_second"].as_f64().unwrap_or(0.0),
                k["p50_ms"].as_f64().unwrap_or(0.0),
                k["p90_ms"].as_f64().unwrap_or(0.0),
                k["p99_ms"].as_f64().unwrap_or(0.0),
                k["max_ms"].as_f64().unwrap_or(0.0),
            )
        };
        if let Some(kinds) = report["kinds"].as_object() {
            for (name, k) in kinds {
                s += &row(name, k);
            }
        }
        s += &row("overall", o);
        if let Some(errors) = report["errors"].as_object()
            && !errors.is_empty()
        {
            s += "\nerrors (other than 429 queue-full refusals):\n";
            for (key, e) in errors {
                s += &format!("  {key}: {} — first: {}\n", e["count"], e["first_message"]);
            }
        }
        let r = &report["server_rss"];
        if r.is_object() {
            s += &format!(
                "\nserver RSS: start {} MiB, max {} MiB, end {} MiB; peak (VmHWM) {} MiB\n",
                fmt_mib(&r["start_mib"]),
                fmt_mib(&r["max_mib"]),
                fmt_mib(&r["end_mib"]),
                fmt_mib(&r["peak_vmhwm_mib"]),
            );
            if let Some(samples) = r["samples"].as_array()
                && !samples.is_empty()
            {
                // Ten points across the run are enough to see a trend.
                let step = samples.len().div_ceil(10).max(1);
                let mut line = String::from("RSS over time (s: MiB):");
                for (i, p) in samples.iter().enumerate() {
                    if i % step == 0 || i + 1 == samples.len() {
                        line +=
                            &format!(" {:.0}: {}", p[0].as_f64().unwrap_or(0.0), fmt_mib(&p[1]));
                    }
                }
                s += &line;
                s += "\n";
            }
        }
        s
    }
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

fn fmt_mib(v: &Value) -> String {
    v.as_f64()
        .map(|m| format!("{m:.0}"))
        .unwrap_or_else(|| "?".into())
}
