//! `greenlight blynk ...`: the Blynk tracker for terminals and scripts.
//! Thin on purpose: every decision (validation, tracking, states) is in
//! `greenlight_core::blynk`; this only translates arguments and prints.
//! Passwords and certificates are handled exactly as for the other
//! accounts (the same helpers as `account add`).
//!
//! Exit codes as for the rest of the CLI: 0 success, 1 an operation failed
//! (for `status --follow`: not every device ended updated), 2 usage, 3 a
//! password (or the keychain) is needed.

mod output;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use greenlight_core::blynk::{
    BlynkAccount, BlynkError, BlynkEvent, BlynkHandle, BlynkRollout, BlynkRolloutStage,
    BlynkTracker, Campaign, DeviceState, Firmware, StagedOptions, StartTarget, TrackerConfig,
};
use serde_json::json;

use crate::args::{
    BlynkAccountArgs, BlynkAccountCmd, BlynkCmd, BlynkHistoryArgs, BlynkRolloutCmd,
    BlynkRolloutFollow, BlynkStartArgs, BlynkStatusArgs, Cli,
};
use crate::commands::{actor, keychain, keychain_failure, read_password, trust, NoKeychain};
use crate::Failure;

type Res<T = ()> = Result<T, Failure>;

impl From<BlynkError> for Failure {
    fn from(e: BlynkError) -> Self {
        let msg = e.to_string();
        if let BlynkError::Auth { account, .. } = &e {
            Failure::Auth(format!(
                "{msg} — give the password again with `greenlight blynk account add --name {account} ...`"
            ))
        } else if e.is_auth() {
            Failure::Auth(msg)
        } else if e.is_usage() {
            Failure::Usage(msg)
        } else {
            Failure::Failed(msg)
        }
    }
}

/// Opens the tracker on the data directory shared with the app. One-shot
/// commands poll when they need to, never on a timer.
async fn open(cli: &Cli) -> Res<BlynkHandle> {
    let dir = crate::commands::data_dir(cli.data_dir.clone())?;
    let secrets = keychain().unwrap_or_else(|e| Arc::new(NoKeychain(e.to_string())));
    let cfg = TrackerConfig {
        background: false,
        ..TrackerConfig::default()
    };
    Ok(BlynkTracker::open(dir, secrets, &actor(), cfg).await?)
}

fn say(cli: &Cli, j: serde_json::Value, human: &str) -> Res {
    if cli.json {
        crate::output::json(&j)?;
    } else {
        println!("{human}");
    }
    Ok(())
}

/// Runs one `blynk` command.
pub async fn run(cli: &Cli, cmd: &BlynkCmd) -> Res {
    match cmd {
        BlynkCmd::Account(BlynkAccountCmd::Add(a)) => add_account(cli, a).await,
        BlynkCmd::Account(BlynkAccountCmd::List) => {
            let h = open(cli).await?;
            let accounts = h.accounts().await?;
            if cli.json {
                crate::output::json(&json!({ "accounts": accounts }))?;
            } else if accounts.is_empty() {
                println!("No Blynk servers yet. Add one with `greenlight blynk account add --name home --url https://HOST:9443 --user ADMIN_EMAIL`.");
            } else {
                output::accounts(&accounts);
            }
            h.shutdown().await;
            Ok(())
        }
        BlynkCmd::Account(BlynkAccountCmd::Remove { name }) => {
            let h = open(cli).await?;
            h.remove_account(name).await?;
            say(
                cli,
                json!({ "removed": name }),
                &format!(
                    "Removed Blynk server {name} and its password (its campaigns stay in history)."
                ),
            )?;
            h.shutdown().await;
            Ok(())
        }
        BlynkCmd::Start(a) => start(cli, a).await,
        BlynkCmd::Stop(a) => {
            let h = open(cli).await?;
            let ended = h.stop(&a.account).await?;
            let url = h
                .accounts()
                .await?
                .into_iter()
                .find(|x| x.name == a.account)
                .map(|x| x.url)
                .unwrap_or_default();
            say(
                cli,
                json!({ "stopped": ended }),
                &format!(
                    "Stopped every update campaign on {url} (the server's stop is global): {} campaign(s) ended. Devices already sent the firmware URL may still install it.",
                    ended.len()
                ),
            )?;
            h.shutdown().await;
            Ok(())
        }
        BlynkCmd::Status(a) => status(cli, a).await,
        BlynkCmd::History(a) => history(cli, a).await,
        BlynkCmd::Rollout(BlynkRolloutCmd::Status(a)) => {
            rollout_status(cli, a.account.as_deref()).await
        }
        BlynkCmd::Rollout(BlynkRolloutCmd::Resume(a)) => rollout_resume(cli, a).await,
        BlynkCmd::Rollout(BlynkRolloutCmd::Cancel(a)) => {
            rollout_cancel(cli, a.account.as_deref()).await
        }
    }
}

