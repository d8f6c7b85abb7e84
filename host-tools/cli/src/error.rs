//! CLI errors: what went wrong, what to do, and the process exit code for each kind.

use std::fmt;

use homemx_wire::message::ErrorCode;

/// Exit codes, one per kind of failure, so scripts can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Success.
    Success = 0,
    /// Anything not listed below.
    Failure = 1,
    /// Bad command-line arguments (clap's own code).
    Usage = 2,
    /// The TOML configuration is invalid.
    Configuration = 3,
    /// The device could not be reached or did not answer in time.
    Connection = 4,
    /// The device refused our authentication (key not enrolled, wrong key, already enrolled).
    Authentication = 5,
    /// Storage is locked, the passphrase was wrong, or unlocks are rate-limited.
    Locked = 6,
    /// The device refused the command for another reason.
    Refused = 7,
    /// The device speaks another protocol version or sent something undecodable.
    Protocol = 8,
    /// The admin key file could not be read, written or decrypted.
    KeyFile = 9,
    /// The owner did not confirm.
    Aborted = 10,
}

/// An error with a hint for the owner.
#[derive(Debug)]
pub struct CliError {
    /// Which kind (and exit code).
    pub kind: ExitCode,
    /// What went wrong.
    pub message: String,
    /// What to do about it, if there is something.
    pub hint: Option<String>,
}

impl CliError {
    /// An error of `kind`.
    pub fn new(kind: ExitCode, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), hint: None }
    }

    /// Adds what to do.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The device refused a command.
    pub fn refused(command: &str, code: ErrorCode) -> Self {
        let kind = match code {
            ErrorCode::NotEnrolled
            | ErrorCode::AlreadyEnrolled
            | ErrorCode::BadSignature
            | ErrorCode::WrongDevice
            | ErrorCode::SignatureRequired => ExitCode::Authentication,
            ErrorCode::Locked | ErrorCode::WrongPassphrase | ErrorCode::RateLimited { .. } | ErrorCode::TamperLoopOpen => ExitCode::Locked,
            ErrorCode::UnsupportedVersion { .. } | ErrorCode::UndecodableCommand | ErrorCode::MalformedHeader => {
                ExitCode::Protocol
            }
            _ => ExitCode::Refused,
        };
        let detail = match code {
            ErrorCode::RateLimited { retry_after_seconds } => format!(" (retry in {retry_after_seconds} s)"),
            ErrorCode::UnsupportedVersion { device_version } => format!(
                " (device: version {device_version}, this CLI: version {})",
                homemx_wire::PROTOCOL_VERSION
            ),
            _ => String::new(),
        };
        Self::new(kind, format!("device refused {command}: {code:?}{detail}")).hint(code.explain())
    }

    /// An I/O error while talking to the device.
    pub fn connection(what: &str, error: std::io::Error) -> Self {
        Self::new(ExitCode::Connection, format!("{what}: {error}"))
            .hint("check --device (serial port path, unix:/path/to/serial.sock or tcp:HOST:PORT) and that the device is on")
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "error: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(formatter, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CliError {}

/// Shorthand.
pub type Result<T> = std::result::Result<T, CliError>;
