//! Preset fleets: the demo (a handful of nodes in every interesting state)
//! and the benchmark fleet (every node with an update waiting).

use super::cloud::JobKind;
use super::node::{Behaviour, NodeSpec};
use super::wire::NodeInfo;

/// Which preset to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// N identical nodes, all up to date, no jobs.
    Plain,
    /// About six nodes in mixed states: up to date, node-side pending,
    /// cloud-approval pending, offline with pending, one that will fail, one
    /// that will roll back.
    Demo,
    /// N nodes, every one with a node-side update pending.
    Fleet,
}

/// A job the scenario creates at start.
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
        info,
        fw_version: fw.to_string(),
        behaviour,
        require_approval,
        basic_ingest,
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
            };
            (nodes, vec![job])
        }
        Scenario::Demo => demo(n),
    }
}

fn demo(n: usize) -> (Vec<NodeSpec>, Vec<JobSpec>) {
    use Behaviour::*;
    let mut nodes = vec![
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
        spec(
            info(1, "Kitchen Plug", "ESP32 Smart Plug", "smart_plug", "esp32"),
            "1.3.2",
            Normal,
            true,
            true,
        ),
        spec(
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
        ),
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
        spec(
            info(
                4,
                "Bedroom Fan",
                "ESP32 Fan Controller",
                "fan_ctrl",
                "esp32",
            ),
            "1.1.0",
            DownloadFails,
            true,
            false,
        ),
        spec(
            info(
                5,
                "Hall Thermostat",
                "ESP32-C6 Thermostat",
                "thermostat",
                "esp32c6",
            ),
            "4.2.0",
            Rollback,
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
        },
        JobSpec {
            nodes: vec![id(2)],
            fw_version: "1.0.0".into(),
            description: "First stable release: calibrated humidity readings and 30% lower power use.".into(),
            kind: JobKind::UserApproval,
            image_size: 1200 * 1024,
        },
        JobSpec {
            nodes: vec![id(3)],
            fw_version: "3.0.1".into(),
            description: "Security fix for the obstruction sensor input.".into(),
            kind: JobKind::Plain,
            image_size: 700 * 1024,
        },
        JobSpec {
            nodes: vec![id(4)],
            fw_version: "1.2.0".into(),
            description: "Quieter low-speed mode.".into(),
            kind: JobKind::Plain,
            image_size: 600 * 1024,
        },
        JobSpec {
            nodes: vec![id(5)],
            fw_version: "4.3.0".into(),
            description: "New schedule engine with holiday mode. Requires bootloader 2.x.".into(),
            kind: JobKind::Plain,
            image_size: 1500 * 1024,
        },
    ];
    if n > 6 {
        jobs.push(JobSpec {
            nodes: (6..n).map(id).collect(),
            fw_version: "2.1.0".into(),
            description: "Smoother dimming curve.".into(),
            kind: JobKind::Plain,
            image_size: 800 * 1024,
        });
    }
    (nodes, jobs)
}
