//! The job store (SQLite, WAL): the truth across restarts. Jobs, every
//! state change of every job, the approvals audit, skips, snoozes, per-node
//! policies, settings and account configs (never secrets).
//!
//! The approval intent is written here before any command goes out, in a
//! `BEGIN IMMEDIATE` transaction that is the arbiter of "exactly once": two
//! engines (two processes) on the same data directory serialise on it, and
//! the loser sees the winner's row and refuses.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::error::{Error, Result};
use crate::model::{
    now_ms, AccountConfig, HistoryFilter, Job, JobEvent, JobState, Millis, QuietHours, UpdateKind,
};

/// Schema migrations, applied in order; `PRAGMA user_version` counts them.
pub const MIGRATIONS: &[&str] = &[
    // 1: everything.
    r#"
CREATE TABLE accounts (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL
);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    node_id TEXT NOT NULL,
    ota_job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    kind TEXT NOT NULL,
    from_version TEXT,
    to_version TEXT NOT NULL,
    state TEXT NOT NULL,
    state_json TEXT NOT NULL,
    progress_text TEXT,
    percent INTEGER,
    approved_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    sent_at INTEGER,
    updated_at INTEGER NOT NULL,
    finished_at INTEGER,
    UNIQUE (account, node_id, ota_job_id, attempt)
);
CREATE INDEX jobs_node ON jobs (account, node_id);
CREATE INDEX jobs_state ON jobs (state);
CREATE TABLE job_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    at INTEGER NOT NULL,
    state_json TEXT NOT NULL,
    text TEXT
);
CREATE INDEX job_events_job ON job_events (job_id);
CREATE TABLE approvals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER REFERENCES jobs(id),
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    account TEXT NOT NULL,
    node_id TEXT NOT NULL,
    ota_job_id TEXT,
    from_version TEXT,
    to_version TEXT,
    result TEXT NOT NULL
);
CREATE TABLE skips (
    account TEXT NOT NULL,
    node_id TEXT NOT NULL,
    version TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (account, node_id)
);
CREATE TABLE snoozes (
    account TEXT NOT NULL,
    node_id TEXT NOT NULL,
    until INTEGER NOT NULL,
    PRIMARY KEY (account, node_id)
);
CREATE TABLE policies (
    account TEXT NOT NULL,
    node_id TEXT NOT NULL,
    auto_approve INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account, node_id)
);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    // 2: the nodes last heard of, so one-shot commands and the app know names,
    // versions and how old that knowledge is before anything answers.
    r#"
CREATE TABLE nodes (
    account TEXT NOT NULL,
    node_id TEXT NOT NULL,
    node TEXT NOT NULL,
    PRIMARY KEY (account, node_id)
);
"#,
    // 3: Blynk servers, their OTA campaigns and what became of each device
    // (the server keeps none of it: campaigns live in its memory only).
    r#"
CREATE TABLE blynk_accounts (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL
);
CREATE TABLE blynk_campaigns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    campaign TEXT NOT NULL
);
CREATE INDEX blynk_campaigns_account ON blynk_campaigns (account, id);
CREATE INDEX blynk_campaigns_status ON blynk_campaigns (status);
CREATE TABLE blynk_devices (
    campaign_id INTEGER NOT NULL REFERENCES blynk_campaigns(id),
    device_key TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    device TEXT NOT NULL,
    PRIMARY KEY (campaign_id, device_key)
);
CREATE TABLE blynk_device_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id INTEGER NOT NULL REFERENCES blynk_campaigns(id),
    device_key TEXT NOT NULL,
    at INTEGER NOT NULL,
    state_json TEXT NOT NULL
);
CREATE INDEX blynk_device_events_campaign ON blynk_device_events (campaign_id);
"#,
    // 4: what the owner heard, so a restart shows it at once: the time each
    // node record was written (its state was true then), and the offers.
    r#"
ALTER TABLE nodes ADD COLUMN saved_at INTEGER NOT NULL DEFAULT 0;
CREATE TABLE offers (
    account TEXT NOT NULL,
    node_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    offer TEXT NOT NULL,
    heard_at INTEGER NOT NULL,
    PRIMARY KEY (account, node_id, kind)
);
"#,
    // The per-node trimming of the audit (trim_refusals, trim_node).
    r#"
CREATE INDEX approvals_node ON approvals (account, node_id, job_id);
"#,
    // Staged approvals (rollouts), RainMaker's and Blynk's: each one's
    // record is one JSON document, rewritten whole on every change (a few
    // hundred devices at most), so its shape can grow without migrations.
    r#"
CREATE TABLE rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    record TEXT NOT NULL,
    active INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX rollouts_active ON rollouts (kind, active);
"#,
];

