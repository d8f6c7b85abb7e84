//! The ACME resources as the client reads them (RFC 8555 section 7.1, RFC 9773 for renewal
//! information), each from a JSON body with the limits of [`crate::json`] plus:
//!
//! - URLs must be `https://` ([`crate::url`]); statuses must be ones the resource can have;
//!   times must be RFC 3339;
//! - an order must be for exactly the one DNS name the client asked for, with exactly one
//!   authorization, and a `valid` order must name its certificate;
//! - an authorization must be for that name (no wildcard), with at most [`MAX_CHALLENGES`]
//!   challenges whose tokens are base64url of 16 to [`MAX_TOKEN`] characters;
//! - a problem document keeps at most [`MAX_SUBPROBLEMS`] subproblems;
//! - unknown members are ignored (servers may add fields), but a known member of the wrong
//!   type is an error, and so is any member name given twice.
//!
//! Every refusal is an [`ObjectError`] naming the member and what was wrong with it.

use alloc::string::String;
use alloc::vec::Vec;

use crate::json::{self, JsonError, Value};
use crate::time::parse_rfc3339;
use crate::url::{self, Url};

/// Most challenges one authorization may offer.
pub const MAX_CHALLENGES: usize = 8;
/// Most subproblems kept from a problem document.
pub const MAX_SUBPROBLEMS: usize = 8;
/// Longest challenge token.
pub const MAX_TOKEN: usize = 128;
/// Shortest challenge token (RFC 8555 section 8.1 asks for at least 128 bits of entropy: 22
/// base64url characters; 16 leaves room for servers that count differently).
pub const MIN_TOKEN: usize = 16;

/// What was wrong with a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A required member is absent.
    Missing,
    /// The member has another JSON type.
    WrongType,
    /// The value is not acceptable (a bad URL, status, time, token …).
    Invalid,
    /// More items than the limits allow.
    TooMany,
}

/// Why a resource was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectError {
    /// The body is not acceptable JSON.
    Json(JsonError),
    /// The body is JSON but not an object.
    NotAnObject,
    /// Member `field` (a path such as `challenges[].token`) is missing or wrong.
    Field { field: &'static str, reason: Reason },
    /// The order is not for exactly the requested name.
    WrongIdentifiers,
    /// The resource contradicts itself or the request (`field` says where).
    Inconsistent(&'static str),
}

impl core::fmt::Display for ObjectError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ObjectError::Json(error) => write!(formatter, "malformed JSON ({:?} at byte {})", error.kind, error.offset),
            ObjectError::NotAnObject => write!(formatter, "the body is not a JSON object"),
            ObjectError::Field { field, reason } => write!(formatter, "member {field}: {reason:?}"),
            ObjectError::WrongIdentifiers => write!(formatter, "the order is not for exactly the requested name"),
            ObjectError::Inconsistent(what) => write!(formatter, "inconsistent {what}"),
        }
    }
}

/// The status of an account, order, authorization or challenge (RFC 8555 section 7.1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Ready,
    Processing,
    Valid,
    Invalid,
    Deactivated,
    Expired,
    Revoked,
}

impl Status {
    fn from_text(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Status::Pending,
            "ready" => Status::Ready,
            "processing" => Status::Processing,
            "valid" => Status::Valid,
            "invalid" => Status::Invalid,
            "deactivated" => Status::Deactivated,
            "expired" => Status::Expired,
            "revoked" => Status::Revoked,
            _ => return None,
        })
    }
}

fn field(field: &'static str, reason: Reason) -> ObjectError {
    ObjectError::Field { field, reason }
}

fn object(body: &[u8]) -> Result<Value, ObjectError> {
    let value = json::parse(body).map_err(ObjectError::Json)?;
    match value {
        Value::Object(_) => Ok(value),
        _ => Err(ObjectError::NotAnObject),
    }
}

fn optional_str<'v>(value: &'v Value, name: &'static str) -> Result<Option<&'v str>, ObjectError> {
    match value.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(field(name, Reason::WrongType)),
    }
}

fn required_str<'v>(value: &'v Value, name: &'static str) -> Result<&'v str, ObjectError> {
    optional_str(value, name)?.ok_or(field(name, Reason::Missing))
}

