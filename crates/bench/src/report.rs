//! The table and `BENCHMARKS.md`: figures, targets from issue 8, and
//! whether each is met. A hand-written analysis between the
//! `<!-- analysis:start -->` and `<!-- analysis:end -->` markers of an
//! existing file is carried over when the file is written again.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::app::AppFigures;
use crate::phase::{Broker, PhaseResult};

/// Target: p99 detection latency, ms.
pub const LATENCY_P99_MS: f64 = 10.0;
/// Target: engine throughput over bare subscriber.
pub const THROUGHPUT_RATIO: f64 = 0.8;
/// Target: resident memory at 10k nodes, MB (10^6 bytes).
pub const RSS_MB: f64 = 60.0;
/// Our reading of "no CPU at rest beyond timers": at most this share of one core.
pub const REST_CPU_PERCENT: f64 = 0.5;
/// Target: requests for one 1,000-node discovery.
pub const DISCOVERY_REQUESTS: u64 = 15;
/// Target: wall time of that discovery, s.
pub const DISCOVERY_S: f64 = 2.0;
/// Target: `ota_status` requests over the minimum.
pub const STATUS_RATIO: f64 = 1.2;

/// A whole run.
#[derive(Debug, Clone)]
pub struct Report {
    /// CPU, memory, kernel.
    pub machine: String,
    /// UTC date and time of the start.
    pub date: String,
    /// How it was run.
    pub command: String,
    /// `/proc/loadavg` at the start and end.
    pub load: (String, String),
    /// Whole run, s.
    pub wall_s: f64,
    /// `--quick`.
    pub quick: bool,
    /// Phases in order.
    pub phases: Vec<PhaseResult>,
    /// The app.
    pub app: AppFigures,
}

/// One table row.
#[derive(Debug, Clone)]
pub struct Row {
    /// What.
    pub measure: String,
    /// Where.
    pub setup: String,
    /// The figure.
    pub figure: String,
    /// The target.
    pub target: String,
    /// `Some(true)` met, `Some(false)` missed, `None` no target or not measured.
    pub met: Option<bool>,
}

fn met_text(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "—",
    }
}

fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn nodes_text(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k nodes", n / 1000)
    } else {
        format!("{n} nodes")
    }
}

fn setup(p: &PhaseResult) -> String {
    let b = p.broker.map(|b| b.to_string()).unwrap_or_default();
    format!("{b}, {}", nodes_text(p.nodes))
}

fn mb(kb: u64) -> f64 {
    kb as f64 * 1024.0 / 1e6
}

