//! The admin key file: mode 0600, never overwritten by accident, sealed under a passphrase.

use std::os::unix::fs::PermissionsExt;

use homemx_cli::error::ExitCode;
use homemx_cli::keyfile;

#[test]
fn a_plain_key_round_trips_with_mode_0600_and_is_not_overwritten() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("admin.key");
    let public_key = keyfile::generate(&path, None, false).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(keyfile::load(&path, None).unwrap().verifying_key().to_bytes(), public_key);
    assert!(!keyfile::is_sealed(&path).unwrap());
    let error = keyfile::generate(&path, None, false).unwrap_err();
    assert_eq!(error.kind, ExitCode::KeyFile);
    assert_eq!(keyfile::load(&path, None).unwrap().verifying_key().to_bytes(), public_key);
}

#[test]
fn a_sealed_key_needs_its_passphrase() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("admin.key");
    // A cheap Argon2id cost keeps the debug-build test fast; the file records the cost.
    let public_key = keyfile::generate_with_cost(&path, Some(b"open sesame"), false, 256, 1).unwrap();
    assert!(keyfile::is_sealed(&path).unwrap());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("seed"), "no clear seed in a sealed file");
    assert_eq!(keyfile::load(&path, Some(b"open sesame")).unwrap().verifying_key().to_bytes(), public_key);
    assert_eq!(keyfile::load(&path, Some(b"open sesame!")).unwrap_err().kind, ExitCode::KeyFile);
    assert_eq!(keyfile::load(&path, None).unwrap_err().kind, ExitCode::KeyFile);
}

#[test]
fn a_key_readable_by_others_is_refused() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("admin.key");
    keyfile::generate(&path, None, false).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = keyfile::load(&path, None).unwrap_err();
    assert!(error.hint.unwrap().contains("chmod 600"));
}
