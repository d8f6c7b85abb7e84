//! The admin key file: an ed25519 seed, plain or sealed under a passphrase, mode 0600.
//!
//! Format (TOML): `format`, `public_key` (hex) and either `seed` (hex, unprotected) or a sealed
//! seed: Argon2id (`memory_kib`, `iterations`, `parallelism`, 16-byte `salt`) turns the
//! passphrase into a 32-byte key; XChaCha20-Poly1305 with a random 24-byte `nonce` seals the
//! seed (`sealed`, 48 bytes hex), the public key is the associated data, so a swapped public
//! key or a wrong passphrase fails to open.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use homemx_wire::client::AdminSigningKey;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{CliError, ExitCode, Result};

const FORMAT: &str = "homemx-admin-key-1";
/// Argon2id memory in KiB (64 MiB).
pub const MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id passes.
pub const ITERATIONS: u32 = 3;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: String,
    public_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sealed: Option<Sealed>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    kdf: String,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
    nonce: String,
    ciphertext: String,
}

fn key_error(path: &Path, message: impl std::fmt::Display) -> CliError {
    CliError::new(ExitCode::KeyFile, format!("key file {}: {message}", path.display()))
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|error| CliError::new(ExitCode::Failure, format!("no randomness from the OS: {error}")))?;
    Ok(bytes)
}

fn derive(passphrase: &[u8], salt: &[u8], memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Zeroizing<[u8; 32]>> {
    let parameters = argon2::Params::new(memory_kib, iterations, parallelism, Some(32))
        .map_err(|error| CliError::new(ExitCode::KeyFile, format!("bad KDF parameters: {error}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, parameters);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, salt, key.as_mut())
        .map_err(|error| CliError::new(ExitCode::KeyFile, format!("KDF failed: {error}")))?;
    Ok(key)
}

/// Generates a key and writes it to `path` (created, never overwritten unless `force`),
/// sealed under `passphrase` when given. Returns the public key.
pub fn generate(path: &Path, passphrase: Option<&[u8]>, force: bool) -> Result<[u8; 32]> {
    generate_with_cost(path, passphrase, force, MEMORY_KIB, ITERATIONS)
}

/// [`generate`] with explicit Argon2id cost (tests use a cheap one; the file records it).
pub fn generate_with_cost(
    path: &Path,
    passphrase: Option<&[u8]>,
    force: bool,
    memory_kib: u32,
    iterations: u32,
) -> Result<[u8; 32]> {
    let seed = Zeroizing::new(random::<32>()?);
    let key = AdminSigningKey::from_bytes(&seed);
    let public_key = key.verifying_key().to_bytes();
    let mut file = KeyFile { format: FORMAT.into(), public_key: hex::encode(public_key), seed: None, sealed: None };
    match passphrase {
        None => file.seed = Some(hex::encode(seed.as_ref())),
        Some(passphrase) => {
            let salt = random::<16>()?;
            let nonce = random::<24>()?;
            let wrapping = derive(passphrase, &salt, memory_kib, iterations, 1)?;
            let cipher = XChaCha20Poly1305::new(wrapping.as_ref().into());
            let ciphertext = cipher
                .encrypt(XNonce::from_slice(&nonce), Payload { msg: seed.as_ref(), aad: &public_key })
                .map_err(|_| CliError::new(ExitCode::KeyFile, "sealing the key failed"))?;
            file.sealed = Some(Sealed {
                kdf: "argon2id".into(),
                memory_kib,
                iterations,
                parallelism: 1,
                salt: hex::encode(salt),
                nonce: hex::encode(nonce),
                ciphertext: hex::encode(ciphertext),
            });
        }
    }
    let text = Zeroizing::new(toml::to_string(&file).map_err(|error| key_error(path, error))?);
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|error| key_error(path, error))?;
    }
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut handle = options.open(path).map_err(|error| {
        let hint = if error.kind() == std::io::ErrorKind::AlreadyExists {
            "it exists already: choose another --out, or pass --force to overwrite it"
        } else {
            "check the directory exists and is writable"
        };
        key_error(path, error).hint(hint)
    })?;
    handle.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|error| key_error(path, error))?;
    handle
        .write_all(format!("# homemx admin key: keep it secret, keep a backup offline\n{}", text.as_str()).as_bytes())
        .map_err(|error| key_error(path, error))?;
    Ok(public_key)
}

/// True when the key file at `path` is passphrase-protected.
pub fn is_sealed(path: &Path) -> Result<bool> {
    Ok(parse(path)?.sealed.is_some())
}

fn parse(path: &Path) -> Result<KeyFile> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|error| {
        key_error(path, error).hint("create one with `homemx keygen`, or point --key at yours")
    })?);
    toml::from_str(&text).map_err(|error| key_error(path, error.message()))
}

/// Reads the key at `path`, opening it with `passphrase` when it is sealed.
pub fn load(path: &Path, passphrase: Option<&[u8]>) -> Result<AdminSigningKey> {
    if let Ok(metadata) = std::fs::metadata(path) {
        if metadata.permissions().mode() & 0o077 != 0 {
            return Err(key_error(path, "readable by others")
                .hint(format!("run `chmod 600 {}`", path.display())));
        }
    }
    let file = parse(path)?;
    if file.format != FORMAT {
        return Err(key_error(path, format!("unknown format {:?}", file.format)));
    }
    let public_key = decode_hex::<32>(&file.public_key).ok_or_else(|| key_error(path, "public_key is not 32 bytes of hex"))?;
    let seed: Zeroizing<[u8; 32]> = match (&file.seed, &file.sealed) {
        (Some(seed), None) => Zeroizing::new(decode_hex::<32>(seed).ok_or_else(|| key_error(path, "seed is not 32 bytes of hex"))?),
        (None, Some(sealed)) => {
            let passphrase = passphrase.ok_or_else(|| key_error(path, "passphrase-protected; no passphrase given"))?;
            if sealed.kdf != "argon2id" {
                return Err(key_error(path, format!("unknown kdf {:?}", sealed.kdf)));
            }
            let salt = hex::decode(&sealed.salt).map_err(|error| key_error(path, error))?;
            let nonce = decode_hex::<24>(&sealed.nonce).ok_or_else(|| key_error(path, "nonce is not 24 bytes of hex"))?;
            let ciphertext = hex::decode(&sealed.ciphertext).map_err(|error| key_error(path, error))?;
            let wrapping = derive(passphrase, &salt, sealed.memory_kib, sealed.iterations, sealed.parallelism)?;
            let cipher = XChaCha20Poly1305::new(wrapping.as_ref().into());
            let plain = Zeroizing::new(
                cipher
                    .decrypt(XNonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: &public_key })
                    .map_err(|_| key_error(path, "wrong passphrase (or the file was altered)"))?,
            );
            let mut seed = Zeroizing::new([0u8; 32]);
            if plain.len() != 32 {
                return Err(key_error(path, "sealed seed has the wrong length"));
            }
            seed.copy_from_slice(&plain);
            seed
        }
        _ => return Err(key_error(path, "needs exactly one of seed and [sealed]")),
    };
    let key = AdminSigningKey::from_bytes(&seed);
    if key.verifying_key().to_bytes() != public_key {
        return Err(key_error(path, "public_key does not match the secret key"));
    }
    Ok(key)
}

fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    hex::decode(text.trim()).ok()?.try_into().ok()
}