fn optional_url(value: &Value, name: &'static str) -> Result<Option<Url>, ObjectError> {
    optional_str(value, name)?.map(|text| url::parse(text).ok_or(field(name, Reason::Invalid))).transpose()
}

fn required_url(value: &Value, name: &'static str) -> Result<Url, ObjectError> {
    optional_url(value, name)?.ok_or(field(name, Reason::Missing))
}

fn status(value: &Value, name: &'static str, allowed: &[Status]) -> Result<Status, ObjectError> {
    let status = Status::from_text(required_str(value, name)?).ok_or(field(name, Reason::Invalid))?;
    if allowed.contains(&status) {
        Ok(status)
    } else {
        Err(field(name, Reason::Invalid))
    }
}

fn optional_time(value: &Value, name: &'static str) -> Result<Option<u64>, ObjectError> {
    optional_str(value, name)?.map(|text| parse_rfc3339(text).ok_or(field(name, Reason::Invalid))).transpose()
}

fn optional_array<'v>(value: &'v Value, name: &'static str) -> Result<&'v [Value], ObjectError> {
    match value.get(name) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(field(name, Reason::WrongType)),
    }
}

fn optional_object<'v>(value: &'v Value, name: &'static str) -> Result<Option<&'v Value>, ObjectError> {
    match value.get(name) {
        None => Ok(None),
        Some(inner @ Value::Object(_)) => Ok(Some(inner)),
        Some(_) => Err(field(name, Reason::WrongType)),
    }
}

/// The directory (section 7.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directory {
    pub new_nonce: Url,
    pub new_account: Url,
    pub new_order: Url,
    pub revoke_cert: Option<Url>,
    pub key_change: Option<Url>,
    /// ARI (RFC 9773), if the server offers it.
    pub renewal_info: Option<Url>,
    /// `meta.termsOfService`.
    pub terms_of_service: Option<String>,
    /// `meta.externalAccountRequired`.
    pub external_account_required: bool,
}

impl Directory {
    /// Reads a directory.
    pub fn parse(body: &[u8]) -> Result<Self, ObjectError> {
        let value = object(body)?;
        let meta = optional_object(&value, "meta")?;
        let (terms_of_service, external_account_required) = match meta {
            None => (None, false),
            Some(meta) => {
                let terms = optional_str(meta, "termsOfService")?.map(String::from);
                if terms.as_ref().is_some_and(|terms| terms.len() > url::MAX_URL) {
                    return Err(field("meta.termsOfService", Reason::Invalid));
                }
                let required = match meta.get("externalAccountRequired") {
                    None => false,
                    Some(Value::Bool(required)) => *required,
                    Some(_) => return Err(field("meta.externalAccountRequired", Reason::WrongType)),
                };
                (terms, required)
            }
        };
        Ok(Directory {
            new_nonce: required_url(&value, "newNonce")?,
            new_account: required_url(&value, "newAccount")?,
            new_order: required_url(&value, "newOrder")?,
            revoke_cert: optional_url(&value, "revokeCert")?,
            key_change: optional_url(&value, "keyChange")?,
            renewal_info: optional_url(&value, "renewalInfo")?,
            terms_of_service,
            external_account_required,
        })
    }
}

/// An account (section 7.1.2): what the client needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub status: Status,
    pub orders: Option<Url>,
}

impl Account {
    /// Reads an account.
    pub fn parse(body: &[u8]) -> Result<Self, ObjectError> {
        let value = object(body)?;
        Ok(Account {
            status: status(&value, "status", &[Status::Valid, Status::Deactivated, Status::Revoked])?,
            orders: optional_url(&value, "orders")?,
        })
    }
}

/// A problem document (RFC 7807 as section 6.7 uses it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The type URI, e.g. `urn:ietf:params:acme:error:badNonce` (`about:blank` if absent).
    pub kind: String,
    pub detail: Option<String>,
    pub status: Option<u16>,
    pub subproblems: Vec<Subproblem>,
}

/// One subproblem (section 6.7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subproblem {
    pub kind: String,
    pub detail: Option<String>,
    /// The identifier's value, if given.
    pub identifier: Option<String>,
}

