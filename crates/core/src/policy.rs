//! Small pure policy rules: quiet hours (when they hold, and what a valid
//! window is), and which pending updates approve-all leaves out.

use crate::error::{Error, Result};
use crate::model::{Millis, QuietHours};

const DAY_MIN: i64 = 24 * 60;

/// If `now` is inside the quiet hours, when they end; otherwise `None`.
pub fn quiet_until(q: &QuietHours, now: Millis) -> Option<Millis> {
    let start = i64::from(q.start_minute) % DAY_MIN;
    let end = i64::from(q.end_minute) % DAY_MIN;
    if start == end {
        return None;
    }
    let local_ms = now + i64::from(q.utc_offset_minutes) * 60_000;
    let minute = local_ms.div_euclid(60_000).rem_euclid(DAY_MIN);
    let inside = if start < end {
        minute >= start && minute < end
    } else {
        minute >= start || minute < end
    };
    if !inside {
        return None;
    }
    let wait_min = (end - minute).rem_euclid(DAY_MIN);
    // Back to the start of the current minute, then forward to the end.
    let minute_start = now - local_ms.rem_euclid(60_000);
    Some(minute_start + wait_min * 60_000)
}

/// A time of day like `22:30`, as minutes after midnight.
pub fn parse_hhmm(s: &str) -> Result<u16> {
    let bad = || Error::Config(format!("{s:?} is not a time like 22:30"));
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// Quiet hours written `HH:MM-HH:MM`, in a zone `utc_offset_minutes` from UTC.
pub fn parse_quiet_hours(window: &str, utc_offset_minutes: i16) -> Result<QuietHours> {
    let (a, b) = window
        .split_once('-')
        .ok_or_else(|| Error::Config(format!("{window:?}: give quiet hours as HH:MM-HH:MM")))?;
    let q = QuietHours {
        start_minute: parse_hhmm(a)?,
        end_minute: parse_hhmm(b)?,
        utc_offset_minutes,
    };
    check_quiet_hours(&q)?;
    Ok(q)
}

/// Quiet hours that mean something: times of day, an offset a real zone
/// has (UTC-14:00 to UTC+14:00), and a start that differs from the end.
pub fn check_quiet_hours(q: &QuietHours) -> Result<()> {
    if i64::from(q.start_minute) >= DAY_MIN || i64::from(q.end_minute) >= DAY_MIN {
        return Err(Error::Config("quiet hours must be times of day".into()));
    }
    if q.utc_offset_minutes.abs() > 14 * 60 {
        return Err(Error::Config(
            "the time zone offset is not one a place has".into(),
        ));
    }
    if q.start_minute == q.end_minute {
        return Err(Error::Config(
            "quiet hours that start when they end are never on: turn them off instead".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_are_parsed_and_checked_in_one_place() {
        let q = parse_quiet_hours("22:30-07:00", 60).unwrap();
        assert_eq!(
            (q.start_minute, q.end_minute, q.utc_offset_minutes),
            (1350, 420, 60)
        );
        for bad in ["22:30", "25:00-07:00", "22:60-07:00", "x-y", "07:00-07:00"] {
            assert!(parse_quiet_hours(bad, 0).is_err(), "{bad:?}");
        }
        let far = QuietHours {
            start_minute: 0,
            end_minute: 60,
            utc_offset_minutes: 15 * 60,
        };
        assert!(check_quiet_hours(&far).is_err());
    }

    const H: i64 = 3_600_000;

    #[test]
    fn quiet_hours_inside_outside_and_across_midnight() {
        let q = QuietHours {
            start_minute: 22 * 60,
            end_minute: 7 * 60,
            utc_offset_minutes: 0,
        };
        let day = 20_000 * 24 * H; // a midnight UTC
        assert_eq!(quiet_until(&q, day + 12 * H), None);
        assert_eq!(quiet_until(&q, day + 23 * H), Some(day + 31 * H));
        assert_eq!(quiet_until(&q, day + 3 * H), Some(day + 7 * H));
        let q2 = QuietHours {
            start_minute: 9 * 60,
            end_minute: 10 * 60,
            utc_offset_minutes: 120,
        };
        // 07:30 UTC is 09:30 at +02:00: inside, ends 08:00 UTC.
        assert_eq!(quiet_until(&q2, day + 7 * H + H / 2), Some(day + 8 * H));
        assert_eq!(quiet_until(&q2, day + 9 * H), None);
        let never = QuietHours {
            start_minute: 5,
            end_minute: 5,
            utc_offset_minutes: 0,
        };
        assert_eq!(quiet_until(&never, day), None);
    }
}
