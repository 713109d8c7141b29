//! `greenlight demo`: the simulator's demo fleet on its embedded broker, the
//! engine on a throw-away data directory, and a live view — so a first-time
//! user sees pending updates within seconds and can approve them, with no
//! hardware and no account.

use std::io::IsTerminal;
use std::time::Duration;

use greenlight_core::demo::{self as demo_fleet, DemoProcess, DemoSpeed};
use greenlight_core::{now_ms, ApprovalResult, Engine, Event};
use serde_json::json;

use crate::args::DemoArgs;
use crate::commands::{follow, names_of};
use crate::output;
use crate::Failure;

/// Runs the demo.
pub async fn run(a: &DemoArgs, json_out: bool) -> Result<(), Failure> {
    let human = !json_out;
    if human {
        println!("Starting the demo fleet (six simulated ESP RainMaker devices)…");
    }
    // Demo credentials are throw-away: they stay in memory, and so does the
    // demo's data (a temporary directory), never mixed with real accounts.
    let dir = std::env::temp_dir().join(format!("greenlight-demo-{}", std::process::id()));
    // The simulator runs beside us (`greenlight-sim demo`), not inside.
    let sim = DemoProcess::start(DemoSpeed::from_env(), &dir).await?;
    let cfg = demo_fleet::engine_config(sim.info(), &dir, "you (demo)")?;
    let e = Engine::open(cfg).await?;
    let account = demo_fleet::account(sim.info());
    let mut events = e.subscribe();
    e.add_account(account).await?;
    let _ = e.refresh().await;

    // Give the devices a moment to report: cloud jobs come from per-node checks.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    while tokio::time::Instant::now() < deadline && e.pending().await?.len() < 5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let pending = e.pending().await?;
    let nodes = e.nodes().await?;
    if human {
        println!();
        output::table(
            &[
                "DEVICE",
                "NODE ID",
                "MODEL",
                "FIRMWARE",
                "STATUS",
                "LAST SEEN",
                "UPDATES",
                "ACCOUNT",
            ],
            &output::node_rows(&nodes, now_ms()),
        );
        println!("\n{} update(s) waiting for your approval:\n", pending.len());
        output::table(
            &[
                "DEVICE",
                "VERSION",
                "KIND",
                "SIZE",
                "STATUS",
                "RELEASE NOTE",
            ],
            &output::pending_rows(&pending, now_ms()),
        );
        println!();
    }

    let interactive = human
        && !a.approve_all
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal();
    let chosen: Vec<String> = if interactive {
        let items: Vec<String> = pending
            .iter()
            .map(|p| {
                format!(
                    "{}  {} → {}{}",
                    output::node_label(p.node_name.as_deref(), &p.node_id),
                    p.from_version.as_deref().unwrap_or("?"),
                    p.to_version,
                    if p.node_online == Some(true) {
                        ""
                    } else {
                        "  (offline: installs when it comes back)"
                    }
                )
            })
            .collect();
        let defaults: Vec<bool> = pending
            .iter()
            .map(|p| p.node_online == Some(true))
            .collect();
        let picked = dialoguer::MultiSelect::new()
            .with_prompt("Approve which updates? (space toggles, enter confirms)")
            .items(&items)
            .defaults(&defaults)
            .interact_opt()
            .map_err(|e| Failure::Failed(e.to_string()))?
            .unwrap_or_default();
        picked
            .into_iter()
            .filter_map(|i| pending.get(i).map(|p| p.node_id.clone()))
            .collect()
    } else {
        pending.iter().map(|p| p.node_id.clone()).collect()
    };

    let mut outcomes = e.approve(&chosen).await?;
    for o in outcomes.iter_mut() {
        if matches!(o.result, ApprovalResult::Offline) {
            *o = e.install_when_online(&o.node_id).await?;
        }
    }
    let names = names_of(&e).await?;
    if human {
        for o in &outcomes {
            println!("{}", output::outcome_words(o, &names(&o.node_id)));
        }
        println!();
    }
    let ids: Vec<i64> = outcomes
        .iter()
        .filter_map(|o| match &o.result {
            ApprovalResult::Sent { job } => Some(job.id),
            _ => None,
        })
        .collect();
    let finals = follow(
        json_out,
        &e,
        &mut events,
        &ids,
        &names,
        Duration::from_secs(90),
    )
    .await?;
    if json_out {
        output::json(&json!({"outcomes": outcomes, "jobs": finals}))?;
    }
    if !a.exit_when_done {
        if human {
            if outcomes
                .iter()
                .any(|o| matches!(o.result, ApprovalResult::Queued { .. }))
            {
                println!("\nThe offline device installs its update when it comes back online.");
            }
            println!("Greenlight is watching; press Ctrl-C to leave.");
        }
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                ev = events.recv() => match ev {
                    Ok(Event::JobChanged { job }) if job.state.is_terminal() && human => {
                        println!("{}: {}", names(&job.node_id), output::state_words(&job.state));
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
        }
    }
    e.shutdown().await;
    sim.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