/// The ACME error namespace.
pub const ERROR_PREFIX: &str = "urn:ietf:params:acme:error:";

impl Problem {
    /// Reads a problem document.
    pub fn parse(body: &[u8]) -> Result<Self, ObjectError> {
        Self::from_value(&object(body)?)
    }

    fn from_value(value: &Value) -> Result<Self, ObjectError> {
        let kind = String::from(optional_str(value, "type")?.unwrap_or("about:blank"));
        let detail = optional_str(value, "detail")?.map(String::from);
        let status = match value.get("status") {
            None => None,
            Some(number @ Value::Number(_)) => {
                Some(number.as_u64().and_then(|code| u16::try_from(code).ok()).ok_or(field("status", Reason::Invalid))?)
            }
            Some(_) => return Err(field("status", Reason::WrongType)),
        };
        let items = optional_array(value, "subproblems")?;
        if items.len() > MAX_SUBPROBLEMS {
            return Err(field("subproblems", Reason::TooMany));
        }
        let subproblems = items
            .iter()
            .map(|item| {
                if !matches!(item, Value::Object(_)) {
                    return Err(field("subproblems[]", Reason::WrongType));
                }
                let identifier = optional_object(item, "identifier")?.map(|identifier| optional_str(identifier, "value")).transpose()?;
                Ok(Subproblem {
                    kind: String::from(optional_str(item, "type")?.unwrap_or("about:blank")),
                    detail: optional_str(item, "detail")?.map(String::from),
                    identifier: identifier.flatten().map(String::from),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Problem { kind, detail, status, subproblems })
    }

    /// The ACME error name (`badNonce`, `rateLimited` …) if the type is in the ACME namespace.
    pub fn acme_error(&self) -> Option<&str> {
        self.kind.strip_prefix(ERROR_PREFIX)
    }
}

impl core::fmt::Display for Problem {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(formatter, "{}", self.kind)?;
        if let Some(detail) = &self.detail {
            write!(formatter, ": {detail}")?;
        }
        for subproblem in &self.subproblems {
            write!(formatter, "; {}", subproblem.kind)?;
            if let Some(detail) = &subproblem.detail {
                write!(formatter, ": {detail}")?;
            }
        }
        Ok(())
    }
}

fn optional_problem(value: &Value, name: &'static str) -> Result<Option<Problem>, ObjectError> {
    optional_object(value, name)?.map(Problem::from_value).transpose()
}

/// Reads `{"type":"dns","value":…}` and checks it names `host` (case-insensitively).
fn check_identifier(value: &Value, host: &str, name: &'static str) -> Result<(), ObjectError> {
    if !matches!(value, Value::Object(_)) {
        return Err(field(name, Reason::WrongType));
    }
    let kind = required_str(value, "type")?;
    let identifier = required_str(value, "value")?;
    if kind != "dns" || !identifier.eq_ignore_ascii_case(host) {
        return Err(ObjectError::WrongIdentifiers);
    }
    Ok(())
}

/// An order (section 7.1.3) for one DNS name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub status: Status,
    pub expires: Option<u64>,
    pub authorizations: Vec<Url>,
    pub finalize: Url,
    pub certificate: Option<Url>,
    pub error: Option<Problem>,
}

impl Order {
    /// Reads an order and checks it is for exactly `host`.
    pub fn parse(body: &[u8], host: &str) -> Result<Self, ObjectError> {
        let value = object(body)?;
        let status = status(&value, "status", &[Status::Pending, Status::Ready, Status::Processing, Status::Valid, Status::Invalid])?;
        let identifiers = match value.get("identifiers") {
            Some(Value::Array(items)) => items,
            Some(_) => return Err(field("identifiers", Reason::WrongType)),
            None => return Err(field("identifiers", Reason::Missing)),
        };
        if identifiers.len() != 1 {
            return Err(ObjectError::WrongIdentifiers);
        }
        check_identifier(&identifiers[0], host, "identifiers[]")?;
        let authorizations = match value.get("authorizations") {
            Some(Value::Array(items)) => items,
            Some(_) => return Err(field("authorizations", Reason::WrongType)),
            None => return Err(field("authorizations", Reason::Missing)),
        };
        if authorizations.len() != 1 {
            return Err(ObjectError::Inconsistent("order: not one authorization for the one name"));
        }
        let authorizations = authorizations
            .iter()
            .map(|item| url::parse(item.as_str().ok_or(field("authorizations[]", Reason::WrongType))?).ok_or(field("authorizations[]", Reason::Invalid)))
            .collect::<Result<Vec<_>, _>>()?;
        let certificate = optional_url(&value, "certificate")?;
        if status == Status::Valid && certificate.is_none() {
            return Err(ObjectError::Inconsistent("order: valid without a certificate URL"));
        }
        Ok(Order {
            status,
            expires: optional_time(&value, "expires")?,
            authorizations,
            finalize: required_url(&value, "finalize")?,
            certificate,
            error: optional_problem(&value, "error")?,
        })
    }
}

/// The challenge types the client can answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeKind {
    /// RFC 8555 section 8.3.
    Http01,
    /// RFC 8737.
    TlsAlpn01,
    /// RFC 8555 section 8.4 (read, never answered: the appliance does not edit DNS).
    Dns01,
    /// Any other type.
    Other,
}

