//! The strength check for a new storage passphrase: zxcvbn's estimate, a floor of about
//! 60 bits, and a refusal that says why and what to do (`--weak-passphrase` overrides it).
//!
//! The storage passphrase is half of what guards a stolen device's flash (the other half is the
//! chip-bound key); an attacker who also has the chip's key can try passphrases offline, so the
//! passphrase must resist guessing on its own.

use homemx_wire::secret::Secret;
use zeroize::Zeroizing;

use crate::error::{CliError, ExitCode, Result};

/// The floor: zxcvbn's estimated guesses must be at least 10^18 (about 60 bits).
pub const MINIMUM_GUESSES_LOG10: f64 = 18.0;

/// Words the estimator treats as guessable in a homemx passphrase.
const CONTEXT_WORDS: [&str; 3] = ["homemx", "mail", "passphrase"];

/// zxcvbn's verdict on a passphrase.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// log10 of the estimated guesses.
    pub guesses_log10: f64,
    /// The same in bits (log2 of the guesses).
    pub bits: f64,
    /// The estimator's warning and suggestions, if it has any.
    pub feedback: Option<String>,
}

impl Estimate {
    /// Whether the passphrase reaches [`MINIMUM_GUESSES_LOG10`].
    pub fn strong_enough(&self) -> bool {
        self.guesses_log10 >= MINIMUM_GUESSES_LOG10
    }
}

/// Estimates `passphrase` with zxcvbn (non-UTF-8 bytes are estimated as replacement characters).
pub fn estimate(passphrase: &Secret, context: &[&str]) -> Estimate {
    let text = Zeroizing::new(String::from_utf8_lossy(passphrase.expose()).into_owned());
    let mut words: Vec<&str> = CONTEXT_WORDS.to_vec();
    words.extend_from_slice(context);
    let entropy = zxcvbn::zxcvbn(&text, &words);
    let guesses_log10 = entropy.guesses_log10().max(0.0);
    let feedback = entropy.feedback().map(|feedback| feedback.to_string().trim().to_string()).filter(|text| !text.is_empty());
    Estimate { guesses_log10, bits: guesses_log10 * std::f64::consts::LOG2_10, feedback }
}

/// Checks a new storage passphrase: `Ok` when it is strong enough or `allow_weak` is set (then
/// a warning goes to stderr), otherwise an error that gives the estimate and what to do.
/// `context` are words from the configuration (domains, user names) an attacker would try.
pub fn check_new(passphrase: &Secret, allow_weak: bool, context: &[&str]) -> Result<Estimate> {
    let estimate = estimate(passphrase, context);
    if estimate.strong_enough() {
        return Ok(estimate);
    }
    let mut message = format!(
        "the storage passphrase is too weak: about {:.0} bits estimated (zxcvbn), at least {:.0} needed",
        estimate.bits,
        MINIMUM_GUESSES_LOG10 * std::f64::consts::LOG2_10
    );
    if let Some(feedback) = &estimate.feedback {
        message.push_str(&format!(" ({feedback})"));
    }
    if allow_weak {
        eprintln!("warning: {message}; accepted because of --weak-passphrase");
        return Ok(estimate);
    }
    Err(CliError::new(ExitCode::Failure, format!("{message}; nothing was sent to the device")).hint(
        "choose a longer passphrase, such as five or more random words (a stolen device can be attacked offline), \
         or pass --weak-passphrase to accept this one anyway",
    ))
}
