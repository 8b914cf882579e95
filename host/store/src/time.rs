//! Time and dates, in one place: Unix milliseconds as the catalogue records them, UTC
//! calendar arithmetic (proleptic Gregorian) for rotation schedules, and ISO 8601 text.

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix milliseconds (UTC).
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// Unix milliseconds of a UTC time written `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM`,
/// `YYYY-MM-DDTHH:MM:SS` or `YYYY-MM-DDTHH:MM:SS.mmm`, with an optional trailing `Z`
/// (a space may stand for the `T`); `None` for anything else.
pub fn parse_utc(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let number = |s: &str, len: usize| -> Option<i64> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let mut parts = date.split('-');
    let (y, m, d) = (
        number(parts.next()?, 4)?,
        number(parts.next()?, 2)?,
        number(parts.next()?, 2)?,
    );
    if parts.next().is_some() || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let mut ms = 0;
    if let Some(time) = time {
        let (hms, millis) = match time.split_once('.') {
            Some((hms, millis)) => (hms, number(millis, 3)?),
            None => (time, 0),
        };
        let mut fields = hms.split(':');
        let h = number(fields.next()?, 2)?;
        let min = number(fields.next()?, 2)?;
        let s = fields.next().map_or(Some(0), |s| number(s, 2))?;
        if fields.next().is_some() || h > 23 || min > 59 || s > 59 {
            return None;
        }
        ms = ((h * 60 + min) * 60 + s) * 1000 + millis;
    }
    Some(days_from_civil(y, m, d) * 86_400_000 + ms)
}

/// Adds calendar months in UTC, clamping the day to the target month's length.
pub(crate) fn add_months(ms: i64, months: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    let days = ms.div_euclid(DAY);
    let time_of_day = ms.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    let total = y * 12 + (m - 1) + months;
    let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) + 1);
    let nd = d.min(days_in_month(ny, nm));
    days_from_civil(ny, nm, nd)
        .saturating_mul(DAY)
        .saturating_add(time_of_day)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's days_from_civil: days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day) of a day since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_text_parses_back_to_the_milliseconds_it_was_written_from() {
        for ms in [0_u64, 1_764_460_800_000, 1_764_508_245_123, 951_782_400_000] {
            assert_eq!(parse_utc(&utc(ms)), Some(ms as i64));
        }
        assert_eq!(parse_utc("2026-11-30"), Some(1_795_996_800_000));
        assert_eq!(parse_utc("2026-11-30T13:05"), Some(1_796_043_900_000));
        assert_eq!(parse_utc("2026-11-30 13:05:00Z"), Some(1_796_043_900_000));
        for bad in [
            "",
            "2026",
            "2026-13-01",
            "2026-02-29",
            "2026-11-30T24:00",
            "2026-11-30T10",
            "2026-11-30T10:00:00.5",
            "26-11-30",
            "2026-11-30x",
            "+026-11-30",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn calendar_arithmetic_round_trips_and_knows_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn utc_text() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
    }
}
