//! The headers a message gets when its template has none: `Date` (RFC 5322, in UTC) and
//! `Message-ID`.

/// An RFC 5322 date in UTC: `Thu, 01 Jan 1970 00:00:00 +0000`.
pub(super) fn rfc5322_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = (days + 4).rem_euclid(7) as usize;
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
        DAYS[weekday],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Year, month (1-12) and day of the proleptic Gregorian calendar, from days since
/// 1970-01-01 (Howard Hinnant's `civil_from_days`: years counted from March, so the
/// leap day ends the year).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The random left-hand side of a Message-ID; without randomness, the time in
/// nanoseconds (unique enough for one server, and never worth failing a mail for).
pub(super) fn message_id_local_part() -> String {
    use crate::crypto::random;
    random::string_from(random::ALPHANUMERIC, 24).unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_string()
    })
}

/// The right-hand side of a Message-ID: the configured domain, without anything that
/// could end the header or the brackets.
pub(super) fn message_id_right(domain: &str) -> String {
    let clean: String = domain
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '@' | '"' | '\\'))
        .collect();
    if clean.is_empty() {
        "localhost".to_owned()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::super::fill_email;
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn dates_are_rfc_5322() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_796_117_204),
            "Tue, 01 Dec 2026 09:26:44 +0000"
        );
        assert_eq!(rfc5322_date(-1), "Wed, 31 Dec 1969 23:59:59 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(4_107_542_400),
            "Mon, 01 Mar 2100 00:00:00 +0000"
        );
    }

    #[test]
    fn message_id_domain_cannot_break_the_header() {
        let m = fill_email("Subject: s\n\nx\n", &values(), 0, "ex ample.org>\r\nBcc: e")
            .expect("a message");
        assert_crlf_only(&m);
        assert!(!m.contains("\r\nBcc"));
        assert!(header(&m, "Message-ID").ends_with("@example.orgBcc:e>"));
    }
}
