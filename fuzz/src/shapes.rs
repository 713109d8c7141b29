//! The shapes of the messages the parsers read, as `arbitrary` generators:
//! the real nesting and field names (docs/rainmaker.md, docs/blynk.md),
//! each field absent, plausible or anything ([`F`]), plus junk keys.

use arbitrary::Arbitrary;
use serde_json::{json, Value};

use crate::{obj, or_any, Json, Key, Str, Typed, F};

/// A field that is usually one of a few known values.
#[derive(Debug, Clone, Arbitrary)]
pub enum Known<const N: usize> {
    /// One of the known values (index modulo their number).
    Known(u8),
    /// Any field.
    Other(F),
}

/// Picks from `values` for [`Known`].
pub fn known<const N: usize>(k: &Known<N>, values: &[&str; N]) -> Option<Value> {
    match k {
        Known::Known(i) => Some(Value::String(values[*i as usize % N].to_string())),
        Known::Other(f) => f.get(),
    }
}

// ---- RainMaker ---------------------------------------------------------------

/// An `Info` offer object.
#[derive(Debug, Clone, Arbitrary)]
pub struct InfoObj {
    pub job_id: F,
    pub fw_version: F,
    pub extra: Vec<(Key, Json)>,
}

impl InfoObj {
    /// The JSON this shape stands for, as the parser is given it.
    pub fn to_json(&self) -> Value {
        obj(
            &[
                ("job_id", self.job_id.get()),
                ("fw_version", self.fw_version.get()),
            ],
            &self.extra,
        )
    }
}

/// The `Info` param in each of its shapes.
#[derive(Debug, Clone, Arbitrary)]
pub enum InfoShape {
    /// An object (later reports).
    Object(InfoObj),
    /// A string holding the object (the initial report, `"{}"`, ...).
    StringOfObject(InfoObj),
    /// A string holding any JSON.
    StringOfAny(Json),
    /// A string.
    Str(Str),
    /// Anything.
    Any(Json),
}

impl InfoShape {
    /// The JSON this shape stands for, as the parser is given it.
    pub fn to_json(&self) -> Value {
        match self {
            InfoShape::Object(o) => o.to_json(),
            InfoShape::StringOfObject(o) => Value::String(o.to_json().to_string()),
            InfoShape::StringOfAny(j) => Value::String(j.0.to_string()),
            InfoShape::Str(s) => Value::String(s.0.clone()),
            InfoShape::Any(j) => j.0.clone(),
        }
    }
}

const SERVICE_NAMES: [&str; 3] = ["OTA", "Updater", "Light"];
const OTA_PARAM_NAMES: [&str; 5] = ["Info", "Operation", "Status", "URL", "Stat"];

/// A params report: the OTA service's params, the last will, or anything.
#[derive(Debug, Clone, Arbitrary)]
pub enum ParamsShape {
    /// `{"<service>": {"Info": ..., "Status": ..., ...}, ...}`.
    Ota {
        service: Known<3>,
        info_name: Known<5>,
        info: InfoShape,
        others: Vec<(Known<5>, F)>,
        extra: Vec<(Key, Json)>,
    },
    /// `{"Connectivity": {"Connected": ...}}`.
    Connectivity(F),
    /// Anything.
    Any(Json),
}

impl ParamsShape {
    /// The JSON this shape stands for, as the parser is given it.
    pub fn to_json(&self) -> Value {
        match self {
            ParamsShape::Ota {
                service,
                info_name,
                info,
                others,
                extra,
            } => {
                let mut svc = serde_json::Map::new();
                for (k, v) in others {
                    if let (Some(Value::String(k)), Some(v)) = (known(k, &OTA_PARAM_NAMES), v.get())
                    {
                        svc.insert(k, v);
                    }
                }
                if let Some(Value::String(n)) = known(info_name, &OTA_PARAM_NAMES) {
                    svc.insert(n, info.to_json());
                }
                let mut top = match obj(&[], extra) {
                    Value::Object(m) => m,
                    _ => unreachable!(),
                };
                let name = match known(service, &SERVICE_NAMES) {
                    Some(Value::String(s)) => s,
                    _ => "OTA".to_string(),
                };
                top.insert(name, Value::Object(svc));
                Value::Object(top)
            }
            ParamsShape::Connectivity(f) => {
                json!({"Connectivity": obj(&[("Connected", f.get())], &[])})
            }
            ParamsShape::Any(j) => j.0.clone(),
        }
    }
}