async fn add_account(cli: &Cli, a: &BlynkAccountArgs) -> Res {
    if !a.url.starts_with("https://") {
        return Err(Failure::Usage(format!(
            "{:?}: the admin URL must start with https:// (the admin password goes with every request), e.g. https://blynk.local:9443",
            a.url
        )));
    }
    let mut acct = BlynkAccount::new(&a.name, &a.url, &a.user);
    acct.upload_limit = a.upload_limit;
    acct.pinned_sha256 = trust(&acct.url, a.trust_fingerprint.as_deref()).await?;
    let pw = read_password(
        a.password_stdin,
        &format!("Blynk admin password for {}", a.user),
    )?;
    // The keychain must be there before anything is kept: the password is
    // never kept anywhere else.
    keychain().map_err(keychain_failure)?;
    let h = open(cli).await?;
    let res = h.add_account(acct.clone(), &pw).await;
    h.shutdown().await;
    match res {
        Ok(()) => say(
            cli,
            json!({ "added": acct.name, "url": acct.url, "pinned_sha256": acct.pinned_sha256 }),
            &format!(
                "Added Blynk server {} ({}, admin {}). The password is in the OS keychain.",
                acct.name, acct.url, acct.user
            ),
        ),
        Err(e) if e.is_auth() => Err(Failure::Auth(format!(
            "could not log in to {}: {e}; the account was not added",
            acct.name
        ))),
        Err(e @ BlynkError::Network(_)) => {
            Err(Failure::Failed(format!("{e}; the account was not added")))
        }
        Err(e) => Err(e.into()),
    }
}

async fn start(cli: &Cli, a: &BlynkStartArgs) -> Res {
    if a.project.is_some() && a.target.user.is_none() {
        // clap's `requires` does not see through the target group.
        return Err(Failure::Usage(
            "--project needs --user EMAIL: a project is one user's".into(),
        ));
    }
    let target = match (&a.target.token, &a.target.user, a.target.all) {
        (Some(t), None, false) => StartTarget::Token(t.clone()),
        (None, Some(u), false) => StartTarget::User {
            email: u.clone(),
            project: a.project.clone(),
        },
        (None, None, true) => StartTarget::All,
        _ => {
            return Err(Failure::Usage(
                "give exactly one of --token, --user or --all".into(),
            ))
        }
    };
    if a.staged {
        return start_staged(cli, a, target).await;
    }
    // Read and checked once; this very copy is what gets uploaded.
    let fw = Firmware::read(&a.firmware)?;
    if !cli.json {
        eprintln!(
            "Firmware {}: {} bytes, build \"{}\", SHA-256 {}",
            fw.file_name(),
            fw.size(),
            fw.build(),
            fw.sha256()
        );
    }
    let h = open(cli).await?;
    let res = h.start(&a.account, &fw, target, Some(a.loop_after)).await;
    h.shutdown().await;
    let c = res?;
    if cli.json {
        crate::output::json(&json!({ "campaign": c }))?;
    } else {
        output::started(&c);
    }
    Ok(())
}

/// `90s`, `5m`, `1h`; a bare number is seconds.
fn parse_span(flag: &str, s: &str) -> Res<Duration> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let bad = || Failure::Usage(format!("{flag} {s:?} is not a duration like 90s, 5m or 1h"));
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "m" | "min" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

fn valid_interval(interval: f64) -> Res<Duration> {
    if interval.is_finite() && interval > 0.0 && interval < 86_400.0 {
        Ok(Duration::from_secs_f64(interval))
    } else {
        Err(Failure::Usage(
            "--interval must be a number of seconds above 0".into(),
        ))
    }
}

