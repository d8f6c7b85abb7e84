//! The issuance of one certificate, sans I/O (RFC 8555 section 7): directory, new account
//! (terms agreed, optional External Account Binding), new order for the one host name, the
//! authorization's challenge (HTTP-01 or TLS-ALPN-01, in the configured preference), polling,
//! finalize with the device's CSR, download of the PEM chain, and the chain's checks by
//! homemx-tls ([`check_chain`]: the device key, the name, the dates, the signatures) before
//! the client reports success.
//!
//! The caller loops: [`Client::poll`] gives the next [`Action`]; for
//! [`Action::Send`] it waits `delay_ms`, publishes [`Client::pending_challenge`] to its
//! responders (port 80 answers [`Client::http01_answer`], port 443 builds the TLS-ALPN-01
//! certificate from [`PendingChallenge::acme_identifier`]), sends the request (over TLS to
//! the request's URL; bytes by the `exchange` module), and hands the answer to
//! [`Client::receive`] with the wall-clock time. [`Action::Done`] means the chain is in
//! [`Client::issued`]; [`Action::Failed`] means [`Client::error`] says why (with the ACME
//! problem document when the server sent one) and [`Client::retry_after`] what the server
//! asked for.
//!
//! When a request got no answer (connection refused, TLS failure, timeout), calling
//! [`Client::poll`] again sends the same step again (after a fresh nonce for a POST; ACME's
//! requests may be repeated), or the caller drops the attempt and lets [`crate::renewal`]
//! schedule the next one.
//!
//! Nonces: every response's `Replay-Nonce` is kept for the next POST; without one, the client
//! first asks `newNonce`. A `badNonce` error is retried once with the nonce it carried.
//! Polls are bounded ([`Config::max_polls`]) and spaced by `Retry-After` (seconds or a date) or
//! [`Config::poll_interval_ms`]; a `Retry-After` longer than [`Config::max_wait_seconds`]
//! ends the attempt (the renewal policy waits instead).
//!
//! Calls [`crate::jws`], [`crate::objects`], homemx-tls's CSR and chain checks; called by the
//! firmware's ACME task and the Pebble test.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use homemx_tls::identity::{certificate_request, check_chain, tls_alpn_01_certificate, DeviceKey, EncodeError, HostName, InstallError};
use rustls_pki_types::CertificateDer;

use crate::base64url;
use crate::json::push_string;
use crate::jws::{self, Signer};
use crate::objects::{Account, Authorization, Challenge, ChallengeKind, Directory, ObjectError, Order, Problem, Status};
use crate::url::{self, Url};

/// What the device asks for.
#[derive(Clone, Debug)]
pub struct Config {
    /// The directory URL (`https://`).
    pub directory: Url,
    /// Contact URLs for the account (`mailto:owner@example.org`); may be empty.
    pub contact: Vec<String>,
    /// The owner agreed to the CA's terms of service (required when the directory names
    /// terms).
    pub terms_agreed: bool,
    /// External Account Binding: the CA's key id and MAC key (decoded).
    pub external_account: Option<ExternalAccount>,
    /// The one name the certificate is for.
    pub host: HostName,
    /// The challenge types to answer, most preferred first (HTTP-01 and/or TLS-ALPN-01).
    pub challenges: Vec<ChallengeKind>,
    /// Most polls of an authorization or order before giving up.
    pub max_polls: u32,
    /// Pause before a poll when the server gives no `Retry-After`.
    pub poll_interval_ms: u32,
    /// Longest `Retry-After` waited for within one attempt.
    pub max_wait_seconds: u32,
}

impl Config {
    /// A configuration with the defaults: no contact, HTTP-01 then TLS-ALPN-01, 10 polls two
    /// seconds apart, `Retry-After` up to a minute.
    pub fn new(directory: Url, host: HostName, terms_agreed: bool) -> Self {
        Config {
            directory,
            contact: Vec::new(),
            terms_agreed,
            external_account: None,
            host,
            challenges: alloc::vec![ChallengeKind::Http01, ChallengeKind::TlsAlpn01],
            max_polls: 10,
            poll_interval_ms: 2000,
            max_wait_seconds: 60,
        }
    }
}

/// External Account Binding credentials (RFC 8555 section 7.3.4). `Debug` shows the key id
/// only, never the MAC key.
#[derive(Clone)]
pub struct ExternalAccount {
    pub key_id: String,
    pub mac_key: Vec<u8>,
}

impl core::fmt::Debug for ExternalAccount {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.debug_struct("ExternalAccount").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// One request to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub url: Url,
    /// The JWS (a POST), or `None` (a GET).
    pub body: Option<String>,
    /// The `Accept` header.
    pub accept: &'static str,
}

/// One response as the client needs it (read by the `exchange` module).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    pub status: u16,
    pub replay_nonce: Option<&'a str>,
    pub location: Option<&'a str>,
    pub retry_after: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// What the caller does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Wait `delay_ms`, then send `request` and pass the answer to [`Client::receive`].
    Send { request: Request, delay_ms: u32 },
    /// The chain is issued and checked: [`Client::issued`].
    Done,
    /// The attempt failed: [`Client::error`].
    Failed,
}

/// The step of the issuance a request or error belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Directory,
    Nonce,
    NewAccount,
    NewOrder,
    Authorization,
    Challenge,
    PollAuthorization,
    PollOrder,
    Finalize,
    Certificate,
}

