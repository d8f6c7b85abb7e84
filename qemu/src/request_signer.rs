//! An `openssl ca` that signs the device's certificate requests (`homemx tls csr`) for the tests
//! of `homemx tls install`: server certificates for a name, dated as the test asks or, as real
//! CAs do, from an hour ago for 90 days (the device's clock, set by SNTP and kept by QEMU's
//! timer, can be seconds behind the host's on a loaded machine, and a certificate whose start
//! is "now" is then not yet valid for it). The chain it returns is the leaf, then the CA.
//!
//! Owns: its working directory (the `openssl ca` database and the issued certificates).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The signer over one CA certificate and key.
pub struct RequestSigner {
    work: PathBuf,
    certificate: PathBuf,
    key: PathBuf,
}

/// The host's UTC time moved by `offset` (`date -d`, e.g. "+90 days"), as `openssl ca` dates.
pub fn utc_date(offset: &str) -> String {
    let output = Command::new("date").args(["-u", "-d", offset, "+%Y%m%d%H%M%SZ"]).output().expect("date runs");
    String::from_utf8(output.stdout).expect("ASCII").trim().to_string()
}

impl RequestSigner {
    /// A signer working in `work` (made if missing) with the CA `certificate` and its `key`.
    pub fn new(work: &Path, certificate: &Path, key: &Path) -> RequestSigner {
        std::fs::create_dir_all(work.join("issued")).unwrap();
        std::fs::write(work.join("index.txt"), "").unwrap();
        std::fs::write(
            work.join("ca.cnf"),
            "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\nnew_certs_dir = issued\nrand_serial = yes\ndefault_md = sha256\n\
             policy = anything\nunique_subject = no\ncopy_extensions = none\n[anything]\ncommonName = supplied\n",
        )
        .unwrap();
        RequestSigner { work: work.to_path_buf(), certificate: certificate.to_path_buf(), key: key.to_path_buf() }
    }

    /// Signs `request` for the SAN `name`, valid `dates` (`openssl ca` -startdate, -enddate) or
    /// from an hour ago for 90 days; writes the chain (leaf, then the CA) as `chain` in the work
    /// directory and returns its path.
    pub fn issue(&self, request: &Path, name: &str, dates: Option<(&str, &str)>, chain: &str) -> PathBuf {
        let extensions = self.work.join(format!("{chain}.ext"));
        std::fs::write(
            &extensions,
            format!("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:{name}\n"),
        )
        .unwrap();
        let leaf = self.work.join(format!("{chain}.leaf.pem"));
        let (start, end) = dates.map_or_else(|| (utc_date("-1 hour"), utc_date("+90 days")), |(start, end)| (start.to_string(), end.to_string()));
        let output = Command::new("openssl")
            .args(["ca", "-batch", "-config", "ca.cnf", "-notext", "-cert"])
            .arg(&self.certificate)
            .arg("-keyfile")
            .arg(&self.key)
            .arg("-extfile")
            .arg(&extensions)
            .arg("-in")
            .arg(request)
            .arg("-out")
            .arg(&leaf)
            .args(["-startdate", &start, "-enddate", &end])
            .current_dir(&self.work)
            .output()
            .expect("openssl runs");
        assert!(output.status.success(), "openssl ca: {}", String::from_utf8_lossy(&output.stderr));
        let text = std::fs::read_to_string(&leaf).unwrap() + &std::fs::read_to_string(&self.certificate).unwrap();
        let path = self.work.join(chain);
        std::fs::write(&path, text).unwrap();
        path
    }
}