const PARAM_TYPES: [&str; 5] = [
    "esp.param.ota_info",
    "esp.param.ota_operation",
    "esp.param.ota_status",
    "esp.param.ota_url",
    "esp.param.name",
];
const DATA_TYPES: [&str; 3] = ["string", "object", "bool"];

/// One param of a service.
#[derive(Debug, Clone, Arbitrary)]
pub struct ParamShape {
    pub name: Known<5>,
    pub ty: Known<5>,
    pub data_type: Known<3>,
    pub extra: Vec<(Key, Json)>,
}

/// One service of a config.
#[derive(Debug, Clone, Arbitrary)]
pub struct ServiceShape {
    pub name: Known<3>,
    pub ota: bool,
    pub ty: F,
    pub params: Vec<ParamShape>,
    pub params_not_a_list: Option<Json>,
}

/// A config's `info`: name, version, model and junk keys.
#[derive(Debug, Clone, Arbitrary)]
pub struct InfoBlock {
    pub name: F,
    pub fw_version: F,
    pub model: F,
    pub extra: Vec<(Key, Json)>,
}

/// A node config.
#[derive(Debug, Clone, Arbitrary)]
pub struct ConfigShape {
    pub node_id: F,
    pub info: Option<InfoBlock>,
    pub info_not_an_object: Option<Json>,
    pub services: Vec<ServiceShape>,
    pub extra: Vec<(Key, Json)>,
}

impl ConfigShape {
    /// The JSON this shape stands for, as the parser is given it.
    pub fn to_json(&self) -> Value {
        let info = self.info.as_ref().map(|i| {
            or_any(&self.info_not_an_object, || {
                obj(
                    &[
                        ("name", i.name.get()),
                        ("fw_version", i.fw_version.get()),
                        ("model", i.model.get()),
                    ],
                    &i.extra,
                )
            })
        });
        let services: Vec<Value> = self
            .services
            .iter()
            .map(|s| {
                let params = or_any(&s.params_not_a_list, || {
                    Value::Array(
                        s.params
                            .iter()
                            .map(|p| {
                                obj(
                                    &[
                                        ("name", known(&p.name, &OTA_PARAM_NAMES)),
                                        ("type", known(&p.ty, &PARAM_TYPES)),
                                        ("data_type", known(&p.data_type, &DATA_TYPES)),
                                    ],
                                    &p.extra,
                                )
                            })
                            .collect(),
                    )
                });
                let ty = if s.ota {
                    Some(json!("esp.service.ota"))
                } else {
                    s.ty.get()
                };
                obj(
                    &[
                        ("name", known(&s.name, &SERVICE_NAMES)),
                        ("type", ty),
                        ("params", Some(params)),
                    ],
                    &[],
                )
            })
            .collect();
        obj(
            &[
                ("node_id", self.node_id.get()),
                ("info", info),
                ("services", Some(Value::Array(services))),
            ],
            &self.extra,
        )
    }
}

/// The download window in a job's `metadata`.
#[derive(Debug, Clone, Arbitrary)]
pub enum WindowShape {
    /// `{"start": m, "end": m}`.
    Object(Minute, Minute),
    /// `[m, m]`.
    Pair(Minute, Minute),
    /// Anything.
    Any(Json),
}

/// A minute of the day, or not.
#[derive(Debug, Clone, Arbitrary)]
pub enum Minute {
    /// 0..1440 (modulo).
    Valid(u16),
    /// Any number.
    Number(i64),
    /// Anything.
    Other(F),
}

impl Minute {
    fn get(&self) -> Option<Value> {
        match self {
            Minute::Valid(m) => Some(json!(m % 1440)),
            Minute::Number(n) => Some(json!(n)),
            Minute::Other(f) => f.get(),
        }
    }
}

/// A job's `metadata`.
#[derive(Debug, Clone, Arbitrary)]
pub struct MetadataShape {
    pub window: Option<WindowShape>,
    pub extra: Vec<(Key, Json)>,
}