/// Why an attempt failed.
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// The server answered with a problem document.
    Problem { step: Step, problem: Problem },
    /// The server answered an unexpected status without a readable problem document.
    Status { step: Step, status: u16 },
    /// An answer was malformed, too large or inconsistent.
    Object { step: Step, error: ObjectError },
    /// No usable `Replay-Nonce` from `newNonce`.
    MissingNonce,
    /// A created account or order came without a usable `Location`.
    MissingLocation { step: Step },
    /// The directory names terms of service and the owner has not agreed to them.
    TermsNotAgreed,
    /// The CA requires External Account Binding and none is configured.
    ExternalAccountRequired,
    /// The account is deactivated or revoked.
    AccountUnusable(Status),
    /// The authorization offers none of the configured challenge types.
    NoUsableChallenge,
    /// The challenge failed: the authorization is invalid (with the challenge's problem).
    AuthorizationFailed(Option<Problem>),
    /// The order became invalid (with its problem).
    OrderFailed(Option<Problem>),
    /// Still not done after [`Config::max_polls`] polls.
    TooManyPolls { step: Step },
    /// The server asked to wait longer than [`Config::max_wait_seconds`].
    WaitTooLong { seconds: u64 },
    /// The CSR could not be made.
    Request,
    /// The issued chain failed the checks of homemx-tls.
    Chain(InstallError),
    /// The account key is the certificate's key (a CA refuses that, RFC 8555 section 11.1).
    SameKey,
    /// [`Client::receive`] was called with no request outstanding.
    Unexpected,
}

impl core::fmt::Display for Error {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Problem { step, problem } => write!(formatter, "{step:?}: the CA refused: {problem}"),
            Error::Status { step, status } => write!(formatter, "{step:?}: unexpected HTTP status {status}"),
            Error::Object { step, error } => write!(formatter, "{step:?}: refused answer: {error}"),
            Error::MissingNonce => write!(formatter, "the CA gave no Replay-Nonce"),
            Error::MissingLocation { step } => write!(formatter, "{step:?}: no Location for the new resource"),
            Error::TermsNotAgreed => write!(formatter, "the CA's terms of service are not agreed to"),
            Error::ExternalAccountRequired => write!(formatter, "the CA requires External Account Binding"),
            Error::AccountUnusable(status) => write!(formatter, "the account is {status:?}"),
            Error::NoUsableChallenge => write!(formatter, "the CA offers no challenge type this device answers"),
            Error::AuthorizationFailed(Some(problem)) => write!(formatter, "the challenge failed: {problem}"),
            Error::AuthorizationFailed(None) => write!(formatter, "the challenge failed"),
            Error::OrderFailed(Some(problem)) => write!(formatter, "the order failed: {problem}"),
            Error::OrderFailed(None) => write!(formatter, "the order failed"),
            Error::TooManyPolls { step } => write!(formatter, "{step:?}: still not done after the most polls"),
            Error::WaitTooLong { seconds } => write!(formatter, "the CA asks to retry after {seconds} s"),
            Error::Request => write!(formatter, "the certificate request could not be made"),
            Error::Chain(error) => write!(formatter, "the issued chain was refused: {error}"),
            Error::SameKey => write!(formatter, "the account key must not be the certificate's key"),
            Error::Unexpected => write!(formatter, "a response without a request"),
        }
    }
}

/// The challenge the device must answer now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingChallenge {
    pub kind: ChallengeKind,
    pub token: String,
    /// `token.thumbprint`: the body of the HTTP-01 answer.
    pub key_authorization: String,
}

impl PendingChallenge {
    /// The TLS-ALPN-01 digest (SHA-256 of the key authorization).
    pub fn tls_alpn_digest(&self) -> [u8; 32] {
        jws::tls_alpn_digest(&self.key_authorization)
    }

    /// The DER value of the TLS-ALPN-01 certificate's acmeIdentifier extension.
    pub fn acme_identifier(&self) -> [u8; 34] {
        jws::acme_identifier_value(&self.key_authorization)
    }

    /// The TLS-ALPN-01 validation certificate (DER, homemx-tls's
    /// [`tls_alpn_01_certificate`]) for `host` with `key`, valid for a day from `now`: what the
    /// port-443 listener presents to `acme-tls/1` handshakes while this challenge is pending.
    pub fn tls_alpn_01_certificate(
        &self,
        key: &DeviceKey,
        host: &HostName,
        now: u64,
        random: &mut impl rand_core::CryptoRngCore,
    ) -> Result<Vec<u8>, EncodeError> {
        tls_alpn_01_certificate(key, host, &self.acme_identifier(), now, random)
    }

    /// The HTTP-01 answer for a request path: the key authorization for
    /// `/.well-known/acme-challenge/<token>` if this is an HTTP-01 challenge with that token,
    /// else `None` (the responder answers 403).
    pub fn http01_answer(&self, path: &str) -> Option<&str> {
        if self.kind != ChallengeKind::Http01 {
            return None;
        }
        (path.strip_prefix(HTTP01_PREFIX)? == self.token).then_some(self.key_authorization.as_str())
    }
}

/// The issued chain.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The PEM text as the CA sent it.
    pub pem: String,
    /// The certificates (DER, leaf first) as homemx-tls checked them.
    pub chain: Vec<CertificateDer<'static>>,
}

/// The HTTP-01 path prefix (RFC 8555 section 8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";
/// The certificate download's media type (RFC 8555 section 9.1).
pub const PEM_CHAIN: &str = "application/pem-certificate-chain";
const JSON: &str = "application/json";
/// Longest nonce kept.
const MAX_NONCE: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Directory,
    NewAccount,
    NewOrder,
    Authorization,
    Challenge,
    PollAuthorization,
    /// Polling the order; `finalized` once the CSR was sent.
    PollOrder { finalized: bool },
    Finalize,
    Certificate,
    Done,
    Failed,
}

