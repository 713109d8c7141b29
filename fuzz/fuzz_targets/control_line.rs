//! The control socket's protocol, both sides: the line framing
//! (`tokio_util`'s `LinesCodec` with a length limit, fed in pieces), each
//! request line as the owner reads it (`control::read_request`: version and
//! id first, then the call), and each line from the owner as a client
//! reads it (`control::read_owner_line`: an event or an answer).
//!
//! Input: one byte of line limit, one of piece size, then the stream: JSON
//! lines as they are when it starts with `{`, else generated lines
//! (requests with every method, answers, events, junk).
//!
//! Properties: a line never exceeds the limit nor the input, holds no
//! newline and is exactly the bytes it was cut from; a request the owner
//! accepts, written again as a client writes it, is read as the same call
//! under the same id; a refused one is answered under its own id; events
//! and answers a client reads are read the same when sent again.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use greenlight_core::fuzz_api::{
    control_owner_line, control_request, control_request_line, OwnerLineKind,
};
use greenlight_fuzz::shapes::{known, Known, NodeIdShape};
use greenlight_fuzz::{check, json_text, obj, Json, Key, Str, F};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use tokio_util::codec::{Decoder, LinesCodec};

const METHODS: [&str; 28] = [
    "hello",
    "add_account",
    "remove_account",
    "accounts",
    "freshness",
    "login",
    "nodes",
    "pending",
    "jobs",
    "history",
    "job_events",
    "audit",
    "approve",
    "approve_all",
    "approve_at",
    "policies",
    "install_when_online",
    "resend",
    "cancel",
    "snooze",
    "skip",
    "auto_approve",
    "quiet_hours",
    "notifications_paused",
    "set_notifications_paused",
    "check_now",
    "refresh",
    "owner",
];

const EVENTS: [&str; 9] = [
    "node_updated",
    "pending_added",
    "pending_removed",
    "job_changed",
    "account_state",
    "account_freshness",
    "approval",
    "notifications_paused",
    "quiet_hours_changed",
];

const ERRORS: [&str; 7] = [
    "needs_login",
    "unknown_node",
    "ambiguous_node",
    "unknown_account",
    "config",
    "stopped",
    "other",
];

/// A node reference: `{"account": ..., "node_id": ...}`.
#[derive(Debug, Arbitrary)]
struct NodeRefShape {
    account: Option<Str>,
    node_id: NodeIdShape,
}

impl NodeRefShape {
    fn to_json(&self) -> Value {
        json!({"account": self.account.as_ref().map(|a| &a.0), "node_id": self.node_id.get()})
    }
}

/// The `params` of a call, in the shapes the calls take.
#[derive(Debug, Arbitrary)]
enum Params {
    None,
    Kind(Known<3>),
    Text(Str),
    Number(i64),
    Bool(bool),
    Node(NodeRefShape),
    Nodes(Vec<NodeRefShape>),
    NodesAt(Vec<NodeRefShape>, i64),
    NodeAnd(NodeRefShape, Option<i64>, Option<bool>),
    Login(F, F),
    History(F, F, Option<u32>),
    Quiet(Option<(u16, u16, i16)>),
    Account {
        name: F,
        rest: Option<(F, F, F)>,
        mqtt: Option<(F, Option<bool>, F)>,
    },
    Any(Json),
}

impl Params {
    fn get(&self) -> Option<Value> {
        Some(match self {
            Params::None => return None,
            Params::Kind(k) => json!({"kind": known(k, &["app", "watch", "command"])}),
            Params::Text(s) => json!(s.0),
            Params::Number(n) => json!(n),
            Params::Bool(b) => json!(b),
            Params::Node(n) => n.to_json(),
            Params::Nodes(ns) => Value::Array(ns.iter().map(NodeRefShape::to_json).collect()),
            Params::NodesAt(ns, at) => {
                json!([ns.iter().map(NodeRefShape::to_json).collect::<Vec<_>>(), at])
            }
            Params::NodeAnd(n, at, on) => match (at, on) {
                (_, Some(on)) => json!([n.to_json(), on]),
                (at, None) => json!([n.to_json(), at]),
            },
            Params::Login(a, p) => obj(&[("account", a.get()), ("password", p.get())], &[]),
            Params::History(a, n, limit) => obj(
                &[
                    ("account", a.get()),
                    ("node_id", n.get()),
                    ("limit", limit.map(Value::from)),
                ],
                &[],
            ),
            Params::Quiet(q) => match q {
                Some((s, e, o)) => {
                    json!({"start_minute": s, "end_minute": e, "utc_offset_minutes": o})
                }
                None => Value::Null,
            },
            Params::Account { name, rest, mqtt } => obj(
                &[
                    ("name", name.get()),
                    (
                        "rest",
                        rest.as_ref().map(|(u, user, pin)| {
                            obj(
                                &[
                                    ("base_url", u.get()),
                                    ("user", user.get()),
                                    ("pinned_sha256", pin.get()),
                                ],
                                &[],
                            )
                        }),
                    ),
                    (
                        "mqtt",
                        mqtt.as_ref().map(|(u, ingest, id)| {
                            obj(
                                &[
                                    ("url", u.get()),
                                    ("basic_ingest", ingest.map(Value::Bool)),
                                    ("client_id", id.get()),
                                ],
                                &[],
                            )
                        }),
                    ),
                ],
                &[],
            ),
            Params::Any(j) => j.0.clone(),
        })
    }
}

