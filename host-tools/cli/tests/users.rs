//! Mail users: `[[users]]` in homemx.toml, the password files' rules, the hashing, and the
//! `homemx user add/remove/passwd` edits of the configuration file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use homemx_cli::config_file::{self, Plan};
use homemx_cli::error::ExitCode;
use homemx_cli::users::{self, PasswordSource};
use homemx_credentials::{Verdict, DEFAULT_ITERATIONS};
use homemx_wire::config::{ConfigItem, MailUser, Submission};
use homemx_wire::message::Command;
use homemx_wire::secret::Secret;

const BASE: &str = r#"# the owner's comment stays
domains = ["example.org"]
recipients = ["alice@example.org"]
lan_prefixes = ["192.168.1.0/24"]

[lan_mailbox]
address = "192.168.1.10"  # the mailbox host
port = 24
protocol = "lmtp"
"#;

struct Folder {
    folder: tempfile::TempDir,
}

impl Folder {
    fn new(config: &str) -> Self {
        let folder = Folder { folder: tempfile::tempdir().unwrap() };
        std::fs::write(folder.config(), config).unwrap();
        folder
    }

    fn path(&self, name: &str) -> PathBuf {
        self.folder.path().join(name)
    }

    fn config(&self) -> PathBuf {
        self.path("homemx.toml")
    }

    /// A password file with `bytes` and `mode`.
    fn password(&self, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn plan(&self) -> homemx_cli::error::Result<Plan> {
        config_file::load(&self.config())
    }

    fn text(&self) -> String {
        std::fs::read_to_string(self.config()).unwrap()
    }
}

fn with_users(users: &str) -> String {
    format!("{BASE}\n{users}")
}

fn users_of(plan: &Plan) -> Vec<&MailUser> {
    plan.items.iter().filter_map(|item| if let ConfigItem::User(user) = item { Some(user) } else { None }).collect()
}

fn submission_of(plan: &Plan) -> Submission {
    let found: Vec<_> = plan.items.iter().filter_map(|item| if let ConfigItem::Submission(value) = item { Some(*value) } else { None }).collect();
    assert_eq!(found.len(), 1, "one Submission item");
    found[0]
}

#[test]
fn a_user_is_planned_as_a_salted_hash_of_its_password_file() {
    let folder = Folder::new(&with_users(
        "[[users]]\nname = \"Alice@Example.org\"\npassword_file = \"alice.password\"\nmessages_per_hour = 20\n",
    ));
    folder.password("alice.password", b"correct-horse-battery\n", 0o600);
    let plan = folder.plan().unwrap();
    let users = users_of(&plan);
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].name.as_str(), "alice@example.org", "stored in lower case");
    assert_eq!(users[0].messages_per_hour, Some(20));
    assert_eq!(users[0].password.iterations, DEFAULT_ITERATIONS);
    // The record is of the file's first line without its line end.
    assert_eq!(users[0].password.verify(b"correct-horse-battery"), Ok(Verdict::Accepted));
    assert_eq!(users[0].password.verify(b"correct-horse-battery\n"), Ok(Verdict::Refused));
    // A fresh salt every time a plan is made.
    let again = folder.plan().unwrap();
    assert_ne!(users_of(&again)[0].password.salt, users[0].password.salt);
    assert_ne!(users_of(&again)[0].password.hash, users[0].password.hash);
    assert!(plan.credentials.is_empty(), "a user's password is no credential sent to the device");
}

/// Whatever the device receives for a configuration with users (every ConfigPut, as postcard
/// bytes) holds no piece of any password, nor does the plan's Debug form.
#[test]
fn the_hash_record_sent_never_contains_the_password() {
    let passwords = ["correct-horse-battery", "p4s$", "Zz9!Zz9!Zz9!Zz9!"];
    let users: String = (0..passwords.len())
        .map(|index| format!("[[users]]\nname = \"user{index}@example.org\"\npassword_file = \"user{index}.password\"\n"))
        .collect();
    let folder = Folder::new(&with_users(&users));
    for (index, password) in passwords.iter().enumerate() {
        folder.password(&format!("user{index}.password"), format!("{password}\n").as_bytes(), 0o600);
    }
    let plan = folder.plan().unwrap();
    assert_eq!(users_of(&plan).len(), 3);
    let mut sent = Vec::new();
    for item in &plan.items {
        let mut buffer = [0u8; 1024];
        sent.extend_from_slice(postcard::to_slice(&Command::ConfigPut(item.clone()), &mut buffer).unwrap());
    }
    let shown = format!("{plan:?}");
    for (index, password) in passwords.iter().enumerate() {
        let user = users_of(&plan)[index];
        assert_eq!(user.password.verify(password.as_bytes()), Ok(Verdict::Accepted), "user {index}");
        // No 4-byte piece of the password anywhere in what is sent, nor the password in the
        // Debug form (whose words hold pieces such as "hors" of "anchors").
        for piece in password.as_bytes().windows(4) {
            assert!(!sent.windows(4).any(|window| window == piece), "{piece:?} of {password:?} on the wire");
        }
        assert!(!shown.contains(password), "{password:?} in the plan's Debug");
        assert!(!shown.contains(&format!("{:?}", user.password.hash)), "no hash in Debug");
    }
}

