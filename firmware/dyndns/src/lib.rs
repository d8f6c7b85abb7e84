//! Sans-I/O DynDNS guard: public-IP learning, dyndns2 updates, DNS verification verdicts.
//!
//! (Being written; see the crate's README when it lands.)
#![cfg_attr(not(test), no_std)]
