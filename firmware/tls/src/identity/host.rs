//! The host name the device's certificates are for (the configured `host_name`, e.g.
//! `mx.example.org`): a DNS name in the preferred syntax of RFC 1034/1123, stored lowercase. No
//! wildcards, IP addresses, trailing dot or underscores: a certificate request for anything
//! else would be refused by a CA or mismatched by clients.

use alloc::string::String;

/// The longest name: 253 characters (255 octets on the wire).
pub const MAXIMUM_LENGTH: usize = 253;
/// The longest name that also fits the subject's commonName (RFC 5280 ub-common-name); a
/// longer name is only in the SubjectAltName, which is then critical.
pub const MAXIMUM_COMMON_NAME_LENGTH: usize = 64;

/// A checked, lowercase DNS host name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostName(String);

/// Why a string is not a host name a certificate can be made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostNameError {
    /// Empty, or longer than 253 characters.
    Length,
    /// An empty label (two dots, or a leading or trailing dot) or one longer than 63.
    LabelLength,
    /// A character other than letters, digits, `-` and `.`.
    Character,
    /// A label starting or ending with `-`.
    Hyphen,
    /// The last label is all digits: an IP address or not a name.
    NumericTopLabel,
}

impl HostName {
    /// Checks `name` and keeps it lowercase.
    pub fn new(name: &str) -> Result<Self, HostNameError> {
        if name.is_empty() || name.len() > MAXIMUM_LENGTH {
            return Err(HostNameError::Length);
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(HostNameError::LabelLength);
            }
            if !label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-') {
                return Err(HostNameError::Character);
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(HostNameError::Hyphen);
            }
        }
        if name.rsplit('.').next().is_some_and(|top| top.bytes().all(|byte| byte.is_ascii_digit())) {
            return Err(HostNameError::NumericTopLabel);
        }
        Ok(Self(name.to_ascii_lowercase()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the name fits the subject's commonName.
    pub fn fits_common_name(&self) -> bool {
        self.0.len() <= MAXIMUM_COMMON_NAME_LENGTH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_and_lowercases_them() {
        assert_eq!(HostName::new("MX.Example.ORG").unwrap().as_str(), "mx.example.org");
        assert!(HostName::new("homemx").is_ok());
        assert!(HostName::new("a-b.c0.example").is_ok());
    }

    #[test]
    fn refuses_what_is_not_a_plain_dns_name() {
        assert_eq!(HostName::new(""), Err(HostNameError::Length));
        assert_eq!(HostName::new(&"a.".repeat(127)), Err(HostNameError::Length));
        assert_eq!(HostName::new("mx..example.org"), Err(HostNameError::LabelLength));
        assert_eq!(HostName::new("mx.example.org."), Err(HostNameError::LabelLength));
        assert_eq!(HostName::new(&"a".repeat(64)), Err(HostNameError::LabelLength));
        assert_eq!(HostName::new("*.example.org"), Err(HostNameError::Character));
        assert_eq!(HostName::new("mx_1.example.org"), Err(HostNameError::Character));
        assert_eq!(HostName::new("mx example.org"), Err(HostNameError::Character));
        assert_eq!(HostName::new("-mx.example.org"), Err(HostNameError::Hyphen));
        assert_eq!(HostName::new("192.168.1.10"), Err(HostNameError::NumericTopLabel));
    }

    #[test]
    fn long_names_do_not_fit_the_common_name() {
        let long = alloc::format!("{}.{}.example", "a".repeat(40), "b".repeat(40));
        assert!(!HostName::new(&long).unwrap().fits_common_name());
        assert!(HostName::new("mx.example.org").unwrap().fits_common_name());
    }
}
