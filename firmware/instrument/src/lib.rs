//! The operations the firmware marks for instruction counting, and where their marks sit in
//! the *mark sled* (see `firmware/app/src/instrument.rs`): one copy for the firmware, which
//! executes the marks, and the harness (`qemu/src/instructions.rs`), which reads what the QEMU
//! plugin (`qemu/plugin/operation_counts.c`) counted between them.
//!
//! The sled is [`SLED_ENTRIES`] entries of one 2-byte Thumb `bx lr` each at the ELF symbol
//! [`SLED_SYMBOL`]. A mark is a call to entry [`sled_entry`]`(operation, kind)` =
//! `operation index * 3 + kind`. The plugin knows the layout (3 entries per operation), not
//! the operations: adding one here changes nothing there.
#![no_std]

/// An operation whose instructions are counted.
///
/// The index (declaration order) is the wire format between firmware and harness: append new
/// operations at the end and never reuse one's place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Operation {
    /// From the machine's reset to the network being configured, with the mail listeners
    /// already up (port 25 answers; locked, it answers `421`). Marked by its end only: the
    /// plugin measures an end without a begin from the machine's start.
    BootToReady,
    /// A TLS 1.3 client handshake with the smarthost (configuration with the trust anchor,
    /// handshake, certificate and signature checks), as far as the verified link.
    TlsHandshakeSmarthost,
    /// The same with the backup MX's POP3 server.
    TlsHandshakeBackupMx,
    /// The same with a check-IP service or the DynDNS server (HTTPS), and with the ACME server
    /// (the same client handshake to an HTTPS server on the WAN; inside an
    /// [`Operation::AcmeIssuance`], which counts them too).
    TlsHandshakeDynDns,
    /// A TLS handshake as a server (STARTTLS on 25 or 587, or 465's implicit TLS): the
    /// configuration (cached), the handshake and its signature, to the session's first byte
    /// in TLS.
    TlsHandshakeServer,
    /// One message through the MX (port 25): from the session's start (the client's connection
    /// accepted; for a second message in the same session, from the previous `250`) to its
    /// `250` after DATA handed to the socket, the spool commit included.
    MxMessage,
    /// One message delivered to the LAN mailbox host: connection, SMTP/LMTP session, and the
    /// spool updated (recipients done, message removed). Only attempts whose recipients are
    /// all local are marked.
    MailboxDelivery,
    /// One message fetched from the backup MX by POP3: from the `RETR` to the message, its
    /// UIDL and the pending record committed to flash (`DELE` not included).
    BackupMxMessage,
    /// One DynDNS check: the check-IP requests (HTTPS, TLS handshakes included), the DNS
    /// checks of the A and MX records, and an update when one is due.
    DynDnsCheck,
    /// One unlock at the console: key derivation and unwrap, spool mount, settings loaded
    /// (the console command's signature check not included).
    Unlock,
    /// One message through the MX (port 25) inside TLS: from the end of the STARTTLS handshake
    /// (or the previous `250`) to its `250`: [`Operation::MxMessage`] over TLS, the handshake
    /// (counted as [`Operation::TlsHandshakeServer`]) not included.
    MxMessageTls,
    /// One ACME issuance (issue 17): from the start of the attempt (keys loaded or made) through
    /// account, order, challenge (the answers on port 80 or 443 included), finalisation and
    /// download to the chain installed on flash; the waits between polls cost only timer
    /// ticks. Its TLS handshakes are also counted as [`Operation::TlsHandshakeDynDns`]. A failed
    /// attempt is a cancel. Measured by the ACME end-to-end test, not by `cargo xtask bench`
    /// (its workload has no ACME server).
    AcmeIssuance,
}

impl Operation {
    /// Every operation, in index order.
    pub const ALL: [Operation; 12] = [
        Operation::BootToReady,
        Operation::TlsHandshakeSmarthost,
        Operation::TlsHandshakeBackupMx,
        Operation::TlsHandshakeDynDns,
        Operation::TlsHandshakeServer,
        Operation::MxMessage,
        Operation::MailboxDelivery,
        Operation::BackupMxMessage,
        Operation::DynDnsCheck,
        Operation::Unlock,
        Operation::MxMessageTls,
        Operation::AcmeIssuance,
    ];

    /// Its index (place in [`Operation::ALL`]).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The operation with this index.
    pub fn from_index(index: usize) -> Option<Operation> {
        Operation::ALL.get(index).copied()
    }

    /// A stable snake_case name (tables, budgets, JSON).
    pub const fn name(self) -> &'static str {
        match self {
            Operation::BootToReady => "boot_to_ready",
            Operation::TlsHandshakeSmarthost => "tls_handshake_smarthost",
            Operation::TlsHandshakeBackupMx => "tls_handshake_backup_mx",
            Operation::TlsHandshakeDynDns => "tls_handshake_dyndns",
            Operation::TlsHandshakeServer => "tls_handshake_server",
            Operation::MxMessage => "mx_message",
            Operation::MailboxDelivery => "mailbox_delivery",
            Operation::BackupMxMessage => "backup_mx_message",
            Operation::DynDnsCheck => "dyndns_check",
            Operation::Unlock => "unlock",
            Operation::MxMessageTls => "mx_message_tls",
            Operation::AcmeIssuance => "acme_issuance",
        }
    }

    /// The operation with this name.
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL.iter().copied().find(|operation| operation.name() == name)
    }
}

/// What a mark says about its operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MarkKind {
    /// The operation starts.
    Begin = 0,
    /// The operation completed.
    End = 1,
    /// The operation was abandoned (an error path, a dropped future): no count.
    Cancel = 2,
}

/// Sled entries per operation (begin, end, cancel).
pub const MARKS_PER_OPERATION: usize = 3;
/// Entries in the sled.
pub const SLED_ENTRIES: usize = Operation::ALL.len() * MARKS_PER_OPERATION;
/// Bytes per sled entry (one 16-bit Thumb `bx lr`).
pub const ENTRY_BYTES: usize = 2;
/// The sled's ELF symbol.
pub const SLED_SYMBOL: &str = "homemx_instrument_marks";

/// The sled entry of `kind` for `operation`.
pub const fn sled_entry(operation: Operation, kind: MarkKind) -> usize {
    operation.index() * MARKS_PER_OPERATION + kind as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_names_and_entries_are_consistent() {
        for (index, operation) in Operation::ALL.iter().enumerate() {
            assert_eq!(operation.index(), index);
            assert_eq!(Operation::from_index(index), Some(*operation));
            assert_eq!(Operation::from_name(operation.name()), Some(*operation));
            assert_eq!(sled_entry(*operation, MarkKind::Begin), index * 3);
            assert_eq!(sled_entry(*operation, MarkKind::Cancel), index * 3 + 2);
        }
        assert_eq!(Operation::from_index(Operation::ALL.len()), None);
        assert_eq!(sled_entry(Operation::AcmeIssuance, MarkKind::Cancel), SLED_ENTRIES - 1);
    }
}
