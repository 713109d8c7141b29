//! The commands an approval sends, run outside the actor so a slow cloud or
//! broker never stalls the watching of other nodes: `Operation = "start"`
//! to a node (over REST or MQTT) or `POST user/nodes/ota_update` for a
//! cloud user-approval job.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::error::{Error, Result};
use crate::model::{OtaNames, UpdateKind};
use crate::rainmaker::mqtt::MqttLink;
use crate::rainmaker::rest::RestClient;

/// A command ready to run.
pub(crate) struct Command {
    pub kind: UpdateKind,
    pub node_id: String,
    pub ota_job_id: String,
    pub names: OtaNames,
    pub rest: Option<RestClient>,
    pub mqtt: Option<Arc<MqttLink>>,
    pub ack_timeout: Duration,
}

impl Command {
    /// Sends it; `Ok` once the cloud or the broker acknowledged it.
    pub(crate) async fn run(self) -> Result<()> {
        match self.kind {
            UpdateKind::NodeSide => {
                let payload = json!({ self.names.service.clone(): { self.names.operation.clone(): "start" } });
                if let Some(rest) = &self.rest {
                    rest.put_params(&self.node_id, &payload).await
                } else if let Some(m) = &self.mqtt {
                    m.publish_params(&self.node_id, &payload, self.ack_timeout)
                        .await
                } else {
                    Err(Error::Config("the account has no REST or MQTT side".into()))
                }
            }
            UpdateKind::CloudApproval => match &self.rest {
                Some(rest) => {
                    rest.ota_update_approve(&self.node_id, &self.ota_job_id)
                        .await
                }
                None => Err(Error::Config(
                    "a cloud user-approval job needs the account's REST side".into(),
                )),
            },
        }
    }
}