/// Rollouts kept per kind once they ended (the newest ones).
pub const MAX_ENDED_ROLLOUTS: i64 = 50;

/// An approval to record.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Account.
    pub account: String,
    /// Node.
    pub node_id: String,
    /// `ota_job_id`.
    pub ota_job_id: String,
    /// Kind.
    pub kind: UpdateKind,
    /// Version before.
    pub from_version: Option<String>,
    /// Target version.
    pub to_version: String,
    /// Initial state (`Requested` or `Queued`).
    pub state: JobState,
    /// Who approves.
    pub actor: String,
    /// When (the engine's clock); 0: the system clock now.
    pub at: Millis,
}

/// One row of the approvals audit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    /// Job, when one was recorded.
    pub job_id: Option<i64>,
    /// When.
    pub at: Millis,
    /// Who.
    pub actor: String,
    /// Account.
    pub account: String,
    /// Node.
    pub node_id: String,
    /// `ota_job_id`.
    pub ota_job_id: Option<String>,
    /// From.
    pub from_version: Option<String>,
    /// To.
    pub to_version: Option<String>,
    /// Result (`requested`, `sent`, `refused: ...`, then the job's end).
    pub result: String,
}

/// The store. One connection; the engine actor owns it (the Blynk tracker
/// opens its own on the same file, see `crate::blynk::store`).
pub struct Store {
    pub(crate) conn: Connection,
}

fn state_of(json: &str) -> JobState {
    serde_json::from_str(json).unwrap_or(JobState::Failed {
        reason: "unreadable state in the database".into(),
    })
}

const JOB_COLS: &str = "id, account, node_id, ota_job_id, kind, from_version, to_version, state_json, progress_text, percent, approved_by, created_at, sent_at, updated_at, finished_at";

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let kind: String = r.get(4)?;
    let state: String = r.get(7)?;
    let pct: Option<i64> = r.get(9)?;
    Ok(Job {
        id: r.get(0)?,
        account: r.get(1)?,
        node_id: r.get(2)?,
        ota_job_id: r.get(3)?,
        kind: UpdateKind::parse(&kind).unwrap_or(UpdateKind::NodeSide),
        from_version: r.get(5)?,
        to_version: r.get(6)?,
        state: state_of(&state),
        progress_text: r.get(8)?,
        percent: pct.and_then(|p| u8::try_from(p).ok()),
        approved_by: r.get(10)?,
        created_at: r.get(11)?,
        sent_at: r.get(12)?,
        updated_at: r.get(13)?,
        finished_at: r.get(14)?,
        headline: String::new(),
    })
    .map(|mut j: Job| {
        j.headline = crate::words::headline(&j.state);
        j
    })
}

/// Jobs kept per node (with their history and audit rows): when a new one
/// is recorded, the oldest finished ones beyond this are dropped. A real device updates a few
/// times a year; a broken or hostile one that finishes a new job every
/// second must not grow the database without bound. Jobs that have not
/// ended (running, queued, not confirmed) are never dropped.
pub const MAX_JOBS_PER_NODE: i64 = 100;
/// Refusals kept per node in the approvals audit.
pub const MAX_REFUSALS_PER_NODE: i64 = 100;
/// State changes kept per job: the first (the approval) and the newest.
/// A real job has one per progress step (about a hundred at most).
pub const MAX_EVENTS_PER_JOB: i64 = 500;

/// The states a job ends in (as stored).
const FINISHED: &str = "('success','failed','rejected','rolled_back','cancelled')";

/// The database's file name in the data directory.
pub const DB_FILE: &str = "greenlight.db";

/// (account, node, version).
type ImageKey = (String, String, String);

/// Can a file be created and written in `dir`? (Removed again.)
fn writable(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let probe = dir.join(format!(".greenlight-write-probe-{}", std::process::id()));
    let r = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| f.write_all(&[0u8; 4096]).and_then(|()| f.sync_all()));
    let _ = std::fs::remove_file(&probe);
    r
}

