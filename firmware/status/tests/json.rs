//! `/status.json`: every rendered document validates against status.schema.json, the schema
//! documents every member (and nothing else), strings are escaped, sizes are bounded.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use homemx_status::json::SCHEMA_VERSION;
use homemx_status::{
    json_length, render_json, render_json_window, AlertKind, DynDnsAnswer, FetchResult, LockState,
    Overflow, SpoolSpace, StatusSnapshot, TlsVersion, Verification, JSON_BUFFER_SIZE,
};
use serde_json::Value;

fn schema() -> Value {
    serde_json::from_str(include_str!("../status.schema.json")).expect("schema is JSON")
}

fn render(snapshot: &StatusSnapshot) -> String {
    let mut buffer = vec![0u8; JSON_BUFFER_SIZE];
    let length = render_json(snapshot, &mut buffer).expect("fits");
    String::from_utf8(buffer[..length].to_vec()).expect("UTF-8")
}

fn assert_valid(snapshot: &StatusSnapshot) -> Value {
    let text = render(snapshot);
    let document: Value =
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"));
    let validator = jsonschema::draft202012::new(&schema()).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{text}");
    document
}

#[test]
fn the_schema_is_a_valid_2020_12_schema() {
    let schema = schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::draft202012::meta::validate(&schema)
        .expect("valid against the 2020-12 meta-schema");
    assert_eq!(schema["properties"]["schema"]["const"], SCHEMA_VERSION);
}

/// Walks every object schema: closed (`additionalProperties: false`), every property required
/// and described.
fn check_documented(schema: &Value, path: &str, seen_objects: &mut usize) {
    let Some(object) = schema.as_object() else {
        return;
    };
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        *seen_objects += 1;
        assert_eq!(
            object.get("additionalProperties"),
            Some(&Value::Bool(false)),
            "{path} is open"
        );
        let required: Vec<&str> = object["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: no required"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
        let mut sorted_required = required.clone();
        names.sort();
        sorted_required.sort();
        assert_eq!(
            names, sorted_required,
            "{path}: every member is always present"
        );
        for (name, property) in properties {
            let description = property
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            assert!(description.len() >= 10, "{path}.{name} has no description");
            check_documented(property, &format!("{path}.{name}"), seen_objects);
        }
    }
    if let Some(items) = object.get("items") {
        assert!(
            items.get("description").is_some(),
            "{path}[] has no description"
        );
        check_documented(items, &format!("{path}[]"), seen_objects);
    }
}

#[test]
fn the_schema_documents_every_member_and_allows_no_other() {
    let mut objects = 0;
    check_documented(&schema(), "$", &mut objects);
    assert_eq!(
        objects, 12,
        "root, mailbox, mail, smarthost, pop3, dyndns, mx[], spool, alerts[], system, certificate, acme"
    );
}

#[test]
fn an_undocumented_member_fails_validation() {
    let mut document: Value = serde_json::from_str(&render(&common::busy())).unwrap();
    document["mail"]["secret"] = Value::from(1);
    let validator = jsonschema::draft202012::new(&schema()).unwrap();
    assert!(!validator.is_valid(&document));
}

/// Collects every member path of a document (array items as `[]`).
fn member_paths(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(members) => {
            for (name, member) in members {
                let inner = format!("{path}.{name}");
                out.push(inner.clone());
                member_paths(member, &inner, out);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| member_paths(item, &format!("{path}[]"), out)),
        _ => {}
    }
}

fn schema_paths(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let inner = format!("{path}.{name}");
            out.push(inner.clone());
            schema_paths(property, &inner, out);
        }
    }
    if let Some(items) = schema.get("items") {
        schema_paths(items, &format!("{path}[]"), out);
    }
}

#[test]
fn a_busy_document_shows_every_member_the_schema_names() {
    let mut snapshot = common::every_alert();
    snapshot.lock = LockState::Unlocked;
    let document = assert_valid(&snapshot);
    let mut rendered = Vec::new();
    member_paths(&document, "$", &mut rendered);
    let mut documented = Vec::new();
    schema_paths(&schema(), "$", &mut documented);
    rendered.sort();
    rendered.dedup();
    documented.sort();
    assert_eq!(rendered, documented);
}

#[test]
fn sample_snapshots_validate() {
    for snapshot in [
        common::empty(),
        common::locked(),
        common::quiet(),
        common::busy(),
        common::every_alert(),
        common::hostile(),
    ] {
        assert_valid(&snapshot);
    }
}

