//! Write-only secrets: passphrases and service passwords that travel host → device only.
//!
//! A [`Secret`] prints as `Secret(<redacted>)`, is zeroed when dropped, and can be serialized
//! only with the `client` feature: the firmware is built without it, so no device-side code,
//! and so no response, can ever encode one. No response type has a field of this type.

use core::fmt;

use serde::{Deserialize, Deserializer};
use zeroize::Zeroize;

/// Longest passphrase or password in bytes.
pub const MAX_SECRET_LENGTH: usize = 128;

/// A secret byte string (UTF-8 by convention) of at most [`MAX_SECRET_LENGTH`] bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    bytes: heapless::Vec<u8, MAX_SECRET_LENGTH>,
}

impl Secret {
    /// A secret from bytes; `None` when longer than [`MAX_SECRET_LENGTH`].
    pub fn new(bytes: &[u8]) -> Option<Self> {
        heapless::Vec::from_slice(bytes).ok().map(|bytes| Self { bytes })
    }

    /// The secret's bytes, for the one place that uses them (a KDF, an AUTH exchange).
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// True when the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.bytes.as_mut_slice().zeroize();
        self.bytes.clear();
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = heapless::Vec::<u8, MAX_SECRET_LENGTH>::deserialize(deserializer)?;
        Ok(Self { bytes })
    }
}

#[cfg(feature = "client")]
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.bytes.serialize(serializer)
    }
}