/// One issuance attempt.
pub struct Client<'k> {
    config: Config,
    account_key: &'k DeviceKey,
    certificate_key: &'k DeviceKey,
    thumbprint: String,
    state: State,
    /// The request outstanding: the step (or `Nonce`) whose answer `receive` expects.
    outstanding: Option<Step>,
    nonce: Option<String>,
    bad_nonce_retried: bool,
    delay_ms: u32,
    polls: u32,
    retry_after: Option<u64>,
    directory: Option<Directory>,
    account: Option<String>,
    order_url: Option<Url>,
    order: Option<Order>,
    authorization: Option<Url>,
    challenge_url: Option<Url>,
    pending: Option<PendingChallenge>,
    issued: Option<Issued>,
    error: Option<Error>,
}

impl<'k> Client<'k> {
    /// An attempt to obtain a certificate for `certificate_key` (the device's TLS key) under
    /// the account of `account_key`.
    pub fn new(config: Config, account_key: &'k DeviceKey, certificate_key: &'k DeviceKey) -> Self {
        let same_key = account_key.public_point() == certificate_key.public_point();
        Client {
            thumbprint: jws::thumbprint(account_key),
            config,
            account_key,
            certificate_key,
            state: State::Directory,
            outstanding: None,
            nonce: None,
            bad_nonce_retried: false,
            delay_ms: 0,
            polls: 0,
            retry_after: None,
            directory: None,
            account: None,
            order_url: None,
            order: None,
            authorization: None,
            challenge_url: None,
            pending: None,
            issued: None,
            error: same_key.then_some(Error::SameKey),
        }
        .checked()
    }

    /// Fails at once when [`Client::new`] found an error.
    fn checked(mut self) -> Self {
        if self.error.is_some() {
            self.state = State::Failed;
        }
        self
    }

    /// The challenge to answer while the authorization is validated, if any.
    pub fn pending_challenge(&self) -> Option<&PendingChallenge> {
        self.pending.as_ref()
    }

    /// The HTTP-01 answer for a request path: the key authorization for
    /// `/.well-known/acme-challenge/<token>` of the pending HTTP-01 challenge, else `None`
    /// (the responder answers 403).
    pub fn http01_answer(&self, path: &str) -> Option<&str> {
        self.pending.as_ref()?.http01_answer(path)
    }

    /// The account URL, once the account exists.
    pub fn account_url(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// The directory, once read (its `renewalInfo` is the ARI endpoint).
    pub fn directory(&self) -> Option<&Directory> {
        self.directory.as_ref()
    }

    /// The checked chain after [`Action::Done`].
    pub fn issued(&self) -> Option<&Issued> {
        self.issued.as_ref()
    }

    /// Why the attempt failed, after [`Action::Failed`].
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// The last `Retry-After` the server sent (seconds), for the renewal policy.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    fn fail(&mut self, error: Error) {
        self.error = Some(error);
        self.state = State::Failed;
        self.pending = None;
    }

    /// The next thing to do.
    pub fn poll(&mut self) -> Action {
        match self.state {
            State::Done => return Action::Done,
            State::Failed => return Action::Failed,
            _ => {}
        }
        let delay_ms = core::mem::take(&mut self.delay_ms);
        if self.state == State::Directory {
            self.outstanding = Some(Step::Directory);
            return Action::Send { request: Request { url: self.config.directory.clone(), body: None, accept: JSON }, delay_ms };
        }
        let Some(directory) = self.directory.as_ref() else {
            self.fail(Error::Unexpected);
            return Action::Failed;
        };
        let Some(nonce) = self.nonce.take() else {
            self.outstanding = Some(Step::Nonce);
            return Action::Send { request: Request { url: directory.new_nonce.clone(), body: None, accept: JSON }, delay_ms };
        };
        match self.signed_request(&nonce) {
            Ok((step, request)) => {
                self.outstanding = Some(step);
                Action::Send { request, delay_ms }
            }
            Err(error) => {
                self.fail(error);
                Action::Failed
            }
        }
    }

