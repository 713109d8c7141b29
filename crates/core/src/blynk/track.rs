//! Deriving each device's state in a campaign from what the admin API shows.
//!
//! The server keeps no progress: per device it only shows the latest login
//! (`connectTime`), the latest update URL sent (`deviceOtaInfo.otaUpdateAt`),
//! the build of the latest info message, and online or not. Polling these
//! and remembering a few timestamps between polls ([`Marks`]) is enough to
//! tell waiting, installing, updated, looping and offline apart. Server
//! timestamps are only compared with other server timestamps (its clock may
//! differ from ours); grace periods use our clock.
//!
//! Pure functions: no I/O, so every rule is unit-tested below.

use super::model::{DeviceRecord, DeviceSeen, DeviceState, Marks};
use crate::model::Millis;

/// What the fold needs to know about the campaign.
#[derive(Debug, Clone)]
pub struct Ctx<'a> {
    /// The campaign's build.
    pub build: &'a str,
    /// A campaign (re-sent on every login) rather than a one-time token send.
    pub campaign: bool,
    /// The server still holds it (not stopped or replaced).
    pub standing: bool,
    /// Logins on the old build after which a reboot loop is suspected.
    pub loop_after: u32,
    /// How long a device may stay "installing" without news.
    pub install_grace_ms: i64,
    /// Now (our clock).
    pub now: Millis,
}

/// The record of a device first seen at the start of a campaign.
pub fn baseline(seen: &DeviceSeen, ctx: &Ctx<'_>) -> DeviceRecord {
    let mut rec = DeviceRecord {
        key: seen.key.clone(),
        name: seen.name.clone(),
        owner: seen.owner.clone(),
        project: seen.project.clone(),
        token_hint: seen.token_hint.clone(),
        board: seen.board.clone(),
        build_before: seen.build.clone(),
        build_now: seen.build.clone(),
        online: seen.online,
        state: DeviceState::Waiting,
        sends: 0,
        failed_reconnects: 0,
        changed_at: ctx.now,
        seen_at: ctx.now,
        marks: Marks {
            baseline_connect: seen.connect_time,
            baseline_send: seen.ota_update_at,
            accounted_until: seen.connect_time,
            last_connect: seen.connect_time,
            ..Marks::default()
        },
    };
    observe(&mut rec, seen, ctx);
    rec
}

/// Folds one observation into a record. Returns true when anything shown
/// (state, build, online) changed.
pub fn observe(rec: &mut DeviceRecord, seen: &DeviceSeen, ctx: &Ctx<'_>) -> bool {
    let before = (rec.state.clone(), rec.build_now.clone(), rec.online);
    let m = &mut rec.marks;
    let mut progressed = seen.connect_time != m.last_connect;
    m.last_connect = seen.connect_time;

    // A new send: the first, or a re-send, which the server only does when
    // the device logged in again on another build after the previous one.
    if let Some(s) = seen
        .ota_update_at
        .filter(|s| m.baseline_send.is_none_or(|b| *s > b))
    {
        match m.last_send {
            None => {
                m.first_send = Some(s);
                m.last_send = Some(s);
                rec.sends = 1;
                progressed = true;
            }
            Some(l) if s > l => {
                if m.accounted_until <= l {
                    rec.failed_reconnects += 1;
                }
                m.accounted_until = m.accounted_until.max(s);
                m.last_send = Some(s);
                rec.sends += 1;
                progressed = true;
            }
            _ => {}
        }
    }

    let on_build = seen.build.as_deref() == Some(ctx.build);
    // Whether the build shown is this session's: the login's own info is in
    // (a later message, or the session over). Until then the build shown is
    // the previous session's and says nothing about the update.
    let info_in = !seen.online || seen.data_received_at > seen.connect_time;
    // A login after a send that still shows the old build is a failed
    // attempt, counted once its info is in.
    if let Some(first) = m.first_send {
        if !on_build
            && seen.connect_time > first
            && seen.connect_time > m.accounted_until
            && info_in
        {
            rec.failed_reconnects += 1;
            m.accounted_until = seen.connect_time;
        }
    }

    let sent = m.last_send;
    let ended = "the campaign ended before the device got the update";
    let state = if on_build {
        DeviceState::Updated
    } else if ctx.campaign && rec.failed_reconnects >= ctx.loop_after.max(1) {
        if ctx.standing {
            DeviceState::Looping {
                reconnects: rec.failed_reconnects,
            }
        } else {
            DeviceState::NotUpdated {
                reason: format!(
                    "came back on its old build {} times (suspected reboot loop) before the campaign ended",
                    rec.failed_reconnects
                ),
            }
        }
    } else if !ctx.campaign && rec.failed_reconnects >= 1 {
        DeviceState::NotUpdated {
            reason: "came back on its old build; an update for one token is sent only once".into(),
        }
    } else if seen.build.is_none() && ctx.campaign && sent.is_none() {
        DeviceState::NoBuild
    } else if let Some(s) = sent {
        if seen.online && seen.connect_time > s && info_in && !(ctx.campaign && ctx.standing) {
            // Back after the send, old build, and nothing will re-send it.
            DeviceState::NotUpdated {
                reason: if ctx.campaign {
                    "came back on its old build after the campaign ended".into()
                } else {
                    "came back on its old build".into()
                },
            }
        } else {
            DeviceState::Installing
        }
    } else if !ctx.standing {
        DeviceState::NotUpdated {
            reason: ended.into(),
        }
    } else if seen.online {
        DeviceState::Waiting
    } else {
        DeviceState::Offline
    };

    // "Installing" needs news now and then: a device that stays away (or
    // ignores the URL) for longer than the grace is no longer installing.
    let state = if state == DeviceState::Installing {
        if progressed {
            m.installing_since = Some(ctx.now);
        }
        let since = *m.installing_since.get_or_insert(ctx.now);
        if ctx.now - since < ctx.install_grace_ms {
            state
        } else if seen.online {
            DeviceState::NotUpdated {
                reason:
                    "was sent the update but did not install it (is OTA enabled in the sketch?)"
                        .into(),
            }
        } else {
            DeviceState::Offline
        }
    } else {
        m.installing_since = None;
        state
    };

    rec.name = seen.name.clone();
    rec.owner = seen.owner.clone();
    rec.project = seen.project.clone();
    rec.board = seen.board.clone().or(rec.board.take());
    rec.build_now = seen.build.clone();
    rec.online = seen.online;
    rec.seen_at = ctx.now;
    if rec.state != state {
        rec.state = state;
        rec.changed_at = ctx.now;
    }
    before != (rec.state.clone(), rec.build_now.clone(), rec.online)
}

