//! Sans-I/O status page: the facts the owner sees, rendered as HTML and JSON, and the alert mails.
//!
//! (Being written; see the crate's README when it lands.)
#![cfg_attr(not(test), no_std)]