/// Keeps a node's newest [`MAX_REFUSALS_PER_NODE`] refusals in the audit
/// (approvals that recorded no job: a node offering again and again what
/// cannot be approved adds one each time).
fn trim_refusals(conn: &Connection, account: &str, node_id: &str) -> Result<()> {
    let n = conn.execute(
        "DELETE FROM approvals WHERE account = ?1 AND node_id = ?2 AND job_id IS NULL
         AND id NOT IN (SELECT id FROM approvals WHERE account = ?1 AND node_id = ?2 AND job_id IS NULL
                        ORDER BY id DESC LIMIT ?3)",
        params![account, node_id, MAX_REFUSALS_PER_NODE],
    )?;
    if n > 0 {
        tracing::debug!(
            account,
            node = node_id,
            "older refusals dropped from the audit"
        );
    }
    Ok(())
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

impl Store {
    /// Opens (creating) `dir/greenlight.db`, in WAL mode, migrated.
    pub fn open(dir: &Path) -> Result<Store> {
        crate::private::create_dir(dir)?;
        let db = dir.join(DB_FILE);
        if !db.exists() {
            // Created 0600 before SQLite opens it, so its -wal and -shm (which
            // SQLite gives the database's mode) are private from the start.
            // A failure is SQLite's to report, with the checks below.
            let _ = crate::private::file_options()
                .write(true)
                .create_new(true)
                .open(&db);
        }
        let open = || -> rusqlite::Result<Connection> {
            let mut conn = Connection::open(&db)?;
            // Another engine on the same directory may hold the write lock briefly.
            conn.busy_timeout(Duration::from_secs(15))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            for (i, m) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
                tx.execute_batch(m)?;
                tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            }
            tx.commit()?;
            Ok(conn)
        };
        match open() {
            Ok(conn) => {
                // Made by an older Greenlight, or under a looser umask.
                for suffix in ["", "-wal", "-shm"] {
                    let mut name = db.clone().into_os_string();
                    name.push(suffix);
                    crate::private::tighten_file(Path::new(&name));
                }
                Ok(Store { conn })
            }
            // SQLite only says "unable to open database file": a read-only or
            // full data directory is named as such.
            Err(e) => Err(match writable(dir) {
                Err(source) => Error::Io {
                    what: format!(
                        "the data directory {} cannot be written to (the database needs it)",
                        dir.display()
                    ),
                    source,
                },
                Ok(()) => Error::from(e),
            }),
        }
    }

    // ---- accounts ----------------------------------------------------------

    /// Saves an account's config (no secrets are in it).
    pub fn save_account(&self, cfg: &AccountConfig) -> Result<()> {
        self.conn.execute(
            "INSERT INTO accounts (name, config) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET config = excluded.config",
            params![cfg.name, json(cfg)],
        )?;
        Ok(())
    }

    /// Forgets an account (and the nodes last heard of through it).
    pub fn remove_account(&self, name: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM accounts WHERE name = ?1", params![name])?;
        self.conn
            .execute("DELETE FROM nodes WHERE account = ?1", params![name])?;
        self.conn
            .execute("DELETE FROM offers WHERE account = ?1", params![name])?;
        Ok(())
    }

    // ---- nodes -----------------------------------------------------------------

    /// Remembers a node as last heard of at `at`.
    pub fn save_node(&self, n: &crate::model::Node, at: Millis) -> Result<()> {
        self.conn.execute(
            "INSERT INTO nodes (account, node_id, node, saved_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(account, node_id) DO UPDATE SET node = excluded.node, saved_at = excluded.saved_at",
            params![n.account, n.node_id, json(n), at],
        )?;
        Ok(())
    }

    /// Every node last heard of, of the saved accounts, with when its
    /// record was written (0: before Greenlight kept that).
    pub fn nodes(&self) -> Result<Vec<(crate::model::Node, Millis)>> {
        self.json_rows(
            "SELECT node, saved_at FROM nodes WHERE account IN (SELECT name FROM accounts) ORDER BY account, node_id",
            "node",
        )
    }

    /// Replaces what is remembered of a node's offers (at most one per
    /// kind), heard at `at`.
    pub fn save_offers(
        &mut self,
        account: &str,
        node_id: &str,
        offers: &[crate::model::PendingUpdate],
        at: Millis,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM offers WHERE account = ?1 AND node_id = ?2",
            params![account, node_id],
        )?;
        for o in offers {
            tx.execute(
                "INSERT OR REPLACE INTO offers (account, node_id, kind, offer, heard_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![account, node_id, json(&o.kind), json(o), at],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every remembered offer of the saved accounts, with when it was last
    /// heard.
    pub fn offers(&self) -> Result<Vec<(crate::model::PendingUpdate, Millis)>> {
        self.json_rows(
            "SELECT offer, heard_at FROM offers WHERE account IN (SELECT name FROM accounts) ORDER BY account, node_id, kind",
            "offer",
        )
    }

    /// Rows of (JSON record, time); an unreadable record is logged and
    /// skipped, never fatal (it was written by another version).
    fn json_rows<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        what: &str,
    ) -> Result<Vec<(T, Millis)>> {
        let mut st = self.conn.prepare(sql)?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = vec![];
        for r in rows {
            let (text, at) = r?;
            match serde_json::from_str(&text) {
                Ok(v) => out.push((v, at)),
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable {what} record"),
            }
        }
        Ok(out)
    }

    /// Every saved account.
    pub fn accounts(&self) -> Result<Vec<AccountConfig>> {
        let mut st = self
            .conn
            .prepare("SELECT config FROM accounts ORDER BY name")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = vec![];
        for r in rows {
            match serde_json::from_str(&r?) {
                Ok(c) => out.push(c),
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable account config"),
            }
        }
        Ok(out)
    }

    // ---- jobs ----------------------------------------------------------------

    /// Records an approval intent, or says why not (`Ok(Err(reason))`):
    /// another job of this node is still running, or this job id was
    /// already approved (only a failed attempt may be approved again).
    pub fn insert_intent(&mut self, n: &NewJob) -> Result<std::result::Result<Job, String>> {
        let now = if n.at > 0 { n.at } else { now_ms() };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let running: Option<(String, String)> = tx
            .query_row(
                "SELECT ota_job_id, state FROM jobs WHERE account = ?1 AND node_id = ?2
                 AND state NOT IN ('success','failed','rejected','rolled_back','cancelled')
                 ORDER BY id DESC LIMIT 1",
                params![n.account, n.node_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let refusal = if let Some((job, state)) = running {
            Some(if job == n.ota_job_id {
                format!(
                    "this update was already approved and is {}",
                    state.replace('_', " ")
                )
            } else {
                format!("another update of this node is {}", state.replace('_', " "))
            })
        } else {
            let done: Option<String> = tx
                .query_row(
                    "SELECT state FROM jobs WHERE account = ?1 AND node_id = ?2 AND ota_job_id = ?3
                     AND state NOT IN ('failed','cancelled','rolled_back') ORDER BY id DESC LIMIT 1",
                    params![n.account, n.node_id, n.ota_job_id],
                    |r| r.get(0),
                )
                .optional()?;
            done.map(|s| {
                format!(
                    "this update was already approved (it ended: {})",
                    s.replace('_', " ")
                )
            })
        };
        if let Some(reason) = refusal {
            tx.execute(
                "INSERT INTO approvals (job_id, at, actor, account, node_id, ota_job_id, from_version, to_version, result)
                 VALUES (NULL, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![now, n.actor, n.account, n.node_id, n.ota_job_id, n.from_version, n.to_version, format!("refused: {reason}")],
            )?;
            trim_refusals(&tx, &n.account, &n.node_id)?;
            tx.commit()?;
            return Ok(Err(reason));
        }
        let attempt: i64 = tx.query_row(
            "SELECT COUNT(*) FROM jobs WHERE account = ?1 AND node_id = ?2 AND ota_job_id = ?3",
            params![n.account, n.node_id, n.ota_job_id],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO jobs (account, node_id, ota_job_id, attempt, kind, from_version, to_version, state, state_json,
                               approved_by, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
            params![
                n.account, n.node_id, n.ota_job_id, attempt, n.kind.as_str(), n.from_version, n.to_version,
                n.state.name(), json(&n.state), n.actor, now
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO job_events (job_id, at, state_json, text) VALUES (?1, ?2, ?3, NULL)",
            params![id, now, json(&n.state)],
        )?;
        tx.execute(
            "INSERT INTO approvals (job_id, at, actor, account, node_id, ota_job_id, from_version, to_version, result)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![id, now, n.actor, n.account, n.node_id, n.ota_job_id, n.from_version, n.to_version, n.state.name()],
        )?;
        let job = tx.query_row(
            &format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"),
            params![id],
            job_row,
        )?;
        tx.commit()?;
        Ok(Ok(job))
    }

    /// Drops a node's oldest finished jobs so that, with the one just
    /// recorded, at most [`MAX_JOBS_PER_NODE`] remain (a node has one
    /// unfinished job at a time),
    /// with their history and audit rows, in one transaction. Returns the
    /// `ota_job_id`s no longer remembered for the node: the engine forgets
    /// them too, so a restart changes nothing. Called after each approval
    /// is recorded (the only way jobs are added).
    pub fn trim_node(&mut self, account: &str, node_id: &str) -> Result<Vec<String>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let old: Vec<(i64, String)> = {
            let mut st = tx.prepare(&format!(
                "SELECT id, ota_job_id FROM jobs WHERE account = ?1 AND node_id = ?2 AND state IN {FINISHED}
                 ORDER BY id DESC LIMIT -1 OFFSET ?3"
            ))?;
            let rows = st.query_map(params![account, node_id, MAX_JOBS_PER_NODE - 1], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (id, _) in &old {
            tx.execute("DELETE FROM job_events WHERE job_id = ?1", params![id])?;
            tx.execute("DELETE FROM approvals WHERE job_id = ?1", params![id])?;
            tx.execute("DELETE FROM jobs WHERE id = ?1", params![id])?;
        }
        trim_refusals(&tx, account, node_id)?;
        let mut gone = vec![];
        for (_, ota) in old {
            let left: i64 = tx.query_row(
                "SELECT COUNT(*) FROM jobs WHERE account = ?1 AND node_id = ?2 AND ota_job_id = ?3",
                params![account, node_id, ota],
                |r| r.get(0),
            )?;
            if left == 0 && !gone.contains(&ota) {
                gone.push(ota);
            }
        }
        tx.commit()?;
        if !gone.is_empty() {
            tracing::warn!(
                account,
                node = node_id,
                dropped = gone.len(),
                "this node has more than {MAX_JOBS_PER_NODE} finished updates in history: the oldest were dropped (a broken or hostile device inventing jobs?)"
            );
        }
        Ok(gone)
    }

    /// Records a refusal decided before any row (offline, up to date...) in the audit.
    pub fn audit_refusal(
        &self,
        actor: &str,
        account: &str,
        node_id: &str,
        result: &str,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO approvals (job_id, at, actor, account, node_id, result) VALUES (NULL, ?1, ?2, ?3, ?4, ?5)",
            params![now_ms(), actor, account, node_id, result],
        )?;
        trim_refusals(&self.conn, account, node_id)
    }

    /// Writes a job's new state; adds a history entry when the state or text
    /// changed (`changed`). Also updates the audit result at the end.
    pub fn save_job(&mut self, job: &Job, changed: bool) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE jobs SET state = ?2, state_json = ?3, progress_text = ?4, percent = ?5,
                 sent_at = ?6, updated_at = ?7, finished_at = ?8 WHERE id = ?1",
            params![
                job.id,
                job.state.name(),
                json(&job.state),
                job.progress_text,
                job.percent.map(i64::from),
                job.sent_at,
                job.updated_at,
                job.finished_at
            ],
        )?;
        if changed {
            tx.execute(
                "INSERT INTO job_events (job_id, at, state_json, text) VALUES (?1, ?2, ?3, ?4)",
                params![job.id, job.updated_at, json(&job.state), job.progress_text],
            )?;
            tx.execute(
                "UPDATE approvals SET result = ?2 WHERE job_id = ?1",
                params![job.id, job.state.name()],
            )?;
            // A node that keeps changing its progress text: the approval
            // and the newest changes are kept.
            let dropped = tx.execute(
                "DELETE FROM job_events WHERE job_id = ?1
                 AND id > (SELECT MIN(id) FROM job_events WHERE job_id = ?1)
                 AND id NOT IN (SELECT id FROM job_events WHERE job_id = ?1 ORDER BY id DESC LIMIT ?2)",
                params![job.id, MAX_EVENTS_PER_JOB - 1],
            )?;
            if dropped > 0 {
                tracing::debug!(
                    job = job.id,
                    "more than {MAX_EVENTS_PER_JOB} state changes: the oldest dropped"
                );
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Images that failed or rolled back on a device after reaching it (a
    /// rollback did, even if the command was never confirmed sent), and did
    /// not succeed on it since: (account, node, version) → what happened.
    pub(crate) fn earlier_outcomes(&self) -> Result<Vec<(ImageKey, crate::engine::Earlier)>> {
        let mut st = self.conn.prepare(
            "SELECT account, node_id, to_version, state_json, finished_at FROM jobs j
             WHERE state IN ('failed','rolled_back')
             AND (sent_at IS NOT NULL OR state = 'rolled_back')
             AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.account = j.account AND k.node_id = j.node_id
                             AND k.to_version = j.to_version AND k.state = 'success' AND k.id > j.id)
             ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            let state: String = r.get(3)?;
            Ok((
                (r.get(0)?, r.get(1)?, r.get(2)?),
                state_of(&state),
                r.get::<_, Option<i64>>(4)?.unwrap_or(0),
            ))
        })?;
        let mut out = vec![];
        for row in rows {
            let (k, state, at) = row?;
            out.push((
                k,
                crate::engine::Earlier {
                    rolled_back: matches!(state, JobState::RolledBack { .. }),
                    reason: crate::words::reason(&state),
                    at,
                },
            ));
        }
        Ok(out)
    }

    /// Jobs not in a terminal state.
    pub fn unfinished_jobs(&self) -> Result<Vec<Job>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE state NOT IN ('success','failed','rejected','rolled_back','cancelled') ORDER BY id"
        ))?;
        let rows = st.query_map([], job_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// (account, node, ota_job_id) of every job that was not failed or
    /// cancelled: those updates are no longer offered for approval.
    pub fn approved_keys(&self) -> Result<Vec<(String, String, String)>> {
        let mut st = self.conn.prepare(
            "SELECT DISTINCT account, node_id, ota_job_id FROM jobs WHERE state NOT IN ('failed','cancelled','rolled_back')",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// One job.
    pub fn job(&self, id: i64) -> Result<Option<Job>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"),
                params![id],
                job_row,
            )
            .optional()?)
    }

    /// Jobs, newest first.
    pub fn history(&self, f: &HistoryFilter) -> Result<Vec<Job>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE (?1 IS NULL OR account = ?1) AND (?2 IS NULL OR node_id = ?2)
             ORDER BY id DESC LIMIT ?3"
        ))?;
        let rows = st.query_map(
            params![f.account, f.node_id, i64::from(f.limit.unwrap_or(100))],
            job_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// A job's state changes, oldest first.
    pub fn job_events(&self, job_id: i64) -> Result<Vec<JobEvent>> {
        let mut st = self.conn.prepare(
            "SELECT job_id, at, state_json, text FROM job_events WHERE job_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map(params![job_id], |r| {
            let s: String = r.get(2)?;
            Ok(JobEvent {
                job_id: r.get(0)?,
                at: r.get(1)?,
                state: state_of(&s),
                text: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The approvals audit, newest first.
    pub fn audit(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        let mut st = self.conn.prepare(
            "SELECT job_id, at, actor, account, node_id, ota_job_id, from_version, to_version, result
             FROM approvals ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map(params![i64::from(limit)], |r| {
            Ok(AuditEntry {
                job_id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                account: r.get(3)?,
                node_id: r.get(4)?,
                ota_job_id: r.get(5)?,
                from_version: r.get(6)?,
                to_version: r.get(7)?,
                result: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    // ---- policies ------------------------------------------------------------

    /// Skips `version` of a node (`None` clears).
    pub fn set_skip(&self, account: &str, node_id: &str, version: Option<&str>) -> Result<()> {
        match version {
            Some(v) => self.conn.execute(
                "INSERT INTO skips (account, node_id, version, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(account, node_id) DO UPDATE SET version = excluded.version, at = excluded.at",
                params![account, node_id, v, now_ms()],
            )?,
            None => self.conn.execute(
                "DELETE FROM skips WHERE account = ?1 AND node_id = ?2",
                params![account, node_id],
            )?,
        };
        Ok(())
    }

    /// Every skip: (account, node) → version.
    pub fn skips(&self) -> Result<HashMap<(String, String), String>> {
        let mut st = self
            .conn
            .prepare("SELECT account, node_id, version FROM skips")?;
        let rows = st.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<HashMap<_, _>>>()?)
    }

    /// Snoozes a node until `until` (`None` clears).
    pub fn set_snooze(&self, account: &str, node_id: &str, until: Option<Millis>) -> Result<()> {
        match until {
            Some(u) => self.conn.execute(
                "INSERT INTO snoozes (account, node_id, until) VALUES (?1, ?2, ?3)
                 ON CONFLICT(account, node_id) DO UPDATE SET until = excluded.until",
                params![account, node_id, u],
            )?,
            None => self.conn.execute(
                "DELETE FROM snoozes WHERE account = ?1 AND node_id = ?2",
                params![account, node_id],
            )?,
        };
        Ok(())
    }

    /// Every snooze: (account, node) → until.
    pub fn snoozes(&self) -> Result<HashMap<(String, String), Millis>> {
        let mut st = self
            .conn
            .prepare("SELECT account, node_id, until FROM snoozes")?;
        let rows = st.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<HashMap<_, _>>>()?)
    }

    /// Turns per-node auto-approve on or off.
    pub fn set_auto_approve(&self, account: &str, node_id: &str, on: bool) -> Result<()> {
        self.conn.execute(
            "INSERT INTO policies (account, node_id, auto_approve) VALUES (?1, ?2, ?3)
             ON CONFLICT(account, node_id) DO UPDATE SET auto_approve = excluded.auto_approve",
            params![account, node_id, on],
        )?;
        Ok(())
    }

    /// Nodes with auto-approve on.
    pub fn auto_approve(&self) -> Result<Vec<(String, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT account, node_id FROM policies WHERE auto_approve <> 0")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Sets or clears quiet hours.
    pub fn set_quiet_hours(&self, q: Option<&QuietHours>) -> Result<()> {
        match q {
            Some(q) => self.conn.execute(
                "INSERT INTO settings (key, value) VALUES ('quiet_hours', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![json(q)],
            )?,
            None => self
                .conn
                .execute("DELETE FROM settings WHERE key = 'quiet_hours'", [])?,
        };
        Ok(())
    }

    /// Every policy in force.
    pub fn policies(&self) -> Result<crate::model::Policies> {
        use crate::model::{NodePolicy, Policies};
        let np = |(account, node_id): (String, String), value: Option<String>| NodePolicy {
            account,
            node_id,
            value,
        };
        let mut p = Policies {
            auto_approve: self
                .auto_approve()?
                .into_iter()
                .map(|k| np(k, None))
                .collect(),
            quiet_hours: self.quiet_hours()?,
            skipped: self
                .skips()?
                .into_iter()
                .map(|(k, v)| np(k, Some(v)))
                .collect(),
            snoozed: self
                .snoozes()?
                .into_iter()
                .map(|(k, v)| np(k, Some(v.to_string())))
                .collect(),
        };
        p.skipped.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        p.snoozed.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(p)
    }

    /// Quiet hours, if set.
    pub fn quiet_hours(&self) -> Result<Option<QuietHours>> {
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM settings WHERE key = 'quiet_hours'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Pauses or resumes notifications (the app's and `greenlight watch`'s).
    pub fn set_notifications_paused(&self, paused: bool) -> Result<()> {
        self.conn.execute(
            "INSERT INTO settings (key, value) VALUES ('notifications_paused', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![json(&paused)],
        )?;
        Ok(())
    }

    /// Whether notifications are paused (not, until someone pauses them).
    pub fn notifications_paused(&self) -> Result<bool> {
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM settings WHERE key = 'notifications_paused'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(false))
    }
}

/// Staged approvals (rollouts): stored as one JSON record each, by kind
/// (`"rainmaker"`, `"blynk"`). The record's shape belongs to its kind's
/// module; the store only keeps it and says which are still active.
impl Store {
    /// Records a new rollout and returns its id.
    pub fn insert_rollout<T: serde::Serialize>(
        &mut self,
        kind: &str,
        record: &T,
        now: Millis,
    ) -> Result<i64> {
        let body = serde_json::to_string(record)
            .map_err(|e| Error::Config(format!("a rollout could not be written: {e}")))?;
        self.conn.execute(
            "INSERT INTO rollouts (kind, record, active, created_at, updated_at) VALUES (?1, ?2, 1, ?3, ?3)",
            params![kind, body, now],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Rewrites a rollout's record; `active: false` once it ended. Ended
    /// rollouts beyond [`MAX_ENDED_ROLLOUTS`] of the kind are dropped.
    pub fn save_rollout<T: serde::Serialize>(
        &mut self,
        id: i64,
        kind: &str,
        record: &T,
        active: bool,
        now: Millis,
    ) -> Result<()> {
        let body = serde_json::to_string(record)
            .map_err(|e| Error::Config(format!("a rollout could not be written: {e}")))?;
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE rollouts SET record = ?1, active = ?2, updated_at = ?3 WHERE id = ?4 AND kind = ?5",
            params![body, active, now, id, kind],
        )?;
        if n == 0 {
            return Err(Error::Config(format!("no rollout {id}")));
        }
        if !active {
            tx.execute(
                "DELETE FROM rollouts WHERE kind = ?1 AND active = 0 AND id NOT IN
                   (SELECT id FROM rollouts WHERE kind = ?1 AND active = 0 ORDER BY id DESC LIMIT ?2)",
                params![kind, MAX_ENDED_ROLLOUTS],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The kind's rollouts, newest first: the active ones, or all kept.
    /// A record that no longer reads is skipped with a log line, never
    /// fatal: the devices' jobs are kept apart and stay followed.
    pub fn rollouts<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        active_only: bool,
    ) -> Result<Vec<(i64, T)>> {
        let mut st = self.conn.prepare(
            "SELECT id, record FROM rollouts WHERE kind = ?1 AND (active = 1 OR ?2 = 0) ORDER BY id DESC",
        )?;
        let rows = st.query_map(params![kind, active_only], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = vec![];
        for row in rows {
            let (id, body) = row?;
            match serde_json::from_str(&body) {
                Ok(v) => out.push((id, v)),
                Err(e) => {
                    tracing::warn!(id, error = %e, "a stored rollout does not read; left out")
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "gl-store-{}-{name}-{}",
            std::process::id(),
            now_ms()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn new_job(job: &str) -> NewJob {
        NewJob {
            account: "a".into(),
            node_id: "N".into(),
            ota_job_id: job.into(),
            kind: UpdateKind::NodeSide,
            from_version: Some("1".into()),
            to_version: "2".into(),
            state: JobState::Requested,
            actor: "me".into(),
            at: 0,
        }
    }

    #[test]
    fn rollouts_survive_a_reopen_and_ended_ones_are_bounded() {
        let d = tmp("rollouts");
        let mut s = Store::open(&d).unwrap();
        let id = s
            .insert_rollout("rainmaker", &serde_json::json!({"n": 1}), 5)
            .unwrap();
        s.save_rollout(id, "rainmaker", &serde_json::json!({"n": 2}), true, 6)
            .unwrap();
        // Another kind's record is not this kind's.
        assert!(s
            .save_rollout(id, "blynk", &serde_json::json!({}), true, 6)
            .is_err());
        drop(s);
        let mut s = Store::open(&d).unwrap();
        let v: Vec<(i64, serde_json::Value)> = s.rollouts("rainmaker", true).unwrap();
        assert_eq!(v, vec![(id, serde_json::json!({"n": 2}))]);
        assert!(s
            .rollouts::<serde_json::Value>("blynk", false)
            .unwrap()
            .is_empty());
        for i in 0..(MAX_ENDED_ROLLOUTS + 5) {
            let r = s.insert_rollout("rainmaker", &i, 7).unwrap();
            s.save_rollout(r, "rainmaker", &i, false, 8).unwrap();
        }
        let all: Vec<(i64, serde_json::Value)> = s.rollouts("rainmaker", false).unwrap();
        // The active one is never dropped; the ended ones are the newest.
        assert_eq!(all.len() as i64, MAX_ENDED_ROLLOUTS + 1);
        assert!(all.iter().any(|(r, _)| *r == id));
        assert_eq!(all[0].1, serde_json::json!(MAX_ENDED_ROLLOUTS + 4));
        let active: Vec<(i64, serde_json::Value)> = s.rollouts("rainmaker", true).unwrap();
        assert_eq!(active.len(), 1);
    }

    #[test]
    fn intent_is_recorded_once_even_from_two_connections() {
        let d = tmp("once");
        let mut a = Store::open(&d).unwrap();
        let mut b = Store::open(&d).unwrap();
        let first = a.insert_intent(&new_job("J")).unwrap();
        assert!(first.is_ok());
        let second = b.insert_intent(&new_job("J")).unwrap();
        assert!(second.unwrap_err().contains("already approved"));
        let other = b.insert_intent(&new_job("K")).unwrap();
        assert!(other.unwrap_err().contains("another update"));
        // A failed attempt may be approved again.
        let mut j = first.unwrap();
        j.state = JobState::Failed {
            reason: "download failed".into(),
        };
        a.save_job(&j, true).unwrap();
        assert!(b.insert_intent(&new_job("J")).unwrap().is_ok());
        assert_eq!(a.history(&HistoryFilter::default()).unwrap().len(), 2);
        assert_eq!(a.job_events(j.id).unwrap().len(), 2);
        assert!(a
            .audit(10)
            .unwrap()
            .iter()
            .any(|e| e.result.starts_with("refused")));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_job_keeps_its_approval_and_its_newest_changes() {
        let d = tmp("events");
        let mut s = Store::open(&d).unwrap();
        let mut j = s.insert_intent(&new_job("J")).unwrap().unwrap();
        let n = MAX_EVENTS_PER_JOB as usize + 100;
        for i in 0..n {
            j.progress_text = Some(format!("Downloaded {i} bytes"));
            j.updated_at = i as i64 + 1;
            s.save_job(&j, true).unwrap();
        }
        let ev = s.job_events(j.id).unwrap();
        assert_eq!(ev.len(), MAX_EVENTS_PER_JOB as usize);
        assert_eq!(ev[0].text, None, "the approval itself stays");
        let last = format!("Downloaded {} bytes", n - 1);
        assert_eq!(ev.last().unwrap().text.as_deref(), Some(last.as_str()));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn policies_round_trip_and_reopen() {
        let d = tmp("pol");
        {
            let s = Store::open(&d).unwrap();
            s.set_skip("a", "N", Some("2.0")).unwrap();
            s.set_snooze("a", "N", Some(5)).unwrap();
            s.set_auto_approve("a", "M", true).unwrap();
            s.set_quiet_hours(Some(&QuietHours {
                start_minute: 1,
                end_minute: 2,
                utc_offset_minutes: 0,
            }))
            .unwrap();
            s.save_account(&AccountConfig::mqtt_only("x", "mqtt://h:1"))
                .unwrap();
            assert!(!s.notifications_paused().unwrap(), "not paused at first");
            s.set_notifications_paused(true).unwrap();
        }
        let s = Store::open(&d).unwrap();
        assert!(s.notifications_paused().unwrap());
        assert_eq!(
            s.skips()
                .unwrap()
                .get(&("a".into(), "N".into()))
                .map(String::as_str),
            Some("2.0")
        );
        assert_eq!(s.snoozes().unwrap().len(), 1);
        assert_eq!(
            s.auto_approve().unwrap(),
            vec![("a".to_string(), "M".to_string())]
        );
        assert!(s.quiet_hours().unwrap().is_some());
        assert_eq!(s.accounts().unwrap()[0].name, "x");
        let _ = std::fs::remove_dir_all(&d);
    }
}