/// What becomes of a record whose campaign ended (stopped, replaced) while
/// it was still waiting: it will not get this update.
pub fn end(rec: &mut DeviceRecord, now: Millis) -> bool {
    if matches!(rec.state, DeviceState::Waiting | DeviceState::Offline) && rec.sends == 0 {
        rec.state = DeviceState::NotUpdated {
            reason: "the campaign ended before the device got the update".into(),
        };
        rec.changed_at = now;
        return true;
    }
    if let DeviceState::Looping { reconnects } = rec.state {
        rec.state = DeviceState::NotUpdated {
            reason: format!(
                "came back on its old build {reconnects} times (suspected reboot loop) before the campaign ended"
            ),
        };
        rec.changed_at = now;
        return true;
    }
    false
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A build a device runs before the update, and the update's.
    pub(in crate::blynk) const OLD: &str = "Aug 14 2017 20:31:49";
    pub(in crate::blynk) const NEW: &str = "Sep 21 2017 11:02:33";

    /// One device as a poll shows it (also the staged campaign's tests').
    pub(in crate::blynk) fn seen(
        online: bool,
        build: &str,
        connect: i64,
        sent: Option<i64>,
    ) -> DeviceSeen {
        DeviceSeen {
            key: "a@b/1/0".into(),
            owner: "a@b".into(),
            project: "Home".into(),
            name: "Lamp".into(),
            token_hint: "abcd…".into(),
            online,
            build: Some(build.into()),
            board: None,
            library: None,
            connect_time: connect,
            disconnect_time: 0,
            data_received_at: connect + 1,
            ota_update_at: sent,
        }
    }

    fn ctx(now: Millis) -> Ctx<'static> {
        Ctx {
            build: NEW,
            campaign: true,
            standing: true,
            loop_after: 3,
            install_grace_ms: 60_000,
            now,
        }
    }

    #[test]
    fn campaign_waiting_installing_updated() {
        let mut r = baseline(&seen(true, OLD, 100, None), &ctx(0));
        assert_eq!(r.state, DeviceState::Waiting);
        // Logs in again, gets the URL.
        observe(&mut r, &seen(true, OLD, 200, Some(201)), &ctx(1));
        assert_eq!(r.state, DeviceState::Installing);
        observe(&mut r, &seen(false, OLD, 200, Some(201)), &ctx(2));
        assert_eq!(r.state, DeviceState::Installing);
        observe(&mut r, &seen(true, NEW, 300, Some(201)), &ctx(3));
        assert_eq!(r.state, DeviceState::Updated);
        assert_eq!((r.sends, r.failed_reconnects), (1, 0));
        assert_eq!(r.build_before.as_deref(), Some(OLD));
    }

    #[test]
    fn builds_compare_as_plain_strings() {
        // Not trimmed, not parsed as dates: one space more is another build.
        let r = baseline(&seen(true, "Sep 21 2017  11:02:33", 1, None), &ctx(0));
        assert_eq!(r.state, DeviceState::Waiting);
        let r = baseline(&seen(true, NEW, 1, None), &ctx(0));
        assert_eq!(r.state, DeviceState::Updated);
    }

    #[test]
    fn re_sends_on_the_old_build_are_a_reboot_loop() {
        let mut r = baseline(&seen(true, OLD, 100, None), &ctx(0));
        let mut t = 200;
        for i in 0..4 {
            observe(&mut r, &seen(true, OLD, t, Some(t + 1)), &ctx(i));
            t += 100;
        }
        assert_eq!(r.failed_reconnects, 3);
        assert_eq!(r.state, DeviceState::Looping { reconnects: 3 });
        assert!(r.state.words().contains("reboot loop"));
        // Seeing the same login twice counts it once.
        observe(&mut r, &seen(true, OLD, t - 100, Some(t - 99)), &ctx(9));
        assert_eq!(r.failed_reconnects, 3);
        // Stopping turns the loop into "not updated".
        assert!(end(&mut r, 10));
        assert!(matches!(r.state, DeviceState::NotUpdated { .. }));
    }

    #[test]
    fn a_login_seen_before_its_send_is_counted_once() {
        let mut r = baseline(&seen(true, OLD, 100, None), &ctx(0));
        observe(&mut r, &seen(true, OLD, 200, Some(201)), &ctx(1));
        // Back on the old build, info in, the re-send not yet.
        observe(&mut r, &seen(true, OLD, 300, Some(201)), &ctx(2));
        assert_eq!(r.failed_reconnects, 1);
        observe(&mut r, &seen(true, OLD, 300, Some(301)), &ctx(3));
        assert_eq!(r.failed_reconnects, 1);
    }

    #[test]
    fn previous_sessions_build_is_not_a_failure() {
        let mut r = baseline(&seen(true, OLD, 100, None), &ctx(0));
        observe(&mut r, &seen(true, OLD, 200, Some(201)), &ctx(1));
        // Just logged in: dataReceivedAt == connectTime, the old info still shown.
        let mut s = seen(true, OLD, 300, Some(201));
        s.data_received_at = 300;
        observe(&mut r, &s, &ctx(2));
        assert_eq!(r.failed_reconnects, 0);
        observe(&mut r, &seen(true, NEW, 300, Some(201)), &ctx(3));
        assert_eq!(r.state, DeviceState::Updated);
    }

    #[test]
    fn token_login_before_its_info_is_not_yet_a_verdict() {
        let c = Ctx {
            campaign: false,
            ..ctx(0)
        };
        let mut r = baseline(&seen(true, OLD, 100, None), &c);
        observe(&mut r, &seen(true, OLD, 100, Some(150)), &c);
        // Logged in again, its info not in yet: the old build shown is the
        // previous session's (the flash may well have worked).
        let mut s = seen(true, OLD, 200, Some(150));
        s.data_received_at = 200;
        observe(&mut r, &s, &c);
        assert_eq!(r.state, DeviceState::Installing, "{r:?}");
        observe(&mut r, &seen(true, NEW, 200, Some(150)), &c);
        assert_eq!(r.state, DeviceState::Updated);
    }

    #[test]
    fn token_send_that_comes_back_old_is_not_updated() {
        let c = Ctx {
            campaign: false,
            ..ctx(0)
        };
        let mut r = baseline(&seen(true, OLD, 100, None), &c);
        assert_eq!(r.state, DeviceState::Waiting);
        observe(&mut r, &seen(true, OLD, 100, Some(150)), &c);
        assert_eq!(r.state, DeviceState::Installing);
        observe(&mut r, &seen(true, OLD, 200, Some(150)), &c);
        assert!(matches!(r.state, DeviceState::NotUpdated { .. }), "{r:?}");
    }

    #[test]
    fn offline_no_build_and_grace() {
        let r = baseline(&seen(false, OLD, 100, None), &ctx(0));
        assert_eq!(r.state, DeviceState::Offline);
        let mut s = seen(true, OLD, 100, None);
        s.build = None;
        assert_eq!(baseline(&s, &ctx(0)).state, DeviceState::NoBuild);
        // Sent, then away longer than the grace: offline.
        let mut r = baseline(&seen(true, OLD, 100, None), &ctx(0));
        observe(&mut r, &seen(false, OLD, 200, Some(201)), &ctx(1_000));
        assert_eq!(r.state, DeviceState::Installing);
        observe(&mut r, &seen(false, OLD, 200, Some(201)), &ctx(70_000));
        assert_eq!(r.state, DeviceState::Offline);
    }

    #[test]
    fn stopped_campaign_never_reaches_waiting_devices() {
        let mut r = baseline(&seen(true, OLD, 100, None), &ctx(0));
        let stopped = Ctx {
            standing: false,
            ..ctx(1)
        };
        observe(&mut r, &seen(true, OLD, 300, None), &stopped);
        assert!(matches!(r.state, DeviceState::NotUpdated { .. }));
    }
}
