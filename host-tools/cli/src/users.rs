//! `homemx user add/remove/passwd`: edit the `[[users]]` of the owner's `homemx.toml` and the
//! user's password file. The configuration file stays the one record of what the device should
//! hold (`provision` and `config set` replace the device's whole configuration from it, so a
//! user made on the device alone would vanish at the next `config set`): these commands change
//! the file, check the whole result with the rules `provision` applies ([`config_file::plan`],
//! which also hashes every password), and only then write it; `commands` pushes it afterwards
//! as `config set` does.
//!
//! The file is edited with `toml_edit`, so the owner's comments, order and layout stay; it is
//! replaced atomically (a temporary file in the same folder, renamed over it, with the old
//! file's mode). A new password file is `secrets/users/NAME.password` beside the configuration
//! (mode 0600, never overwriting one that exists), unless the owner names one of theirs.
//! Calls: `config_file`, `error`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use homemx_wire::secret::Secret;
use toml_edit::{value, ArrayOfTables, DocumentMut, Item, Table};

use crate::config_file;
use crate::error::{CliError, ExitCode, Result};

/// Where a user's (new) password comes from.
pub enum PasswordSource {
    /// A file of the owner's, used where it is: the configuration names it.
    File(PathBuf),
    /// Typed at the prompt: written into the user's password file.
    Typed(Secret),
}

/// What an edit did, for the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The user's name as stored (lower case).
    pub name: String,
    /// The password file the configuration names for the user (resolved).
    pub password_file: PathBuf,
    /// The users in the file afterwards.
    pub users: usize,
    /// Sentences worth telling (a password file left behind, the plan's warnings).
    pub notes: Vec<String>,
}

fn failure(message: impl Into<String>) -> CliError {
    CliError::new(ExitCode::Configuration, message)
}

