//! Dates: the calendar arithmetic, INTERNALDATE as RFC 3501 9 `date-time` prints it, the
//! day of a SEARCH date and of a message's Date header (RFC 3501 6.4.4).

use super::message;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Civil date (year, month 1-12, day 1-31) of a count of days since 1970-01-01, using the
/// proleptic Gregorian calendar (400-year eras of 146097 days).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The English abbreviation of month `m` (1-12), `Jan` for anything else.
pub(crate) fn month_name(m: u32) -> &'static str {
    MONTHS
        .get((m as usize).saturating_sub(1))
        .copied()
        .unwrap_or("Jan")
}

/// RFC 3501 9 `date-time`: `"dd-Mon-yyyy hh:mm:ss +0000"` (day padded with a space), in
/// UTC, from seconds since the Unix epoch. Years outside 0..=9999 are clamped.
pub(super) fn internal_date(epoch: i64) -> String {
    let epoch = epoch.clamp(-62_167_219_200, 253_402_300_799);
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let month = month_name(m);
    format!(
        "\"{d:>2}-{month}-{y:04} {:02}:{:02}:{:02} +0000\"",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 of a civil date (inverse of `civil_from_days`).
pub(super) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The day of a search date (chrono's `NaiveDate` prints as `YYYY-MM-DD`).
pub(super) fn search_day(d: &imap_codec::imap_types::datetime::NaiveDate) -> Option<i64> {
    let text = d.as_ref().to_string();
    let mut it = text.rsplitn(3, '-');
    let dd: u32 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let y: i64 = it.next()?.parse().ok()?;
    Some(days_from_civil(y, m, dd))
}

/// The day of an RFC 5322 Date header (`[Wed, ] 1 Jan 2024 ...`), time zone ignored as
/// RFC 3501 6.4.4 SENTBEFORE says.
pub(super) fn sent_day(data: &[u8]) -> Option<i64> {
    let (header, _) = message::split(data);
    let fs = message::fields(header);
    let value = String::from_utf8_lossy(message::field(&fs, "Date")?).into_owned();
    let value = value.split_once(',').map(|(_, r)| r).unwrap_or(&value);
    let mut words = value.split_whitespace();
    let day: u32 = words.next()?.parse().ok()?;
    let mon = words.next()?;
    let month = MONTHS.iter().position(|m| mon.eq_ignore_ascii_case(m))? as u32 + 1;
    let year: i64 = words.next()?.parse().ok()?;
    // Keep the arithmetic of `days_from_civil` far from overflow.
    if !(0..=9999).contains(&year) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(internal_date(0), "\" 1-Jan-1970 00:00:00 +0000\"");
        assert_eq!(
            internal_date(1_704_067_201),
            "\" 1-Jan-2024 00:00:01 +0000\""
        );
        // 2000-02-29 12:34:56 UTC.
        assert_eq!(internal_date(951_827_696), "\"29-Feb-2000 12:34:56 +0000\"");
        assert_eq!(internal_date(i64::MAX), "\"31-Dec-9999 23:59:59 +0000\"");
        assert_eq!(internal_date(i64::MIN), "\" 1-Jan-0000 00:00:00 +0000\"");
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000i64, -1, 0, 1, 10_957, 19_723, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
