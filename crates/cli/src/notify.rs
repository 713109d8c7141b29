//! Desktop notifications from `greenlight watch`, when it owns the data
//! directory and no app is attached: the same rules as the app
//! (greenlight-core's [`Notifier`]: batching, told once, nothing while
//! paused or in quiet hours, both followed from the engine's events; a
//! Blynk campaign's end and a suspected reboot loop from the daemon's Blynk
//! tracker, by the same rules), shown
//! through the desktop's notification service (`notify-rust`: the
//! freedesktop interface over D-Bus on Linux and the BSDs, the platform's
//! own elsewhere).
//!
//! An app that attaches (it says so on the control socket) takes over: it
//! shows the notes itself, and the daemon keeps folding events (so nothing
//! is told twice when it leaves) but shows none until the app is gone. A
//! home server has no desktop: the first note that cannot be shown is
//! logged once, at info, and the daemon carries on.
//!
//! The showing is behind [`Sink`], so the rules around it (attached or not,
//! paused, the batch timer) are tested with a recording sink.

use std::sync::Arc;
use std::time::Duration;

use greenlight_core::blynk::BlynkEvent;
use greenlight_core::{
    Clock, EngineHandle, Event, Note, Notifier, PendingUpdate, QuietHours, SystemClock,
};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// How often an open batch of new updates is checked for closing.
const TICK: Duration = Duration::from_millis(500);

/// Where notes go. `show` must not block: the desktop's sink hands them to
/// a thread of its own.
pub trait Sink: Send + 'static {
    /// Shows one note (or tries to).
    fn show(&mut self, note: Note);
}

/// The desktop's notification service, called from a thread of its own (a
/// slow or missing bus never holds up the daemon).
pub struct Desktop {
    tx: Option<std::sync::mpsc::Sender<Note>>,
}

/// The desktop's notification service as a [`Sink`].
pub fn desktop() -> Desktop {
    let (tx, rx) = std::sync::mpsc::channel::<Note>();
    let started = std::thread::Builder::new()
        .name("greenlight-notifications".into())
        .spawn(move || {
            let mut failing = false;
            for note in rx {
                match show_on_desktop(&note) {
                    Ok(()) => {
                        if failing {
                            tracing::info!("desktop notifications work again");
                        }
                        failing = false;
                    }
                    Err(e) if !failing => {
                        failing = true;
                        tracing::info!(
                            error = %e,
                            "desktop notifications are not available (no session bus or notification service); carrying on without them"
                        );
                    }
                    Err(e) => tracing::debug!(error = %e, title = %note.title, "not shown"),
                }
            }
        });
    if let Err(e) = &started {
        tracing::warn!(error = %e, "no desktop notifications: their thread did not start");
    }
    Desktop {
        tx: started.ok().map(|_| tx),
    }
}

fn show_on_desktop(note: &Note) -> Result<(), String> {
    notify_rust::Notification::new()
        .appname("Greenlight")
        .summary(&note.title)
        .body(&note.body)
        .show()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl Sink for Desktop {
    fn show(&mut self, note: Note) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(note);
        }
    }
}

/// The settings the notifier starts from (later changes arrive as events).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Notifications paused.
    pub paused: bool,
    /// Quiet hours, if any.
    pub quiet_hours: Option<QuietHours>,
    /// The updates already waiting (remembered from the last run): told
    /// then, not news now.
    pub known: Vec<PendingUpdate>,
}

/// Starts showing `engine`'s notes, and those of the Blynk tracker's
/// events in `blynk` (when it runs), while `apps` (the owner's count of
/// attached apps) is 0. Stops when the engine does.
pub fn spawn(
    engine: EngineHandle,
    blynk: Option<broadcast::Receiver<BlynkEvent>>,
    apps: watch::Receiver<usize>,
    sink: impl Sink,
) -> JoinHandle<()> {
    // Subscribed before the settings are read: a change in between is
    // heard, not lost.
    let events = engine.subscribe();
    tokio::spawn(async move {
        let start = Settings {
            paused: engine.notifications_paused().await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not read whether notifications are paused");
                false
            }),
            quiet_hours: engine.policies().await.ok().and_then(|p| p.quiet_hours),
            known: engine.pending().await.unwrap_or_default(),
        };
        // The events are enough from here; a handle would keep the engine.
        drop(engine);
        run(
            events,
            blynk,
            start,
            apps,
            Arc::new(SystemClock::default()),
            sink,
        )
        .await;
    })
}