/// One challenge of an authorization (section 7.1.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub kind: ChallengeKind,
    pub url: Url,
    pub status: Status,
    /// The token (base64url), present for the three known types.
    pub token: Option<String>,
    pub error: Option<Problem>,
}

impl Challenge {
    /// Reads a challenge (also the body of the answer to a challenge POST).
    pub fn parse(body: &[u8]) -> Result<Self, ObjectError> {
        Self::from_value(&object(body)?)
    }

    fn from_value(value: &Value) -> Result<Self, ObjectError> {
        if !matches!(value, Value::Object(_)) {
            return Err(field("challenges[]", Reason::WrongType));
        }
        let kind = match required_str(value, "type")? {
            "http-01" => ChallengeKind::Http01,
            "tls-alpn-01" => ChallengeKind::TlsAlpn01,
            "dns-01" => ChallengeKind::Dns01,
            _ => ChallengeKind::Other,
        };
        let token = optional_str(value, "token")?;
        if kind != ChallengeKind::Other {
            let token = token.ok_or(field("challenges[].token", Reason::Missing))?;
            if !(MIN_TOKEN..=MAX_TOKEN).contains(&token.len()) || !crate::base64url::is_alphabet(token) {
                return Err(field("challenges[].token", Reason::Invalid));
            }
        }
        Ok(Challenge {
            kind,
            url: required_url(value, "url")?,
            status: status(value, "status", &[Status::Pending, Status::Processing, Status::Valid, Status::Invalid])?,
            token: token.filter(|_| kind != ChallengeKind::Other).map(String::from),
            error: optional_problem(value, "error")?,
        })
    }
}

/// An authorization (section 7.1.4) for the requested name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    pub status: Status,
    pub expires: Option<u64>,
    pub challenges: Vec<Challenge>,
}

impl Authorization {
    /// Reads an authorization and checks it is for `host`, not a wildcard.
    pub fn parse(body: &[u8], host: &str) -> Result<Self, ObjectError> {
        let value = object(body)?;
        let status = status(
            &value,
            "status",
            &[Status::Pending, Status::Valid, Status::Invalid, Status::Deactivated, Status::Expired, Status::Revoked],
        )?;
        let identifier = value.get("identifier").ok_or(field("identifier", Reason::Missing))?;
        check_identifier(identifier, host, "identifier")?;
        if matches!(value.get("wildcard"), Some(Value::Bool(true))) {
            return Err(ObjectError::WrongIdentifiers);
        }
        let items = match value.get("challenges") {
            Some(Value::Array(items)) => items,
            Some(_) => return Err(field("challenges", Reason::WrongType)),
            None => return Err(field("challenges", Reason::Missing)),
        };
        if items.len() > MAX_CHALLENGES {
            return Err(field("challenges", Reason::TooMany));
        }
        let challenges = items.iter().map(Challenge::from_value).collect::<Result<Vec<_>, _>>()?;
        if status == Status::Valid && !challenges.iter().any(|challenge| challenge.status == Status::Valid) {
            return Err(ObjectError::Inconsistent("authorization: valid without a valid challenge"));
        }
        Ok(Authorization { status, expires: optional_time(&value, "expires")?, challenges })
    }