fn base_of(config: &Path) -> &Path {
    config.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn read_document(config: &Path) -> Result<DocumentMut> {
    let text = std::fs::read_to_string(config).map_err(|error| {
        failure(format!("cannot read {}: {error}", config.display())).hint("run it where homemx.toml is, or pass --config PATH (`homemx init` writes one)")
    })?;
    text.parse::<DocumentMut>().map_err(|error| failure(format!("{}: {error}", config.display())))
}

/// The `[[users]]` tables, if any.
fn users_of(document: &DocumentMut) -> Result<Option<&ArrayOfTables>> {
    match document.get("users") {
        None => Ok(None),
        Some(Item::ArrayOfTables(array)) => Ok(Some(array)),
        Some(_) => Err(failure("users: write each user as a [[users]] table (name, password_file)")),
    }
}

fn users_of_mut(document: &mut DocumentMut) -> Result<&mut ArrayOfTables> {
    if document.get("users").is_none() {
        document.insert("users", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    match document.get_mut("users") {
        Some(Item::ArrayOfTables(array)) => Ok(array),
        _ => Err(failure("users: write each user as a [[users]] table (name, password_file)")),
    }
}

fn name_of(table: &Table) -> Option<String> {
    table.get("name").and_then(Item::as_str).map(|name| name.trim().to_ascii_lowercase())
}

fn position(document: &DocumentMut, name: &str) -> Result<Option<usize>> {
    Ok(users_of(document)?.and_then(|array| array.iter().position(|table| name_of(table).as_deref() == Some(name))))
}

/// The canonical name (lower case, the wire's rule), or an error that says what a name is.
fn checked_name(name: &str) -> Result<String> {
    config_file::mail_user_name("name", name)
        .map(|name| name.to_string())
        .map_err(|error| error.hint("a user name is the user's mail address in one of `domains`, e.g. alice@example.org"))
}

/// Checks the edited file as `provision` would (every password file read and hashed), then
/// replaces the configuration file with it.
fn check_and_write(config: &Path, document: &DocumentMut) -> Result<Vec<String>> {
    let text = document.to_string();
    let plan = config_file::plan(&config_file::parse(&text)?, base_of(config))?;
    replace_file(config, text.as_bytes(), None)?;
    Ok(plan.warnings)
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`: readers see the
/// old or the new file, never a mix. The mode is `mode`, else the old file's, else 0600.
fn replace_file(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<()> {
    let mode = mode.or_else(|| std::fs::metadata(path).ok().map(|metadata| metadata.permissions().mode() & 0o777)).unwrap_or(0o600);
    let file_name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = path.with_file_name(format!(".{file_name}.homemx-new"));
    let write = || -> std::io::Result<()> {
        let _ = std::fs::remove_file(&temporary);
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&temporary)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    };
    write().map_err(|error| {
        let _ = std::fs::remove_file(&temporary);
        CliError::new(ExitCode::Failure, format!("cannot write {}: {error}", path.display()))
    })
}

/// The password file a new user gets beside the configuration.
pub fn default_password_file(name: &str) -> PathBuf {
    Path::new("secrets").join("users").join(format!("{name}.password"))
}

/// `path` as the configuration should name it: relative to the configuration's folder when it
/// lies inside it, absolute otherwise (a relative path in the file means "from its folder").
fn as_named(config: &Path, path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path).map_err(|error| failure(format!("{}: {error}", path.display())))?;
    let base = std::path::absolute(base_of(config)).map_err(|error| failure(format!("{}: {error}", config.display())))?;
    Ok(absolute.strip_prefix(&base).map(Path::to_path_buf).unwrap_or(absolute))
}

/// Writes a typed password into a new private file (folders made 0700); refuses to overwrite.
fn write_new_password_file(path: &Path, password: &Secret) -> Result<()> {
    if let Some(folder) = path.parent() {
        if !folder.exists() {
            std::fs::create_dir_all(folder).map_err(|error| failure(format!("cannot make {}: {error}", folder.display())))?;
            let _ = std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700));
        }
    }
    let mut line = zeroize::Zeroizing::new(password.expose().to_vec());
    line.push(b'\n');
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|error| {
        let hint = if error.kind() == std::io::ErrorKind::AlreadyExists {
            format!("remove {} if it is stale, or pass --password-file to use it", path.display())
        } else {
            "check the folder is writable".to_string()
        };
        failure(format!("cannot create {}: {error}", path.display())).hint(hint)
    })?;
    file.write_all(&line).map_err(|error| failure(format!("cannot write {}: {error}", path.display())))
}

fn typed_password(password: &Secret) -> Result<()> {
    config_file::user_password(password.expose()).map(|_| ()).map_err(|rule| CliError::new(ExitCode::Aborted, rule.to_string()))
}

/// Adds user `name` to `config`: its password from `source`, its hourly quota if given.
pub fn add(config: &Path, name: &str, source: PasswordSource, messages_per_hour: Option<u16>) -> Result<Outcome> {
    let name = checked_name(name)?;
    let mut document = read_document(config)?;
    if position(&document, &name)?.is_some() {
        return Err(failure(format!("{name} is a user already in {}", config.display()))
            .hint(format!("change the password with `homemx user passwd {name}`, or remove the user first")));
    }
    let base = base_of(config);
    let (named, created) = match &source {
        PasswordSource::File(path) => (as_named(config, path)?, None),
        PasswordSource::Typed(password) => {
            typed_password(password)?;
            let named = default_password_file(&name);
            let full = base.join(&named);
            write_new_password_file(&full, password)?;
            (named, Some(full))
        }
    };
    let mut table = Table::new();
    table["name"] = value(name.as_str());
    table["password_file"] = value(named.to_string_lossy().as_ref());
    if let Some(limit) = messages_per_hour {
        table["messages_per_hour"] = value(i64::from(limit));
    }
    users_of_mut(&mut document)?.push(table);
    let result = check_and_write(config, &document);
    if result.is_err() {
        // The configuration is unchanged: the password file made for it goes too.
        if let Some(full) = &created {
            let _ = std::fs::remove_file(full);
        }
    }
    let warnings = result?;
    let users = users_of(&document)?.map_or(0, ArrayOfTables::len);
    Ok(Outcome { name, password_file: base.join(named), users, notes: warnings })
}

/// Removes user `name` from `config`. The password file stays (it may be the owner's own):
/// the outcome's note names it.
pub fn remove(config: &Path, name: &str) -> Result<Outcome> {
    let name = checked_name(name)?;
    let mut document = read_document(config)?;
    let index = position(&document, &name)?.ok_or_else(|| no_such_user(config, &name))?;
    let array = users_of_mut(&mut document)?;
    let password_file = array.get(index).and_then(|table| table.get("password_file")).and_then(Item::as_str).map(PathBuf::from).unwrap_or_default();
    array.remove(index);
    let users = array.len();
    if users == 0 {
        document.remove("users");
    }
    let mut notes = check_and_write(config, &document)?;
    let password_file = base_of(config).join(password_file);
    if password_file.exists() {
        notes.push(format!("{} is no longer used: delete it (e.g. `shred -u {}`) unless you keep it for something else", password_file.display(), password_file.display()));
    }
    Ok(Outcome { name, password_file, users, notes })
}

/// Sets a new password for user `name`: a file of the owner's (the configuration then names it)
/// or a typed one (written over the user's password file, atomically, mode 0600).
pub fn passwd(config: &Path, name: &str, source: PasswordSource) -> Result<Outcome> {
    let name = checked_name(name)?;
    let mut document = read_document(config)?;
    let index = position(&document, &name)?.ok_or_else(|| no_such_user(config, &name))?;
    let base = base_of(config).to_path_buf();
    let array = users_of_mut(&mut document)?;
    let table = array.get_mut(index).ok_or_else(|| no_such_user(config, &name))?;
    // A typed password replaces the file's; the old bytes come back if the check then fails.
    let mut previous: Option<(PathBuf, Option<zeroize::Zeroizing<Vec<u8>>>)> = None;
    let named = match &source {
        PasswordSource::File(path) => {
            let named = as_named(config, path)?;
            table["password_file"] = value(named.to_string_lossy().as_ref());
            named
        }
        PasswordSource::Typed(password) => {
            typed_password(password)?;
            let named = table.get("password_file").and_then(Item::as_str).map(PathBuf::from).unwrap_or_else(|| default_password_file(&name));
            let full = base.join(&named);
            if let Some(folder) = full.parent() {
                std::fs::create_dir_all(folder).map_err(|error| failure(format!("cannot make {}: {error}", folder.display())))?;
            }
            let mut line = zeroize::Zeroizing::new(password.expose().to_vec());
            line.push(b'\n');
            previous = Some((full.clone(), std::fs::read(&full).ok().map(zeroize::Zeroizing::new)));
            replace_file(&full, &line, Some(0o600))?;
            table["password_file"] = value(named.to_string_lossy().as_ref());
            named
        }
    };
    let users = array.len();
    let notes = check_and_write(config, &document).inspect_err(|_| match &previous {
        Some((full, Some(bytes))) => drop(replace_file(full, bytes, None)),
        Some((full, None)) => drop(std::fs::remove_file(full)),
        None => {}
    })?;
    Ok(Outcome { name, password_file: base.join(named), users, notes })
}

fn no_such_user(config: &Path, name: &str) -> CliError {
    failure(format!("{name} is not a user in {}", config.display())).hint(format!("add it with `homemx user add {name}`"))
}