#[test]
fn a_password_file_others_can_read_or_write_is_refused_with_the_fix() {
    let folder = Folder::new(&with_users("[[users]]\nname = \"alice@example.org\"\npassword_file = \"alice.password\"\n"));
    for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
        let path = folder.password("alice.password", b"secret\n", mode);
        let error = folder.plan().unwrap_err();
        assert_eq!(error.kind, ExitCode::Configuration, "{mode:o}");
        assert!(error.message.starts_with("users[0].password_file: "), "{}", error.message);
        assert!(error.message.contains("readable or writable by others"), "{}", error.message);
        assert_eq!(error.hint.as_deref(), Some(format!("run `chmod 600 {}`", path.display()).as_str()));
    }
    for mode in [0o600, 0o400] {
        folder.password("alice.password", b"secret\n", mode);
        folder.plan().unwrap_or_else(|error| panic!("{mode:o}: {error}"));
    }
}

#[test]
fn password_file_contents_follow_the_rule() {
    let folder = Folder::new(&with_users("[[users]]\nname = \"alice@example.org\"\npassword_file = \"alice.password\"\n"));
    let accepted: [(&[u8], &[u8]); 4] = [(b"pw\n", b"pw"), (b"pw", b"pw"), (b"pw\r\n", b"pw"), (b" spaced out \n", b" spaced out ")];
    for (bytes, password) in accepted {
        folder.password("alice.password", bytes, 0o600);
        let plan = folder.plan().unwrap();
        assert_eq!(users_of(&plan)[0].password.verify(password), Ok(Verdict::Accepted), "{bytes:?}");
    }
    let long = vec![b'x'; 129];
    let refused: [(&[u8], &str); 7] = [
        (b"", "empty"),
        (b"\n", "empty"),
        (b"pw\n\n", "line break"),
        (b"two\nlines\n", "line break"),
        (b"nul\0byte\n", "NUL"),
        (b"cr\rinside", "line break"),
        (&long, "longer than 128 bytes"),
    ];
    for (bytes, words) in refused {
        folder.password("alice.password", bytes, 0o600);
        let error = folder.plan().unwrap_err();
        assert!(error.message.starts_with("users[0].password_file: ") && error.message.contains(words), "{bytes:?}: {}", error.message);
    }
    let missing = Folder::new(&with_users("[[users]]\nname = \"alice@example.org\"\npassword_file = \"nowhere.password\"\n"));
    assert!(missing.plan().unwrap_err().message.contains("cannot read"));
}

#[test]
fn user_entries_follow_the_wire_rules_with_the_field_named() {
    let folder = Folder::new(BASE);
    folder.password("a.password", b"secret\n", 0o600);
    let case = |users: &str| {
        std::fs::write(folder.config(), with_users(users)).unwrap();
        folder.plan().unwrap_err()
    };
    let entry = |name: &str| format!("[[users]]\nname = \"{name}\"\npassword_file = \"a.password\"\n");
    let error = case(&format!("{}{}", entry("alice@example.org"), entry("ALICE@example.org")));
    assert!(error.message.starts_with("users[1].name: alice@example.org is already users[0]"), "{}", error.message);
    assert!(error.hint.unwrap().contains("homemx user passwd alice@example.org"));
    let error = case(&entry("alice@elsewhere.example"));
    assert_eq!(error.message, "users[0].name: the user's domain is not one of the domains (sent before it)");
    let error = case(&entry("alice"));
    assert!(error.message.starts_with("users[0].name: \"alice\": a user name is the user's mail address"), "{}", error.message);
    let error = case(&entry("al%ice@example.org"));
    assert!(error.message.starts_with("users[0].name:"), "{}", error.message);
    let error = case(&format!("{}messages_per_hour = 0\n", entry("alice@example.org")));
    assert!(error.message.starts_with("users[0].messages_per_hour: messages_per_hour must be at least 1"), "{}", error.message);
    let seventeen: String = (0..17).map(|index| entry(&format!("u{index}@example.org"))).collect();
    let error = case(&seventeen);
    assert_eq!(error.message, "users: at most 16 users (the device keeps 16)");
    let error = case("[[users]]\nname = \"alice@example.org\"\npassword_file = \"a.password\"\npassword = \"inline\"\n");
    assert!(error.message.contains("unknown field `password`"), "a password never sits in the file itself: {}", error.message);
}

