//! How Blynk campaigns are shown to people (scripts get the JSON of the
//! core types as they are).

use greenlight_core::blynk::rollout::span;
use greenlight_core::blynk::{
    BlynkAccount, BlynkRollout, BlynkRolloutStage, Campaign, CampaignStatus, DeviceRecord,
    DeviceState,
};
use greenlight_core::{now_ms, tls};

use crate::output::{ago, table};

/// A device's state in a few words (the core's words are for sentences).
pub fn state_label(s: &DeviceState) -> String {
    match s {
        DeviceState::Waiting => "waiting for reconnect".into(),
        DeviceState::Installing => "update sent, installing".into(),
        DeviceState::Updated => "updated".into(),
        DeviceState::Looping { reconnects } => {
            format!("suspected reboot loop ({reconnects} reconnects on the old build)")
        }
        DeviceState::NotUpdated { reason } => format!("not updated: {reason}"),
        DeviceState::Offline => "offline".into(),
        DeviceState::NoBuild => "no build reported: campaigns never reach it".into(),
    }
}

/// A campaign's status in a few words (as `blynk status` shows it).
pub(crate) fn status_label(s: &CampaignStatus) -> String {
    match s {
        CampaignStatus::Starting => "starting".into(),
        CampaignStatus::Active => "active".into(),
        CampaignStatus::Completed => "completed".into(),
        CampaignStatus::Ended => "ended without the device updated".into(),
        CampaignStatus::Stopped => "stopped".into(),
        CampaignStatus::Superseded { by } => format!("replaced by #{by}"),
        CampaignStatus::Failed { reason } => format!("failed: {reason}"),
    }
}

fn device_label(d: &DeviceRecord) -> String {
    format!("{} ({})", d.name, d.token_hint)
}

/// Rows of `blynk account list`.
pub fn accounts(accounts: &[BlynkAccount]) {
    let rows: Vec<Vec<String>> = accounts
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.url.clone(),
                a.user.clone(),
                a.pinned_sha256
                    .as_deref()
                    .map(|p| format!("pinned {}…", &tls::pretty(p)[..23]))
                    .unwrap_or_else(|| "system".into()),
                a.upload_limit.to_string(),
            ]
        })
        .collect();
    table(
        &["NAME", "URL", "ADMIN", "CERTIFICATE", "UPLOAD LIMIT"],
        &rows,
    );
}

/// One line of counts: "2 updated, 1 waiting for reconnect".
pub fn summary(c: &Campaign) -> String {
    let n = c.counts();
    let parts: Vec<String> = [
        (n.updated, "updated"),
        (n.installing, "installing"),
        (n.waiting, "waiting for reconnect"),
        (n.looping, "suspected reboot loop"),
        (n.offline, "offline"),
        (n.not_updated, "not updated"),
        (n.no_build, "no build reported"),
    ]
    .iter()
    .filter(|(k, _)| *k > 0)
    .map(|(k, w)| format!("{k} {w}"))
    .collect();
    if parts.is_empty() {
        "no devices".into()
    } else {
        parts.join(", ")
    }
}

fn devices(c: &Campaign) {
    if c.devices.is_empty() {
        println!("  (no devices in this campaign)");
        return;
    }
    let rows: Vec<Vec<String>> = c
        .devices
        .iter()
        .map(|d| {
            vec![
                device_label(d),
                format!("{} / {}", d.owner, d.project),
                d.build_now.clone().unwrap_or_else(|| "?".into()),
                if d.online { "online" } else { "offline" }.into(),
                state_label(&d.state),
            ]
        })
        .collect();
    table(
        &["DEVICE", "OWNER / PROJECT", "BUILD", "NOW", "STATE"],
        &rows,
    );
}

/// The advice that matters most, after the table.
fn advice(c: &Campaign) {
    let looping: Vec<String> = c
        .devices
        .iter()
        .filter(|d| matches!(d.state, DeviceState::Looping { .. }))
        .map(|d| d.name.clone())
        .collect();
    if !looping.is_empty() {
        println!(
            "\nSuspected reboot loop: {} keep{} getting the update and coming back on the old build. Stop it with `greenlight blynk stop --account {}` (the server's stop is global: every campaign on it ends).",
            looping.join(", "),
            if looping.len() == 1 { "s" } else { "" },
            c.account
        );
    }
    if c.is_live() && c.devices.iter().any(|d| d.state == DeviceState::Waiting) {
        println!(
            "\nWaiting devices get the update when they next log in: restart them to update now."
        );
    }
}

/// A campaign with every device.
pub fn campaign(c: &Campaign) {
    let now = now_ms();
    println!(
        "Campaign #{} on {} — {} — {}",
        c.id,
        c.account,
        c.target.describe(),
        status_label(&c.status)
    );
    println!(
        "Firmware {} ({} bytes, SHA-256 {}), build \"{}\"; started {} by {}",
        c.file_name,
        c.size,
        c.sha256,
        c.build,
        ago(c.started_at.unwrap_or(c.created_at), now),
        c.started_by
    );
    println!("{}\n", summary(c));
    devices(c);
    advice(c);
}

/// What `blynk start` says.
pub fn started(c: &Campaign) {
    let how = if c.target.is_campaign() {
        "devices get it when they next log in (restart them to update now)"
    } else {
        "sent to the device now"
    };
    println!(
        "Started campaign #{} on {} for {}: {} device(s); {how}.\n",
        c.id,
        c.account,
        c.target.describe(),
        c.devices.len()
    );
    devices(c);
    println!(
        "\nFollow it: greenlight blynk status --account {} --follow",
        c.account
    );
}

