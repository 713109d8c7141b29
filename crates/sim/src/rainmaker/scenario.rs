//! Preset fleets: the demo (a handful of nodes in every interesting state)
//! and the benchmark fleet (every node with an update waiting).

use super::cloud::{DownloadWindow, JobKind};
use super::node::{Behaviour, NodeSpec};
use super::wire::{NodeInfo, OtaLayout};

/// Which preset to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// N identical nodes, all up to date, no jobs.
    Plain,
    /// Six nodes in mixed states: up to date, node-side pending (with
    /// progress), a stock node with a cloud "User Approval" job, offline after
    /// offering, one whose first attempt fails, one that rolls back and
    /// reports it as a failure.
    Demo,
    /// N nodes, every one with a node-side update pending.
    Fleet,
}

/// An OTA job to create (by a scenario at start, or with
/// [`Cloud::create_job_from`](super::cloud::Cloud::create_job_from)).
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Target nodes.
    pub nodes: Vec<String>,
    /// Version.
    pub fw_version: String,
    /// Release note.
    pub description: String,
    /// Kind.
    pub kind: JobKind,
    /// Image size.
    pub image_size: usize,
    /// Download window sent in the `otaurl` metadata (and in `ota_update`).
    pub download_window: Option<DownloadWindow>,
}

impl JobSpec {
    /// A job of `kind` to `fw_version` for `nodes`, with an empty release
    /// note, a 128 KiB image and no download window.
    pub fn new(nodes: &[String], fw_version: &str, kind: JobKind) -> Self {
        JobSpec {
            nodes: nodes.to_vec(),
            fw_version: fw_version.to_string(),
            description: String::new(),
            kind,
            image_size: 128 * 1024,
            download_window: None,
        }
    }
}

/// Node id `n` of a fleet: 12 hex digits, like the MAC-derived ids of real nodes.
pub fn node_id(n: usize) -> String {
    format!("{:012X}", 0x7CDF_A100_0000u64 + n as u64)
}

fn info(n: usize, name: &str, model: &str, project: &str, platform: &str) -> NodeInfo {
    NodeInfo {
        node_id: node_id(n),
        name: name.to_string(),
        device_type: "esp.device.lightbulb".into(),
        model: model.to_string(),
        project_name: project.to_string(),
        platform: platform.to_string(),
    }
}

fn spec(
    info: NodeInfo,
    fw: &str,
    behaviour: Behaviour,
    require_approval: bool,
    basic_ingest: bool,
) -> NodeSpec {
    NodeSpec {
        behaviour,
        require_approval,
        basic_ingest,
        ..NodeSpec::new(info, fw)
    }
}

/// The nodes and jobs of a scenario with `n` nodes.
pub fn build(scenario: Scenario, n: usize) -> (Vec<NodeSpec>, Vec<JobSpec>) {
    match scenario {
        Scenario::Plain => {
            let nodes = (0..n)
                .map(|i| {
                    spec(
                        info(
                            i,
                            &format!("Light {}", i + 1),
                            "ESP32-C3 Light",
                            "led_light",
                            "esp32c3",
                        ),
                        "1.0.0",
                        Behaviour::Normal,
                        true,
                        i % 2 == 1,
                    )
                })
                .collect();
            (nodes, vec![])
        }
        Scenario::Fleet => {
            let nodes: Vec<NodeSpec> = (0..n)
                .map(|i| {
                    spec(
                        info(
                            i,
                            &format!("Light {}", i + 1),
                            "ESP32-C3 Light",
                            "led_light",
                            "esp32c3",
                        ),
                        "1.0.0",
                        Behaviour::Normal,
                        true,
                        i % 2 == 1,
                    )
                })
                .collect();
            let job = JobSpec {
                nodes: nodes.iter().map(|s| s.info.node_id.clone()).collect(),
                fw_version: "2.0.0".into(),
                description: "Fleet update: new LED driver and faster Wi-Fi provisioning.".into(),
                kind: JobKind::Plain,
                image_size: 64 * 1024,
                download_window: None,
            };
            (nodes, vec![job])
        }
        Scenario::Demo => demo(n),
    }
}