fn routes(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{v} × `{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

const CHECK: &str = "GET user/nodes/ota_update";

/// The rows of the table.
pub fn rows(r: &Report) -> Vec<Row> {
    let mut out = vec![];
    let mqtt: Vec<&PhaseResult> = r.phases.iter().filter(|p| p.rest.is_none()).collect();
    for p in mqtt.iter().filter(|p| p.nodes > 0) {
        let (figure, met) = match &p.latency {
            Some(s) => (
                format!(
                    "p50 {:.2} ms · p99 {:.2} ms · max {:.2} ms (n={}, {} lost)",
                    s.p50, s.p99, s.max, s.n, p.latency_lost
                ),
                Some(s.p99 < LATENCY_P99_MS && p.latency_lost == 0),
            ),
            None => ("not measured".into(), None),
        };
        out.push(Row {
            measure: "Detection latency (Info → pending event)".into(),
            setup: setup(p),
            figure,
            target: format!("p99 < {LATENCY_P99_MS} ms"),
            met,
        });
    }
    for p in mqtt.iter().filter(|p| p.nodes > 0) {
        let (figure, met) = match &p.throughput {
            Some(t) => match (t.engine_rate(), t.bare_rate(), t.ratio()) {
                (Some(e), Some(b), Some(q)) => (
                    format!(
                        "engine {} msg/s vs bare {} msg/s = **{:.0} %** ({} msgs)",
                        thousands(e),
                        thousands(b),
                        q * 100.0,
                        thousands(t.msgs as f64)
                    ),
                    Some(q >= THROUGHPUT_RATIO),
                ),
                (None, Some(b), _) => (
                    format!(
                        "engine did not finish {} msgs in time; bare {} msg/s",
                        thousands(t.msgs as f64),
                        thousands(b)
                    ),
                    Some(false),
                ),
                _ => ("incomplete".into(), None),
            },
            None => ("not measured".into(), None),
        };
        out.push(Row {
            measure: "Ingest throughput (engine / bare rumqttc)".into(),
            setup: setup(p),
            figure,
            target: format!("≥ {:.0} %", THROUGHPUT_RATIO * 100.0),
            met,
        });
    }
    for p in mqtt.iter().filter(|p| p.broker == Some(Broker::Mosquitto)) {
        let big = p.nodes >= 10_000;
        let (figure, met) = match p.rss_idle_kb {
            Some(kb) => (
                format!(
                    "{:.1} MB once the fleet is known; {:.1} MB after load, peak {:.1} MB",
                    mb(kb),
                    p.rss_end_kb.map(mb).unwrap_or(0.0),
                    p.hwm_kb.map(mb).unwrap_or(0.0)
                ),
                big.then(|| mb(p.hwm_kb.unwrap_or(kb).max(kb)) < RSS_MB),
            ),
            None => ("not measured".into(), None),
        };
        out.push(Row {
            measure: "Engine resident memory".into(),
            setup: setup(p),
            figure,
            target: if big {
                format!("< {RSS_MB} MB (peak)")
            } else {
                "—".into()
            },
            met,
        });
    }
    for p in mqtt.iter().filter(|p| p.cpu_rest.is_some()) {
        let c = p.cpu_rest.as_ref().expect("filtered");
        out.push(Row {
            measure: format!("Engine CPU at rest ({:.0} s)", c.window_s),
            setup: setup(p),
            figure: format!(
                "{:.0} ms CPU/min ({:.3} % of a core), {:.1} wake-ups/s, {} events",
                c.ms_per_min(),
                c.percent(),
                c.wakeups_per_s(),
                c.events
            ),
            target: format!("timers only (≤ {REST_CPU_PERCENT} % of a core)"),
            met: Some(c.percent() <= REST_CPU_PERCENT && c.events == 0),
        });
    }
    for p in r.phases.iter().filter(|p| p.rest.is_some()) {
        let e = p.rest.as_ref().expect("filtered");
        let sweep: u64 = e
            .discovery_requests
            .iter()
            .filter(|(k, _)| k.as_str() != CHECK)
            .map(|(_, v)| v)
            .sum();
        let checks = e.discovery_requests.get(CHECK).copied().unwrap_or(0);
        let (figure, met) = match e.discovery_s {
            Some(s) => (
                format!(
                    "{sweep} requests, {s:.2} s ({}; plus {checks} background `ota_update` checks)",
                    routes(
                        &e.discovery_requests
                            .iter()
                            .filter(|(k, _)| k.as_str() != CHECK)
                            .map(|(k, v)| (k.clone(), *v))
                            .collect()
                    )
                ),
                Some(sweep <= DISCOVERY_REQUESTS && s < DISCOVERY_S),
            ),
            None => ("did not finish".into(), Some(false)),
        };
        out.push(Row {
            measure: "REST discovery sweep".into(),
            setup: format!("REST only, {}", nodes_text(e.nodes)),
            figure,
            target: format!("≤ {DISCOVERY_REQUESTS} requests, < {DISCOVERY_S} s"),
            met,
        });
        if let Some(kb) = p.rss_idle_kb {
            out.push(Row {
                measure: "Engine resident memory".into(),
                setup: format!("REST only, {}", nodes_text(e.nodes)),
                figure: format!(
                    "{:.1} MB after discovery; {:.1} MB at the end, peak {:.1} MB",
                    mb(kb),
                    p.rss_end_kb.map(mb).unwrap_or(0.0),
                    p.hwm_kb.map(mb).unwrap_or(0.0)
                ),
                target: "—".into(),
                met: None,
            });
        }
        if e.idle_window_s > 0.0 {
            let total: u64 = e.idle_requests.values().sum();
            out.push(Row {
                measure: format!("REST requests at rest ({:.0} s)", e.idle_window_s),
                setup: format!("REST only, {}", nodes_text(e.nodes)),
                figure: format!(
                    "{:.0} requests/min ({})",
                    total as f64 * 60.0 / e.idle_window_s,
                    routes(&e.idle_requests)
                ),
                target: "—".into(),
                met: None,
            });
            if let Some(c) = &p.cpu_rest {
                out.push(Row {
                    measure: format!("Engine CPU at rest ({:.0} s)", c.window_s),
                    setup: format!("REST only, {}", nodes_text(e.nodes)),
                    figure: format!(
                        "{:.0} ms CPU/min ({:.3} % of a core), {:.1} wake-ups/s",
                        c.ms_per_min(),
                        c.percent(),
                        c.wakeups_per_s()
                    ),
                    target: "— (polls the cloud)".into(),
                    met: None,
                });
            }
        }
        if e.jobs > 0 {
            let min = e.status_minimum();
            let got = e.status_requests();
            let (figure, met) = if e.jobs_done == e.jobs && min > 0 {
                let q = got as f64 / min as f64;
                (
                    format!(
                        "{got} for {} jobs = {:.1}/job; minimum {min} = {:.1}/job → **{q:.2}×** ({} after the end)",
                        e.jobs,
                        got as f64 / e.jobs as f64,
                        min as f64 / e.jobs as f64,
                        e.tail_status_requests
                    ),
                    Some(q <= STATUS_RATIO && e.tail_status_requests == 0),
                )
            } else {
                (
                    format!("{} of {} jobs ended; {got} requests", e.jobs_done, e.jobs),
                    Some(false),
                )
            };
            out.push(Row {
                measure: "`ota_status` requests per completed job".into(),
                setup: format!("REST only, {}", nodes_text(e.nodes)),
                figure,
                target: format!("≤ {STATUS_RATIO}× minimum"),
                met,
            });
        }
    }
    let a = &r.app;
    let mb = |b: u64| b as f64 / 1_000_000.0;
    let size_row = |measure: &str, setup: &str, bytes: Option<u64>, target_mb: Option<f64>| Row {
        measure: measure.into(),
        setup: setup.into(),
        figure: match bytes {
            Some(b) => format!("{:.1} MB ({b} bytes)", mb(b)),
            None => "not measured".into(),
        },
        target: target_mb
            .map(|t| format!("< {t} MB"))
            .unwrap_or_else(|| "—".into()),
        met: match (bytes, target_mb) {
            (Some(b), Some(t)) => Some(mb(b) < t),
            _ => None,
        },
    };
    out.push(size_row(
        "App release binary size",
        "greenlight-app",
        a.size_bytes,
        Some(15.0),
    ));
    out.push(size_row(
        "CLI release binary size",
        "greenlight",
        a.cli_size_bytes,
        Some(10.0),
    ));
    out.push(size_row(
        "Simulator release binary size (the demo; not linked into the app or the CLI)",
        "greenlight-sim",
        a.sim_size_bytes,
        None,
    ));
    if a.packages.is_empty() {
        out.push(Row {
            measure: "Package size".into(),
            setup: "make package".into(),
            figure: "not measured: no package under release/bundle (run `make package`)".into(),
            target: "—".into(),
            met: None,
        });
    }
    for (name, bytes) in &a.packages {
        out.push(size_row("Package size", name, Some(*bytes), None));
    }
    let line = |prefix: &str| {
        a.script_lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .cloned()
    };
    let why = a.not_measured.join("; ");
    let cold = line("cold start");
    // "cold start to first window: median 123 ms over 5 runs (...)"
    let cold_ms = cold.as_deref().and_then(|l| {
        l.split("median ")
            .nth(1)?
            .split(' ')
            .next()?
            .parse::<u64>()
            .ok()
    });
    out.push(Row {
        measure: "App cold start to first window (Xvfb)".into(),
        setup: "greenlight-app".into(),
        figure: cold.unwrap_or_else(|| format!("not measured: {why}")),
        target: "median < 300 ms".into(),
        met: cold_ms.map(|m| m < 300),
    });
    // "resident at rest (no demo): app 51234 KiB, its WebKit processes ..."
    let app_kib =
        |l: &str| -> Option<u64> { l.split("app ").nth(1)?.split(' ').next()?.parse().ok() };
    let rest = line("resident at rest (no demo)");
    out.push(Row {
        measure: "App resident memory at rest, no demo".into(),
        setup: "greenlight-app, empty data directory".into(),
        met: rest
            .as_deref()
            .and_then(app_kib)
            .map(|k| (k as f64 / 1024.0) < 60.0),
        figure: rest.unwrap_or_else(|| format!("not measured: {why}")),
        target: "app RSS < 60 MB".into(),
    });
    out.push(Row {
        measure: "App resident memory at rest, demo fleet".into(),
        setup: "greenlight-app + greenlight-sim demo".into(),
        figure: line("resident at rest (demo fleet)")
            .unwrap_or_else(|| format!("not measured: {why}")),
        target: "—".into(),
        met: None,
    });
    out
}

/// The table as Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut s =
        String::from("| Measure | Setup | Figure | Target | Met |\n|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            r.measure,
            r.setup,
            r.figure,
            r.target,
            met_text(r.met)
        );
    }
    s
}

fn details(r: &Report) -> String {
    let mut s = String::new();
    for p in &r.phases {
        let _ = writeln!(s, "### {}\n", p.name);
        let _ = writeln!(
            s,
            "- load average (1/5/15 min): {} at the start, {} at the end",
            p.load_start, p.load_end
        );
        if let Some(f) = p.fleet_ready_s {
            let _ = writeln!(
                s,
                "- the engine knew every node's pending update {f:.1} s after the fleet started announcing"
            );
        }
        if let Some(l) = &p.latency {
            let _ = writeln!(
                s,
                "- detection latency over {} Info reports: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, mean {:.3} ms; {} never reported",
                l.n, l.p50, l.p99, l.max, l.mean, p.latency_lost
            );
        }
        if let Some(t) = &p.throughput {
            let _ = writeln!(
                s,
                "- throughput: {} param messages from {} publishers, published and acknowledged in {:.2} s; engine done after {}, bare subscriber after {} ({} load messages counted)",
                t.msgs,
                t.publishers,
                t.publish_s,
                t.engine_s.map(|x| format!("{x:.2} s")).unwrap_or_else(|| "—".into()),
                t.bare_s.map(|x| format!("{x:.2} s")).unwrap_or_else(|| "—".into()),
                t.bare_count
            );
        }
        if p.rss_idle_kb.is_some() || p.hwm_kb.is_some() {
            let _ = writeln!(
                s,
                "- engine process: RSS {} KiB once ready, {} KiB at the end, peak {} KiB, {} threads",
                p.rss_idle_kb.map(|x| x.to_string()).unwrap_or_else(|| "—".into()),
                p.rss_end_kb.map(|x| x.to_string()).unwrap_or_else(|| "—".into()),
                p.hwm_kb.map(|x| x.to_string()).unwrap_or_else(|| "—".into()),
                p.threads.map(|x| x.to_string()).unwrap_or_else(|| "—".into()),
            );
        }
        if let Some(c) = &p.cpu_rest {
            let _ = writeln!(
                s,
                "- at rest for {:.1} s: {} ms CPU, {} context switches, {} events",
                c.window_s, c.cpu_ms, c.ctxt_switches, c.events
            );
        }
        if let Some(e) = &p.rest {
            let _ = writeln!(
                s,
                "- discovery: {} in {}",
                routes(&e.discovery_requests),
                e.discovery_s
                    .map(|x| format!("{x:.3} s"))
                    .unwrap_or_else(|| "—".into())
            );
            if e.idle_window_s > 0.0 {
                let _ = writeln!(
                    s,
                    "- at rest for {:.0} s: {}",
                    e.idle_window_s,
                    routes(&e.idle_requests)
                );
            }
            if e.jobs > 0 {
                let _ = writeln!(
                    s,
                    "- {} jobs approved, {} ended ({:?}) {} after approval; requests meanwhile: {}; `ota_status` in the 6 s after: {}",
                    e.jobs,
                    e.jobs_done,
                    e.job_states,
                    e.jobs_wall_s
                        .map(|x| format!("{x:.1} s"))
                        .unwrap_or_else(|| "—".into()),
                    routes(&e.job_requests),
                    e.tail_status_requests
                );
                let d: Vec<String> = e
                    .job_durations_s
                    .iter()
                    .map(|d| format!("{d:.1}"))
                    .collect();
                let _ = writeln!(
                    s,
                    "- approval → terminal status in the cloud, per job (s): {}; poll period {} s",
                    d.join(", "),
                    e.poll_every_s
                );
            }
        }
        if p.lags > 0 {
            let _ = writeln!(
                s,
                "- the engine process's event reader lagged and lost {} events",
                p.lags
            );
        }
        for n in &p.notes {
            let _ = writeln!(s, "- {n}");
        }
        s.push('\n');
    }
    s
}

const METHOD: &str = "\
- **Processes.** Each phase runs in its own process (the harness re-executes \
itself): a private mosquitto on a free loopback port (unbounded queues, so a \
slow subscriber is late rather than lossy) or rumqttd embedded in the \
simulator; the RainMaker simulator (`Scenario::Fleet`: every node has a \
node-side update waiting); the load generators; and the engine in a child \
process of its own (`--child engine`), so its memory and CPU are read from \
`/proc/PID/status` (`VmRSS`, `VmHWM`) and `/proc/PID/stat` (`utime + stime`) \
without the simulator, broker or load generators mixed in. The engine runs \
with its default timings and one account, MQTT-only for the broker phases.
- **Detection latency.** Measured with a raw rumqttc publisher of our own, \
not with the simulator's nodes (whose publish instant is not observable): it \
publishes a new `Info` (`{\"OTA\":{\"Info\":{\"job_id\",\"fw_version\"}}}`, QoS 1, \
`node/<id>/params/local`) for a different fleet node at a fixed pace, reading \
`CLOCK_MONOTONIC` just before handing the message to its client; the engine \
process reads the same clock when its `Event::PendingAdded` subscriber \
receives the event. The figure therefore includes the publisher's client, the \
broker, the engine's MQTT client, parsing, the actor and the broadcast to a \
subscriber. The fleet is connected and quiet meanwhile.
- **Ingest throughput.** Four raw publishers send N param reports \
(`{\"Light\":{\"Brightness\",\"Power\"}}`, QoS 1) spread round-robin over every \
node as fast as the broker acknowledges them, then one sentinel `Info` for an \
extra node. The engine handles one connection's messages in order, so the \
instant it emits the sentinel's pending event it has handled all N; a bare \
rumqttc subscriber with the engine's own filters, in the same run on the same \
broker, counts messages and stops at the sentinel. Rate = N / (sentinel seen − \
first publish); the figure is engine rate / bare rate. The simulator's cloud \
is a third subscriber of the same messages.
- **Memory** is read once the engine knows every node and its pending update \
(before any load), again at the end, plus the peak (`VmHWM`). 0 nodes = the \
engine with its account connected to an empty broker.
- **CPU at rest** is `utime + stime` of the engine process over a window \
with the fleet connected and nothing published, plus the context switches of \
all its threads (`/proc/PID/task/*/status`) as a count of wake-ups. Our \
reading of the target \"no CPU at rest beyond timers\": at most 0.5 % of one \
core and no events.
- **REST economy.** A REST-only account against the simulator's cloud with \
1,000 nodes (human-scale firmware timings: a download ~7 s, a reboot 2 s). \
The simulator counts every `/v1` request by route. Discovery = from \
`add_account` until the engine has emitted every node's pending update. The \
background `ota_update` checks (one node per `cloud_check_interval / nodes`) \
are listed apart from the sweep. Then a window at rest, then some nodes are \
approved (node-side approval, `PUT user/nodes/params`) and followed to their \
end; the minimum `ota_status` requests is, per job, one per poll period \
(`status_poll_fast`, 2 s, the official app's pace) that the job ran in the \
cloud (approval → terminal status, watched in the simulator every 20 ms), at \
least one.
- **App.** Sizes of the release binaries (app, CLI, simulator) and of the \
packages `make package` left under `release/bundle`, if built; \
`scripts/app-figures.sh` for cold start and for memory at rest after 20 s, \
once on an empty data directory and once on the demo fleet (the simulator, a \
child process of its own, counted apart), if Xvfb and the binaries exist. \
Targets of issue 14: app binary < 15 MB, CLI < 10 MB, cold start median \
< 300 ms, app process < 60 MB at rest without the demo.
- **Bounds.** Every load loop has a fixed count and every wait a deadline; \
each phase has a hard time limit after which its process is killed.";

const ANALYSIS_START: &str = "<!-- analysis:start -->";
const ANALYSIS_END: &str = "<!-- analysis:end -->";

/// The hand-written analysis of an existing file, if any.
pub fn kept_analysis(old: &str) -> Option<String> {
    let a = old.find(ANALYSIS_START)? + ANALYSIS_START.len();
    let b = old[a..].find(ANALYSIS_END)? + a;
    Some(old[a..b].trim().to_string())
}

/// `BENCHMARKS.md`.
pub fn markdown(r: &Report, rows: &[Row], analysis: Option<String>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `greenlight-bench` (crates/bench); regenerate with the command below. \
         Targets are those of issue 8. The section *Analysis* is written by hand and kept \
         when the file is regenerated.\n"
    );
    let _ = writeln!(s, "- **Date:** {}", r.date);
    let _ = writeln!(s, "- **Command:** `{}`", r.command);
    let _ = writeln!(s, "- **Machine:** {}", r.machine);
    let _ = writeln!(
        s,
        "- **Load average** (1/5/15 min): {} at the start, {} at the end; the whole run took {:.0} s{}",
        r.load.0,
        r.load.1,
        r.wall_s,
        if r.quick { " (`--quick`: shorter windows, fewer samples)" } else { "" }
    );
    let _ = writeln!(
        s,
        "- **Noise:** this machine has 2 cores and other engineers were compiling on it during the \
         run. Every figure here is one run on a shared, loaded machine: CPU-bound figures \
         (throughput, latency tails) are pessimistic and vary from run to run; the load average \
         of each phase is listed below.\n"
    );
    let _ = writeln!(s, "## Figures\n");
    s.push_str(&table(rows));
    let _ = writeln!(s, "\n## Analysis\n");
    let _ = writeln!(s, "{ANALYSIS_START}");
    let _ = writeln!(
        s,
        "{}",
        analysis.unwrap_or_else(|| "(not written yet)".into())
    );
    let _ = writeln!(s, "{ANALYSIS_END}\n");
    let _ = writeln!(s, "## How each figure is measured\n\n{METHOD}\n");
    let _ = writeln!(s, "## Details per phase\n");
    s.push_str(&details(r));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_kept_analysis() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(nodes_text(10_000), "10k nodes");
        assert_eq!(nodes_text(0), "0 nodes");
        let old = "x\n<!-- analysis:start -->\nkeep me\n<!-- analysis:end -->\ny";
        assert_eq!(kept_analysis(old).as_deref(), Some("keep me"));
        assert_eq!(kept_analysis("nothing"), None);
    }
}
