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
//! the request's URL; bytes by [`crate::exchange`]), and hands the answer to
//! [`Client::receive`] with the wall-clock time. [`Action::Done`] means the chain is in
//! [`Client::issued`]; [`Action::Failed`] means [`Client::error`] says why (with the ACME
//! problem document when the server sent one) and [`Client::retry_after`] what the server
//! asked for.
//!
//! Nonces: every response's `Replay-Nonce` is kept for the next POST; without one, the client
//! first asks `newNonce`. A `badNonce` error is retried once with the nonce it carried.
//! Polls are bounded ([`Config::max_polls`]) and spaced by `Retry-After` (delta seconds) or
//! [`Config::poll_interval_ms`]; a `Retry-After` longer than [`Config::max_wait_seconds`]
//! ends the attempt (the renewal policy waits instead).
//!
//! Calls [`crate::jws`], [`crate::objects`], homemx-tls's CSR and chain checks; called by the
//! firmware's ACME task and the Pebble test.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use homemx_tls::identity::{certificate_request, check_chain, DeviceKey, HostName, InstallError};
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

/// External Account Binding credentials (RFC 8555 section 7.3.4).
#[derive(Clone, Debug)]
pub struct ExternalAccount {
    pub key_id: String,
    pub mac_key: Vec<u8>,
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

/// One response as the client needs it (see [`crate::exchange::response`]).
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
            error: None,
        }
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
        self.retry_after = response.retry_after.and_then(parse_retry_after);
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

/// `Retry-After` as delta seconds (RFC 9110 section 10.2.3); an HTTP date is not read (the
/// caller then uses its own pause).
pub fn parse_retry_after(value: &str) -> Option<u64> {
    let value = value.trim();
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}