impl MetadataShape {
    /// The JSON this shape stands for, as the parser is given it.
    pub fn to_json(&self) -> Value {
        let w = self.window.as_ref().map(|w| match w {
            WindowShape::Object(a, b) => obj(&[("start", a.get()), ("end", b.get())], &[]),
            WindowShape::Pair(a, b) => Value::Array(vec![
                a.get().unwrap_or(Value::Null),
                b.get().unwrap_or(Value::Null),
            ]),
            WindowShape::Any(j) => j.0.clone(),
        });
        obj(&[("download_window", w)], &self.extra)
    }
}

/// `ota_available`: `true`, `false`, `null`, or anything.
#[derive(Debug, Clone, Arbitrary)]
pub enum Available {
    /// `true`: a job waits.
    Yes,
    /// `false`.
    No,
    /// `null`.
    Null,
    /// Anything, or absent.
    Other(F),
}

/// A `GET user/nodes/ota_update` answer.
#[derive(Debug, Clone, Arbitrary)]
pub struct OfferShape {
    pub available: Available,
    pub ota_job_id: F,
    pub fw_version: F,
    pub description: F,
    pub file_size: Typed<u64>,
    pub metadata: Option<MetadataShape>,
    pub extra: Vec<(Key, Json)>,
}

impl OfferShape {
    /// The JSON this shape stands for, as the parser is given it.
    pub fn to_json(&self) -> Value {
        let available = match &self.available {
            Available::Yes => Some(json!(true)),
            Available::No => Some(json!(false)),
            Available::Null => Some(Value::Null),
            Available::Other(f) => f.get(),
        };
        obj(
            &[
                ("status", Some(json!("success"))),
                ("ota_available", available),
                ("ota_job_id", self.ota_job_id.get()),
                ("fw_version", self.fw_version.get()),
                ("description", self.description.get()),
                ("file_size", self.file_size.get()),
                (
                    "metadata",
                    self.metadata.as_ref().map(MetadataShape::to_json),
                ),
            ],
            &self.extra,
        )
    }
}

/// OTA statuses as nodes and the cloud spell them, and misspell them.
pub const STATUSES: [&str; 11] = [
    "triggered",
    "started",
    "in-progress",
    "in_progress",
    "delayed",
    "success",
    "completed",
    "failed",
    "rejected",
    "unknown",
    "IN-PROGRESS",
];

/// `additional_info` texts the RainMaker OTA firmware sends.
pub const TEXTS: [&str; 14] = [
    "Waiting for Approval",
    "Downloaded 40% Firmware Image",
    "Downloading Firmware Image",
    "Starting OTA Upgrade (HTTPS attempt 2/3)",
    "OTA Attempt 1/3 failed: ESP_ERR_HTTP_EAGAIN",
    "OTA Attempt 3/3 failed: Image download interrupted",
    "Rebooting into new firmware",
    "OTA Upgrade finished and verified successfully",
    "Firmware rolled back",
    "MQTT did not connect within 90 seconds",
    "Same version received",
    "Not within download window.",
    "No time information available yet.",
    "OTA download window lapsed.",
];

/// A status text: a real one, a real one with a number changed, or anything.
#[derive(Debug, Clone, Arbitrary)]
pub enum Text {
    /// A real text (index modulo their number).
    Known(u8),
    /// A real text with its digits replaced by these.
    Digits(u8, u32),
    /// Anything, or absent.
    Other(F),
}

impl Text {
    /// The value, `None` when absent.
    pub fn get(&self) -> Option<Value> {
        match self {
            Text::Known(i) => Some(json!(TEXTS[*i as usize % TEXTS.len()])),
            Text::Digits(i, n) => {
                let t = TEXTS[*i as usize % TEXTS.len()];
                let n = n.to_string();
                let mut out = String::new();
                let mut done = false;
                for c in t.chars() {
                    if c.is_ascii_digit() {
                        if !done {
                            out.push_str(&n);
                            done = true;
                        }
                    } else {
                        done = false;
                        out.push(c);
                    }
                }
                Some(Value::String(out))
            }
            Text::Other(f) => f.get(),
        }
    }
}

/// A timestamp: seconds, milliseconds, or anything.
pub type Stamp = Typed<i64>;

