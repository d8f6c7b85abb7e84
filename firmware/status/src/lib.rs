//! Sans-I/O status page: the facts the owner sees, rendered as HTML ([`html`]) and JSON
//! ([`json`]), and the rate-limited alert mail to postmaster ([`alert_mail`]).
//!
//! The firmware fills a [`StatusSnapshot`] (plain data, no borrowing) and renders it into its
//! own buffer; the alerts live on an [`AlertBoard`] the firmware keeps. No allocation, no
//! clock, no sockets: times come in as arguments, bytes go out into caller buffers.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

pub mod alert;
pub mod alert_mail;
pub mod headline;
pub mod html;
pub mod json;
mod output;
pub mod snapshot;
mod units;

pub use alert::{Alert, AlertBoard, AlertKind, Peer, Raised, ALERT_KIND_COUNT, MAX_ALERTS};
pub use alert_mail::{
    compose, AlertMail, AlertMailer, ComposeError, MailedAlert, MAIL_BUFFER_SIZE,
};
pub use headline::{Problem, Verdict, MAX_PROBLEMS};
pub use html::{
    page_length, render_page, render_page_window, CONTENT_SECURITY_POLICY, PAGE_BUFFER_SIZE,
};
pub use json::{json_length, render_json, render_json_window, JSON_BUFFER_SIZE};
pub use output::Overflow;
pub use snapshot::{
    acme_error, host_name, version, AcmeError, AcmeRenewal, DeviceCertificate, DynDns, DynDnsAnswer, FetchResult, HostName, LockState, MailFlow, MxRecord,
    Pop3Fetch, SmarthostTls, SpoolSpace, StatusSnapshot, System, TamperLoop, TlsVersion, Verification, MailboxFailure, MailboxReach,
};
