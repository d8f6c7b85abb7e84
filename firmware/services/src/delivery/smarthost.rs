//! Outbound mail through the provider's smarthost, TLS forced and verified (seed §8.2: a
//! dial-up address cannot deliver directly, and STARTTLS can be stripped on the way).
//!
//! One attempt: resolve the smarthost's name (DNS), load its trust (CA anchor or pinned key)
//! and AUTH password from the vault, connect, TLS (implicit on 465, or STARTTLS, which the
//! SMTP client requires), AUTH, MAIL/RCPT/DATA. Whatever goes wrong before TLS is up — no
//! STARTTLS, a stripped or refused one, a failed handshake, a certificate that does not
//! verify, no trust anchor, no wall clock for a CA anchor's validity dates, a 5xx greeting or
//! EHLO reply (it came in clear and may be forged) — defers every recipient: nothing is sent
//! in clear, nothing bounces for it, and the alert is raised.
//!
//! Owns: nothing beyond one attempt (its socket, lent TLS buffers). Calls: `alerts`, `backup_mx`,
//! `event_log`, `instrument`, `link`, `mail_settings`, `mail_status`, `network`, `random`, `resolver`,
//! `store`, `wall_clock`.

use embassy_net::tcp::TcpSocket;
use embassy_net::{IpEndpoint, Ipv4Address, Stack};
use embassy_time::Duration;
use homemx_smtp::client::{
    ClientConfig, ClientProtocol, ClientSession, Credentials, Envelope, Outcome, RecipientResult, ResultReason, TlsProblem,
    TlsRequirement,
};
use super::BATCH_RECIPIENTS;
use homemx_status::alert::{AlertKind, Peer};
use homemx_wire::config::TlsMode;
use homemx_keystore::secret::SecretBytes;
use homemx_wire::message::{Credential, TlsService};

use super::{open_body, run_session, Attempt, Outcomes, RecipientOutcome, Route, SessionResults, TlsStart};
use crate::link::{Link, ConnectionBuffers};
use crate::store::TrustSource;
use crate::network::mail_clock as now;
use crate::random::DerivedRandom;

/// Longest smarthost AUTH password.
const PASSWORD_CAPACITY: usize = 128;

/// Reports a TLS problem of the SMTP client: logged and alerted as possible stripping.
pub fn tls_problem(problem: TlsProblem) {
    let text = match problem {
        TlsProblem::NotOffered => "the smarthost did not offer STARTTLS",
        TlsProblem::Stripped => "STARTTLS was overwritten in the smarthost's capabilities",
        TlsProblem::Refused(_) => "the smarthost refused STARTTLS",
        TlsProblem::RefusedBeforeTls(_) => "the smarthost refused us before TLS (a forgeable 5xx)",
        TlsProblem::HandshakeFailed => "the TLS handshake with the smarthost failed",
    };
    crate::mail_status::smarthost_problem(text);
    let kind = match problem {
        TlsProblem::HandshakeFailed => AlertKind::CertificateRejected,
        _ => AlertKind::StrippingSuspected,
    };
    crate::alerts::raise_for(kind, Peer::Smarthost, format_args!("{}: mail stays queued, nothing was sent in clear (possible STARTTLS stripping)", text));
}

fn defer_all(attempt: &Attempt, outcomes: &mut Outcomes, reason: ResultReason) {
    for (index, _) in attempt.recipients(Route::Smarthost) {
        let result = RecipientResult { index, outcome: Outcome::Deferred, code: 0, enhanced: None, reason };
        let _ = outcomes.push(RecipientOutcome { index, route: Route::Smarthost, result });
    }
}

fn problem(attempt: &Attempt, outcomes: &mut Outcomes, text: &'static str, reason: ResultReason) {
    crate::mail_status::smarthost_problem(text);
    crate::event_warning!("outbound: message {} deferred: {}", attempt.id.0, text);
    defer_all(attempt, outcomes, reason);
}