/// One line per device whose state changed between two polls.
pub fn changes(before: &[Campaign], now: &[Campaign]) {
    for c in now {
        let old = before.iter().find(|b| b.id == c.id);
        for d in &c.devices {
            let was = old.and_then(|o| o.devices.iter().find(|x| x.key == d.key));
            if was.is_none_or(|w| w.state.name() != d.state.name()) {
                println!("#{} {}: {}", c.id, device_label(d), state_label(&d.state));
            }
        }
        if old.is_some_and(|o| o.status != c.status) {
            println!("#{}: {}", c.id, status_label(&c.status));
        }
    }
}

/// Rows of `blynk history`.
pub fn history(cs: &[Campaign]) {
    let now = now_ms();
    let rows: Vec<Vec<String>> = cs
        .iter()
        .map(|c| {
            vec![
                c.id.to_string(),
                c.account.clone(),
                c.target.describe(),
                c.build.clone(),
                status_label(&c.status),
                summary(c),
                ago(c.created_at, now),
            ]
        })
        .collect();
    table(
        &[
            "#", "ACCOUNT", "TARGET", "BUILD", "STATUS", "DEVICES", "STARTED",
        ],
        &rows,
    );
}

/// A staged campaign's stage in a few words.
pub fn stage_label(r: &BlynkRollout) -> String {
    match &r.stage {
        BlynkRolloutStage::Canary => format!("canary: {}", state_label(&r.canary.state)),
        BlynkRolloutStage::Extending { .. } => "sending the update to the rest".into(),
        BlynkRolloutStage::Extended => "extended".into(),
        BlynkRolloutStage::NotConfirmed { .. } => "not confirmed: check the server".into(),
        BlynkRolloutStage::Done => "done".into(),
        BlynkRolloutStage::Stopped {
            resumable: true, ..
        } => "stopped before the rest: resume or cancel".into(),
        BlynkRolloutStage::Stopped { .. } => "stopped".into(),
        BlynkRolloutStage::Cancelled { .. } => "cancelled".into(),
    }
}

/// What `blynk start --staged` says.
pub fn rollout_started(r: &BlynkRollout) {
    println!(
        "Staged campaign #{} on {}: firmware {} ({} bytes, SHA-256 {}), build \"{}\".",
        r.id, r.account, r.firmware.file_name, r.firmware.size, r.firmware.sha256, r.firmware.build
    );
    println!(
        "The update was sent to the canary {} now; {} gets it once the canary runs build \"{}\" and stays online for {} (within {}). Stopped at the first failure.",
        device_label(&r.canary),
        r.target.describe(),
        r.firmware.build,
        span(r.settle_ms),
        span(r.canary_timeout_ms)
    );
}

/// One line when a staged campaign moved between two polls.
pub fn rollout_change(before: &BlynkRollout, now: &BlynkRollout) {
    if before.stage.name() != now.stage.name()
        || before.canary.state.name() != now.canary.state.name()
        || before.note != now.note
        || before.settling.since.is_some() != now.settling.since.is_some()
    {
        println!("staged #{}: {}", now.id, now.words());
    }
}

/// A staged campaign in full, with its extended campaign's devices.
pub fn rollout(r: &BlynkRollout, extension: Option<&Campaign>) {
    let now = now_ms();
    println!(
        "Staged campaign #{} on {} — canary {}, then {} — {}",
        r.id,
        r.account,
        device_label(&r.canary),
        r.target.describe(),
        stage_label(r)
    );
    println!(
        "Firmware {} ({}, SHA-256 {}), build \"{}\"; started {} by {}",
        r.firmware.file_name,
        r.firmware.path,
        r.firmware.sha256,
        r.firmware.build,
        ago(r.created_at, now),
        r.started_by
    );
    println!("{}", r.words());
    if let Some(c) = extension {
        println!();
        campaign(c);
    }
    if r.needs_user() {
        println!(
            "\nResume (send the update to {} anyway): greenlight blynk rollout resume --account {a}\nCancel: greenlight blynk rollout cancel --account {a}",
            r.target.describe(),
            a = r.account
        );
    }
}

/// `blynk rollout status`: each active one in full, the ended ones as rows.
pub fn rollouts(rs: &[BlynkRollout], campaigns: &[Campaign]) {
    let now = now_ms();
    let (active, ended): (Vec<&BlynkRollout>, Vec<&BlynkRollout>) =
        rs.iter().partition(|r| r.is_active());
    for (i, r) in active.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let c = r
            .extension
            .and_then(|id| campaigns.iter().find(|c| c.id == id));
        rollout(r, c);
    }
    if !ended.is_empty() {
        if !active.is_empty() {
            println!();
        }
        println!("Ended:");
        let rows: Vec<Vec<String>> = ended
            .iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    r.account.clone(),
                    r.canary.name.clone(),
                    r.target.describe(),
                    r.firmware.build.clone(),
                    stage_label(r),
                    ago(r.created_at, now),
                ]
            })
            .collect();
        table(
            &[
                "#", "ACCOUNT", "CANARY", "THEN", "BUILD", "STAGE", "STARTED",
            ],
            &rows,
        );
    }
}
