//! Sans-I/O DynDNS for the homemx MX on a home line with a changing address: learning the
//! public IPv4 address, keeping the dyndns2 record current, and checking that DNS really
//! points the domain's mail here (a change we did not make is a "possible mail diversion").
//!
//! | module | owns |
//! | --- | --- |
//! | [`checkip`] | check-IP answer parsing, `is_public`, agreement of several distinct sources |
//! | [`dane`] | `judge_tlsa`: the published TLSA records against the key in use; `TlsaLine`, the record to publish |
//! | [`dyndns2`] | update request path/request, answer parsing and classes, backoff, `USER_AGENT` |
//! | [`guard`] | `UpdateGuard`: when to update, when to stop, what to judge and alert, persisted state, counters |
//! | [`name`] | `same_name`: DNS names compared as DNS compares them |
//! | [`verify`] | `verify_dns`: A and MX verdict with alarms |
//!
//! The firmware does TLS, DNS lookups and the clock; the HTTP bytes are written and parsed
//! with `homemx_http::client`.
#![cfg_attr(not(test), no_std)]

pub mod checkip;
pub mod dane;
pub mod dyndns2;
pub mod guard;
pub mod name;
pub mod verify;

pub use checkip::{agree, is_public, parse_public_address, Agreement, Ipv4};
pub use dane::{judge_tlsa, Association, KeyDigests, TlsaLine, TlsaState, TlsaVerdict};
pub use dyndns2::{
    backoff_delay_s, parse_update_answer, parse_update_response, update_path, write_update_request, AnswerClass,
    UpdateAnswer, USER_AGENT,
};
pub use guard::{CheckAlarms, Decision, GuardConfig, GuardStats, StopReason, UpdateGuard, UpdateReason, STATE_LENGTH};
pub use verify::{verify_dns, ARecord, Alarm, MxState, Verdict};