/// A `GET user/nodes/ota_status` answer, or an MQTT `otastatus` payload.
#[derive(Debug, Clone, Arbitrary)]
pub struct StatusShape {
    pub node_id: F,
    pub ota_job_id: F,
    pub status: Known<11>,
    pub text: Text,
    pub stamp: Stamp,
    pub extra: Vec<(Key, Json)>,
}

impl StatusShape {
    /// The REST answer's field names.
    pub fn rest_json(&self) -> Value {
        obj(
            &[
                ("node_id", self.node_id.get()),
                ("status", known(&self.status, &STATUSES)),
                ("additional_info", self.text.get()),
                ("timestamp", self.stamp.get()),
                ("ts_source", Some(json!("NODE"))),
            ],
            &self.extra,
        )
    }

    /// The MQTT `otastatus` payload's field names.
    pub fn mqtt_json(&self) -> Value {
        obj(
            &[
                ("ota_job_id", self.ota_job_id.get()),
                ("status", known(&self.status, &STATUSES)),
                ("additional_info", self.text.get()),
                ("ts", self.stamp.get()),
            ],
            &self.extra,
        )
    }
}

/// An MQTT `otaurl` payload (the cloud to the node).
#[derive(Debug, Clone, Arbitrary)]
pub struct OtaUrlShape {
    pub ota_job_id: F,
    pub fw_version: F,
    pub url: F,
    pub metadata: Option<MetadataShape>,
    pub metadata_other: F,
    pub extra: Vec<(Key, Json)>,
}

impl OtaUrlShape {
    /// The JSON this shape stands for, as the parser is given it.
    pub fn to_json(&self) -> Value {
        let meta = match &self.metadata {
            Some(m) => Some(m.to_json()),
            None => self.metadata_other.get(),
        };
        obj(
            &[
                ("ota_job_id", self.ota_job_id.get()),
                ("fw_version", self.fw_version.get()),
                ("url", self.url.get()),
                ("file_size", Some(json!(123456))),
                ("metadata", meta),
            ],
            &self.extra,
        )
    }
}

/// A node id: usually a plausible one.
#[derive(Debug, Clone, Arbitrary)]
pub enum NodeIdShape {
    /// `[A-Za-z0-9._:-]`, from the bytes.
    Plausible(Vec<u8>),
    /// A real-looking one.
    Known(u16),
    /// Anything.
    Other(Str),
}

impl NodeIdShape {
    /// The node id as text.
    pub fn get(&self) -> String {
        const OK: &[u8] = b"ABCDEFabcdef0123456789._:-";
        match self {
            NodeIdShape::Plausible(b) => b
                .iter()
                .map(|b| OK[*b as usize % OK.len()] as char)
                .collect(),
            NodeIdShape::Known(n) => format!("7CDFA1{n:06X}"),
            NodeIdShape::Other(s) => s.0.clone(),
        }
    }
}

impl From<NodeIdShape> for Value {
    fn from(id: NodeIdShape) -> Value {
        Value::String(id.get())
    }
}

/// One `node_details` entry of a `user/nodes` page.
#[derive(Debug, Clone, Arbitrary)]
pub struct DetailShape {
    pub id: Typed<NodeIdShape>,
    pub node_id: Option<NodeIdShape>,
    pub config: Option<ConfigShape>,
    pub params: Option<ParamsShape>,
    pub connected: Typed<bool>,
    pub timestamp: Stamp,
    pub status_other: Option<Json>,
    pub extra: Vec<(Key, Json)>,
}

impl DetailShape {
    /// The JSON this shape stands for, as the parser is given it.
    pub fn to_json(&self) -> Value {
        let status = or_any(
            &self.status_other,
            || json!({"connectivity": obj(&[("connected", self.connected.get()), ("timestamp", self.timestamp.get())], &[])}),
        );
        obj(
            &[
                ("id", self.id.get()),
                (
                    "node_id",
                    self.node_id.as_ref().map(|i| Value::String(i.get())),
                ),
                ("role", Some(json!("primary"))),
                ("status", Some(status)),
                ("config", self.config.as_ref().map(ConfigShape::to_json)),
                ("params", self.params.as_ref().map(ParamsShape::to_json)),
            ],
            &self.extra,
        )
    }
}