    /// The POST of the current state, signed with `nonce`.
    fn signed_request(&self, nonce: &str) -> Result<(Step, Request), Error> {
        let directory = self.directory.as_ref().ok_or(Error::Unexpected)?;
        let kid = self.account.as_deref().map(Signer::Kid);
        let post = |url: &Url, payload: Option<&str>, accept: &'static str| -> Result<Request, Error> {
            let signer = kid.ok_or(Error::Unexpected)?;
            let body = jws::sign(self.account_key, signer, nonce, url.as_str(), payload);
            Ok(Request { url: url.clone(), body: Some(body), accept })
        };
        let order_url = || self.order_url.as_ref().ok_or(Error::Unexpected);
        Ok(match self.state {
            State::NewAccount => {
                let payload = self.new_account_payload(directory);
                let body = jws::sign(self.account_key, Signer::Jwk, nonce, directory.new_account.as_str(), Some(&payload));
                (Step::NewAccount, Request { url: directory.new_account.clone(), body: Some(body), accept: JSON })
            }
            State::NewOrder => {
                let mut payload = String::from("{\"identifiers\":[{\"type\":\"dns\",\"value\":");
                push_string(&mut payload, self.config.host.as_str());
                payload.push_str("}]}");
                (Step::NewOrder, post(&directory.new_order, Some(&payload), JSON)?)
            }
            State::Authorization => (Step::Authorization, post(self.authorization.as_ref().ok_or(Error::Unexpected)?, None, JSON)?),
            State::Challenge => (Step::Challenge, post(self.challenge_url.as_ref().ok_or(Error::Unexpected)?, Some("{}"), JSON)?),
            State::PollAuthorization => {
                (Step::PollAuthorization, post(self.authorization.as_ref().ok_or(Error::Unexpected)?, None, JSON)?)
            }
            State::PollOrder { .. } => (Step::PollOrder, post(order_url()?, None, JSON)?),
            State::Finalize => {
                let csr = certificate_request(self.certificate_key, &self.config.host).map_err(|_| Error::Request)?;
                let payload = format!("{{\"csr\":\"{}\"}}", base64url::encode(&csr));
                let finalize = &self.order.as_ref().ok_or(Error::Unexpected)?.finalize;
                (Step::Finalize, post(finalize, Some(&payload), JSON)?)
            }
            State::Certificate => {
                let certificate = self.order.as_ref().and_then(|order| order.certificate.as_ref()).ok_or(Error::Unexpected)?;
                (Step::Certificate, post(certificate, None, PEM_CHAIN)?)
            }
            State::Directory | State::Done | State::Failed => return Err(Error::Unexpected),
        })
    }

    fn new_account_payload(&self, directory: &Directory) -> String {
        let mut payload = String::from("{");
        if self.config.terms_agreed {
            payload.push_str("\"termsOfServiceAgreed\":true,");
        }
        payload.push_str("\"contact\":[");
        for (index, contact) in self.config.contact.iter().enumerate() {
            if index > 0 {
                payload.push(',');
            }
            push_string(&mut payload, contact);
        }
        payload.push(']');
        if let Some(external) = &self.config.external_account {
            payload.push_str(",\"externalAccountBinding\":");
            payload.push_str(&jws::external_account_binding(
                self.account_key,
                &external.key_id,
                &external.mac_key,
                directory.new_account.as_str(),
            ));
        }
        payload.push('}');
        payload
    }

    /// Takes the answer to the request [`poll`](Self::poll) gave; `now` is the wall-clock
    /// time (Unix seconds) the chain's dates are checked against.
    pub fn receive(&mut self, response: &Response<'_>, now: u64) {
        let Some(step) = self.outstanding.take() else {
            if !matches!(self.state, State::Done | State::Failed) {
                self.fail(Error::Unexpected);
            }
            return;
        };
        if let Some(nonce) = response.replay_nonce.filter(|nonce| nonce.len() <= MAX_NONCE && base64url::is_alphabet(nonce)) {
            self.nonce = Some(String::from(nonce));
        }
        self.retry_after = response.retry_after.and_then(|value| parse_retry_after(value, now));
        if let Err(error) = self.advance(step, response, now) {
            self.fail(error);
        }
    }

    fn expect_status(&mut self, step: Step, response: &Response<'_>, expected: &[u16]) -> Result<bool, Error> {
        if expected.contains(&response.status) {
            return Ok(true);
        }
        let Ok(problem) = Problem::parse(response.body) else {
            return Err(Error::Status { step, status: response.status });
        };
        if problem.acme_error() == Some("badNonce") && !self.bad_nonce_retried && step != Step::Directory && step != Step::Nonce {
            // Send the same request again with the nonce this answer carried.
            self.bad_nonce_retried = true;
            return Ok(false);
        }
        Err(Error::Problem { step, problem })
    }

    /// Sets the pause before the next poll, counting polls.
    fn schedule_poll(&mut self, step: Step) -> Result<(), Error> {
        self.polls += 1;
        if self.polls > self.config.max_polls {
            return Err(Error::TooManyPolls { step });
        }
        self.delay_ms = match self.retry_after {
            Some(seconds) if seconds > u64::from(self.config.max_wait_seconds) => return Err(Error::WaitTooLong { seconds }),
            Some(seconds) => (seconds as u32).saturating_mul(1000),
            None => self.config.poll_interval_ms,
        };
        Ok(())
    }

    fn enter(&mut self, state: State) {
        if self.state != state {
            self.polls = 0;
        }
        self.state = state;
    }

    fn advance(&mut self, step: Step, response: &Response<'_>, now: u64) -> Result<(), Error> {
        let object = |error| Error::Object { step, error };
        match step {
            Step::Nonce => {
                if !matches!(response.status, 200 | 204) {
                    return Err(Error::Status { step, status: response.status });
                }
                if self.nonce.is_none() {
                    return Err(Error::MissingNonce);
                }
                return Ok(());
            }
            Step::Directory => {
                self.expect_status(step, response, &[200])?;
                let directory = Directory::parse(response.body).map_err(object)?;
                if directory.terms_of_service.is_some() && !self.config.terms_agreed {
                    return Err(Error::TermsNotAgreed);
                }
                if directory.external_account_required && self.config.external_account.is_none() {
                    return Err(Error::ExternalAccountRequired);
                }
                self.directory = Some(directory);
                self.enter(State::NewAccount);
                return Ok(());
            }
            _ => {}
        }
        let expected: &[u16] = match step {
            Step::NewAccount => &[200, 201],
            Step::NewOrder => &[201],
            _ => &[200],
        };
        if !self.expect_status(step, response, expected)? {
            return Ok(());
        }
        self.bad_nonce_retried = false;
        let host = self.config.host.as_str();
        match step {
            Step::NewAccount => {
                let account = Account::parse(response.body).map_err(object)?;
                if account.status != Status::Valid {
                    return Err(Error::AccountUnusable(account.status));
                }
                let location = response.location.and_then(url::parse).ok_or(Error::MissingLocation { step })?;
                self.account = Some(String::from(location.as_str()));
                self.enter(State::NewOrder);
            }
            Step::NewOrder => {
                let order = Order::parse(response.body, host).map_err(object)?;
                self.order_url = Some(response.location.and_then(url::parse).ok_or(Error::MissingLocation { step })?);
                self.authorization = order.authorizations.first().cloned();
                self.take_order(order, false)?;
            }
            Step::Authorization | Step::PollAuthorization => {
                let authorization = Authorization::parse(response.body, host).map_err(object)?;
                match authorization.status {
                    Status::Valid => {
                        self.pending = None;
                        self.enter(State::PollOrder { finalized: false });
                    }
                    Status::Pending if step == Step::Authorization => self.choose_challenge(&authorization)?,
                    Status::Pending => {
                        if let Some(problem) = authorization.failure() {
                            return Err(Error::AuthorizationFailed(Some(problem.clone())));
                        }
                        self.schedule_poll(step)?;
                    }
                    _ => return Err(Error::AuthorizationFailed(authorization.failure().cloned())),
                }
            }
            Step::Challenge => {
                let challenge = Challenge::parse(response.body).map_err(object)?;
                if Some(&challenge.url) != self.challenge_url.as_ref() || Some(challenge.kind) != self.pending.as_ref().map(|pending| pending.kind) {
                    return Err(object(ObjectError::Inconsistent("challenge: not the one answered")));
                }
                if challenge.status == Status::Invalid {
                    return Err(Error::AuthorizationFailed(challenge.error));
                }
                self.enter(State::PollAuthorization);
                self.schedule_poll(step)?;
            }
            Step::PollOrder | Step::Finalize => {
                let order = Order::parse(response.body, host).map_err(object)?;
                let finalized = step == Step::Finalize || matches!(self.state, State::PollOrder { finalized: true });
                self.take_order(order, finalized)?;
            }
            Step::Certificate => {
                let pem = core::str::from_utf8(response.body).map_err(|_| Error::Chain(InstallError::NotPem))?;
                let chain = check_chain(response.body, self.certificate_key, &self.config.host, now).map_err(Error::Chain)?;
                self.issued = Some(Issued { pem: String::from(pem), chain });
                self.enter(State::Done);
            }
            Step::Directory | Step::Nonce => {}
        }
        Ok(())
    }

    /// Moves on from an order's status.
    fn take_order(&mut self, order: Order, finalized: bool) -> Result<(), Error> {
        let status = order.status;
        if status == Status::Invalid {
            return Err(Error::OrderFailed(order.error));
        }
        self.order = Some(order);
        match status {
            Status::Valid => self.enter(State::Certificate),
            Status::Ready if !finalized => self.enter(State::Finalize),
            Status::Pending if !finalized && self.pending.is_none() && self.challenge_url.is_none() => self.enter(State::Authorization),
            Status::Pending | Status::Ready | Status::Processing => {
                self.enter(State::PollOrder { finalized });
                self.schedule_poll(Step::PollOrder)?;
            }
            _ => return Err(Error::OrderFailed(None)),
        }
        Ok(())
    }

    fn choose_challenge(&mut self, authorization: &Authorization) -> Result<(), Error> {
        let chosen = self.config.challenges.iter().find_map(|kind| {
            authorization.challenges.iter().find(|challenge| challenge.kind == *kind && challenge.status != Status::Invalid)
        });
        let challenge = chosen.ok_or(Error::NoUsableChallenge)?;
        let token = challenge.token.clone().ok_or(Error::NoUsableChallenge)?;
        let key_authorization = jws::key_authorization(&token, &self.thumbprint);
        self.pending = Some(PendingChallenge { kind: challenge.kind, token, key_authorization });
        self.challenge_url = Some(challenge.url.clone());
        if challenge.status == Status::Pending {
            self.enter(State::Challenge);
        } else {
            // Already being validated (an earlier attempt answered it): poll.
            self.enter(State::PollAuthorization);
            self.schedule_poll(Step::Authorization)?;
        }
        Ok(())
    }
}