    /// The problem of the first invalid challenge, the reason an invalid authorization failed.
    pub fn failure(&self) -> Option<&Problem> {
        self.challenges.iter().filter(|challenge| challenge.status == Status::Invalid).find_map(|challenge| challenge.error.as_ref())
    }
}

/// ARI renewal information (RFC 9773 section 4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewalInfo {
    /// `suggestedWindow.start`, Unix seconds.
    pub window_start: u64,
    /// `suggestedWindow.end`, Unix seconds (after the start).
    pub window_end: u64,
    pub explanation_url: Option<String>,
}

impl RenewalInfo {
    /// Reads renewal information.
    pub fn parse(body: &[u8]) -> Result<Self, ObjectError> {
        let value = object(body)?;
        let window = optional_object(&value, "suggestedWindow")?.ok_or(field("suggestedWindow", Reason::Missing))?;
        let start = optional_time(window, "start")?.ok_or(field("suggestedWindow.start", Reason::Missing))?;
        let end = optional_time(window, "end")?.ok_or(field("suggestedWindow.end", Reason::Missing))?;
        if end <= start {
            return Err(ObjectError::Inconsistent("renewal window: end not after start"));
        }
        let explanation_url = optional_str(&value, "explanationURL")?;
        if explanation_url.is_some_and(|text| text.len() > url::MAX_URL || !text.bytes().all(|byte| (0x21..0x7f).contains(&byte))) {
            return Err(field("explanationURL", Reason::Invalid));
        }
        Ok(RenewalInfo { window_start: start, window_end: end, explanation_url: explanation_url.map(String::from) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "mx.example.test";

    /// Pebble 2.4's directory (as it serves it, with ARI and meta added by hand for the test).
    const DIRECTORY: &str = r#"{
       "keyChange": "https://127.0.0.1:14000/rollover-account-key",
       "meta": {"externalAccountRequired": false, "termsOfService": "data:text/plain,Do%20what%20thou%20wilt"},
       "newAccount": "https://127.0.0.1:14000/sign-me-up",
       "newNonce": "https://127.0.0.1:14000/nonce-plz",
       "newOrder": "https://127.0.0.1:14000/order-plz",
       "renewalInfo": "https://127.0.0.1:14000/draft-ietf-acme-ari-03/renewalInfo",
       "revokeCert": "https://127.0.0.1:14000/revoke-cert"
    }"#;

    const ORDER: &str = r#"{
       "status": "pending",
       "expires": "2026-12-05T23:10:00Z",
       "identifiers": [{"type": "dns", "value": "mx.example.test"}],
       "finalize": "https://127.0.0.1:14000/finalize-order/abc",
       "authorizations": ["https://127.0.0.1:14000/authZ/def"]
    }"#;

    const AUTHORIZATION: &str = r#"{
       "status": "pending",
       "identifier": {"type": "dns", "value": "MX.example.test"},
       "challenges": [
          {"type": "tls-alpn-01", "url": "https://127.0.0.1:14000/chalZ/1", "token": "Xo1eTKp4pGIthvPmr9Y1ggjX5S1CsFbswgx_Ud7eW2A", "status": "pending"},
          {"type": "http-01", "url": "https://127.0.0.1:14000/chalZ/2", "token": "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", "status": "pending"},
          {"type": "dns-account-01", "url": "https://127.0.0.1:14000/chalZ/3", "status": "pending"}
       ],
       "expires": "2026-12-05T00:10:00Z"
    }"#;

    #[test]
    fn reads_a_directory() {
        let directory = Directory::parse(DIRECTORY.as_bytes()).unwrap();
        assert_eq!(directory.new_nonce.as_str(), "https://127.0.0.1:14000/nonce-plz");
        assert_eq!(directory.new_account.path_and_query(), "/sign-me-up");
        assert!(directory.renewal_info.is_some());
        assert_eq!(directory.terms_of_service.as_deref(), Some("data:text/plain,Do%20what%20thou%20wilt"));
        assert!(!directory.external_account_required);

        let minimal = r#"{"newNonce":"https://a/n","newAccount":"https://a/a","newOrder":"https://a/o","meta":{"externalAccountRequired":true}}"#;
        let directory = Directory::parse(minimal.as_bytes()).unwrap();
        assert!(directory.external_account_required && directory.revoke_cert.is_none() && directory.terms_of_service.is_none());
    }

