//! Noticing that the machine slept. When a laptop sleeps or the OS freezes
//! the process, MQTT sockets die without either side knowing and no sweep
//! runs; nothing tells a desktop process that it was frozen. So the
//! detector ticks and compares how far the wall clock ([`SystemTime`])
//! moved with how far the monotonic clock moved: the monotonic clock stops
//! while Linux (and Android) or macOS are suspended, the wall clock does
//! not, and a gap over a threshold means "we were asleep". Whoever owns the
//! engine then calls [`crate::EngineHandle::resumed`].
//!
//! Limits, said plainly: on Windows the monotonic clock counts suspended
//! time, so this never fires there (a resume is then noticed when the
//! keep-alive fails and the next sweep runs, as before); a wall clock set
//! forward by hand or by NTP looks like a sleep, which costs one extra
//! sweep. Phones tell the app directly (Tauri's `RunEvent::Resumed`).

use std::time::{Duration, Instant, SystemTime};

/// How often the detector looks at the clocks.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(15);

/// How much wall-clock time must have passed unseen by the monotonic clock
/// to count as a sleep: well above the scheduling delays of a busy machine.
pub const DEFAULT_THRESHOLD: Duration = Duration::from_secs(60);

/// The two clocks the detector compares, injectable so a test can simulate
/// a sleep without sleeping.
pub trait ResumeClocks: Send + 'static {
    /// The wall clock, which keeps moving while the machine sleeps.
    fn wall(&self) -> SystemTime;
    /// A monotonic reading (from any fixed origin), which does not move
    /// while the machine sleeps.
    fn monotonic(&self) -> Duration;
}

/// The system's clocks.
#[derive(Debug, Clone, Copy)]
pub struct SystemClocks {
    origin: Instant,
}

impl Default for SystemClocks {
    fn default() -> Self {
        SystemClocks {
            origin: Instant::now(),
        }
    }
}

impl ResumeClocks for SystemClocks {
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// Detects a sleep from the gap between the wall and the monotonic clock.
#[derive(Debug)]
pub struct ResumeDetector<C: ResumeClocks = SystemClocks> {
    clocks: C,
    every: Duration,
    threshold: Duration,
    /// The previous reading (the first is taken at creation).
    last: (SystemTime, Duration),
}

impl Default for ResumeDetector<SystemClocks> {
    fn default() -> Self {
        ResumeDetector::with_clocks(SystemClocks::default(), DEFAULT_EVERY, DEFAULT_THRESHOLD)
    }
}

impl ResumeDetector<SystemClocks> {
    /// A detector on the system's clocks, ticking every [`DEFAULT_EVERY`],
    /// firing past [`DEFAULT_THRESHOLD`].
    pub fn new() -> Self {
        Self::default()
    }
}

impl<C: ResumeClocks> ResumeDetector<C> {
    /// A detector on `clocks`, looking every `every`, firing when more than
    /// `threshold` of wall-clock time passed unseen by the monotonic clock.
    pub fn with_clocks(clocks: C, every: Duration, threshold: Duration) -> Self {
        let last = (clocks.wall(), clocks.monotonic());
        ResumeDetector {
            clocks,
            every,
            threshold,
            last,
        }
    }

    /// Reads both clocks; `Some(how long we slept, roughly)` when the wall
    /// clock moved more than the threshold beyond the monotonic clock since
    /// the previous reading (or the detector's creation).
    pub fn check(&mut self) -> Option<Duration> {
        let now = (self.clocks.wall(), self.clocks.monotonic());
        let prev = std::mem::replace(&mut self.last, now);
        // A wall clock set back gives an error here: not a sleep.
        let wall = now.0.duration_since(prev.0).ok()?;
        let mono = now.1.saturating_sub(prev.1);
        let gap = wall.saturating_sub(mono);
        (gap > self.threshold).then_some(gap)
    }

    /// Ticks forever, calling `on_resume` with the gap each time a sleep is
    /// detected. Run it in a task of its own and abort that to stop.
    pub async fn run(mut self, mut on_resume: impl FnMut(Duration)) {
        let mut tick = tokio::time::interval(self.every);
        // After a sleep one tick is enough; a burst of missed ones is not.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(gap) = self.check() {
                tracing::info!(slept = ?gap, "the machine slept; catching up");
                on_resume(gap);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Clocks a test moves by hand.
    #[derive(Clone)]
    struct Fake(Arc<Mutex<(SystemTime, Duration)>>);

    impl Fake {
        fn new() -> Fake {
            Fake(Arc::new(Mutex::new((
                SystemTime::UNIX_EPOCH,
                Duration::ZERO,
            ))))
        }
        /// The wall clock moves `wall`, the monotonic one `mono`.
        fn pass(&self, wall: Duration, mono: Duration) {
            let mut t = self.0.lock().unwrap();
            t.0 += wall;
            t.1 += mono;
        }
        fn set_wall_back(&self, by: Duration) {
            let mut t = self.0.lock().unwrap();
            t.0 -= by;
        }
    }

    impl ResumeClocks for Fake {
        fn wall(&self) -> SystemTime {
            self.0.lock().unwrap().0
        }
        fn monotonic(&self) -> Duration {
            self.0.lock().unwrap().1
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_sleep_is_told_and_ordinary_ticks_are_not() {
        let clocks = Fake::new();
        let mut d = ResumeDetector::with_clocks(clocks.clone(), 15 * S, 60 * S);
        assert_eq!(d.check(), None, "no time passed");
        // Awake: both clocks move together, even with a late tick.
        clocks.pass(15 * S, 15 * S);
        assert_eq!(d.check(), None);
        clocks.pass(50 * S, 45 * S);
        assert_eq!(d.check(), None, "a busy machine's delay is not a sleep");
        // Asleep for an hour between two ticks.
        clocks.pass(3600 * S + 15 * S, 15 * S);
        assert_eq!(d.check(), Some(3600 * S));
        // Told once: the next ordinary tick is quiet again.
        clocks.pass(15 * S, 15 * S);
        assert_eq!(d.check(), None);
    }

    #[test]
    fn a_wall_clock_set_back_is_not_a_sleep() {
        let clocks = Fake::new();
        clocks.pass(10_000 * S, Duration::ZERO);
        let mut d = ResumeDetector::with_clocks(clocks.clone(), 15 * S, 60 * S);
        clocks.set_wall_back(3600 * S);
        clocks.pass(15 * S, 15 * S);
        assert_eq!(d.check(), None);
    }

    #[tokio::test]
    async fn the_running_detector_calls_back_after_a_sleep() {
        let clocks = Fake::new();
        let d = ResumeDetector::with_clocks(clocks.clone(), Duration::from_millis(5), 60 * S);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(d.run(move |gap| {
            let _ = tx.send(gap);
        }));
        // The machine "sleeps" for two hours; the monotonic clock stands.
        clocks.pass(7200 * S, Duration::ZERO);
        let gap = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("the detector fires")
            .expect("the detector runs");
        assert_eq!(gap, 7200 * S);
        task.abort();
    }
}
