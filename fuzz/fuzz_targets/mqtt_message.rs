//! Whole MQTT messages as the watcher receives them, one connection's
//! worth: topic and payload through `rainmaker::mqtt::on_publish`, with the
//! name table a `config` fills and later `params` are read by. Every topic
//! form (plain, `$aws/rules/<rule>/`), every suffix (`config`, `params/local`,
//! `params/local/init`, `otastatus`, `otaurl`, `otafetch`) and hostile node
//! ids.
//!
//! Input: `<topic>\n<payload>` (one message; the seed corpus) when it starts
//! with `node/` or `$aws/`, else generated messages (1 to 6).
//!
//! Properties: a fact only for a node id safe in a topic, found in the
//! topic; node reports are single and partial; job ids, versions and
//! texts short or bounded and clean; timestamps not negative; download
//! windows inside a day.
#![no_main]

use std::collections::HashMap;

use arbitrary::{Arbitrary, Unstructured};
use greenlight_core::rainmaker::mqtt::on_publish;
use greenlight_core::rainmaker::parse::MAX_TEXT;
use greenlight_core::rainmaker::{Fact, InfoReport};
use greenlight_fuzz::shapes::{ConfigShape, NodeIdShape, OtaUrlShape, ParamsShape, StatusShape};
use greenlight_fuzz::{check, Json, Str, F};
use libfuzzer_sys::fuzz_target;

const SUFFIXES: [(&str, &str); 6] = [
    ("config", "esp_node_config"),
    ("params/local/init", "esp_init_params"),
    ("params/local", "esp_set_params"),
    ("otastatus", "esp_node_otastatus"),
    ("otafetch", "esp_node_otafetch"),
    ("otaurl", "esp_node_otaurl"),
];

#[derive(Debug, Arbitrary)]
enum Topic {
    Plain(NodeIdShape, u8),
    Ingest(NodeIdShape, u8, Option<Str>),
    Other(Str),
}

#[derive(Debug, Arbitrary)]
enum Payload {
    Config(ConfigShape),
    Params(ParamsShape),
    Status(StatusShape),
    Url(OtaUrlShape),
    Fetch(F, F),
    Json(Json),
    Bytes(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Message {
    topic: Topic,
    payload: Payload,
}

fn topic(t: &Topic) -> String {
    match t {
        Topic::Plain(id, s) => format!("node/{}/{}", id.get(), SUFFIXES[*s as usize % 6].0),
        Topic::Ingest(id, s, rule) => {
            let (suffix, r) = SUFFIXES[*s as usize % 6];
            let rule = rule.as_ref().map_or(r, |r| r.0.as_str());
            format!("$aws/rules/{rule}/node/{}/{suffix}", id.get())
        }
        Topic::Other(s) => s.0.clone(),
    }
}

fn payload(p: &Payload) -> Vec<u8> {
    let v = match p {
        Payload::Config(c) => c.to_json(),
        Payload::Params(p) => p.to_json(),
        Payload::Status(s) => s.mqtt_json(),
        Payload::Url(u) => u.to_json(),
        Payload::Fetch(n, f) => {
            greenlight_fuzz::obj(&[("node_id", n.get()), ("fw_version", f.get())], &[])
        }
        Payload::Json(j) => j.0.clone(),
        Payload::Bytes(b) => return b.clone(),
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

fn check_fact(topic: &str, f: Fact) {
    match f {
        Fact::Nodes {
            nodes, complete, ..
        } => {
            assert!(!complete);
            assert_eq!(nodes.len(), 1);
            let n = &nodes[0];
            check::node_id(&n.node_id);
            assert!(
                topic.contains(&format!("node/{}/", n.node_id)),
                "{} not in {topic:?}",
                n.node_id
            );
            if let InfoReport::Pending(i) = &n.info {
                check::short(&i.job_id);
                check::short(&i.fw_version);
            }
            if let Some(f) = &n.fw_version {
                check::short(f);
            }
            if let Some(t) = &n.ota_text {
                check::clean_text(t, 200);
            }
        }
        Fact::OtaStatus {
            node_id,
            job_id,
            status,
            text,
            ts,
            ..
        } => {
            check::node_id(&node_id);
            assert!(topic.contains(&format!("node/{node_id}/")));
            check::short(&job_id);
            check::clean_text(&status, 40);
            check::clean_text(&text, MAX_TEXT);
            assert!(ts >= 0);
        }
        Fact::JobWindow {
            node_id,
            job_id,
            window,
            ..
        } => {
            check::node_id(&node_id);
            assert!(topic.ends_with(&format!("node/{node_id}/otaurl")));
            check::short(&job_id);
            assert!(window.start_minute < 1440 && window.end_minute < 1440);
        }
        other => panic!("unexpected fact {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let msgs: Vec<(String, Vec<u8>)> = if data.starts_with(b"node/") || data.starts_with(b"$aws/") {
        let Some(nl) = data.iter().position(|b| *b == b'\n') else {
            return;
        };
        let Ok(t) = std::str::from_utf8(&data[..nl]) else {
            return;
        };
        vec![(t.to_string(), data[nl + 1..].to_vec())]
    } else {
        let mut u = Unstructured::new(data);
        let Ok(first) = Message::arbitrary(&mut u) else {
            return;
        };
        let mut msgs = vec![first];
        while msgs.len() < 6 {
            match Message::arbitrary(&mut u) {
                Ok(m) => msgs.push(m),
                Err(_) => break,
            }
        }
        msgs.iter()
            .map(|m| (topic(&m.topic), payload(&m.payload)))
            .collect()
    };
    let mut names = HashMap::new();
    for (t, p) in &msgs {
        if let Some(f) = on_publish("acct", t, p, &mut names) {
            check_fact(t, f);
        }
    }
});
