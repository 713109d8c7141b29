//! Staged approvals driven by traces of facts and a virtual clock: what is
//! approved when, and what stops a rollout. No broker and no sleeps; the
//! store is a real SQLite file, reopened to play a restart.

use super::*;
use crate::rainmaker::parse::{ConfigInfo, OtaInfo};
use crate::rainmaker::{InfoReport, NodeReport, Via};
use crate::rollout::{DailyWindow, MemberState, RolloutAction, RolloutPlan, RolloutState};

const T0: Millis = 1_800_000_000_000;
const S: Millis = 1000;
const A: &str = "home";
const SOAK: u32 = 300;

struct Rig {
    core: Core,
    store: Store,
    now: Millis,
    dir: std::path::PathBuf,
    /// Node ids that were sent a start, in order.
    sent: Vec<String>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn node(i: usize) -> String {
    format!("7CDFA100000{i}")
}

fn core() -> Core {
    let mut core = Core::new(CoreConfig {
        actor_name: "tester".into(),
        stuck_after: 600 * S,
        rollback_grace: 120 * S,
        failure_quiet: 180 * S,
        verify_window: 660 * S,
    });
    core.add_account(A);
    core
}

/// `n` plugs on 1.0.0, online, each offering 2.0.0.
fn rig(n: usize) -> Rig {
    static K: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "greenlight-rollout-{}-{}",
        std::process::id(),
        K.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let store = Store::open(&dir).expect("store");
    let mut r = Rig {
        core: core(),
        store,
        now: T0,
        dir,
        sent: vec![],
    };
    for i in 1..=n {
        r.report(i, Some(true), Some("1.0.0"), true);
    }
    r.effects();
    r
}

impl Rig {
    fn report(&mut self, i: usize, online: Option<bool>, fw: Option<&str>, offer: bool) {
        let rep = NodeReport {
            node_id: node(i),
            config: fw.map(|fw| ConfigInfo {
                name: Some(format!("Plug {i}")),
                fw_version: Some(fw.into()),
                model: Some("Plug".into()),
                ota: Some(OtaNames::default()),
                stock: None,
            }),
            fw_version: None,
            online,
            changed_at: None,
            info: if offer {
                InfoReport::Pending(OtaInfo {
                    job_id: format!("J{i}"),
                    fw_version: "2.0.0".into(),
                })
            } else {
                InfoReport::Empty
            },
            ota_text: None,
        };
        self.core
            .node_reports(A, vec![rep], false, self.now, Via::Mqtt, self.now);
        self.effects();
    }

    /// Performs the store writes, acknowledges every start at once (as a
    /// broker would) and remembers who got one.
    fn effects(&mut self) {
        loop {
            let fx = self.core.take();
            if fx.is_empty() {
                return;
            }
            for e in fx {
                match e {
                    Effect::SaveJob(j) => self.store.save_job(&j, true).expect("save job"),
                    Effect::SaveNode(n) => self.store.save_node(&n, self.now).expect("node"),
                    Effect::Send { job, .. } => {
                        self.sent.push(job.node_id.clone());
                        self.core.command_done(job.id, Ok(()), self.now);
                    }
                    _ => {}
                }
            }
        }
    }

    fn step(&mut self) {
        self.core.tick(self.now);
        self.core.rollout_step(&mut self.store, self.now);
        self.effects();
    }

    fn advance(&mut self, ms: Millis) {
        self.now += ms;
        self.step();
    }

    fn start(&mut self, plan: RolloutPlan) -> crate::rollout::Rollout {
        let r = self
            .core
            .start_rollout(plan, &mut self.store, self.now)
            .expect("rollout starts");
        self.effects();
        r
    }

    fn status(&mut self, i: usize, status: &str, text: &str) {
        let f = StatusFact {
            account: A.into(),
            node_id: node(i),
            job_id: format!("J{i}"),
            status: status.into(),
            text: text.into(),
            ts: self.now,
            via: Via::Mqtt,
        };
        self.core.ota_status(f, self.now);
        self.effects();
    }