/// `blynk start --staged`: the canary now, the rest from the tracker.
async fn start_staged(cli: &Cli, a: &BlynkStartArgs, target: StartTarget) -> Res {
    let every = valid_interval(a.interval)?;
    let Some(canary) = a.canary.as_deref() else {
        return Err(Failure::Usage("--staged needs --canary TOKEN".into()));
    };
    if matches!(target, StartTarget::Token(_)) {
        return Err(Failure::Usage(
            "--staged sends to the --canary device first, then to --user EMAIL (--project NAME) or --all; not to --token".into(),
        ));
    }
    let mut opts = StagedOptions {
        loop_after: Some(a.loop_after),
        ..StagedOptions::default()
    };
    if let Some(s) = &a.settle {
        opts.settle = parse_span("--settle", s)?;
    }
    if let Some(s) = &a.canary_timeout {
        opts.canary_timeout = parse_span("--canary-timeout", s)?;
        if opts.canary_timeout.is_zero() {
            return Err(Failure::Usage(
                "--canary-timeout must be more than 0".into(),
            ));
        }
    }
    let h = open(cli).await?;
    let r = match h
        .start_staged(&a.account, &a.firmware, canary, target, opts)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            h.shutdown().await;
            return Err(e.into());
        }
    };
    if !cli.json {
        output::rollout_started(&r);
    }
    if a.no_wait {
        h.shutdown().await;
        if cli.json {
            crate::output::json(&json!({ "rollout": r }))?;
        }
        return Ok(());
    }
    follow_rollout(cli, h, r, every).await
}

/// Polls until the staged campaign is over or waits for the user; prints
/// what changes. Exit 0 when it is done, 1 otherwise.
async fn follow_rollout(cli: &Cli, h: BlynkHandle, mut cur: BlynkRollout, every: Duration) -> Res {
    if !cli.json {
        eprintln!("greenlight: following; Ctrl-C to stop following (the staged campaign then moves on only while a Greenlight process follows it: `greenlight watch`, the app, or `greenlight blynk rollout status`)");
    }
    let mut campaign: Option<Campaign> = None;
    while cur.is_active() && !cur.needs_user() {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => {
                eprintln!("greenlight: stopped following; `greenlight blynk rollout status` shows it and moves it on");
                h.shutdown().await;
                return Err(Failure::Failed(String::new()));
            }
        }
        match h.refresh(Some(&cur.account)).await {
            Ok(()) => {}
            Err(e) if e.is_auth() => {
                h.shutdown().await;
                return Err(e.into());
            }
            Err(e) => {
                if !cli.json {
                    eprintln!("greenlight: could not ask the server: {e}; trying again");
                }
            }
        }
        let Some(next) = h.rollout(cur.id).await? else {
            break;
        };
        if let Some(id) = next.extension {
            if let Some(c) = h.campaign(id).await? {
                if !cli.json {
                    output::changes(campaign.as_slice(), std::slice::from_ref(&c));
                }
                campaign = Some(c);
            }
        }
        if !cli.json {
            output::rollout_change(&cur, &next);
        }
        cur = next;
    }
    // Waits for what the tracker is still doing (a stop after a loop).
    h.shutdown().await;
    let h = open(cli).await?;
    let cur = h.rollout(cur.id).await?.unwrap_or(cur);
    let campaign = match cur.extension {
        Some(id) => h.campaign(id).await?,
        None => None,
    };
    h.shutdown().await;
    if cli.json {
        crate::output::json(&json!({ "rollout": cur, "campaign": campaign }))?;
    } else {
        println!();
        output::rollout(&cur, campaign.as_ref());
    }
    rollout_exit(&cur)
}

fn rollout_exit(r: &BlynkRollout) -> Res {
    match &r.stage {
        BlynkRolloutStage::Done => Ok(()),
        _ if r.needs_user() => Err(Failure::Failed(format!(
            "staged campaign #{} needs you: `greenlight blynk rollout resume --account {a}` sends the update to {} anyway, `greenlight blynk rollout cancel --account {a}` ends it",
            r.id,
            r.target.describe(),
            a = r.account
        ))),
        _ => Err(Failure::Failed(format!(
            "staged campaign #{} did not finish: {}",
            r.id,
            r.words()
        ))),
    }
}

