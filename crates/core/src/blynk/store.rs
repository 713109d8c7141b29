//! The Blynk tables of the job store (migration 3): accounts (never the
//! password), campaigns and each device's record, and every state change of
//! every device for history. Each campaign and device is kept as JSON next
//! to the few columns that are queried, so the records can grow without
//! new migrations.

use rusqlite::{params, OptionalExtension};

use super::model::{BlynkAccount, Campaign, DeviceEvent, DeviceRecord, DeviceState};
use crate::error::Result;
use crate::model::now_ms;
use crate::store::Store;

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

impl Store {
    /// Saves a Blynk account's config (no secret is in it).
    pub fn save_blynk_account(&self, a: &BlynkAccount) -> Result<()> {
        self.conn.execute(
            "INSERT INTO blynk_accounts (name, config) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET config = excluded.config",
            params![a.name, json(a)],
        )?;
        Ok(())
    }

    /// Forgets a Blynk account (its campaigns stay in history). True when it existed.
    pub fn remove_blynk_account(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM blynk_accounts WHERE name = ?1", params![name])?
            > 0)
    }

    /// Every Blynk account.
    pub fn blynk_accounts(&self) -> Result<Vec<BlynkAccount>> {
        let mut st = self
            .conn
            .prepare("SELECT config FROM blynk_accounts ORDER BY name")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = vec![];
        for r in rows {
            match serde_json::from_str(&r?) {
                Ok(a) => out.push(a),
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable Blynk account"),
            }
        }
        Ok(out)
    }

    /// Records a new campaign (its devices too); returns it with its id.
    pub fn insert_campaign(&mut self, c: &Campaign) -> Result<Campaign> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO blynk_campaigns (account, status, created_at, updated_at, campaign)
             VALUES (?1, ?2, ?3, ?4, '{}')",
            params![c.account, c.status.name(), c.created_at, c.updated_at],
        )?;
        let mut c = c.clone();
        c.id = tx.last_insert_rowid();
        let mut head = c.clone();
        head.devices.clear();
        tx.execute(
            "UPDATE blynk_campaigns SET campaign = ?2 WHERE id = ?1",
            params![c.id, json(&head)],
        )?;
        for d in &c.devices {
            upsert_device(&tx, c.id, d, true)?;
        }
        tx.commit()?;
        Ok(c)
    }

    /// Saves a campaign's own fields (not its devices).
    pub fn save_campaign(&self, c: &Campaign) -> Result<()> {
        let mut head = c.clone();
        head.devices.clear();
        self.conn.execute(
            "UPDATE blynk_campaigns SET status = ?2, updated_at = ?3, campaign = ?4 WHERE id = ?1",
            params![c.id, c.status.name(), c.updated_at, json(&head)],
        )?;
        Ok(())
    }

    /// Saves one device of a campaign; `state_changed` adds a history entry.
    pub fn save_campaign_device(
        &self,
        campaign_id: i64,
        d: &DeviceRecord,
        state_changed: bool,
    ) -> Result<()> {
        upsert_device(&self.conn, campaign_id, d, state_changed)
    }

    /// Saves several devices of a campaign in one transaction (a poll);
    /// each with `true` gets a history entry.
    pub fn save_campaign_devices(
        &mut self,
        campaign_id: i64,
        devices: &[(&DeviceRecord, bool)],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        for (d, changed) in devices {
            upsert_device(&tx, campaign_id, d, *changed)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// One campaign with its devices.
    pub fn campaign(&self, id: i64) -> Result<Option<Campaign>> {
        let row: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT id, campaign FROM blynk_campaigns WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            Some((id, s)) => self.with_devices(id, &s),
            None => Ok(None),
        }
    }

    fn with_devices(&self, id: i64, s: &str) -> Result<Option<Campaign>> {
        let mut c: Campaign = match serde_json::from_str(s) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, id, "skipping an unreadable campaign");
                return Ok(None);
            }
        };
        c.id = id;
        let mut st = self
            .conn
            .prepare("SELECT device FROM blynk_devices WHERE campaign_id = ?1")?;
        let rows = st.query_map(params![id], |r| r.get::<_, String>(0))?;
        for r in rows {
            match serde_json::from_str::<DeviceRecord>(&r?) {
                Ok(d) => c.devices.push(d),
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable device record"),
            }
        }
        c.devices
            .sort_by(|a, b| (&a.owner, &a.project, &a.name).cmp(&(&b.owner, &b.project, &b.name)));
        Ok(Some(c))
    }

    /// Campaigns, newest first: of one account or all, only those with one
    /// of `statuses` (all when empty), at most `limit`.
    pub fn campaigns(
        &self,
        account: Option<&str>,
        statuses: &[&str],
        limit: u32,
    ) -> Result<Vec<Campaign>> {
        let mut st = self.conn.prepare(
            "SELECT id, status, campaign FROM blynk_campaigns WHERE (?1 IS NULL OR account = ?1)
             ORDER BY id DESC",
        )?;
        let rows = st.query_map(params![account], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = vec![];
        for r in rows {
            let (id, status, s) = r?;
            if !statuses.is_empty() && !statuses.contains(&status.as_str()) {
                continue;
            }
            if let Some(c) = self.with_devices(id, &s)? {
                out.push(c);
            }
            if out.len() >= limit as usize {
                break;
            }
        }
        Ok(out)
    }

    /// Every state change of a campaign's devices, oldest first.
    pub fn campaign_events(&self, campaign_id: i64) -> Result<Vec<DeviceEvent>> {
        let mut st = self.conn.prepare(
            "SELECT campaign_id, device_key, at, state_json FROM blynk_device_events
             WHERE campaign_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map(params![campaign_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = vec![];
        for r in rows {
            let (campaign_id, device, at, s) = r?;
            let state = serde_json::from_str(&s).unwrap_or(DeviceState::NotUpdated {
                reason: "unreadable state in the database".into(),
            });
            out.push(DeviceEvent {
                campaign_id,
                device,
                at,
                state,
            });
        }
        Ok(out)
    }
}

/// The `rollouts` table's kind of Blynk staged campaigns.
pub const ROLLOUT_KIND: &str = "blynk";

/// Blynk rollouts in the shared `rollouts` table (inserted with
/// [`Store::insert_rollout`]). Written only by compare-and-set on the stored
/// text: the daemon and a CLI command may follow the same rollout from two
/// processes, and the extension must leave once — the process whose write
/// of `Extending` lands is the one that sends it; the other re-reads.
impl Store {
    /// Blynk rollouts as stored, newest first: `(id, record text, active)`;
    /// the active ones, or all kept (at most `limit` ended ones).
    pub fn blynk_rollout_rows(
        &self,
        active_only: bool,
        limit: u32,
    ) -> Result<Vec<(i64, String, bool)>> {
        let mut st = self.conn.prepare(
            "SELECT id, record, active FROM rollouts WHERE kind = ?1 AND active = 1
             UNION ALL
             SELECT * FROM (SELECT id, record, active FROM rollouts
                            WHERE kind = ?1 AND active = 0 AND ?2 = 0 ORDER BY id DESC LIMIT ?3)
             ORDER BY id DESC",
        )?;
        let rows = st.query_map(params![ROLLOUT_KIND, active_only, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One Blynk rollout as stored: `(record text, active)`.
    pub fn blynk_rollout_row(&self, id: i64) -> Result<Option<(String, bool)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT record, active FROM rollouts WHERE id = ?1 AND kind = ?2",
                params![id, ROLLOUT_KIND],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Rewrites a Blynk rollout only if its stored text is still `expected`
    /// (what this process last read or wrote). `false`: someone else changed
    /// it first; nothing was written. Ended ones beyond
    /// [`crate::store::MAX_ENDED_ROLLOUTS`] are dropped, as `save_rollout` does.
    pub fn swap_blynk_rollout(
        &mut self,
        id: i64,
        expected: &str,
        record: &str,
        active: bool,
        now: i64,
    ) -> Result<bool> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE rollouts SET record = ?1, active = ?2, updated_at = ?3
             WHERE id = ?4 AND kind = ?5 AND record = ?6",
            params![record, active, now, id, ROLLOUT_KIND, expected],
        )?;
        if n == 1 && !active {
            tx.execute(
                "DELETE FROM rollouts WHERE kind = ?1 AND active = 0 AND id NOT IN
                   (SELECT id FROM rollouts WHERE kind = ?1 AND active = 0 ORDER BY id DESC LIMIT ?2)",
                params![ROLLOUT_KIND, crate::store::MAX_ENDED_ROLLOUTS],
            )?;
        }
        tx.commit()?;
        Ok(n == 1)
    }
}

fn upsert_device(
    conn: &rusqlite::Connection,
    campaign_id: i64,
    d: &DeviceRecord,
    state_changed: bool,
) -> Result<()> {
    conn.execute(
        "INSERT INTO blynk_devices (campaign_id, device_key, state, updated_at, device)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(campaign_id, device_key) DO UPDATE SET
            state = excluded.state, updated_at = excluded.updated_at, device = excluded.device",
        params![campaign_id, d.key, d.state.name(), now_ms(), json(d)],
    )?;
    if state_changed {
        conn.execute(
            "INSERT INTO blynk_device_events (campaign_id, device_key, at, state_json)
             VALUES (?1, ?2, ?3, ?4)",
            params![campaign_id, d.key, d.changed_at, json(&d.state)],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blynk::model::{CampaignStatus, Marks, Target};

    #[test]
    fn campaigns_round_trip() {
        let d = std::env::temp_dir().join(format!(
            "gl-blynk-store-{}-{}",
            std::process::id(),
            now_ms()
        ));
        let mut s = Store::open(&d).unwrap();
        s.save_blynk_account(&BlynkAccount::new("b", "https://h:9443", "admin@x"))
            .unwrap();
        assert_eq!(s.blynk_accounts().unwrap()[0].upload_limit, 524_288);
        let dev = DeviceRecord {
            key: "a@b/1/0".into(),
            name: "Lamp".into(),
            owner: "a@b".into(),
            project: "Home".into(),
            token_hint: "abcd…".into(),
            board: None,
            build_before: Some("old".into()),
            build_now: Some("old".into()),
            online: true,
            state: DeviceState::Waiting,
            sends: 0,
            failed_reconnects: 0,
            changed_at: 1,
            seen_at: 1,
            marks: Marks::default(),
        };
        let c = Campaign {
            id: 0,
            account: "b".into(),
            target: Target::All,
            build: "new".into(),
            file_name: "fw.bin".into(),
            size: 10,
            sha256: "00".into(),
            server_path: None,
            status: CampaignStatus::Starting,
            loop_after: 3,
            started_by: "me".into(),
            created_at: 1,
            started_at: None,
            updated_at: 1,
            finished_at: None,
            settled_at: None,
            withdrawn_at: None,
            devices: vec![dev.clone()],
        };
        let mut c = s.insert_campaign(&c).unwrap();
        assert!(c.id > 0);
        c.status = CampaignStatus::Active;
        s.save_campaign(&c).unwrap();
        let mut dev2 = dev;
        dev2.state = DeviceState::Updated;
        s.save_campaign_device(c.id, &dev2, true).unwrap();
        let back = s.campaign(c.id).unwrap().unwrap();
        assert_eq!(back.status, CampaignStatus::Active);
        assert_eq!(back.devices[0].state, DeviceState::Updated);
        assert_eq!(s.campaigns(Some("b"), &["active"], 10).unwrap().len(), 1);
        assert_eq!(s.campaigns(None, &["stopped"], 10).unwrap().len(), 0);
        assert_eq!(s.campaign_events(c.id).unwrap().len(), 2);
        assert!(s.remove_blynk_account("b").unwrap());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rollout_writes_are_compare_and_set() {
        let d = std::env::temp_dir().join(format!("gl-blynk-rollouts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let mut s = Store::open(&d).unwrap();
        let id = s
            .insert_rollout(ROLLOUT_KIND, &serde_json::json!({"n": 1}), 1)
            .unwrap();
        let (raw, active) = s.blynk_rollout_row(id).unwrap().unwrap();
        assert!(active);
        assert!(s
            .swap_blynk_rollout(id, &raw, r#"{"n":2}"#, true, 2)
            .unwrap());
        // A writer that read before that change loses, and writes nothing.
        assert!(!s
            .swap_blynk_rollout(id, &raw, r#"{"n":3}"#, true, 3)
            .unwrap());
        assert_eq!(s.blynk_rollout_row(id).unwrap().unwrap().0, r#"{"n":2}"#);
        assert!(s
            .swap_blynk_rollout(id, r#"{"n":2}"#, r#"{"n":4}"#, false, 4)
            .unwrap());
        let other = s.insert_rollout("rainmaker", &1, 5).unwrap();
        let rows = s.blynk_rollout_rows(false, 10).unwrap();
        assert_eq!(rows, vec![(id, r#"{"n":4}"#.to_string(), false)]);
        assert!(s.blynk_rollout_rows(true, 10).unwrap().is_empty());
        assert!(
            s.blynk_rollout_row(other).unwrap().is_none(),
            "another kind"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
