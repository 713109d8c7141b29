//! Small pure policy rules: quiet hours, and which pending updates
//! approve-all leaves out.

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

#[cfg(test)]
mod tests {
    use super::*;

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