async fn rollout_status(cli: &Cli, account: Option<&str>) -> Res {
    let h = open(cli).await?;
    if let Some(acct) = account {
        if !h.accounts().await?.iter().any(|x| x.name == acct) {
            h.shutdown().await;
            return Err(BlynkError::UnknownAccount(acct.to_string()).into());
        }
    }
    // Asking the server is what moves a staged campaign on when no daemon runs.
    let fresh = match refresh(cli, &h, account).await {
        Ok(f) => f,
        Err(e) => {
            h.shutdown().await;
            return Err(e);
        }
    };
    // Waits for an extension this poll may have started.
    h.shutdown().await;
    let h = open(cli).await?;
    let rs = h.rollouts(account).await?;
    let mut campaigns = vec![];
    for r in rs.iter().filter(|r| r.is_active()) {
        if let Some(id) = r.extension {
            if let Some(c) = h.campaign(id).await? {
                campaigns.push(c);
            }
        }
    }
    h.shutdown().await;
    if cli.json {
        crate::output::json(&json!({ "rollouts": rs, "campaigns": campaigns }))?;
    } else if rs.is_empty() {
        println!("No staged campaigns yet. Start one with `greenlight blynk start --staged --canary TOKEN --user EMAIL --account NAME --firmware FILE`.");
    } else {
        output::rollouts(&rs, &campaigns);
    }
    if fresh {
        Ok(())
    } else {
        Err(Failure::Failed(
            "the server could not be asked: the states shown may be old".into(),
        ))
    }
}

async fn rollout_resume(cli: &Cli, a: &BlynkRolloutFollow) -> Res {
    let every = valid_interval(a.interval)?;
    let h = open(cli).await?;
    let r = match h.resume_rollout(a.account.as_deref()).await {
        Ok(r) => r,
        Err(e) => {
            h.shutdown().await;
            return Err(e.into());
        }
    };
    if !cli.json {
        println!("Staged campaign #{} on {}: {}", r.id, r.account, r.words());
    }
    if a.no_wait || !r.is_active() || r.needs_user() {
        h.shutdown().await;
        if cli.json {
            crate::output::json(&json!({ "rollout": r }))?;
        }
        return if r.stage == BlynkRolloutStage::Extended || r.stage == BlynkRolloutStage::Done {
            Ok(())
        } else {
            rollout_exit(&r)
        };
    }
    follow_rollout(cli, h, r, every).await
}

async fn rollout_cancel(cli: &Cli, account: Option<&str>) -> Res {
    let h = open(cli).await?;
    let res = h.cancel_rollout(account).await;
    h.shutdown().await;
    let r = res?;
    say(
        cli,
        json!({ "rollout": r }),
        &format!("Staged campaign #{} on {}: {}.", r.id, r.account, r.words()),
    )
}

/// Polls now; an auth problem is fatal (exit 3), a network one is said and
/// the stored state shown.
async fn refresh(cli: &Cli, h: &BlynkHandle, account: Option<&str>) -> Res<bool> {
    match h.refresh(account).await {
        Ok(()) => Ok(true),
        Err(e) if e.is_auth() => Err(e.into()),
        Err(e @ BlynkError::UnknownAccount(_)) => Err(e.into()),
        Err(e) => {
            if !cli.json {
                eprintln!("greenlight: could not ask the server: {e}; showing what is known");
            }
            Ok(false)
        }
    }
}

fn all_updated(cs: &[Campaign]) -> bool {
    cs.iter()
        .all(|c| c.devices.iter().all(|d| d.state == DeviceState::Updated))
}

async fn status(cli: &Cli, a: &BlynkStatusArgs) -> Res {
    if !(a.interval.is_finite() && a.interval > 0.0) {
        return Err(Failure::Usage(
            "--interval must be a number of seconds above 0".into(),
        ));
    }
    let h = open(cli).await?;
    if let Some(acct) = &a.account {
        if !h.accounts().await?.iter().any(|x| &x.name == acct) {
            h.shutdown().await;
            return Err(BlynkError::UnknownAccount(acct.clone()).into());
        }
    }
    let account = a.account.as_deref();
    let fresh = match refresh(cli, &h, account).await {
        Ok(f) => f,
        Err(e) => {
            h.shutdown().await;
            return Err(e);
        }
    };
    let mut live = h.status(account).await?;
    if live.is_empty() {
        // Nothing running: the last campaign, as it ended.
        let last = h.history(account, 1).await?;
        if cli.json {
            crate::output::json(&json!({ "running": false, "campaigns": last }))?;
        } else if let Some(c) = last.first() {
            println!("No campaign running. The last one:\n");
            output::campaign(c);
        } else {
            println!("No Blynk campaigns yet. Start one with `greenlight blynk start --account NAME --firmware FILE --all`.");
        }
        h.shutdown().await;
        return exit(fresh, a.follow, &last);
    }
    if a.follow {
        let ids: Vec<i64> = live.iter().map(|c| c.id).collect();
        if !cli.json {
            for c in &live {
                output::campaign(c);
                println!();
            }
            eprintln!("greenlight: following; Ctrl-C to stop (the campaigns go on)");
        }
        let every = Duration::from_secs_f64(a.interval);
        loop {
            let settled = live.iter().all(|c| c.is_settled() || !c.is_live());
            if settled {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("greenlight: stopped following; the campaigns go on and `greenlight blynk status` shows them");
                    h.shutdown().await;
                    return Err(Failure::Failed(String::new()));
                }
            }
            if let Err(e) = refresh(cli, &h, account).await {
                h.shutdown().await;
                return Err(e);
            }
            let mut now = vec![];
            for id in &ids {
                if let Some(c) = h.campaign(*id).await? {
                    now.push(c);
                }
            }
            if !cli.json {
                output::changes(&live, &now);
            }
            live = now;
        }
        if !cli.json {
            println!();
        }
    }
    if cli.json {
        crate::output::json(&json!({ "running": true, "campaigns": live }))?;
    } else {
        for (i, c) in live.iter().enumerate() {
            if i > 0 {
                println!();
            }
            output::campaign(c);
        }
    }
    h.shutdown().await;
    exit(fresh, a.follow, &live)
}

