//! ESP RainMaker sources and commands: the REST client ([`rest`]), the MQTT
//! watcher ([`mqtt`]), the REST sweeps and pollers ([`sweep`]) and the
//! parsers they share ([`parse`]). Sources only report [`Fact`]s to the
//! engine; they decide nothing.

pub mod mqtt;
pub mod parse;
pub mod rest;
pub mod sweep;

use tokio::sync::oneshot;

use crate::event::AccountState;
use parse::{ConfigInfo, OtaInfo};
use rest::CloudOffer;

/// What a source learned about a node's `Info` param.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfoReport {
    /// The message said nothing about it (or it was unreadable).
    Unknown,
    /// Nothing pending (`{}` or `"{}"`).
    Empty,
    /// An update waits for node-side approval.
    Pending(OtaInfo),
}

/// What a source learned about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    /// Node id (validated).
    pub node_id: String,
    /// The node's config, when the message carried one.
    pub config: Option<ConfigInfo>,
    /// Running version from an `otafetch`, when no config came.
    pub fw_version: Option<String>,
    /// Connectivity, when known.
    pub online: Option<bool>,
    /// When the connectivity last changed, as the cloud reports it (ms; a
    /// disconnected node was last online then).
    pub changed_at: Option<i64>,
    /// The `Info` param.
    pub info: InfoReport,
    /// A stock-layout node's last OTA text (its `Status`/`Info` strings).
    pub ota_text: Option<String>,
}

/// Which source reported a fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The MQTT watcher.
    Mqtt,
    /// A REST call.
    Rest,
}

/// A fact reported by a source to the engine.
#[derive(Debug)]
pub enum Fact {
    /// Node reports. `complete`: this is the account's whole node list (a
    /// sweep), so nodes not in it are gone. `done` is answered once applied.
    Nodes {
        /// Account.
        account: String,
        /// Reports.
        nodes: Vec<NodeReport>,
        /// Whole list.
        complete: bool,
        /// When the information was current (a sweep: when it was requested).
        observed_at: crate::model::Millis,
        /// Who reported it: the node itself, as it happened (MQTT), or the
        /// cloud's copy of what it last said (a REST sweep).
        via: Via,
        /// Answered after the engine applied the reports.
        done: Option<oneshot::Sender<()>>,
    },
    /// The result of a `GET user/nodes/ota_update`.
    CloudOffer {
        /// Account.
        account: String,
        /// Node.
        node_id: String,
        /// The offer, or none.
        offer: Option<CloudOffer>,
        /// Answered after the engine applied it.
        done: Option<oneshot::Sender<()>>,
    },
    /// Progress of the first look at every node's cloud offers (`None`
    /// when it is over).
    CheckProgress {
        /// Account.
        account: String,
        /// Checked so far of how many.
        checking: Option<crate::event::Checking>,
    },
    /// An OTA status for a job.
    OtaStatus {
        /// Account.
        account: String,
        /// Node.
        node_id: String,
        /// `ota_job_id`.
        job_id: String,
        /// Status string.
        status: String,
        /// `additional_info`.
        text: String,
        /// Timestamp, ms (0 when unknown).
        ts: i64,
        /// Who reported it.
        via: Via,
    },
    /// What Greenlight overheard of a job's delivery to a node (the cloud's
    /// `otaurl` message on a broker it watches): its download window.
    JobWindow {
        /// Account.
        account: String,
        /// Node.
        node_id: String,
        /// `ota_job_id`.
        job_id: String,
        /// The window from the job's metadata.
        window: crate::model::DownloadWindow,
    },
    /// A source's connection state.
    Source {
        /// Account.
        account: String,
        /// `mqtt` or `rest`.
        source: &'static str,
        /// State.
        state: AccountState,
        /// Told once the state is applied (a sweep's waiters then see it).
        done: Option<tokio::sync::oneshot::Sender<()>>,
    },
}