/// One delivery attempt of the attempt's outbound recipients through the smarthost. `random`
/// is the courier's: the handshake's is derived from it when it begins ([`TlsStart`] borrows
/// it); `results` is the session's, lent by the delivery pass.
pub async fn deliver(
    stack: Stack<'static>,
    attempt: &Attempt,
    outcomes: &mut Outcomes,
    results: &mut SessionResults,
    random: &mut DerivedRandom,
    buffers: &mut ConnectionBuffers,
) {
    let Some((smarthost, host_name)) =
        crate::mail_settings::read(|current| current.and_then(|settings| Some((settings.smarthost.clone()?, settings.host_name.clone()))))
    else {
        return problem(attempt, outcomes, "no smarthost is configured", ResultReason::ConnectionLost);
    };
    let address = match crate::resolver::resolve_address(stack, smarthost.host.as_str()).await {
        Ok(address) => address,
        Err(error) => {
            crate::event_warning!("outbound: cannot resolve {}: {:?}", smarthost.host.as_str(), defmt::Debug2Format(&error));
            return problem(attempt, outcomes, "the smarthost's name does not resolve", ResultReason::ConnectionLost);
        }
    };

    let mut password = SecretBytes::<PASSWORD_CAPACITY>::zeroed();
    let (trust_source, password_length) =
        crate::store::provider_login(TlsService::Smarthost, &mut buffers.anchor, Some((Credential::SmarthostPassword, password.expose_mut()))).await;
    let Some(trust_source) = trust_source else {
        return problem(attempt, outcomes, "no trust anchor for the smarthost is provisioned", ResultReason::TlsUnavailable);
    };
    if !trust_source.usable_now() {
        return problem(attempt, outcomes, "waiting for the time (SNTP) to check the certificate's dates", ResultReason::TlsUnavailable);
    }
    let trust = trust_source.trust(&buffers.anchor);
    let password_text = password_length.and_then(|length| core::str::from_utf8(&password.expose()[..length]).ok()).map(str::trim_end);
    let credentials = password_text.map(|password| Credentials { username: smarthost.user_name.as_str(), password });

    let (indices, addresses): (heapless::Vec<usize, BATCH_RECIPIENTS>, heapless::Vec<&str, BATCH_RECIPIENTS>) =
        attempt.recipients(Route::Smarthost).unzip();
    let config = ClientConfig { hostname: host_name.as_str(), protocol: ClientProtocol::Smtp, tls: TlsRequirement::Required, credentials };
    let envelope = Envelope { sender: attempt.sender.as_str(), recipients: &addresses, size: Some(attempt.length as u64), eight_bit: true };
    let implicit = smarthost.tls == TlsMode::Implicit;
    let Ok(mut session) = ClientSession::new(&config, envelope, implicit, now()) else {
        crate::event_warning!("outbound: message {} has an envelope the client refuses", attempt.id.0);
        return defer_all(attempt, outcomes, ResultReason::ProtocolError);
    };
    let Some(mut reader) = open_body(attempt.id).await else {
        return defer_all(attempt, outcomes, ResultReason::ConnectionLost);
    };

    let mut socket = TcpSocket::new(stack, &mut buffers.socket_receive, &mut buffers.socket_transmit);
    socket.set_timeout(Some(Duration::from_secs(120)));
    let endpoint = IpEndpoint::new(Ipv4Address::from(address).into(), smarthost.port);
    let mut connected = socket.connect(endpoint).await.is_ok();
    crate::backup_mx::line_state(connected);
    if !connected {
        crate::mail_status::smarthost_problem("the smarthost does not answer");
        crate::event_warning!("outbound: smarthost {} unreachable; message {} waits", endpoint, attempt.id.0);
    }
    let mut link = Link::Plain(socket);
    let mut tls = Some(TlsStart {
        read: &mut buffers.read,
        write: &mut buffers.write,
        server_name: smarthost.host.as_str(),
        trust,
        random,
        operation: crate::instrument::Operation::TlsHandshakeSmarthost,
        minimum: crate::link::minimum_tls(smarthost.min_tls),
    });
    if connected && implicit {
        let start = tls.take().expect("TLS start is set");
        match link.start_tls(start).await {
            Ok(()) => {}
            Err(error) => {
                if error.is_refusal() {
                    tls_problem(TlsProblem::HandshakeFailed);
                }
                crate::event_warning!("outbound: TLS with {} failed: {}", smarthost.host.as_str(), error.describe());
                connected = false;
            }
        }
    }
    results.clear();
    run_session(&mut link, &mut session, connected, &mut reader, results, &mut tls).await;
    let over_tls = matches!(link, Link::Tls(..));
    let (version, suite) = (link.version_name(), link.suite_name());
    link.close().await;
    let mut any_delivered = false;
    for &result in results.iter() {
        any_delivered |= result.outcome == Outcome::Delivered;
        if let Some(&index) = indices.get(result.index) {
            let _ = outcomes.push(RecipientOutcome { index, route: Route::Smarthost, result });
        }
    }
    if any_delivered && over_tls {
        let pinned = matches!(trust_source, TrustSource::PinnedKey(_));
        let unix = crate::wall_clock::unix_seconds().unwrap_or(0);
        crate::mail_status::update(|status| {
            status.smarthost_success = Some((unix, crate::network::uptime_seconds()));
            status.smarthost_pinned = pinned;
            status.smarthost_problem = None;
        });
        crate::alerts::clear(AlertKind::PeerUnreachable(Peer::Smarthost));
        // The smarthost offered STARTTLS (or spoke implicit TLS), its certificate verified and it
        // took the mail: that disproves stripping and a bad certificate on the smarthost's path.
        crate::alerts::clear_for(&[AlertKind::StrippingSuspected, AlertKind::CertificateRejected], Peer::Smarthost);
        crate::event_info!(
            "outbound: message {} accepted by the smarthost over {} ({}, {})",
            attempt.id.0,
            version,
            suite,
            trust_source.description()
        );
    }
}