#[derive(Debug, Arbitrary)]
enum Line {
    Request {
        v: Option<u64>,
        id: u64,
        id_other: Option<Json>,
        method: Known<28>,
        params: Params,
    },
    Answer {
        id: u64,
        ok: Option<Json>,
        err: Option<(Known<7>, Vec<(Key, Json)>)>,
    },
    Event(Known<9>, Vec<(Key, Json)>),
    Json(Json),
    Bytes(Vec<u8>),
}

impl Line {
    fn bytes(&self) -> Vec<u8> {
        let v = match self {
            Line::Request {
                v,
                id,
                id_other,
                method,
                params,
            } => {
                let id = id_other.as_ref().map_or_else(|| json!(id), |j| j.0.clone());
                let call = obj(
                    &[
                        ("method", known(method, &METHODS)),
                        ("params", params.get()),
                    ],
                    &[],
                );
                json!({"v": v.unwrap_or(1), "id": id, "call": call})
            }
            Line::Answer { id, ok, err } => obj(
                &[
                    ("id", Some(json!(id))),
                    ("ok", ok.as_ref().map(|j| j.0.clone())),
                    (
                        "err",
                        err.as_ref()
                            .map(|(k, f)| obj(&[("kind", known(k, &ERRORS))], f)),
                    ),
                ],
                &[],
            ),
            Line::Event(k, fields) => json!({"event": obj(&[("type", known(k, &EVENTS))], fields)}),
            Line::Json(j) => j.0.clone(),
            Line::Bytes(b) => return b.clone(),
        };
        v.to_string().into_bytes()
    }
}

fn check_line(line: &str) {
    match control_request(line) {
        Ok((id, call)) => {
            let again = control_request_line(id, &call).expect("an accepted call is written again");
            assert_eq!(
                control_request(&again),
                Ok((id, call)),
                "request does not round-trip"
            );
        }
        Err((id, err)) => {
            let head: Option<Value> = serde_json::from_str(line).ok();
            let want = head
                .as_ref()
                .and_then(|h| h.get("id"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            assert_eq!(id, want, "refused under another id");
            assert!(err.get("kind").is_some());
        }
    }
    match control_owner_line(line) {
        OwnerLineKind::Event(e) => match control_owner_line(&json!({"event": e}).to_string()) {
            OwnerLineKind::Event(again) => {
                assert!(
                    check::same_json(&again, &e),
                    "event does not round-trip: {e} {again}"
                )
            }
            other => panic!("event {e} read back as {other:?}"),
        },
        OwnerLineKind::Answer(id, a) => match control_owner_line(&a.to_string()) {
            OwnerLineKind::Answer(id2, again) => {
                assert_eq!(id2, id);
                assert!(
                    check::same_json(&again, &a),
                    "answer does not round-trip: {a} {again}"
                );
            }
            other => panic!("answer {a} read back as {other:?}"),
        },
        OwnerLineKind::Ignored | OwnerLineKind::Unreadable => {}
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max = 64 * (usize::from(data[0]) + 1);
    let piece = usize::from(data[1]) + 1;
    let rest = &data[2..];
    let stream: Vec<u8> = match json_text(rest) {
        Some(t) => t.to_vec(),
        None => {
            let mut u = Unstructured::new(rest);
            let mut out = vec![];
            while let Ok(l) = Line::arbitrary(&mut u) {
                out.extend(l.bytes());
                out.push(b'\n');
                if u.is_empty() || out.len() > 64 * 1024 {
                    break;
                }
            }
            out
        }
    };
    let mut codec = LinesCodec::new_with_max_length(max);
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    let mut at = 0usize;
    let mut lines = vec![];
    let mut take = |line: String, at: &mut usize, fed: usize| {
        assert!(line.len() <= max, "{} > {max}", line.len());
        assert!(!line.contains('\n'));
        let end = stream[*at..fed]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(fed, |p| *at + p);
        let mut want = &stream[*at..end];
        if let Some(w) = want.strip_suffix(b"\r") {
            want = w;
        }
        assert_eq!(
            line.as_bytes(),
            want,
            "a line is not the bytes it was cut from"
        );
        *at = (end + 1).min(fed);
        lines.push(line);
    };
    'feed: loop {
        if fed < stream.len() {
            let n = piece.min(stream.len() - fed);
            buf.extend_from_slice(&stream[fed..fed + n]);
            fed += n;
        }
        let last = fed == stream.len();
        loop {
            let r = if last {
                codec.decode_eof(&mut buf)
            } else {
                codec.decode(&mut buf)
            };
            match r {
                Ok(Some(line)) => take(line, &mut at, fed),
                Ok(None) => break,
                // The owner and the client close the connection here.
                Err(_) => break 'feed,
            }
        }
        if last {
            break;
        }
    }
    for l in &lines {
        check_line(l);
    }
});
