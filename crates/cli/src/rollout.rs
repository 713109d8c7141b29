//! `greenlight approve --staged` and `greenlight rollout …`: a staged
//! approval (one device first, then a few at a time, stopped by the first
//! failure), started, followed, resumed or cancelled from the terminal.
//!
//! The rollout lives in the engine and its database, not in this process:
//! whoever runs the engine (the app, `greenlight watch`, or this command
//! while it follows) moves it on, and a restart takes it up where it was.

use std::collections::HashMap;
use std::time::Duration;

use greenlight_core::{
    now_ms, DailyWindow, EngineHandle, Event, MemberState, Rollout, RolloutAction, RolloutPlan,
    RolloutState,
};

use crate::args::{ApproveArgs, Cli, RolloutCmd};
use crate::commands::{
    account_notes, check_nodes, local_offset_minutes, open_engine, parse_duration, refresh, resolve,
};
use crate::output;
use crate::Failure;

type Res<T = ()> = Result<T, Failure>;

/// A soak time: a bare number has no unit here (five what?).
fn soak_secs(s: &str) -> Res<u32> {
    if s.trim().chars().all(|c| c.is_ascii_digit()) {
        return Err(Failure::Usage(format!(
            "--soak {s}: give a unit, like 30s, 5m or 1h"
        )));
    }
    let d = parse_duration(s)?;
    u32::try_from(d.as_secs()).map_err(|_| Failure::Usage(format!("--soak {s} is too long")))
}

/// `greenlight approve --staged …`.
pub async fn approve_staged(cli: &Cli, a: &ApproveArgs) -> Res {
    let soak = match &a.soak {
        Some(s) => soak_secs(s)?,
        None => greenlight_core::rollout::DEFAULT_SOAK_SECS,
    };
    let window = match &a.window {
        Some(w) => Some(
            DailyWindow::parse(w, local_offset_minutes()).map_err(|e| Failure::Usage(e.plain()))?,
        ),
        None => None,
    };
    let e = open_engine(cli).await?;
    refresh(cli, &e).await;
    account_notes(cli, &e).await?;
    check_nodes(&e, false).await?;
    let mut nodes = vec![];
    for n in &a.nodes {
        nodes.push(resolve(&e, n).await?);
    }
    let canary = match &a.canary {
        Some(c) => Some(resolve(&e, c).await?),
        None => None,
    };
    let plan = RolloutPlan {
        nodes,
        canary,
        batch: a.batch.unwrap_or(greenlight_core::rollout::DEFAULT_BATCH),
        soak_secs: soak,
        window,
    };
    plan.check().map_err(|e| Failure::Usage(e.plain()))?;
    let mut events = e.subscribe();
    let r = e.start_rollout(plan).await?;
    if !cli.json {
        println!(
            "Rollout {} started: {} device(s), the first one alone, then {} at a time, each watched for {} after it updates{}.",
            r.id,
            r.members.len(),
            r.batch,
            output::duration(i64::from(r.soak_secs) * 1000),
            r.window
                .map(|w| format!(", approving only {} local time", w.describe()))
                .unwrap_or_default()
        );
        for m in r
            .members
            .iter()
            .filter(|m| matches!(m.state, MemberState::Skipped { .. }))
        {
            println!("  left out: {} ({})", m.label(), member_words(&m.state));
        }
    }
    finish(cli, &e, &mut events, r, a.no_wait).await
}

/// `greenlight rollout …`.
pub async fn rollout(cli: &Cli, cmd: &RolloutCmd) -> Res {
    let e = open_engine(cli).await?;
    let (action, no_wait) = match cmd {
        RolloutCmd::Status => {
            let all = e.rollouts().await?;
            if cli.json {
                output::json(&all)?;
            } else if let Some(r) = all.first() {
                print_rollout(r);
            } else {
                println!("No rollout yet. Start one with `greenlight approve --all --staged`.");
            }
            e.shutdown().await;
            return Ok(());
        }
        RolloutCmd::Resume(w) => (RolloutAction::Resume, w.no_wait),
        RolloutCmd::RetryFailed(w) => (RolloutAction::RetryFailed, w.no_wait),
        RolloutCmd::Cancel => (RolloutAction::Cancel, true),
    };
    let mut events = e.subscribe();
    // "Resume" of a rollout that runs (its follower was closed or killed)
    // follows it: this command's engine, if it is the owner, carries it on.
    if action == RolloutAction::Resume {
        if let Some(r) = e
            .rollouts()
            .await?
            .into_iter()
            .find(|r| r.state == RolloutState::Running)
        {
            if !cli.json {
                println!("Rollout {} is running; following it.", r.id);
            }
            return finish(cli, &e, &mut events, r, no_wait).await;
        }
    }
    let r = e
        .rollout_action(None, action)
        .await
        .map_err(|e| Failure::Usage(e.plain()))?;
    finish(cli, &e, &mut events, r, no_wait).await
}