/// `Retry-After` (RFC 9110 section 10.2.3) as seconds from `now`: delta seconds, or an
/// IMF-fixdate (a date already past is 0).
pub fn parse_retry_after(value: &str, now: u64) -> Option<u64> {
    let value = value.trim();
    if let Some(date) = crate::time::parse_http_date(value) {
        return Some(date.saturating_sub(now));
    }
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

#[cfg(test)]
pub(crate) mod tests {
    //! The state machine's refusals and retries with hand-written answers in Pebble's shapes;
    //! the whole issuance against a real Pebble is in `tests/pebble.rs`.

    use super::*;

    const BASE: &str = "https://ca.example.test";
    pub(crate) const DIRECTORY: &str = r#"{"newNonce":"https://ca.example.test/nonce","newAccount":"https://ca.example.test/acct",
        "newOrder":"https://ca.example.test/order","meta":{"termsOfService":"https://ca.example.test/terms"}}"#;
    const ACCOUNT: &str = r#"{"status":"valid","orders":"https://ca.example.test/orders/1"}"#;
    const ORDER: &str = r#"{"status":"pending","identifiers":[{"type":"dns","value":"mx.example.test"}],
        "authorizations":["https://ca.example.test/authz/1"],"finalize":"https://ca.example.test/finalize/1"}"#;
    const AUTHORIZATION: &str = r#"{"status":"pending","identifier":{"type":"dns","value":"mx.example.test"},"challenges":[
        {"type":"tls-alpn-01","url":"https://ca.example.test/chall/2","token":"Xo1eTKp4pGIthvPmr9Y1ggjX5S1CsFbswgx_Ud7eW2A","status":"pending"},
        {"type":"http-01","url":"https://ca.example.test/chall/1","token":"evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA","status":"pending"}]}"#;

    pub(crate) fn keys() -> (DeviceKey, DeviceKey) {
        (DeviceKey::generate(&mut rand_core::OsRng), DeviceKey::generate(&mut rand_core::OsRng))
    }

    pub(crate) fn config() -> Config {
        Config::new(url::parse(&format!("{BASE}/dir")).unwrap(), HostName::new("mx.example.test").unwrap(), true)
    }

    pub(crate) fn answer(client: &mut Client<'_>, status: u16, location: Option<&str>, retry_after: Option<&str>, body: &str) {
        let response = Response { status, replay_nonce: Some("nonce_abc"), location, retry_after, content_type: None, body: body.as_bytes() };
        client.receive(&response, 1_796_425_550);
    }

    /// The request the client sends next (its URL's path), ignoring the delay.
    pub(crate) fn next_path(client: &mut Client<'_>) -> String {
        match client.poll() {
            Action::Send { request, .. } => String::from(request.url.path_and_query()),
            other => panic!("expected a request, got {other:?} ({:?})", client.error()),
        }
    }

    /// Runs the client up to the authorization with the given order body.
    fn up_to_order<'k>(client: &mut Client<'k>, order: &str) {
        assert_eq!(next_path(client), "/dir");
        answer(client, 200, None, None, DIRECTORY);
        assert_eq!(next_path(client), "/acct", "the directory's nonce is used, no newNonce needed");
        answer(client, 201, Some("https://ca.example.test/acct/7"), None, ACCOUNT);
        assert_eq!(next_path(client), "/order");
        answer(client, 201, Some("https://ca.example.test/order/9"), None, order);
    }

    #[test]
    fn asks_for_a_nonce_first_and_follows_the_order() {
        let (account_key, device_key) = keys();
        let mut client = Client::new(config(), &account_key, &device_key);
        assert_eq!(next_path(&mut client), "/dir");
        client.receive(&Response { status: 200, replay_nonce: None, location: None, retry_after: None, content_type: None, body: DIRECTORY.as_bytes() }, 0);
        assert_eq!(next_path(&mut client), "/nonce");
        answer(&mut client, 204, None, None, "");
        assert_eq!(next_path(&mut client), "/acct");
        answer(&mut client, 201, Some("https://ca.example.test/acct/7"), None, ACCOUNT);
        assert_eq!(client.account_url(), Some("https://ca.example.test/acct/7"));
        assert_eq!(next_path(&mut client), "/order");
        answer(&mut client, 201, Some("https://ca.example.test/order/9"), None, ORDER);
        assert_eq!(next_path(&mut client), "/authz/1");
        answer(&mut client, 200, None, None, AUTHORIZATION);
        // HTTP-01 is preferred by default even though TLS-ALPN-01 is listed first.
        let pending = client.pending_challenge().unwrap().clone();
        assert_eq!(pending.kind, ChallengeKind::Http01);
        assert_eq!(pending.token, "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA");
        assert_eq!(pending.key_authorization, format!("{}.{}", pending.token, jws::thumbprint(&account_key)));
        assert_eq!(client.http01_answer(&format!("{HTTP01_PREFIX}{}", pending.token)), Some(pending.key_authorization.as_str()));
        for other in ["/", "/status.json", "/.well-known/acme-challenge/", "/.well-known/acme-challenge/stale-token-000000000"] {
            assert_eq!(client.http01_answer(other), None, "{other}");
        }
        assert_eq!(next_path(&mut client), "/chall/1");
    }

    #[test]
    fn a_request_without_an_answer_is_sent_again() {
        let (account_key, device_key) = keys();
        let mut client = Client::new(config(), &account_key, &device_key);
        assert_eq!(next_path(&mut client), "/dir");
        assert_eq!(next_path(&mut client), "/dir", "the directory GET again");
        answer(&mut client, 200, None, None, DIRECTORY);
        assert_eq!(next_path(&mut client), "/acct");
        // The nonce went with the lost request: a fresh one first, then the same step.
        assert_eq!(next_path(&mut client), "/nonce");
        answer(&mut client, 200, None, None, "");
        assert_eq!(next_path(&mut client), "/acct");
        answer(&mut client, 201, Some("https://ca.example.test/acct/7"), None, ACCOUNT);
        assert_eq!(next_path(&mut client), "/order");
    }

    #[test]
    fn tls_alpn_01_when_preferred() {
        let (account_key, device_key) = keys();
        let mut config = config();
        config.challenges = alloc::vec![ChallengeKind::TlsAlpn01];
        let mut client = Client::new(config, &account_key, &device_key);
        up_to_order(&mut client, ORDER);
        assert_eq!(next_path(&mut client), "/authz/1");
        answer(&mut client, 200, None, None, AUTHORIZATION);
        let pending = client.pending_challenge().unwrap();
        assert_eq!(pending.kind, ChallengeKind::TlsAlpn01);
        assert_eq!(pending.acme_identifier()[2..], jws::tls_alpn_digest(&pending.key_authorization));
        assert_eq!(client.http01_answer(&format!("{HTTP01_PREFIX}{}", pending.token)), None, "no HTTP-01 answer for TLS-ALPN-01");
        assert_eq!(next_path(&mut client), "/chall/2");

        // Only DNS-01 offered: nothing this device answers.
        let mut config = self::config();
        config.challenges = alloc::vec![ChallengeKind::Http01];
        let mut client = Client::new(config, &account_key, &device_key);
        up_to_order(&mut client, ORDER);
        next_path(&mut client);
        let dns_only = AUTHORIZATION.replace("tls-alpn-01", "dns-01").replace("http-01", "dns-01");
        answer(&mut client, 200, None, None, &dns_only);
        assert_eq!(client.poll(), Action::Failed);
        assert_eq!(client.error(), Some(&Error::NoUsableChallenge));
    }

    #[test]
    fn an_order_for_another_name_is_refused() {
        let (account_key, device_key) = keys();
        let mut client = Client::new(config(), &account_key, &device_key);
        up_to_order(&mut client, &ORDER.replace("mx.example.test", "evil.example.test"));
        assert_eq!(client.poll(), Action::Failed);
        assert_eq!(client.error(), Some(&Error::Object { step: Step::NewOrder, error: ObjectError::WrongIdentifiers }));
        // Failed is final.
        assert_eq!(client.poll(), Action::Failed);
        answer(&mut client, 200, None, None, ORDER);
        assert_eq!(client.poll(), Action::Failed);
    }

    #[test]
    fn terms_and_external_account_binding_are_required_when_the_ca_says_so() {
        let (account_key, device_key) = keys();
        let mut config = config();
        config.terms_agreed = false;
        let mut client = Client::new(config, &account_key, &device_key);
        next_path(&mut client);
        answer(&mut client, 200, None, None, DIRECTORY);
        assert_eq!(client.error(), Some(&Error::TermsNotAgreed));

        let mut client = Client::new(self::config(), &account_key, &device_key);
        next_path(&mut client);
        answer(&mut client, 200, None, None, &DIRECTORY.replace(r#""meta":{"#, r#""meta":{"externalAccountRequired":true,"#));
        assert_eq!(client.error(), Some(&Error::ExternalAccountRequired));
    }

    #[test]
    fn bad_nonce_is_retried_once_only() {
        let (account_key, device_key) = keys();
        let bad_nonce = r#"{"type":"urn:ietf:params:acme:error:badNonce","detail":"JWS has an invalid anti-replay nonce","status":400}"#;
        let mut client = Client::new(config(), &account_key, &device_key);
        next_path(&mut client);
        answer(&mut client, 200, None, None, DIRECTORY);
        assert_eq!(next_path(&mut client), "/acct");
        answer(&mut client, 400, None, None, bad_nonce);
        assert_eq!(next_path(&mut client), "/acct", "retried");
        answer(&mut client, 400, None, None, bad_nonce);
        assert_eq!(client.poll(), Action::Failed);
        let Some(Error::Problem { step: Step::NewAccount, problem }) = client.error() else { panic!("{:?}", client.error()) };
        assert_eq!(problem.acme_error(), Some("badNonce"));
    }

    #[test]
    fn problems_statuses_and_retry_after() {
        let (account_key, device_key) = keys();
        let mut client = Client::new(config(), &account_key, &device_key);
        next_path(&mut client);
        answer(&mut client, 200, None, None, DIRECTORY);
        next_path(&mut client);
        let limited = r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new accounts","status":429}"#;
        answer(&mut client, 429, None, Some("3600"), limited);
        assert_eq!(client.poll(), Action::Failed);
        assert_eq!(client.retry_after(), Some(3600));
        assert!(client.error().unwrap().to_string().contains("too many new accounts"));

        let mut client = Client::new(config(), &account_key, &device_key);
        next_path(&mut client);
        answer(&mut client, 500, None, None, "<html>oops</html>");
        assert_eq!(client.error(), Some(&Error::Status { step: Step::Directory, status: 500 }));

        // A poll answered with a Retry-After beyond the limit ends the attempt.
        let mut client = Client::new(config(), &account_key, &device_key);
        up_to_order(&mut client, ORDER);
        next_path(&mut client);
        answer(&mut client, 200, None, None, AUTHORIZATION);
        assert_eq!(next_path(&mut client), "/chall/1");
        let processing = r#"{"type":"http-01","url":"https://ca.example.test/chall/1","token":"evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA","status":"processing"}"#;
        answer(&mut client, 200, None, Some("7"), processing);
        match client.poll() {
            Action::Send { request, delay_ms } => assert_eq!((request.url.path_and_query(), delay_ms), ("/authz/1", 7000)),
            other => panic!("{other:?}"),
        }
        answer(&mut client, 200, None, Some("86400"), AUTHORIZATION);
        assert_eq!(client.poll(), Action::Failed);
        assert_eq!(client.error(), Some(&Error::WaitTooLong { seconds: 86400 }));
        assert_eq!(client.pending_challenge(), None, "a failed attempt answers no challenge");
    }

    #[test]
    fn polls_are_bounded() {
        let (account_key, device_key) = keys();
        let mut config = config();
        config.max_polls = 3;
        let mut client = Client::new(config, &account_key, &device_key);
        up_to_order(&mut client, ORDER);
        next_path(&mut client);
        answer(&mut client, 200, None, None, AUTHORIZATION);
        next_path(&mut client);
        let pending = r#"{"type":"http-01","url":"https://ca.example.test/chall/1","token":"evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA","status":"pending"}"#;
        answer(&mut client, 200, None, None, pending);
        // Three polls are sent; the third still pending ends the attempt.
        for _ in 0..3 {
            assert_eq!(next_path(&mut client), "/authz/1");
            answer(&mut client, 200, None, None, AUTHORIZATION);
        }
        assert_eq!(client.poll(), Action::Failed);
        assert_eq!(client.error(), Some(&Error::TooManyPolls { step: Step::PollAuthorization }));
    }

    #[test]
    fn missing_location_and_unexpected_answers() {
        let (account_key, device_key) = keys();
        let mut client = Client::new(config(), &account_key, &device_key);
        next_path(&mut client);
        answer(&mut client, 200, None, None, DIRECTORY);
        next_path(&mut client);
        answer(&mut client, 201, Some("http://ca.example.test/acct/7"), None, ACCOUNT);
        assert_eq!(client.error(), Some(&Error::MissingLocation { step: Step::NewAccount }));

        let mut client = Client::new(config(), &account_key, &device_key);
        answer(&mut client, 200, None, None, DIRECTORY);
        assert_eq!(client.error(), Some(&Error::Unexpected));
    }

    /// Drives a client through challenge, polls, finalize and download with hand-written
    /// answers and hands it `chain` as the certificate.
    fn through_to_certificate(client: &mut Client<'_>, chain: &str) {
        up_to_order(client, ORDER);
        next_path(client);
        answer(client, 200, None, None, AUTHORIZATION);
        assert_eq!(next_path(client), "/chall/1");
        let processing = r#"{"type":"http-01","url":"https://ca.example.test/chall/1","token":"evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA","status":"processing"}"#;
        answer(client, 200, None, None, processing);
        assert_eq!(next_path(client), "/authz/1");
        let valid = AUTHORIZATION.replacen(r#""status":"pending""#, r#""status":"valid""#, 1).replace(r#""status":"pending"}]"#, r#""status":"valid"}]"#);
        answer(client, 200, None, None, &valid);
        assert_eq!(client.pending_challenge(), None, "the challenge is no longer answered once valid");
        assert_eq!(next_path(client), "/order/9");
        answer(client, 200, None, None, &ORDER.replace("pending", "ready"));
        match client.poll() {
            Action::Send { request, .. } => {
                assert_eq!(request.url.path_and_query(), "/finalize/1");
                let body = crate::json::parse(request.body.unwrap().as_bytes()).unwrap();
                let payload = base64url::decode(body.get("payload").unwrap().as_str().unwrap()).unwrap();
                let csr = crate::json::parse(&payload).unwrap().get("csr").unwrap().as_str().unwrap().to_string();
                assert_eq!(base64url::decode(&csr).unwrap(), certificate_request(client.certificate_key, &client.config.host).unwrap());
            }
            other => panic!("{other:?}"),
        }
        let valid_order = ORDER.replace("pending", "valid").replace(r#""finalize""#, r#""certificate":"https://ca.example.test/cert/1","finalize""#);
        answer(client, 200, None, None, &valid_order);
        match client.poll() {
            Action::Send { request, .. } => assert_eq!((request.url.path_and_query(), request.accept), ("/cert/1", PEM_CHAIN)),
            other => panic!("{other:?}"),
        }
        answer(client, 200, None, None, chain);
    }

    #[test]
    fn a_chain_that_fails_the_checks_is_not_issued() {
        let (account_key, device_key) = keys();
        let mut client = Client::new(config(), &account_key, &device_key);
        through_to_certificate(&mut client, "<html>not a certificate</html>");
        assert_eq!(client.poll(), Action::Failed);
        assert!(matches!(client.error(), Some(Error::Chain(_))), "{:?}", client.error());
        assert!(client.issued().is_none());

        // The device's own self-signed certificate: the right key and name, but no issuer.
        let host = HostName::new("mx.example.test").unwrap();
        let own = homemx_tls::identity::self_signed_certificate(&device_key, &host, 1_796_000_000, 90, &mut rand_core::OsRng).unwrap();
        let pem = homemx_tls::identity::pem::encode(homemx_tls::identity::pem::CERTIFICATE, &own);
        let mut client = Client::new(config(), &account_key, &device_key);
        through_to_certificate(&mut client, &pem);
        assert_eq!(client.poll(), Action::Failed);
        assert_eq!(client.error(), Some(&Error::Chain(InstallError::IssuerMissing)));
        assert!(client.issued().is_none());
    }

    #[test]
    fn refuses_one_key_for_both_and_hides_the_mac_key() {
        let key = DeviceKey::generate(&mut rand_core::OsRng);
        let mut client = Client::new(config(), &key, &key);
        assert_eq!(client.poll(), Action::Failed);
        assert_eq!(client.error(), Some(&Error::SameKey));

        let mut config = config();
        config.external_account = Some(ExternalAccount { key_id: String::from("kid-1"), mac_key: alloc::vec![0xa5; 32] });
        let shown = format!("{config:?}");
        assert!(shown.contains("kid-1") && !shown.contains("165"), "{shown}");
    }

    #[test]
    fn retry_after_values() {
        let now = 1_796_425_550;
        assert_eq!(parse_retry_after("120", now), Some(120));
        assert_eq!(parse_retry_after(" 0 ", now), Some(0));
        assert_eq!(parse_retry_after("Fri, 04 Dec 2026 23:15:50 GMT", now), Some(600));
        assert_eq!(parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT", now), Some(0));
        for bad in ["", "-1", "1.5", "Fri, 31 Dec 1999 23:59:59 CET", "99999999999"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }
}
