use super::*;
use sha2::Digest;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|index| u8::from_str_radix(&text[index..index + 2], 16).unwrap()).collect()
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The hand-built SHA-256 (padding, lengths that straddle the length field, prefixes of
/// whole blocks) against the `sha2` crate's.
#[test]
fn sha256_matches_the_sha2_crate() {
    let data: Vec<u8> = (0..300u32).map(|value| (value * 7 + 3) as u8).collect();
    for length in 0..data.len() {
        let expected = sha2::Sha256::digest(&data[..length]);
        assert_eq!(sha256(&SHA256_INITIAL_STATE, 0, &[&data[..length]]).as_slice(), expected.as_slice(), "length {length}");
        let (first, second) = data[..length].split_at(length / 3);
        assert_eq!(sha256(&SHA256_INITIAL_STATE, 0, &[first, second]).as_slice(), expected.as_slice(), "split {length}");
    }
    // A prefix of one whole block, continued.
    let mut state = SHA256_INITIAL_STATE;
    sha2::compress256(&mut state, &[GenericArray::clone_from_slice(&data[..64])]);
    assert_eq!(sha256(&state, 64, &[&data[64..100]]).as_slice(), sha2::Sha256::digest(&data[..100]).as_slice());
}

/// Published PBKDF2-HMAC-SHA256 vectors in the style of RFC 6070 (which has SHA-1 only): the
/// SHA-256 set from https://stackoverflow.com/a/5136918, the source the RustCrypto `pbkdf2`
/// crate cites for its own tests (tests/simple.rs of pbkdf2 0.12.2 carries the 4096-iteration
/// one). The derivation makes the first 32-byte block: longer outputs are compared on it,
/// shorter ones on their length.
#[test]
fn rfc6070_style_sha256_vectors() {
    let vectors: [(&[u8], &[u8], u32, &str); 5] = [
        (b"password", b"salt", 1, "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"),
        (b"password", b"salt", 2, "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"),
        (b"password", b"salt", 4096, "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"),
        (
            b"passwordPASSWORDpassword",
            b"saltSALTsaltSALTsaltSALTsaltSALTsalt",
            4096,
            "348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1c635518c7dac47e9",
        ),
        (b"pass\0word", b"sa\0lt", 4096, "89b69d0516f829893c696226650a8687"),
    ];
    for (password, salt, iterations, expected) in vectors {
        let expected = hex(expected);
        let length = expected.len().min(HASH_LENGTH);
        assert_eq!(pbkdf2_first_block(password, salt, iterations)[..length], expected[..length], "{iterations} iterations");
    }
}

/// RFC 7914 §11, the two PBKDF2-HMAC-SHA256 vectors (dkLen 64: the first block compared).
#[test]
fn rfc7914_vectors() {
    assert_eq!(
        pbkdf2_first_block(b"passwd", b"salt", 1).to_vec(),
        hex("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc")
    );
    assert_eq!(
        pbkdf2_first_block(b"Password", b"NaCl", 80_000).to_vec(),
        hex("4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56")
    );
}

/// Recorded from Python's hashlib (an independent implementation, OpenSSL's):
/// `hashlib.pbkdf2_hmac('sha256', b'correct horse battery staple', bytes(range(16)), 10000, 32)`
/// and `hashlib.pbkdf2_hmac('sha256', b'x' * 100, b'0123456789abcdef', 5000, 32)` (a password
/// longer than a block: HMAC hashes the key first).
#[test]
fn records_match_python_hashlib() {
    let salt: [u8; 16] = core::array::from_fn(|index| index as u8);
    let record = PasswordRecord::new(b"correct horse battery staple", salt, DEFAULT_ITERATIONS).unwrap();
    assert_eq!(hex_string(&record.hash), "d9f95f65c2df9d285d26882300ca5be29e3ed500556663835c4c62e270515022");
    let record = PasswordRecord::new(&[b'x'; 100], *b"0123456789abcdef", MIN_ITERATIONS).unwrap();
    assert_eq!(hex_string(&record.hash), "d9a3caad8e41db062294ad587fe70b6bf79f8276892ef697a11b46fe1d30dff4");
}

/// The same cross-check run now: python3 (which the test peers need anyway) hashes passwords
/// of every length class with a record's salt and the default count.
#[test]
fn records_match_python_hashlib_run_now() {
    let passwords: [&[u8]; 4] = [b"a", b"s3cret with spaces", &[0xc3, 0xa4, b'!', 0x7f], &[b'k'; 65]];
    for (index, password) in passwords.iter().enumerate() {
        let salt: [u8; 16] = core::array::from_fn(|byte| (byte * 31 + index * 7) as u8);
        let script = format!(
            "import hashlib,sys; sys.stdout.write(hashlib.pbkdf2_hmac('sha256', bytes.fromhex('{}'), bytes.fromhex('{}'), {}, 32).hex())",
            hex_string(password),
            hex_string(&salt),
            DEFAULT_ITERATIONS
        );
        let output = std::process::Command::new("python3").args(["-c", &script]).output().expect("python3 runs (host-tools/setup.sh)");
        assert!(output.status.success(), "python3: {}", String::from_utf8_lossy(&output.stderr));
        let record = PasswordRecord::new(password, salt, DEFAULT_ITERATIONS).unwrap();
        assert_eq!(hex_string(&record.hash), String::from_utf8(output.stdout).unwrap(), "password {index}");
    }
}

/// Stepped in chunks of any size the verifier reaches the same block as the `pbkdf2` crate in
/// one go, and the same verdict as the one-shot `verify`.
#[test]
fn chunked_verification_equals_one_shot() {
    let salt = *b"a sixteen b salt";
    let iterations = MIN_ITERATIONS + 7;
    let mut reference = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(b"hunter2", &salt, iterations, &mut reference);
    let record = PasswordRecord::new(b"hunter2", salt, iterations).unwrap();
    assert_eq!(record.hash, reference);
    assert_eq!(record.verify(b"hunter2"), Ok(Verdict::Accepted));
    assert_eq!(record.verify(b"hunter3"), Ok(Verdict::Refused));
    for chunk in [1, 2, 249, ITERATIONS_PER_STEP, 251, iterations - 2, iterations - 1, iterations, u32::MAX] {
        for (password, expected) in [(&b"hunter2"[..], Verdict::Accepted), (&b"hunter3"[..], Verdict::Refused)] {
            let mut verifier = Verifier::new(&record, password).unwrap();
            let mut steps = 0u32;
            let verdict = loop {
                steps += 1;
                match verifier.step(chunk) {
                    Progress::Pending => assert!(verifier.remaining() > 0),
                    Progress::Done(verdict) => break verdict,
                }
            };
            assert_eq!(verdict, expected, "chunk {chunk}");
            assert_eq!(steps, (iterations - 1).div_ceil(chunk).max(1), "chunk {chunk}");
            // A finished verifier keeps its verdict and does no more work.
            assert_eq!(verifier.step(chunk), Progress::Done(expected));
            assert_eq!(verifier.remaining(), 0);
        }
    }
}

/// Every byte of the hash counts: a record with one bit flipped anywhere refuses the password.
#[test]
fn a_changed_hash_or_salt_refuses() {
    let record = PasswordRecord::new(b"pw", [9; 16], MIN_ITERATIONS).unwrap();
    for index in [0, 15, 31] {
        let mut changed = record.clone();
        changed.hash[index] ^= 1;
        assert_eq!(changed.verify(b"pw"), Ok(Verdict::Refused));
    }
    let mut changed = record.clone();
    changed.salt[3] ^= 0x80;
    assert_eq!(changed.verify(b"pw"), Ok(Verdict::Refused));
}

/// An unknown user does the same iterations in the same steps as a known one and is refused,
/// even when the password is the one that makes the dummy's salt and hash (which nobody can
/// know, but the verdict must not depend on it).
#[test]
fn unknown_user_costs_the_same_and_is_always_refused() {
    let record = PasswordRecord::new(b"secret", [1; 16], DEFAULT_ITERATIONS).unwrap();
    let count = |mut verifier: Verifier| {
        let mut steps = 0;
        let verdict = loop {
            steps += 1;
            if let Progress::Done(verdict) = verifier.step(ITERATIONS_PER_STEP) {
                break verdict;
            }
        };
        (steps, verdict)
    };
    let known = count(Verifier::new(&record, b"wrong").unwrap());
    let unknown = count(Verifier::unknown_user(b"wrong", dummy_iterations([&record])));
    assert_eq!(known, (40, Verdict::Refused));
    assert_eq!(unknown, known);
    assert_eq!(Verifier::unknown_user(b"wrong", DEFAULT_ITERATIONS).remaining(), Verifier::new(&record, b"x").unwrap().remaining());
    // The dummy's own hash for this password: the unknown-user verdict still refuses it.
    let dummy = PasswordRecord::new(b"secret", DUMMY_SALT, DEFAULT_ITERATIONS).unwrap();
    assert_eq!(dummy.verify(b"secret"), Ok(Verdict::Accepted));
    let mut verifier = Verifier::unknown_user(b"secret", DEFAULT_ITERATIONS);
    while verifier.step(u32::MAX) == Progress::Pending {}
    assert_eq!(verifier.derivation.output, dummy.hash, "the dummy computes the real thing");
    assert_eq!(verifier.step(1), Progress::Done(Verdict::Refused));
}

#[test]
fn dummy_iterations_follow_the_records() {
    let cheap = PasswordRecord::new(b"a", [0; 16], MIN_ITERATIONS).unwrap();
    let dear = PasswordRecord::new(b"a", [0; 16], MIN_ITERATIONS + 1000).unwrap();
    let mut hostile = dear.clone();
    hostile.iterations = u32::MAX;
    assert_eq!(dummy_iterations([]), DEFAULT_ITERATIONS);
    assert_eq!(dummy_iterations([&cheap]), MIN_ITERATIONS);
    assert_eq!(dummy_iterations([&cheap, &dear, &hostile]), MIN_ITERATIONS + 1000);
    assert_eq!(Verifier::unknown_user(b"a", u32::MAX).remaining(), MAX_ITERATIONS - 1);
    assert_eq!(Verifier::unknown_user(b"a", 0).remaining(), MIN_ITERATIONS - 1);
}

/// The record rules: a known algorithm, the iteration count in range; the verifier and the
/// hashing refuse what breaks them before any work.
#[test]
fn records_breaking_the_rules_are_refused() {
    let record = PasswordRecord::new(b"pw", [2; 16], MIN_ITERATIONS).unwrap();
    assert_eq!(record.check(), Ok(()));
    let mut unknown = record.clone();
    unknown.algorithm = 2;
    assert_eq!(unknown.check(), Err(RecordProblem::UnknownAlgorithm));
    assert_eq!(Verifier::new(&unknown, b"pw").err(), Some(RecordProblem::UnknownAlgorithm));
    for iterations in [0, 1, MIN_ITERATIONS - 1, MAX_ITERATIONS + 1, u32::MAX] {
        let mut changed = record.clone();
        changed.iterations = iterations;
        assert_eq!(changed.check(), Err(RecordProblem::IterationsOutOfRange), "{iterations}");
        assert_eq!(Verifier::new(&changed, b"pw").err(), Some(RecordProblem::IterationsOutOfRange));
        assert_eq!(PasswordRecord::new(b"pw", [2; 16], iterations), Err(RecordProblem::IterationsOutOfRange));
    }
    for iterations in [MIN_ITERATIONS, DEFAULT_ITERATIONS, MAX_ITERATIONS] {
        assert_eq!(check_iterations(iterations), Ok(()));
    }
}

/// Debug never shows salt or hash; the redacted form has neither; a record round-trips
/// through postcard (the configuration's encoding) at its fixed size.
#[test]
fn debug_redaction_and_encoding() {
    let record = PasswordRecord::new(b"correct horse", [0xab; 16], MIN_ITERATIONS).unwrap();
    let shown = format!("{record:?}");
    assert_eq!(shown, "PasswordRecord { algorithm: 1, iterations: 5000, .. }");
    let redacted = record.redacted();
    assert_eq!((redacted.algorithm, redacted.iterations, redacted.salt, redacted.hash), (1, MIN_ITERATIONS, [0; 16], [0; 32]));
    let bytes = postcard::to_allocvec(&record).unwrap();
    assert_eq!(bytes.len(), 1 + 2 + SALT_LENGTH + HASH_LENGTH, "algorithm, varint 5000, salt, hash");
    assert_eq!(postcard::from_bytes::<PasswordRecord>(&bytes).unwrap(), record);
    assert!(!bytes.windows(5).any(|window| window == b"horse"), "the record holds no password");
}