/// Follows the rollout unless told not to; exit 0 only when every device
/// it approved updated.
async fn finish(
    cli: &Cli,
    e: &EngineHandle,
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    r: Rollout,
    no_wait: bool,
) -> Res {
    let last = if no_wait || r.state.is_over() {
        if !cli.json {
            print_rollout(&r);
            if !r.state.is_over() {
                println!("It goes on while Greenlight runs (the app or `greenlight watch`); `greenlight rollout status` shows it.");
            }
        }
        r
    } else {
        follow(cli.json, e, events, r).await?
    };
    if cli.json {
        output::json(&last)?;
    }
    e.shutdown().await;
    let ok = match &last.state {
        RolloutState::Done => last.succeeded(),
        // Not waited for: it was accepted and runs.
        RolloutState::Running => no_wait,
        RolloutState::Stopped { .. } | RolloutState::Cancelled => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Failure::Failed(String::new()))
    }
}

/// Prints each change of the rollout until it stops, ends or is cancelled.
async fn follow(
    json_out: bool,
    e: &EngineHandle,
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    mut r: Rollout,
) -> Res<Rollout> {
    if !json_out {
        println!("Following it; Ctrl-C leaves it running (`greenlight rollout status`).");
        println!("{}", r.headline);
    }
    // Each member's state is told when it changes (not its countdown).
    let mut said: HashMap<String, &'static str> = r
        .members
        .iter()
        .map(|m| (m.node_id.clone(), m.state.name()))
        .collect();
    // Events can be missed by a slow reader: read the record now and then.
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        let next = tokio::select! {
            ev = events.recv() => match ev {
                Ok(Event::RolloutChanged { rollout }) if rollout.id == r.id => Some(rollout),
                Ok(_) => None,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                Err(_) => return Err(Failure::Failed("the engine stopped".into())),
            },
            _ = tick.tick() => e.rollouts().await?.into_iter().find(|x| x.id == r.id),
        };
        let Some(n) = next else { continue };
        if n.updated_at < r.updated_at {
            continue;
        }
        if !json_out {
            for m in &n.members {
                if said.get(&m.node_id) != Some(&m.state.name()) {
                    println!("  {}: {}", m.label(), member_words(&m.state));
                    said.insert(m.node_id.clone(), m.state.name());
                }
            }
            if n.headline != r.headline {
                println!("{}", n.headline);
            }
        }
        r = n;
        if !matches!(r.state, RolloutState::Running) {
            if let (RolloutState::Stopped { .. }, false) = (&r.state, json_out) {
                println!("Nothing more is approved. `greenlight rollout resume` goes on with the others, `retry-failed` tries the failed ones again, `cancel` ends it.");
            }
            return Ok(r);
        }
    }
}

fn member_words(s: &MemberState) -> String {
    match s {
        MemberState::Waiting => "waiting".into(),
        MemberState::Releasing { .. } => "being approved".into(),
        MemberState::Running => "updating".into(),
        MemberState::Soaking { until: Some(u), .. } => format!(
            "updated; watched for {} more",
            output::duration((u - now_ms()).max(0))
        ),
        MemberState::Soaking { .. } => "updated; offline, watched again when back".into(),
        MemberState::Updated => "updated".into(),
        MemberState::Failed { reason } => format!("FAILED: {reason}"),
        MemberState::Skipped { reason } => format!("left out: {reason}"),
    }
}

/// The rollout as stages: the first device, each batch, then the rest.
fn print_rollout(r: &Rollout) {
    println!("Rollout {} ({}): {}", r.id, r.state.name(), r.headline);
    let mut rows = vec![];
    for m in &r.members {
        let stage = match m.stage {
            Some(0) => "first".to_string(),
            Some(n) => format!("batch {n}"),
            None if matches!(m.state, MemberState::Skipped { .. }) => "-".into(),
            None => "waiting".into(),
        };
        rows.push(vec![
            stage,
            output::node_label(m.name.as_deref(), &m.node_id),
            m.to_version.clone(),
            member_words(&m.state),
        ]);
    }
    output::table(&["STAGE", "DEVICE", "TO", "STATE"], &rows);
}
