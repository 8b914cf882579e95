//! Rotation schedules: DISABLED, DAILY, WEEKLY, MONTHLY or YEARLY. A rotation is due
//! when the current KEK is a whole period old; months and years are calendar months
//! and years (UTC), so a KEK made on 31 January is due on 28 or 29 February.

/// How often an organisation's KEK rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Never on its own; only "change key now".
    Disabled,
    /// Every 24 hours.
    Daily,
    /// Every 7 days.
    Weekly,
    /// Every calendar month.
    Monthly,
    /// Every calendar year.
    Yearly,
}

impl Period {
    /// Every period, in order.
    pub const ALL: [Period; 5] = [
        Self::Disabled,
        Self::Daily,
        Self::Weekly,
        Self::Monthly,
        Self::Yearly,
    ];

    /// The name used in the API and the catalogue.
    pub fn name(self) -> &'static str {
        match self {
            Self::Disabled => "DISABLED",
            Self::Daily => "DAILY",
            Self::Weekly => "WEEKLY",
            Self::Monthly => "MONTHLY",
            Self::Yearly => "YEARLY",
        }
    }

    /// Parses [`Period::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// When a KEK created at `from_ms` (Unix milliseconds) is due for rotation;
    /// `None` when rotation is disabled.
    pub fn next_due(self, from_ms: i64) -> Option<i64> {
        const DAY: i64 = 86_400_000;
        match self {
            Self::Disabled => None,
            Self::Daily => Some(from_ms.saturating_add(DAY)),
            Self::Weekly => Some(from_ms.saturating_add(7 * DAY)),
            Self::Monthly => Some(add_months(from_ms, 1)),
            Self::Yearly => Some(add_months(from_ms, 12)),
        }
    }

    /// Whether a KEK created at `from_ms` is due at `now_ms`.
    pub fn is_due(self, from_ms: i64, now_ms: i64) -> bool {
        self.next_due(from_ms).is_some_and(|due| now_ms >= due)
    }
}

/// Adds calendar months in UTC, clamping the day to the target month's length.
fn add_months(ms: i64, months: i64) -> i64 {
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
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day) of a day since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
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

    const DAY: i64 = 86_400_000;

    fn ms(y: i64, m: i64, d: i64) -> i64 {
        days_from_civil(y, m, d) * DAY
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
    fn periods_fall_due_on_the_right_day() {
        let jan31 = ms(2027, 1, 31) + 3_600_000;
        assert_eq!(
            Period::Monthly.next_due(jan31),
            Some(ms(2027, 2, 28) + 3_600_000)
        );
        assert_eq!(
            Period::Monthly.next_due(ms(2028, 1, 31)),
            Some(ms(2028, 2, 29))
        );
        assert_eq!(
            Period::Monthly.next_due(ms(2026, 12, 15)),
            Some(ms(2027, 1, 15))
        );
        assert_eq!(
            Period::Yearly.next_due(ms(2028, 2, 29)),
            Some(ms(2029, 2, 28))
        );
        assert_eq!(
            Period::Daily.next_due(ms(2026, 11, 28)),
            Some(ms(2026, 11, 29))
        );
        assert_eq!(
            Period::Weekly.next_due(ms(2026, 11, 28)),
            Some(ms(2026, 12, 5))
        );
        assert_eq!(Period::Disabled.next_due(0), None);
        assert!(Period::Weekly.is_due(ms(2026, 11, 1), ms(2026, 11, 8)));
        assert!(!Period::Weekly.is_due(ms(2026, 11, 1), ms(2026, 11, 8) - 1));
        assert!(!Period::Disabled.is_due(0, i64::MAX));
        for p in Period::ALL {
            assert_eq!(Period::from_name(p.name()), Some(p));
        }
        assert_eq!(Period::from_name("HOURLY"), None);
    }
}