    /// The device installs, restarts and comes back on 2.0.0.
    fn updates(&mut self, i: usize) {
        self.status(i, "in-progress", "Downloading Firmware Image");
        self.report(i, Some(true), Some("2.0.0"), false);
        self.status(
            i,
            "success",
            "OTA Upgrade finished and verified successfully",
        );
        self.step();
    }

    fn rollout(&self) -> crate::rollout::Rollout {
        self.core
            .rollouts(&self.store)
            .expect("rollouts")
            .into_iter()
            .next()
            .expect("a rollout")
    }

    fn member(&self, i: usize) -> MemberState {
        self.rollout()
            .members
            .into_iter()
            .find(|m| m.node_id == node(i))
            .expect("member")
            .state
    }

    fn in_flight(&self) -> usize {
        self.rollout()
            .members
            .iter()
            .filter(|m| m.state.in_flight())
            .count()
    }
}

fn plan(batch: u32) -> RolloutPlan {
    RolloutPlan {
        batch,
        soak_secs: SOAK,
        ..RolloutPlan::default()
    }
}

#[test]
fn the_canary_soaks_then_the_rest_go_a_batch_at_a_time() {
    let mut r = rig(5);
    r.start(plan(2));
    assert_eq!(r.sent, vec![node(1)], "only the canary is approved");
    r.updates(1);
    assert!(
        matches!(r.member(1), MemberState::Soaking { until: Some(u), .. } if u == r.now + i64::from(SOAK) * S)
    );
    // Updated is not enough: it must stay up for the soak time.
    r.advance(i64::from(SOAK) * S - 1);
    assert_eq!(r.sent.len(), 1, "{:?}", r.rollout().headline);
    assert!(
        r.rollout().headline.contains("must stay online"),
        "{}",
        r.rollout().headline
    );
    r.advance(1);
    assert_eq!(r.member(1), MemberState::Updated);
    assert_eq!(r.sent, vec![node(1), node(2), node(3)]);
    assert_eq!(r.in_flight(), 2);
    // One of the batch done: the next batch still waits for the other.
    r.updates(2);
    r.advance(i64::from(SOAK) * S);
    assert_eq!(r.sent.len(), 3);
    r.updates(3);
    r.advance(i64::from(SOAK) * S);
    assert_eq!(r.sent, vec![node(1), node(2), node(3), node(4), node(5)]);
    r.updates(4);
    r.updates(5);
    r.advance(i64::from(SOAK) * S);
    let done = r.rollout();
    assert_eq!(done.state, RolloutState::Done, "{}", done.headline);
    assert!(done.succeeded());
    assert_eq!(done.headline, "Done: 5 updated");
    assert!(r.core.rollout.is_none(), "a new rollout may start");
}

#[test]
fn a_failing_canary_stops_everything() {
    let mut r = rig(4);
    r.start(plan(3));
    r.status(1, "failed", "OTA Attempt 3/3 failed: ESP_ERR_HTTP_CONNECT");
    r.step();
    let ro = r.rollout();
    match &ro.state {
        RolloutState::Stopped {
            node_id, reason, ..
        } => {
            assert_eq!(node_id, &node(1));
            assert!(reason.contains("Plug 1 failed"), "{reason}");
        }
        s => panic!("not stopped: {s:?}"),
    }
    assert!(
        ro.headline.starts_with("Stopped: Plug 1 failed"),
        "{}",
        ro.headline
    );
    for _ in 0..10 {
        r.advance(3600 * S);
    }
    assert_eq!(r.sent, vec![node(1)], "nothing else is approved");
    // Resumed: the failed one stays failed, the next one is a canary of its own.
    r.core
        .rollout_action(None, RolloutAction::Resume, &mut r.store, r.now)
        .unwrap();
    r.effects();
    assert_eq!(r.sent, vec![node(1), node(2)]);
    assert!(matches!(r.member(1), MemberState::Failed { .. }));
}

#[test]
fn a_failed_device_that_fetches_again_and_updates_is_followed_not_approved_again() {
    let mut r = rig(3);
    r.start(plan(2));
    r.status(1, "failed", "OTA Attempt 3/3 failed: ESP_ERR_HTTP_CONNECT");
    r.step();
    assert!(matches!(r.rollout().state, RolloutState::Stopped { .. }));
    assert!(matches!(r.member(1), MemberState::Failed { .. }));
    // About 5 minutes later the firmware asks for the same job again and
    // installs it this time (docs/rainmaker.md, "Attempts").
    r.advance(300 * S);
    r.status(1, "in-progress", "Starting OTA Upgrade (HTTPS attempt 1/3)");
    r.step();
    assert_eq!(r.member(1), MemberState::Running);
    r.updates(1);
    r.advance(i64::from(SOAK) * S + S);
    assert_eq!(r.member(1), MemberState::Updated);
    // The stop stands until the user resumes; retry-failed finds nothing
    // to approve again.
    assert!(matches!(r.rollout().state, RolloutState::Stopped { .. }));
    assert_eq!(r.sent, vec![node(1)], "approved once, nothing else");
    let _ = r
        .core
        .rollout_action(None, RolloutAction::RetryFailed, &mut r.store, r.now);
    r.effects();
    assert_eq!(r.sent.first(), Some(&node(1)));
    assert_eq!(
        r.sent.iter().filter(|n| **n == node(1)).count(),
        1,
        "plug 1 is never approved twice"
    );
}

#[test]
fn retry_failed_approves_only_the_failed_one_first() {
    let mut r = rig(3);
    r.start(plan(2));
    r.status(1, "rejected", "Firmware rolled back");
    r.step();
    assert!(matches!(r.rollout().state, RolloutState::Stopped { .. }));
    // The device offers the image again (as it does after a rollback).
    r.report(1, Some(true), Some("1.0.0"), true);
    r.core
        .rollout_action(None, RolloutAction::RetryFailed, &mut r.store, r.now)
        .unwrap();
    r.effects();
    assert_eq!(
        r.sent,
        vec![node(1), node(1)],
        "the same device, approved again by the user"
    );
    let jobs: Vec<_> = r.store.history(&Default::default()).unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(r.rollout().state, RolloutState::Running);
}

#[test]
fn a_device_that_comes_back_on_its_old_version_while_watched_stops_the_rest() {
    let mut r = rig(4);
    r.start(plan(1));
    r.updates(1);
    r.advance(i64::from(SOAK) * S);
    assert_eq!(r.sent, vec![node(1), node(2)]);
    r.updates(2);
    r.advance(60 * S);
    // The new firmware crashes later; the bootloader goes back to 1.0.0.
    r.report(2, Some(true), Some("1.0.0"), false);
    r.step();
    // One report could be a stale record: it must last.
    assert_eq!(r.rollout().state, RolloutState::Running);
    r.advance(120 * S);
    match r.rollout().state {
        RolloutState::Stopped {
            node_id, reason, ..
        } => {
            assert_eq!(node_id, node(2));
            assert!(reason.contains("old firmware 1.0.0"), "{reason}");
        }
        s => panic!("{s:?}"),
    }
    r.advance(3 * 3600 * S);
    assert_eq!(r.sent.len(), 2);
}

#[test]
fn a_stale_old_version_that_is_corrected_does_not_stop_anything() {
    let mut r = rig(2);
    r.start(plan(1));
    r.updates(1);
    r.advance(10 * S);
    // A sweep with the cloud's record from before the update, then the truth.
    r.report(1, Some(true), Some("1.0.0"), false);
    r.step();
    r.advance(30 * S);
    r.report(1, Some(true), Some("2.0.0"), false);
    r.advance(i64::from(SOAK) * S);
    assert_eq!(r.rollout().state, RolloutState::Running);
    assert_eq!(r.member(1), MemberState::Updated);
    assert_eq!(r.sent, vec![node(1), node(2)]);
}

#[test]
fn an_offline_device_waits_without_holding_the_others() {
    let mut r = rig(4);
    r.report(2, Some(false), None, true);
    r.start(plan(2));
    r.updates(1);
    r.advance(i64::from(SOAK) * S);
    assert_eq!(r.sent, vec![node(1), node(3), node(4)]);
    r.updates(3);
    r.updates(4);
    r.advance(i64::from(SOAK) * S);
    assert_eq!(r.rollout().state, RolloutState::Running);
    assert!(
        r.rollout().headline.contains("1 offline device"),
        "{}",
        r.rollout().headline
    );
    r.report(2, Some(true), None, true);
    r.step();
    assert_eq!(r.sent.last(), Some(&node(2)));
    r.updates(2);
    r.advance(i64::from(SOAK) * S);
    assert_eq!(r.rollout().state, RolloutState::Done);
}

#[test]
fn a_window_holds_approvals_until_it_opens() {
    let mut r = rig(2);
    // T0 is 08:00 UTC on its day; the window opens at 09:00.
    let window = DailyWindow::parse("09:00-10:00", 0).unwrap();
    r.start(RolloutPlan {
        window: Some(window),
        ..plan(1)
    });
    assert!(r.sent.is_empty());
    assert!(
        r.rollout().headline.contains("09:00–10:00"),
        "{}",
        r.rollout().headline
    );
    let opens = window.opens_at(r.now).unwrap();
    r.advance(opens - r.now - 1);
    assert!(r.sent.is_empty());
    r.advance(1);
    assert_eq!(r.sent, vec![node(1)]);
}

#[test]
fn a_restart_resumes_where_it_was_without_a_second_approval() {
    let mut r = rig(3);
    r.start(plan(1));
    r.status(1, "in-progress", "Downloading Firmware Image");
    // The program stops; a new engine opens the same data directory.
    let mut fresh = core();
    fresh.load(&mut r.store, r.now).unwrap();
    r.core = fresh;
    r.report(1, Some(true), Some("1.0.0"), false);
    r.report(2, Some(true), Some("1.0.0"), true);
    r.report(3, Some(true), Some("1.0.0"), true);
    r.step();
    assert_eq!(
        r.sent,
        vec![node(1)],
        "the canary is followed, not approved again"
    );
    assert_eq!(r.member(1), MemberState::Running);
    r.updates(1);
    r.advance(i64::from(SOAK) * S);
    assert_eq!(r.sent, vec![node(1), node(2)]);
}

#[test]
fn a_crash_between_marking_and_recording_leaves_no_double_approval() {
    let mut r = rig(2);
    r.start(plan(1));
    // As if the process died after the intent was recorded but before the
    // member's job was written: the record says "releasing".
    let mut ro = r.rollout();
    ro.members[0].state = MemberState::Releasing { at: r.now };
    ro.members[0].job_id = None;
    r.store
        .save_rollout(ro.id, rollout::KIND, &ro, true, r.now)
        .unwrap();
    let mut fresh = core();
    fresh.load(&mut r.store, r.now).unwrap();
    r.core = fresh;
    r.report(1, Some(true), Some("1.0.0"), false);
    r.report(2, Some(true), Some("1.0.0"), true);
    r.step();
    let m = &r.rollout().members[0];
    assert_eq!(m.state, MemberState::Running, "{m:?}");
    assert!(m.job_id.is_some());
    assert_eq!(r.sent, vec![node(1)]);
    assert_eq!(r.store.history(&Default::default()).unwrap().len(), 1);
}

#[test]
fn only_one_rollout_at_a_time_and_a_plan_must_name_something() {
    let mut r = rig(2);
    r.start(plan(1));
    let again = r.core.start_rollout(plan(1), &mut r.store, r.now);
    assert!(again.unwrap_err().to_string().contains("already running"));
    let mut empty = rig(0);
    let e = empty
        .core
        .start_rollout(plan(1), &mut empty.store, empty.now);
    assert!(e.unwrap_err().to_string().contains("no update"));
}