    #[test]
    fn refuses_bad_directories() {
        let table: &[(&str, ObjectError)] = &[
            ("[]", ObjectError::NotAnObject),
            (r#"{"newAccount":"https://a/a","newOrder":"https://a/o"}"#, field("newNonce", Reason::Missing)),
            (r#"{"newNonce":"http://a/n","newAccount":"https://a/a","newOrder":"https://a/o"}"#, field("newNonce", Reason::Invalid)),
            (r#"{"newNonce":1,"newAccount":"https://a/a","newOrder":"https://a/o"}"#, field("newNonce", Reason::WrongType)),
            (
                r#"{"newNonce":"https://a/n","newAccount":"https://a/a","newOrder":"https://a/o","meta":{"externalAccountRequired":"yes"}}"#,
                field("meta.externalAccountRequired", Reason::WrongType),
            ),
            (r#"{"newNonce":"https://a/n","newAccount":"https://a/a","newOrder":"https://a/o","meta":[]}"#, field("meta", Reason::WrongType)),
        ];
        for (body, error) in table {
            assert_eq!(Directory::parse(body.as_bytes()).unwrap_err(), *error, "{body}");
        }
        let duplicate = r#"{"newNonce":"https://a/n","newNonce":"https://evil/n","newAccount":"https://a/a","newOrder":"https://a/o"}"#;
        assert!(matches!(Directory::parse(duplicate.as_bytes()), Err(ObjectError::Json(JsonError { kind: json::JsonErrorKind::DuplicateKey, .. }))));
        // Every truncation of a good directory is refused (never read half).
        for end in 0..DIRECTORY.len() - 1 {
            assert!(Directory::parse(&DIRECTORY.as_bytes()[..end]).is_err(), "{end}");
        }
        let oversized = format!("{}{}", DIRECTORY, " ".repeat(json::MAX_DOCUMENT));
        assert!(matches!(Directory::parse(oversized.as_bytes()), Err(ObjectError::Json(JsonError { kind: json::JsonErrorKind::TooLarge, .. }))));
    }

    #[test]
    fn reads_an_order_for_the_requested_name_only() {
        let order = Order::parse(ORDER.as_bytes(), HOST).unwrap();
        assert_eq!(order.status, Status::Pending);
        assert_eq!(order.expires, Some(parse_rfc3339("2026-12-05T23:10:00Z").unwrap()));
        assert_eq!(order.authorizations.len(), 1);
        assert_eq!(order.certificate, None);

        assert_eq!(Order::parse(ORDER.as_bytes(), "other.example.test").unwrap_err(), ObjectError::WrongIdentifiers);
        let two = ORDER.replace(r#"[{"type": "dns", "value": "mx.example.test"}]"#, r#"[{"type": "dns", "value": "mx.example.test"},{"type": "dns", "value": "evil.test"}]"#);
        assert_eq!(Order::parse(two.as_bytes(), HOST).unwrap_err(), ObjectError::WrongIdentifiers);
        let ip = ORDER.replace(r#""type": "dns""#, r#""type": "ip""#);
        assert_eq!(Order::parse(ip.as_bytes(), HOST).unwrap_err(), ObjectError::WrongIdentifiers);
        let none = ORDER.replace(r#"[{"type": "dns", "value": "mx.example.test"}]"#, "[]");
        assert_eq!(Order::parse(none.as_bytes(), HOST).unwrap_err(), ObjectError::WrongIdentifiers);
        let valid = ORDER.replace("pending", "valid");
        assert!(matches!(Order::parse(valid.as_bytes(), HOST), Err(ObjectError::Inconsistent(_))));
        let valid = valid.replace(r#""status""#, r#""certificate": "https://127.0.0.1:14000/certZ/1", "status""#);
        assert!(Order::parse(valid.as_bytes(), HOST).unwrap().certificate.is_some());
        let weird = ORDER.replace("pending", "deactivated");
        assert_eq!(Order::parse(weird.as_bytes(), HOST).unwrap_err(), field("status", Reason::Invalid));
        let number = ORDER.replace(r#""pending""#, "1");
        assert_eq!(Order::parse(number.as_bytes(), HOST).unwrap_err(), field("status", Reason::WrongType));
        let expires = ORDER.replace("2026-12-05T23:10:00Z", "tomorrow");
        assert_eq!(Order::parse(expires.as_bytes(), HOST).unwrap_err(), field("expires", Reason::Invalid));
        let two_authz = ORDER.replace(r#"["https://127.0.0.1:14000/authZ/def"]"#, r#"["https://a/1","https://a/2"]"#);
        assert!(matches!(Order::parse(two_authz.as_bytes(), HOST), Err(ObjectError::Inconsistent(_))));
        let bad_authz = ORDER.replace(r#"["https://127.0.0.1:14000/authZ/def"]"#, "[5]");
        assert_eq!(Order::parse(bad_authz.as_bytes(), HOST).unwrap_err(), field("authorizations[]", Reason::WrongType));
        let duplicate = ORDER.replace(r#""status": "pending","#, r#""status": "pending", "status": "valid","#);
        assert!(matches!(Order::parse(duplicate.as_bytes(), HOST), Err(ObjectError::Json(_))));
        let invalid = ORDER.replace(
            r#""status": "pending","#,
            r#""status": "invalid", "error": {"type": "urn:ietf:params:acme:error:unauthorized", "detail": "no", "status": 403},"#,
        );
        let order = Order::parse(invalid.as_bytes(), HOST).unwrap();
        assert_eq!(order.error.unwrap().acme_error(), Some("unauthorized"));
    }

    #[test]
    fn reads_an_authorization() {
        let authorization = Authorization::parse(AUTHORIZATION.as_bytes(), HOST).unwrap();
        assert_eq!(authorization.status, Status::Pending);
        let kinds: Vec<_> = authorization.challenges.iter().map(|challenge| challenge.kind).collect();
        assert_eq!(kinds, [ChallengeKind::TlsAlpn01, ChallengeKind::Http01, ChallengeKind::Other]);
        assert_eq!(authorization.challenges[1].token.as_deref(), Some("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"));
        assert_eq!(authorization.challenges[2].token, None);
        assert_eq!(authorization.failure(), None);

        assert_eq!(Authorization::parse(AUTHORIZATION.as_bytes(), "mx.example.org").unwrap_err(), ObjectError::WrongIdentifiers);
        let wildcard = AUTHORIZATION.replace(r#""status": "pending","#, r#""status": "pending", "wildcard": true,"#);
        assert_eq!(Authorization::parse(wildcard.as_bytes(), HOST).unwrap_err(), ObjectError::WrongIdentifiers);
        for bad_token in ["short", "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ+PCt92wr/oA", "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA="] {
            let body = AUTHORIZATION.replace("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", bad_token);
            assert_eq!(Authorization::parse(body.as_bytes(), HOST).unwrap_err(), field("challenges[].token", Reason::Invalid), "{bad_token}");
        }
        let no_token = AUTHORIZATION.replace(r#""token": "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", "#, "");
        assert_eq!(Authorization::parse(no_token.as_bytes(), HOST).unwrap_err(), field("challenges[].token", Reason::Missing));
        let challenge = r#"{"type":"http-01","url":"https://a/c","token":"evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA","status":"pending"}"#;
        let many = format!(r#"{{"status":"pending","identifier":{{"type":"dns","value":"{HOST}"}},"challenges":[{}]}}"#, [challenge; MAX_CHALLENGES + 1].join(","));
        assert_eq!(Authorization::parse(many.as_bytes(), HOST).unwrap_err(), field("challenges", Reason::TooMany));
        let valid = AUTHORIZATION.replacen("pending", "valid", 1);
        assert!(matches!(Authorization::parse(valid.as_bytes(), HOST), Err(ObjectError::Inconsistent(_))));

        let failed = AUTHORIZATION.replacen(r#""status": "pending""#, r#""status": "invalid""#, 1).replace(
            r#""token": "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", "status": "pending""#,
            r#""token": "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", "status": "invalid", "error": {"type": "urn:ietf:params:acme:error:unauthorized", "detail": "The key authorization file from the server did not match this challenge", "status": 403}"#,
        );
        let authorization = Authorization::parse(failed.as_bytes(), HOST).unwrap();
        assert_eq!(authorization.status, Status::Invalid);
        let problem = authorization.failure().unwrap();
        assert_eq!(problem.status, Some(403));
        assert!(problem.to_string().contains("did not match"));
    }

    #[test]
    fn reads_problems() {
        let body = br#"{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"Some names were rejected","status":400,
            "subproblems":[{"type":"urn:ietf:params:acme:error:caa","detail":"CAA forbids","identifier":{"type":"dns","value":"mx.example.test"}}]}"#;
        let problem = Problem::parse(body).unwrap();
        assert_eq!(problem.acme_error(), Some("rejectedIdentifier"));
        assert_eq!(problem.subproblems[0].identifier.as_deref(), Some("mx.example.test"));
        assert_eq!(
            problem.to_string(),
            "urn:ietf:params:acme:error:rejectedIdentifier: Some names were rejected; urn:ietf:params:acme:error:caa: CAA forbids"
        );
        assert_eq!(Problem::parse(b"{}").unwrap().kind, "about:blank");
        assert_eq!(Problem::parse(br#"{"status":"400"}"#).unwrap_err(), field("status", Reason::WrongType));
        assert_eq!(Problem::parse(br#"{"status":70000}"#).unwrap_err(), field("status", Reason::Invalid));
        assert_eq!(Problem::parse(br#"{"subproblems":[1]}"#).unwrap_err(), field("subproblems[]", Reason::WrongType));
        let many = format!(r#"{{"subproblems":[{}]}}"#, ["{}"; MAX_SUBPROBLEMS + 1].join(","));
        assert_eq!(Problem::parse(many.as_bytes()).unwrap_err(), field("subproblems", Reason::TooMany));
    }

    #[test]
    fn reads_accounts_and_renewal_information() {
        let account = Account::parse(br#"{"status":"valid","contact":["mailto:a@b"],"orders":"https://a/orders/1"}"#).unwrap();
        assert_eq!(account.status, Status::Valid);
        assert_eq!(Account::parse(br#"{"status":"pending"}"#).unwrap_err(), field("status", Reason::Invalid));

        let info = RenewalInfo::parse(
            br#"{"suggestedWindow":{"start":"2025-01-02T04:00:00Z","end":"2025-01-03T04:00:00Z"},"explanationURL":"https://acme.example.com/docs/ari"}"#,
        )
        .unwrap();
        assert_eq!((info.window_start, info.window_end), (1_735_790_400, 1_735_876_800));
        assert_eq!(info.explanation_url.as_deref(), Some("https://acme.example.com/docs/ari"));
        let reversed = br#"{"suggestedWindow":{"start":"2025-01-03T04:00:00Z","end":"2025-01-02T04:00:00Z"}}"#;
        assert!(matches!(RenewalInfo::parse(reversed), Err(ObjectError::Inconsistent(_))));
        assert_eq!(RenewalInfo::parse(br#"{}"#).unwrap_err(), field("suggestedWindow", Reason::Missing));
        let bad_time = br#"{"suggestedWindow":{"start":"2025-01-02","end":"2025-01-03T04:00:00Z"}}"#;
        assert_eq!(RenewalInfo::parse(bad_time).unwrap_err(), field("start", Reason::Invalid));
    }

    #[test]
    fn mutated_objects_never_panic() {
        for document in [DIRECTORY, ORDER, AUTHORIZATION] {
            let bytes = document.as_bytes();
            for position in 0..bytes.len() {
                for byte in [b'"', b'{', b'}', b'[', b']', b',', b':', b'0', b'x', 0xff] {
                    let mut changed = bytes.to_vec();
                    changed[position] = byte;
                    let _ = Directory::parse(&changed);
                    let _ = Order::parse(&changed, HOST);
                    let _ = Authorization::parse(&changed, HOST);
                    let _ = Problem::parse(&changed);
                }
            }
        }
    }
}