/// Folds every event (the engine's, and the Blynk tracker's when there is
/// one) into the notifier and shows its notes in `sink` while no app is
/// attached; closes batches on a timer. Returns when the engine's events
/// end (a Blynk tracker that stops first only ends its part).
pub async fn run(
    mut events: broadcast::Receiver<Event>,
    mut blynk: Option<broadcast::Receiver<BlynkEvent>>,
    start: Settings,
    mut apps: watch::Receiver<usize>,
    clock: Arc<dyn Clock>,
    mut sink: impl Sink,
) {
    let paused = start.paused;
    let mut glue = Glue::new(start);
    let mut attached = *apps.borrow_and_update();
    tracing::info!(
        paused,
        "desktop notifications: shown here while no app is attached"
    );
    if attached > 0 {
        tracing::info!("an app is attached: it shows the notifications");
    }
    let mut apps_open = true;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let notes = tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => glue.on_event(&ev, clock.now()),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "notifications: events skipped");
                    vec![]
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            ev = next_blynk(&mut blynk) => match ev {
                Ok(ev) => glue.on_blynk(&ev, clock.now()),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "notifications: Blynk events skipped");
                    vec![]
                }
                Err(broadcast::error::RecvError::Closed) => {
                    // The tracker stopped; the engine's notes go on.
                    blynk = None;
                    vec![]
                }
            },
            _ = tick.tick() => glue.on_tick(clock.now()),
            changed = apps.changed(), if apps_open => {
                if changed.is_err() {
                    // The ownership is gone: the daemon is stopping.
                    apps_open = false;
                } else {
                    let now = *apps.borrow_and_update();
                    if attached == 0 && now > 0 {
                        tracing::info!("an app is attached: it shows the notifications");
                    } else if attached > 0 && now == 0 {
                        tracing::info!("no app is attached: greenlight watch shows the notifications");
                    }
                    attached = now;
                }
                vec![]
            }
        };
        for note in notes {
            if attached > 0 {
                tracing::debug!(title = %note.title, "notification left to the attached app");
            } else {
                tracing::debug!(title = %note.title, body = %note.body, "notification");
                sink.show(note);
            }
        }
    }
}

/// The next Blynk event, or never when there is no tracker.
pub(crate) async fn next_blynk(
    rx: &mut Option<broadcast::Receiver<BlynkEvent>>,
) -> Result<BlynkEvent, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The notifier, with a word in the log for what it holds back.
struct Glue {
    notifier: Notifier,
}

impl Glue {
    fn new(start: Settings) -> Glue {
        Glue {
            notifier: {
                let mut n = Notifier::new(start.paused, start.quiet_hours);
                n.already_known(&start.known);
                n
            },
        }
    }

    fn on_event(&mut self, ev: &Event, now: greenlight_core::Millis) -> Vec<Note> {
        let held = self.notifier.held_back();
        let notes = self.notifier.on_event(ev, now);
        self.say_held(held);
        notes
    }

    fn on_blynk(&mut self, ev: &BlynkEvent, now: greenlight_core::Millis) -> Vec<Note> {
        let held = self.notifier.held_back();
        let notes = self.notifier.on_blynk(ev, now);
        self.say_held(held);
        notes
    }

    fn on_tick(&mut self, now: greenlight_core::Millis) -> Vec<Note> {
        let held = self.notifier.held_back();
        let notes = self.notifier.flush(now).into_iter().collect();
        self.say_held(held);
        notes
    }