fn demo(n: usize) -> (Vec<NodeSpec>, Vec<JobSpec>) {
    use Behaviour::*;
    let mut nodes = vec![
        // Up to date. Kept in the user-approval layout: the app's tests use it
        // as the node that offers nothing.
        spec(
            info(
                0,
                "Living Room Light",
                "ESP32-C3 Light",
                "led_light",
                "esp32c3",
            ),
            "2.1.0",
            Normal,
            true,
            true,
        ),
        // Node-side offer; built with progress reporting, so the demo shows a
        // percentage bar somewhere (most real devices send none).
        NodeSpec {
            progress: true,
            ..spec(
                info(1, "Kitchen Plug", "ESP32 Smart Plug", "smart_plug", "esp32"),
                "1.3.2",
                Normal,
                true,
                true,
            )
        },
        // Stock SDK layout: the user approves its "User Approval" job in the cloud.
        NodeSpec {
            ota_layout: OtaLayout::Stock,
            ..spec(
                info(
                    2,
                    "Porch Sensor",
                    "ESP32-S3 Env Sensor",
                    "env_sensor",
                    "esp32s3",
                ),
                "0.9.1",
                Normal,
                false,
                false,
            )
        },
        // Offers its update, then drops off the network.
        spec(
            info(
                3,
                "Garage Door",
                "ESP32 Door Controller",
                "door_ctrl",
                "esp32",
            ),
            "3.0.0",
            Offline,
            true,
            true,
        ),
        // "OTA Attempt 1/3 failed", then attempt 2 succeeds.
        spec(
            info(
                4,
                "Bedroom Fan",
                "ESP32 Fan Controller",
                "fan_ctrl",
                "esp32",
            ),
            "1.1.0",
            RetryThenSucceeds,
            true,
            false,
        ),
        // Rolls back and reports it as `failed`; offers the same image again later.
        spec(
            info(
                5,
                "Hall Thermostat",
                "ESP32-C6 Thermostat",
                "thermostat",
                "esp32c6",
            ),
            "4.2.0",
            RollbackReportedAsFailure,
            true,
            true,
        ),
    ];
    for i in nodes.len()..n {
        nodes.push(spec(
            info(
                i,
                &format!("Desk Lamp {}", i - 5),
                "ESP32-C3 Light",
                "led_light",
                "esp32c3",
            ),
            "2.0.3",
            Normal,
            true,
            i % 2 == 0,
        ));
    }
    let id = |i: usize| node_id(i);
    let mut jobs = vec![
        JobSpec {
            nodes: vec![id(1)],
            fw_version: "1.4.0".into(),
            description: "Fixes relay chatter at power-on and reconnects to Wi-Fi twice as fast. Adds an energy report every 15 minutes.".into(),
            kind: JobKind::Plain,
            image_size: 900 * 1024,
            download_window: None,
        },
        JobSpec {
            nodes: vec![id(2)],
            fw_version: "1.0.0".into(),
            description: "First stable release: calibrated humidity readings and 30% lower power use.".into(),
            kind: JobKind::UserApproval,
            image_size: 1200 * 1024,
            download_window: None,
        },
        JobSpec {
            nodes: vec![id(3)],
            fw_version: "3.0.1".into(),
            description: "Security fix for the obstruction sensor input.".into(),
            kind: JobKind::Plain,
            image_size: 700 * 1024,
            download_window: None,
        },
        JobSpec {
            nodes: vec![id(4)],
            fw_version: "1.2.0".into(),
            description: "Quieter low-speed mode.".into(),
            kind: JobKind::Plain,
            image_size: 600 * 1024,
            download_window: None,
        },
        JobSpec {
            nodes: vec![id(5)],
            fw_version: "4.3.0".into(),
            description: "New schedule engine with holiday mode. Requires bootloader 2.x.".into(),
            kind: JobKind::Plain,
            image_size: 1500 * 1024,
            download_window: None,
        },
    ];
    if n > 6 {
        jobs.push(JobSpec {
            nodes: (6..n).map(id).collect(),
            fw_version: "2.1.0".into(),
            description: "Smoother dimming curve.".into(),
            kind: JobKind::Plain,
            image_size: 800 * 1024,
            download_window: None,
        });
    }
    (nodes, jobs)
}