#[test]
fn submission_defaults_to_auth_and_lan_relay_is_an_opt_in_with_a_warning() {
    let smarthost = "[smarthost]\nhost = \"smtp.provider.example\"\nport = 465\ntls = \"implicit\"\nuser_name = \"alice\"\nspki_sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n";
    let folder = Folder::new(&format!("{BASE}{smarthost}"));
    let plan = folder.plan().unwrap();
    assert_eq!(submission_of(&plan), Submission { requires_auth: true, lan_relay_without_auth: false });
    assert_eq!(plan.warnings.len(), 1);
    assert!(plan.warnings[0].contains("nobody can send mail to other domains") && plan.warnings[0].contains("homemx user add"));
    // Top-level keys go before the first table.
    let folder = Folder::new(&format!("lan_relay_without_auth = true\nsubmission_requires_auth = false\n{BASE}{smarthost}"));
    let plan = folder.plan().unwrap();
    assert_eq!(submission_of(&plan), Submission { requires_auth: false, lan_relay_without_auth: true });
    assert_eq!(plan.warnings.len(), 1);
    assert!(plan.warnings[0].contains("any device on the LAN, a compromised one included, can then send mail as anyone"));
    // Inbound only: no warning about users.
    assert!(Folder::new(BASE).plan().unwrap().warnings.is_empty());
}

#[test]
fn init_checks_users_without_reading_their_files() {
    let file = config_file::parse(&with_users("[[users]]\nname = \"alice@example.org\"\npassword_file = \"not-yet.password\"\n")).unwrap();
    config_file::check_fields(&file).expect("the file need not exist yet");
    let file = config_file::parse(&with_users("[[users]]\nname = \"alice@nowhere.example\"\npassword_file = \"not-yet.password\"\n")).unwrap();
    assert!(config_file::check_fields(&file).is_err());
}

fn secret(text: &str) -> PasswordSource {
    PasswordSource::Typed(Secret::new(text.as_bytes()).unwrap())
}

#[test]
fn user_add_writes_a_private_password_file_and_an_entry_keeping_the_comments() {
    let folder = Folder::new(BASE);
    let outcome = users::add(&folder.config(), "Bob@Example.org", secret("bobs password"), Some(5)).unwrap();
    assert_eq!(outcome.name, "bob@example.org");
    assert_eq!(outcome.users, 1);
    let password_file = folder.path("secrets/users/bob@example.org.password");
    assert_eq!(outcome.password_file, password_file);
    assert_eq!(std::fs::read(&password_file).unwrap(), b"bobs password\n");
    assert_eq!(std::fs::metadata(&password_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(folder.path("secrets/users")).unwrap().permissions().mode() & 0o777, 0o700);
    let text = folder.text();
    assert!(text.starts_with(BASE), "the owner's text is kept as it was:\n{text}");
    assert!(text.contains("[[users]]\nname = \"bob@example.org\"\npassword_file = \"secrets/users/bob@example.org.password\"\nmessages_per_hour = 5\n"), "{text}");
    let plan = folder.plan().unwrap();
    assert_eq!(users_of(&plan)[0].password.verify(b"bobs password"), Ok(Verdict::Accepted));

    // Twice: refused, nothing changed.
    let error = users::add(&folder.config(), "bob@example.org", secret("other"), None).unwrap_err();
    assert!(error.message.contains("is a user already"), "{}", error.message);
    assert!(error.hint.unwrap().contains("homemx user passwd bob@example.org"));
    assert_eq!(folder.text(), text);
    assert_eq!(std::fs::read(&password_file).unwrap(), b"bobs password\n");
}

#[test]
fn user_add_with_the_owners_file_names_it_and_refuses_one_others_can_read() {
    let folder = Folder::new(BASE);
    let own = folder.password("carol.pw", b"carols secret\n", 0o644);
    let error = users::add(&folder.config(), "carol@example.org", PasswordSource::File(own.clone()), None).unwrap_err();
    assert!(error.message.contains("readable or writable by others"), "{}", error.message);
    assert_eq!(folder.text(), BASE, "a refused add leaves the file as it was");
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o600)).unwrap();
    users::add(&folder.config(), "carol@example.org", PasswordSource::File(own), None).unwrap();
    assert!(folder.text().contains("password_file = \"carol.pw\""), "relative to the configuration's folder: {}", folder.text());
    assert!(!folder.path("secrets").exists(), "no copy of the owner's file");
}