    fn say_held(&self, before: u64) {
        let now = self.notifier.held_back();
        if now > before {
            tracing::debug!(
                count = now - before,
                paused = self.notifier.paused,
                "notifications held back (paused or quiet hours)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenlight_core::blynk::{Campaign, CampaignStatus, DeviceRecord, DeviceState, Target};
    use greenlight_core::{Known, PendingUpdate, UpdateKind, BATCH_WINDOW_MS};
    use tokio::sync::mpsc;
    use tokio::time::Instant;

    /// Notes, as shown.
    struct Recorder(mpsc::UnboundedSender<Note>);

    impl Sink for Recorder {
        fn show(&mut self, note: Note) {
            let _ = self.0.send(note);
        }
    }

    /// Tokio's (paused) time as the notifier's clock: batches close as the
    /// test's virtual time passes, never on the wall clock.
    struct TokioClock(Instant);

    impl Clock for TokioClock {
        fn now(&self) -> greenlight_core::Millis {
            1_700_000_000_000 + self.0.elapsed().as_millis() as i64
        }
    }

    fn pending(node: &str, version: &str) -> Event {
        Event::PendingAdded {
            pending: PendingUpdate {
                account: "home".into(),
                node_id: node.into(),
                node_name: Some(format!("Device {node}")),
                job_id: format!("job-{version}"),
                from_version: Some("1.0".into()),
                to_version: version.into(),
                release_note: None,
                size: None,
                kind: UpdateKind::NodeSide,
                first_seen: 0,
                snoozed_until: None,
                node_online: Some(true),
                node_known: Known::Live,
                node_last_seen: None,
                warning: None,
                remembered: None,
            },
        }
    }

    /// A Blynk campaign to `build` over every device, all updated.
    fn settled(id: i64, build: &str) -> BlynkEvent {
        let device = DeviceRecord {
            key: "alice@example.com/1/1".into(),
            name: "Greenhouse".into(),
            owner: "alice@example.com".into(),
            project: "Garden".into(),
            token_hint: "abcd…".into(),
            board: None,
            build_before: Some("Jan  1 2020 00:00:00".into()),
            build_now: Some(build.into()),
            online: true,
            state: DeviceState::Updated,
            sends: 1,
            failed_reconnects: 0,
            changed_at: 0,
            seen_at: 0,
            marks: Default::default(),
        };
        BlynkEvent::CampaignSettled {
            campaign: Campaign {
                id,
                account: "home".into(),
                target: Target::All,
                build: build.into(),
                file_name: "fw.bin".into(),
                size: 1,
                sha256: String::new(),
                server_path: None,
                status: CampaignStatus::Completed,
                loop_after: 3,
                started_by: "me".into(),
                created_at: 0,
                started_at: None,
                updated_at: 0,
                finished_at: None,
                settled_at: None,
                withdrawn_at: None,
                devices: vec![device],
            },
        }
    }

    /// The harness: the glue running on a channel of events (the engine's
    /// and the Blynk tracker's), an app count and a recording sink.
    struct Harness {
        events: broadcast::Sender<Event>,
        blynk: broadcast::Sender<BlynkEvent>,
        apps: watch::Sender<usize>,
        shown: mpsc::UnboundedReceiver<Note>,
        task: JoinHandle<()>,
    }

    impl Harness {
        fn start(start: Settings) -> Harness {
            let (events, rx) = broadcast::channel(64);
            let (blynk, blynk_rx) = broadcast::channel(64);
            let (apps, apps_rx) = watch::channel(0);
            let (tx, shown) = mpsc::unbounded_channel();
            let clock = Arc::new(TokioClock(Instant::now()));
            let task = tokio::spawn(run(rx, Some(blynk_rx), start, apps_rx, clock, Recorder(tx)));
            Harness {
                events,
                blynk,
                apps,
                shown,
                task,
            }
        }

        fn send(&self, ev: Event) {
            self.events.send(ev).expect("the glue listens");
        }

        fn send_blynk(&self, ev: BlynkEvent) {
            self.blynk.send(ev).expect("the glue listens");
        }

        /// Lets the glue take in everything sent so far (the app count
        /// included) before the test goes on: a millisecond of virtual
        /// time passes only once every task is idle.
        async fn settle(&self) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }

        /// Lets more than a batch window of (virtual) time pass: every
        /// batch open now is closed, shown or dropped.
        async fn close_the_batch(&self) {
            tokio::time::sleep(Duration::from_millis(BATCH_WINDOW_MS as u64) + TICK * 2).await;
        }

        async fn next(&mut self) -> Note {
            tokio::time::timeout(Duration::from_secs(60), self.shown.recv())
                .await
                .expect("a note within a minute of virtual time")
                .expect("the glue runs")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn several_new_updates_are_one_note_while_no_app_is_attached() {
        let mut h = Harness::start(Settings::default());
        for n in ["a", "b", "c"] {
            h.send(pending(n, "2.0"));
        }
        let note = h.next().await;
        assert_eq!(note.title, "3 firmware updates are waiting");
        assert_eq!(note.body, "Device a → 2.0, Device b → 2.0, Device c → 2.0");
        // The same updates again are not news.
        for n in ["a", "b", "c"] {
            h.send(pending(n, "2.0"));
        }
        h.send(pending("d", "2.0"));
        let note = h.next().await;
        assert_eq!(note.body, "Device d → 2.0", "only the new one");
        h.task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_shown_while_paused_or_while_an_app_is_attached() {
        let mut h = Harness::start(Settings {
            paused: true,
            ..Settings::default()
        });
        h.send(pending("a", "2.0"));
        h.close_the_batch().await;
        // Resumed from elsewhere (the app, `greenlight notifications`).
        h.send(Event::NotificationsPaused { paused: false });
        h.send(pending("b", "2.0"));
        assert_eq!(
            h.next().await.body,
            "Device b → 2.0",
            "what came while paused was dropped, not kept"
        );

        // An app attaches: it shows the notes, the daemon does not.
        h.apps.send_replace(1);
        h.send(pending("c", "2.0"));
        h.close_the_batch().await;
        // It leaves: the daemon shows them again (and "c" was told, by the app).
        h.apps.send_replace(0);
        h.send(pending("c", "2.0"));
        h.send(pending("d", "2.0"));
        assert_eq!(h.next().await.body, "Device d → 2.0");

        // Paused again, by an event.
        h.send(Event::NotificationsPaused { paused: true });
        h.send(pending("e", "2.0"));
        h.close_the_batch().await;
        h.send(Event::NotificationsPaused { paused: false });
        h.send(pending("f", "2.0"));
        assert_eq!(h.next().await.body, "Device f → 2.0");
        h.task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_blynk_campaign_end_is_shown_only_while_no_app_is_attached() {
        let mut h = Harness::start(Settings::default());
        h.send_blynk(settled(1, "Sep 21 2017 11:02:33"));
        let note = h.next().await;
        assert_eq!(note.title, "Blynk update to Sep 21 2017 11:02:33 finished");
        assert_eq!(note.body, "All 1 device(s) updated.");

        // An app attaches: it tells this one itself.
        h.apps.send_replace(1);
        h.settle().await;
        h.send_blynk(settled(2, "Oct  1 2017 09:00:00"));
        h.settle().await;
        // It leaves: the daemon tells the next one (and never the one the
        // app had).
        h.apps.send_replace(0);
        h.settle().await;
        h.send_blynk(settled(3, "Nov  2 2017 10:00:00"));
        assert_eq!(
            h.next().await.title,
            "Blynk update to Nov  2 2017 10:00:00 finished",
            "the end that came while the app was attached was not shown here"
        );

        // Paused: held back like the engine's notes.
        h.send(Event::NotificationsPaused { paused: true });
        h.settle().await;
        h.send_blynk(settled(4, "Dec  3 2017 10:00:00"));
        h.settle().await;
        h.send(Event::NotificationsPaused { paused: false });
        h.settle().await;
        h.send_blynk(settled(5, "Jan  4 2018 10:00:00"));
        assert_eq!(
            h.next().await.title,
            "Blynk update to Jan  4 2018 10:00:00 finished"
        );
        assert!(h.shown.try_recv().is_err(), "nothing else was shown");
        h.task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_hours_set_elsewhere_are_followed() {
        let mut h = Harness::start(Settings::default());
        // Quiet all day but the last minute: now is inside.
        h.send(Event::QuietHoursChanged {
            quiet_hours: Some(QuietHours {
                start_minute: 0,
                end_minute: 24 * 60 - 1,
                utc_offset_minutes: 0,
            }),
        });
        h.send(pending("a", "2.0"));
        h.close_the_batch().await;
        h.send(Event::QuietHoursChanged { quiet_hours: None });
        h.send(pending("b", "2.0"));
        assert_eq!(h.next().await.body, "Device b → 2.0");
        h.task.abort();
    }
}
