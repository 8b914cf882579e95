//! Rotation schedules: DISABLED, DAILY, WEEKLY, MONTHLY or YEARLY. A rotation is due
//! when the current KEK is a whole period old; months and years are calendar months
//! and years (UTC), so a KEK made on 31 January is due on 28 or 29 February.

use crate::time::add_months;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::days_from_civil;

    const DAY: i64 = 86_400_000;

    fn ms(y: i64, m: i64, d: i64) -> i64 {
        days_from_civil(y, m, d) * DAY
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
