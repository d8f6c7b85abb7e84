//! Sans-I/O DNS stub-resolver messages (A, MX, TXT) and SNTP packets for the appliance.
//!
//! (Being written; see the crate's README when it lands.)
#![cfg_attr(not(test), no_std)]