/// Exit 1 when the server could not be asked, or a followed campaign did
/// not end with every device updated.
fn exit(fresh: bool, follow: bool, cs: &[Campaign]) -> Res {
    if !fresh {
        return Err(Failure::Failed(
            "the server could not be asked: the states shown may be old".into(),
        ));
    }
    if follow && !all_updated(cs) {
        return Err(Failure::Failed(
            "not every device ended on the new build (see above)".into(),
        ));
    }
    Ok(())
}

async fn history(cli: &Cli, a: &BlynkHistoryArgs) -> Res {
    let h = open(cli).await?;
    let cs = h.history(a.account.as_deref(), a.limit).await?;
    if cli.json {
        crate::output::json(&json!({ "campaigns": cs }))?;
    } else if cs.is_empty() {
        println!("No Blynk campaigns yet.");
    } else {
        output::history(&cs);
    }
    h.shutdown().await;
    Ok(())
}

/// One line for `greenlight watch` about a Blynk tracker event, in the
/// words of `blynk status --follow`; `None` when there is nothing new to
/// say. `campaigns` remembers each campaign's last status said, so a
/// campaign is announced when first heard of and then only when its
/// status changes (its devices have lines of their own).
pub(crate) fn describe_event(
    ev: &BlynkEvent,
    campaigns: &mut HashMap<i64, &'static str>,
) -> Option<String> {
    let device = |id: i64, d: &greenlight_core::blynk::DeviceRecord| {
        format!("#{id} {} ({})", d.name, d.token_hint)
    };
    Some(match ev {
        BlynkEvent::DeviceChanged {
            campaign_id,
            device: d,
            ..
        } => format!(
            "{}: {}",
            device(*campaign_id, d),
            output::state_label(&d.state)
        ),
        BlynkEvent::LoopSuspected {
            campaign_id,
            account,
            device: d,
        } => format!(
            "{}: keeps getting the update and coming back on the old build. Stop it with `greenlight blynk stop --account {account}` (the server's stop is global: every campaign on it ends).",
            device(*campaign_id, d)
        ),
        BlynkEvent::CampaignChanged { campaign: c } => {
            let status = c.status.name();
            if campaigns.insert(c.id, status) == Some(status) {
                return None;
            }
            format!(
                "#{} on {} ({}, build \"{}\"): {} — {}",
                c.id,
                c.account,
                c.target.describe(),
                c.build,
                output::status_label(&c.status),
                output::summary(c)
            )
        }
        // A campaign that ended says so as its status changes (the next
        // event); one still standing on the server says it here.
        BlynkEvent::CampaignSettled { campaign: c } if c.is_live() => format!(
            "#{} on {}: every device settled, the campaign still stands on the server — {}",
            c.id,
            c.account,
            output::summary(c)
        ),
        BlynkEvent::CampaignSettled { .. } => return None,
        BlynkEvent::RolloutChanged { rollout: r } => format!(
            "staged campaign #{} on {} (build \"{}\"): {}",
            r.id, r.account, r.firmware.build, r.words()
        ),
        BlynkEvent::PollFailed {
            account,
            reason,
            needs_login,
        } => format!(
            "Blynk server {account}: could not follow its campaigns: {reason}{}",
            if *needs_login {
                format!(" — give the password again with `greenlight blynk account add --name {account} ...`")
            } else {
                String::new()
            }
        ),
    })
}
