//! What the status page and `homemx status` show of the device's certificate: subject and
//! issuer commonNames, validity, days until expiry, and whether the renewal alert is due (from
//! then on until a new certificate replaces it):
//!
//! - a certificate the owner installs or the device signs itself: 21 days before expiry
//!   ([`RENEWAL_ALERT_DAYS`]);
//! - a certificate ACME renews: 14 days before expiry ([`ACME_ALERT_DAYS`]), or a quarter of its
//!   lifetime before expiry if that is shorter ([`CertificateSummary::acme_alert_lead`]). ACME
//!   renews at two thirds of the lifetime, so a short-lived certificate (Let's Encrypt's 6-day
//!   ones, a test CA's 2-minute ones) alerts only when its renewal is late, not all its life.

use alloc::string::String;

use super::parse::{self, Certificate};

/// The alert is due this many days before the certificate expires.
pub const RENEWAL_ALERT_DAYS: u64 = 21;
/// For a certificate ACME renews, the alert is due this many days before it expires (at most).
pub const ACME_ALERT_DAYS: u64 = 14;

/// The displayed facts of a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateSummary {
    /// The subject's commonName, if it has one.
    pub subject_common_name: Option<String>,
    /// The issuer's commonName, if it has one.
    pub issuer_common_name: Option<String>,
    /// The serial number in hexadecimal, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// Whether issuer and subject are the same name (the device's own certificate).
    pub self_issued: bool,
    /// notBefore, Unix seconds.
    pub not_before: u64,
    /// notAfter, Unix seconds.
    pub not_after: u64,
}

impl CertificateSummary {
    /// The summary of `certificate` (DER); `None` if it does not parse.
    pub fn of(certificate: &[u8]) -> Option<Self> {
        let fields = Certificate::parse(certificate)?;
        Some(Self {
            subject_common_name: parse::common_name(fields.subject),
            issuer_common_name: parse::common_name(fields.issuer),
            serial: fields.serial.iter().map(|byte| alloc::format!("{byte:02X}")).collect(),
            self_issued: fields.subject == fields.issuer,
            not_before: fields.validity.0,
            not_after: fields.validity.1,
        })
    }

    /// Whole days from `now` (Unix seconds) until notAfter, rounded down: 0 on the last day,
    /// negative once expired (-1 during the first day after).
    pub fn days_until_expiry(&self, now: u64) -> i64 {
        let seconds = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        seconds(self.not_after).saturating_sub(seconds(now)).div_euclid(86_400)
    }

    /// Whether the certificate expires within [`RENEWAL_ALERT_DAYS`] of `now` (or has expired).
    pub fn renewal_alert_due(&self, now: u64) -> bool {
        self.not_after.saturating_sub(now) <= RENEWAL_ALERT_DAYS * 86_400
    }

    /// How long (seconds) before notAfter the alert for a certificate ACME renews is due:
    /// [`ACME_ALERT_DAYS`], or a quarter of the lifetime if that is shorter (90 days: 14 days;
    /// 6 days: 36 hours; 120 seconds: 30 seconds).
    pub fn acme_alert_lead(&self) -> u64 {
        (ACME_ALERT_DAYS * 86_400).min(self.not_after.saturating_sub(self.not_before) / 4)
    }

    /// Whether the alert for a certificate ACME renews is due at `now` (it expires within
    /// [`Self::acme_alert_lead`], or has expired).
    pub fn acme_alert_due(&self, now: u64) -> bool {
        self.not_after.saturating_sub(now) <= self.acme_alert_lead()
    }

    /// Whether `now` lies inside the validity period.
    pub fn is_valid_at(&self, now: u64) -> bool {
        (self.not_before..=self.not_after).contains(&now)
    }
}

/// `unix_seconds` as `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC), for display.
pub fn format_date(unix_seconds: u64) -> String {
    match der::DateTime::from_unix_duration(core::time::Duration::from_secs(unix_seconds)) {
        Ok(date) => alloc::format!("{date}"),
        Err(_) => String::from("(beyond 9999)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expiring_at(not_after: u64) -> CertificateSummary {
        CertificateSummary { subject_common_name: None, issuer_common_name: None, serial: String::new(), self_issued: true, not_before: 0, not_after }
    }

    #[test]
    fn days_until_expiry_round_down_and_go_negative() {
        let summary = expiring_at(100 * 86_400);
        assert_eq!(summary.days_until_expiry(0), 100);
        assert_eq!(summary.days_until_expiry(1), 99);
        assert_eq!(summary.days_until_expiry(100 * 86_400), 0);
        assert_eq!(summary.days_until_expiry(100 * 86_400 + 1), -1);
        assert_eq!(summary.days_until_expiry(u64::MAX), (100 * 86_400 - i64::MAX).div_euclid(86_400));
    }

    #[test]
    fn the_alert_starts_21_days_before_expiry_and_stays() {
        let not_after = 1_000 * 86_400;
        let summary = expiring_at(not_after);
        assert!(!summary.renewal_alert_due(not_after - 21 * 86_400 - 1));
        assert!(summary.renewal_alert_due(not_after - 21 * 86_400));
        assert!(summary.renewal_alert_due(not_after));
        assert!(summary.renewal_alert_due(not_after + 86_400));
        assert!(summary.is_valid_at(0) && summary.is_valid_at(not_after) && !summary.is_valid_at(not_after + 1));
    }

    fn lifetime(not_before: u64, seconds: u64) -> CertificateSummary {
        CertificateSummary { not_before, ..expiring_at(not_before + seconds) }
    }

    #[test]
    fn the_acme_alert_starts_14_days_or_a_quarter_of_the_lifetime_before_expiry() {
        let start = 1_796_425_550;
        // (lifetime, lead): 90 days alert at 14 days; 6 days at 36 hours; 120 s at 30 s.
        for (seconds, lead) in [(90 * 86_400, 14 * 86_400), (6 * 86_400, 36 * 3600), (120, 30)] {
            let summary = lifetime(start, seconds);
            let not_after = start + seconds;
            assert_eq!(summary.acme_alert_lead(), lead, "{seconds} s");
            // Not due at the renewal (two thirds of the lifetime) nor until the lead begins.
            assert!(!summary.acme_alert_due(start), "{seconds} s");
            assert!(!summary.acme_alert_due(start + seconds / 3 * 2), "{seconds} s");
            assert!(!summary.acme_alert_due(not_after - lead - 1), "{seconds} s");
            assert!(summary.acme_alert_due(not_after - lead), "{seconds} s");
            assert!(summary.acme_alert_due(not_after), "{seconds} s");
            assert!(summary.acme_alert_due(not_after + 86_400), "{seconds} s: and once expired");
        }
        // A 6-day certificate would alert all its life with the 21-day rule.
        assert!(lifetime(start, 6 * 86_400).renewal_alert_due(start));
        // Odd dates: notAfter before notBefore gives no lead (due from notAfter on).
        let backwards = CertificateSummary { not_before: start, ..expiring_at(start - 10) };
        assert_eq!(backwards.acme_alert_lead(), 0);
        assert!(!backwards.acme_alert_due(start - 11) && backwards.acme_alert_due(start - 10));
    }

    #[test]
    fn dates_format_as_rfc_3339() {
        assert_eq!(format_date(1_767_323_045), "2026-01-02T03:04:05Z");
        assert_eq!(format_date(0), "1970-01-01T00:00:00Z");
    }
}