/// A `GET user/nodes?node_details=true` page.
#[derive(Debug, Clone, Arbitrary)]
pub struct PageShape {
    pub details: Vec<DetailShape>,
    pub details_other: Option<Json>,
    pub next_id: F,
    pub extra: Vec<(Key, Json)>,
}

impl PageShape {
    /// The JSON this shape stands for, as the parser is given it.
    pub fn to_json(&self) -> Value {
        let details = or_any(&self.details_other, || {
            Value::Array(self.details.iter().map(DetailShape::to_json).collect())
        });
        obj(
            &[
                ("node_details", Some(details)),
                ("next_id", self.next_id.get()),
            ],
            &self.extra,
        )
    }
}

// ---- Blynk -------------------------------------------------------------------

/// A device of a dashboard.
#[derive(Debug, Clone, Arbitrary)]
pub struct DeviceShape {
    pub id: Typed<i64>,
    pub name: F,
    pub token: Typed<Token>,
    pub online: Option<bool>,
    pub build: F,
    pub board: F,
    pub version: F,
    pub hardware_other: Option<Json>,
    pub ota_update_at: Stamp,
    pub times: (Stamp, Stamp, Stamp),
    pub extra: Vec<(Key, Json)>,
}

/// A Blynk device token from 8 bytes: 32 characters, as the server makes them.
pub fn token(b: &[u8; 8]) -> String {
    b.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .repeat(2)
}

/// A device token as the server makes them (see [`token`]).
#[derive(Debug, Clone, Arbitrary)]
pub struct Token(pub [u8; 8]);

impl From<Token> for Value {
    fn from(t: Token) -> Value {
        Value::String(token(&t.0))
    }
}

impl DeviceShape {
    /// The JSON this shape stands for, as the parser is given it.
    pub fn to_json(&self) -> Value {
        let hw = or_any(&self.hardware_other, || {
            obj(
                &[
                    ("build", self.build.get()),
                    ("boardType", self.board.get()),
                    ("version", self.version.get()),
                ],
                &[],
            )
        });
        let status = self
            .online
            .map(|o| json!(if o { "ONLINE" } else { "OFFLINE" }));
        obj(
            &[
                ("id", self.id.get()),
                ("name", self.name.get()),
                ("token", self.token.get()),
                ("status", status),
                ("hardwareInfo", Some(hw)),
                (
                    "deviceOtaInfo",
                    Some(obj(&[("otaUpdateAt", self.ota_update_at.get())], &[])),
                ),
                ("connectTime", self.times.0.get()),
                ("disconnectTime", self.times.1.get()),
                ("dataReceivedAt", self.times.2.get()),
            ],
            &self.extra,
        )
    }
}

/// A dashboard (project).
#[derive(Debug, Clone, Arbitrary)]
pub struct DashShape {
    pub id: Typed<i64>,
    pub name: F,
    pub devices: Vec<DeviceShape>,
    pub devices_other: Option<Json>,
}

/// A user of the admin API (`/admin/users/{email}-Blynk`).
#[derive(Debug, Clone, Arbitrary)]
pub struct UserShape {
    pub email: F,
    pub name: F,
    pub dashes: Vec<DashShape>,
    pub profile_other: Option<Json>,
    pub extra: Vec<(Key, Json)>,
}

impl UserShape {
    /// The JSON this shape stands for, as the parser is given it.
    pub fn to_json(&self) -> Value {
        let profile = or_any(&self.profile_other, || {
            let dashes: Vec<Value> = self
                .dashes
                .iter()
                .map(|d| {
                    let devices = or_any(&d.devices_other, || {
                        Value::Array(d.devices.iter().map(DeviceShape::to_json).collect())
                    });
                    obj(
                        &[
                            ("id", d.id.get()),
                            ("name", d.name.get()),
                            ("devices", Some(devices)),
                        ],
                        &[],
                    )
                })
                .collect();
            json!({"dashBoards": dashes})
        });
        obj(
            &[
                ("email", self.email.get()),
                ("name", self.name.get()),
                ("appName", Some(json!("Blynk"))),
                ("profile", Some(profile)),
            ],
            &self.extra,
        )
    }
}