#[test]
fn every_enum_value_validates() {
    let mut snapshot = common::busy();
    for lock in [
        LockState::Unprovisioned,
        LockState::Locked,
        LockState::Unlocked,
    ] {
        snapshot.lock = lock;
        assert_valid(&snapshot);
    }
    for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
        snapshot.smarthost.tls_version = Some(version);
        assert_valid(&snapshot);
    }
    for verification in [Verification::CaAnchor, Verification::PinnedKey] {
        snapshot.smarthost.verified_by = Some(verification);
        assert_valid(&snapshot);
    }
    for result in [
        FetchResult::Ok,
        FetchResult::ConnectFailed,
        FetchResult::TlsFailed,
        FetchResult::LoginRefused,
        FetchResult::ProtocolError,
        FetchResult::TimedOut,
        FetchResult::SpoolFull,
    ] {
        snapshot.pop3.last_result = Some(result);
        assert_valid(&snapshot);
    }
    for answer in [
        DynDnsAnswer::Good,
        DynDnsAnswer::NoChange,
        DynDnsAnswer::BadAuth,
        DynDnsAnswer::NotFqdn,
        DynDnsAnswer::NoHost,
        DynDnsAnswer::NumHost,
        DynDnsAnswer::Abuse,
        DynDnsAnswer::BadAgent,
        DynDnsAnswer::DnsError,
        DynDnsAnswer::ServerError,
        DynDnsAnswer::Unrecognized,
        DynDnsAnswer::NoAnswer,
    ] {
        snapshot.dyndns.last_answer = Some(answer);
        assert_valid(&snapshot);
    }
    for chunk in AlertKind::ALL.chunks(4) {
        snapshot.alerts = common::board_of(chunk);
        let document = assert_valid(&snapshot);
        let kinds: Vec<&str> = document["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|alert| alert["kind"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = chunk.iter().map(|kind| kind.name()).collect();
        assert_eq!(kinds, expected);
    }
    let schema = schema();
    let names: Vec<&str> = schema["properties"]["alerts"]["items"]["properties"]["kind"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let expected: Vec<&str> = AlertKind::ALL.iter().map(|kind| kind.name()).collect();
    assert_eq!(names, expected, "the schema's kind list is the code's");
}

#[test]
fn facts_round_trip() {
    let snapshot = common::busy();
    let document = assert_valid(&snapshot);
    assert_eq!(document["verdict"], "alerts");
    assert_eq!(document["generated_unix"], common::NOW);
    assert_eq!(document["mail"]["received"], 1284);
    assert_eq!(
        document["mail"]["oldest_queued_age_seconds"],
        2 * 3600 + 14 * 60
    );
    assert_eq!(document["smarthost"]["tls_version"], "1.3");
    assert_eq!(document["smarthost"]["verified_by"], "pinned_key");
    assert_eq!(document["dyndns"]["public_ip"], "203.0.113.47");
    assert_eq!(document["dyndns"]["a_record_matches"], false);
    assert_eq!(document["dyndns"]["mx"][1]["preference"], 20);
    assert_eq!(document["spool"]["free_bytes"], 1_536 * 1024);
    let unlock = &document["alerts"][0];
    assert_eq!(unlock["kind"], "unlock_failed");
    assert_eq!(unlock["count"], 3);
    assert_eq!(unlock["first_seen_age_seconds"], 2 * 86_400);
    assert_eq!(unlock["last_seen_unix"], common::NOW - 5 * 3600);
    assert_eq!(
        document["system"]["uptime_seconds"],
        3 * 86_400 + 4 * 3600 + 12 * 60
    );

    let locked = assert_valid(&common::locked());
    assert_eq!(locked["verdict"], "locked");
    assert_eq!(locked["generated_unix"], Value::Null);
    assert_eq!(locked["spool"], Value::Null);
    assert_eq!(locked["dyndns"]["mx"], Value::Array(vec![]));

    let mut ipv6 = common::quiet();
    ipv6.dyndns.public_ip = Some("2001:db8::1".parse().unwrap());
    ipv6.dyndns.a_record = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(assert_valid(&ipv6)["dyndns"]["public_ip"], "2001:db8::1");
}

#[test]
fn the_acme_renewal_is_in_the_document() {
    let quiet = assert_valid(&common::quiet());
    assert_eq!(
        quiet["acme"],
        serde_json::json!({
            "last_attempt_unix": common::NOW - 29 * 86_400,
            "last_result": "ok",
            "last_error": null,
            "next_attempt_unix": common::NOW + 27 * 86_400 + 5 * 3600,
            "certificate_expiry_unix": common::NOW + 61 * 86_400,
            "failures": 0
        })
    );
    let failing = assert_valid(&common::acme_failing());
    assert_eq!(failing["acme"]["last_result"], "failed");
    assert_eq!(failing["acme"]["failures"], 2);
    assert_eq!(failing["acme"]["next_attempt_unix"], common::NOW + 13 * 60);
    let error = failing["acme"]["last_error"].as_str().unwrap();
    assert!(error.contains("urn:ietf:params:acme:error:connection: Connection refused <port 80>"), "{error}");
    let mut manual = common::quiet();
    manual.acme = None;
    assert_eq!(assert_valid(&manual)["acme"], Value::Null);
    let mut unknown = common::quiet();
    unknown.acme = Some(Default::default());
    let document = assert_valid(&unknown);
    assert_eq!(document["acme"]["last_result"], Value::Null);
    assert_eq!(document["acme"]["next_attempt_unix"], Value::Null);
    // A long error is cut to 200 bytes and ends in an ellipsis; the schema allows it.
    let mut long = common::acme_failing();
    if let Some(acme) = &mut long.acme {
        acme.last_error = Some(homemx_status::acme_error(&"é".repeat(150)));
    }
    let error = assert_valid(&long)["acme"]["last_error"].as_str().unwrap().to_string();
    assert!(error.len() <= 200 && error.ends_with('…'), "{error}");
    // The CA's text comes back unchanged, escaped.
    let hostile = common::hostile();
    let document = assert_valid(&hostile);
    assert_eq!(document["acme"]["last_error"], hostile.acme.as_ref().unwrap().last_error.as_deref().unwrap());
}

#[test]
fn hostile_names_come_back_unchanged() {
    let snapshot = common::hostile();
    let text = render(&snapshot);
    assert!(!text.contains('<') && !text.contains('>'), "{text}");
    let document = assert_valid(&snapshot);
    assert_eq!(
        document["smarthost"]["host"],
        snapshot.smarthost.host.as_deref().unwrap()
    );
    assert_eq!(
        document["pop3"]["host"],
        snapshot.pop3.host.as_deref().unwrap()
    );
    assert_eq!(
        document["dyndns"]["host"],
        snapshot.dyndns.host.as_deref().unwrap()
    );
    assert_eq!(
        document["dyndns"]["mx"][0]["host"],
        snapshot.dyndns.mx[0].host.as_str()
    );
    assert_eq!(
        document["system"]["firmware_version"],
        snapshot.system.firmware_version.as_str()
    );
}

#[test]
fn the_largest_document_fits_the_buffer() {
    // U+0001 escapes to six bytes (`\u0001`), the most any character costs.
    let mut largest = 0;
    for kinds in common::combinations(homemx_status::MAX_ALERTS) {
        let snapshot = common::largest('\u{1}', &kinds);
        let length = json_length(&snapshot);
        largest = largest.max(length);
    }
    let snapshot = common::largest('\u{1}', &AlertKind::ALL[..8]);
    assert_valid(&snapshot);
    // Room for eight counts of u32::MAX (the test snapshots count to 257).
    println!("largest /status.json: {largest} bytes (buffer {JSON_BUFFER_SIZE})");
    assert!(largest + 8 * 7 <= JSON_BUFFER_SIZE, "{largest}");
    let mut small = vec![0u8; largest - 1];
    assert_eq!(
        render_json(&snapshot, &mut small[..json_length(&snapshot) - 1]),
        Err(Overflow)
    );
    let busy = render(&common::busy()).len();
    println!("busy /status.json: {busy} bytes");
    assert!(busy < 3 * 1024);
}

#[test]
fn windows_fit_together() {
    let snapshot = common::busy();
    let whole = render(&snapshot);
    assert_eq!(json_length(&snapshot), whole.len());
    for window in [1, 7, 100, 1024] {
        let mut joined = Vec::new();
        let mut chunk = vec![0u8; window];
        loop {
            let count = render_json_window(&snapshot, joined.len(), &mut chunk);
            joined.extend_from_slice(&chunk[..count]);
            if count < window {
                break;
            }
        }
        assert_eq!(joined, whole.as_bytes());
    }
}

#[test]
fn zero_spool_and_unknown_facts_validate() {
    let mut snapshot = common::quiet();
    snapshot.spool = Some(SpoolSpace {
        free_bytes: 0,
        total_bytes: 0,
    });
    snapshot.smarthost = Default::default();
    snapshot.pop3 = Default::default();
    snapshot.dyndns = Default::default();
    snapshot.now_unix = None;
    snapshot.alerts.raise(AlertKind::FlashNearlyFull, 0);
    let document = assert_valid(&snapshot);
    assert_eq!(document["alerts"][0]["first_seen_unix"], Value::Null);
}

#[test]
fn the_headline_and_its_problems_are_in_the_document() {
    let quiet = assert_valid(&common::quiet());
    assert_eq!(quiet["verdict"], "ok");
    assert_eq!(quiet["headline"], "Mail flows — no alerts");
    assert_eq!(quiet["problems"], serde_json::json!([]));
    assert_eq!(quiet["mailbox"]["last_success_age_seconds"], 40);
    assert_eq!(quiet["mailbox"]["failure"], Value::Null);

    let mut down = common::quiet();
    let uptime_ms = down.system.uptime_ms;
    down.mailbox.failing_since_ms = Some(uptime_ms - 7 * 60_000);
    down.mailbox.failure = Some(homemx_status::MailboxFailure::Unreachable);
    down.now_unix = None;
    let document = assert_valid(&down);
    assert_eq!(document["verdict"], "mailbox_unreachable");
    assert_eq!(
        document["problems"],
        serde_json::json!(["mailbox_unreachable", "clock_not_set"])
    );
    let headline = document["headline"].as_str().unwrap();
    assert!(
        headline.starts_with("Mailbox host unreachable since boot + 3 d 4 h")
            && headline.ends_with(" · Clock not set: no time server answered"),
        "{headline}"
    );
    assert_eq!(document["mailbox"]["failing_since_age_seconds"], 420);
    assert_eq!(document["mailbox"]["failing_since_unix"], Value::Null);
    assert_eq!(document["mailbox"]["failure"], "unreachable");
}