#[test]
fn a_refused_add_leaves_no_file_behind() {
    let folder = Folder::new(BASE);
    let error = users::add(&folder.config(), "dave@elsewhere.example", secret("daves"), None).unwrap_err();
    assert!(error.message.contains("not one of the domains"), "{}", error.message);
    assert_eq!(folder.text(), BASE);
    assert!(!folder.path("secrets/users/dave@elsewhere.example.password").exists());
    let error = users::add(&folder.config(), "not a name", secret("x"), None).unwrap_err();
    assert!(error.hint.unwrap().contains("e.g. alice@example.org"));
    let error = users::add(&folder.config(), "erin@example.org", secret("line\nbreak"), None).unwrap_err();
    assert!(error.message.contains("line break"), "{}", error.message);
    assert_eq!(folder.text(), BASE);
}

#[test]
fn user_passwd_replaces_the_password_and_user_remove_drops_the_entry() {
    let folder = Folder::new(BASE);
    users::add(&folder.config(), "bob@example.org", secret("first"), None).unwrap();
    users::add(&folder.config(), "carol@example.org", secret("carols"), None).unwrap();
    let outcome = users::passwd(&folder.config(), "BOB@example.org", secret("second")).unwrap();
    assert_eq!(outcome.users, 2);
    let file = folder.path("secrets/users/bob@example.org.password");
    assert_eq!(std::fs::read(&file).unwrap(), b"second\n");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let plan = folder.plan().unwrap();
    assert_eq!(users_of(&plan)[0].password.verify(b"second"), Ok(Verdict::Accepted));
    assert_eq!(users_of(&plan)[0].password.verify(b"first"), Ok(Verdict::Refused));

    // passwd with the owner's file: the configuration names it instead.
    let own = folder.password("bob-new.pw", b"third\n", 0o600);
    users::passwd(&folder.config(), "bob@example.org", PasswordSource::File(own)).unwrap();
    assert_eq!(users_of(&folder.plan().unwrap())[0].password.verify(b"third"), Ok(Verdict::Accepted));

    let outcome = users::remove(&folder.config(), "bob@example.org").unwrap();
    assert_eq!(outcome.users, 1);
    assert!(outcome.notes.iter().any(|note| note.contains("bob-new.pw") && note.contains("no longer used")), "{:?}", outcome.notes);
    let plan = folder.plan().unwrap();
    assert_eq!(users_of(&plan).iter().map(|user| user.name.as_str()).collect::<Vec<_>>(), ["carol@example.org"]);
    users::remove(&folder.config(), "carol@example.org").unwrap();
    assert!(!folder.text().contains("users"), "no empty [[users]] left: {}", folder.text());
    assert!(folder.text().starts_with(BASE));

    let error = users::remove(&folder.config(), "bob@example.org").unwrap_err();
    assert!(error.message.contains("is not a user"), "{}", error.message);
    assert!(error.hint.unwrap().contains("homemx user add bob@example.org"));
    assert!(users::passwd(&folder.config(), "nobody@example.org", secret("x")).is_err());
}

/// Without a device the user commands refuse before changing anything, unless --no-push.
#[test]
fn user_commands_need_a_device_or_no_push() {
    let folder = Folder::new(BASE);
    let own = folder.password("bob.pw", b"bobs\n", 0o600);
    let run = |extra: &[&str]| {
        let mut arguments = vec!["homemx", "user", "add", "bob@example.org", "--config", folder.config().to_str().unwrap().to_string().leak()];
        arguments.extend(["--password-file", own.to_str().unwrap().to_string().leak()]);
        arguments.extend(extra);
        std::process::Command::new(env!("CARGO_BIN_EXE_homemx"))
            .args(&arguments[1..])
            .env_remove("HOMEMX_DEVICE")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let output = run(&[]);
    assert_eq!(output.status.code(), Some(ExitCode::Usage as i32));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--no-push"));
    assert_eq!(folder.text(), BASE);
    let output = run(&["--no-push"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("not sent (--no-push)"));
    assert!(folder.text().contains("name = \"bob@example.org\""));
}

/// A user added without a terminal and without --password-file: the prompt is refused with
/// what to pass instead, and nothing is written.
#[test]
fn without_a_terminal_the_password_must_come_from_a_file() {
    let folder = Folder::new(BASE);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_homemx"))
        .args(["user", "add", "bob@example.org", "--no-push", "--config"])
        .arg(folder.config())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("stdin is not a terminal"), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(folder.text(), BASE);
    assert!(!Path::new(&folder.path("secrets")).exists());
}

#[test]
fn the_example_file_documents_users_and_the_submission_switches() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/homemx.example.toml")).unwrap();
    let file = config_file::parse(&text).unwrap();
    assert!(file.submission_requires_auth && !file.lan_relay_without_auth);
    assert_eq!(file.users.len(), 1);
    assert_eq!(file.users[0].password_file, users::default_password_file("alice@example.org"));
    config_file::check_fields(&file).expect("the example's fields pass the rules");
    assert!(text.contains("a compromised one included"), "the weaker switch says why");
}
