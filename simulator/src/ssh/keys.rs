//! Key files: the server's host key and OpenSSH `authorized_keys` lists.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::RngCore;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PublicKey, ssh_key};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the new host key to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not an unencrypted OpenSSH private key ({source}); \
         fix it, or delete it to have a new host key generated"
    )]
    PrivateKey {
        path: PathBuf,
        source: ssh_key::Error,
    },
    #[error("authorized keys line {line}: not an OpenSSH public key ({reason})")]
    AuthorizedKey { line: usize, reason: String },
}

/// Reads the host key at `path`, or generates an ed25519 key there (OpenSSH format, mode 0600)
/// when the file does not exist, so the simulator keeps its identity across restarts.
pub fn load_or_generate_host_key(path: &Path) -> Result<PrivateKey, KeyFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_private_key(path, &text),
        Err(error) if error.kind() == ErrorKind::NotFound => generate_host_key(path),
        Err(source) => Err(KeyFileError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn parse_private_key(path: &Path, text: &str) -> Result<PrivateKey, KeyFileError> {
    let invalid = |source| KeyFileError::PrivateKey {
        path: path.to_owned(),
        source,
    };
    let key = PrivateKey::from_openssh(text).map_err(invalid)?;
    if key.is_encrypted() {
        return Err(invalid(ssh_key::Error::Encrypted));
    }
    Ok(key)
}

fn generate_host_key(path: &Path) -> Result<PrivateKey, KeyFileError> {
    let write_error = |source| KeyFileError::Write {
        path: path.to_owned(),
        source,
    };
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment("rds-sim host key");
    let pem = key
        .to_openssh(LineEnding::LF)
        .map_err(|error| write_error(std::io::Error::other(error)))?;
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    // `create_new`: when two simulators race on one data directory, the loser reads the
    // winner's key instead of overwriting it.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match file {
        Ok(mut file) => {
            file.write_all(pem.as_bytes()).map_err(write_error)?;
            file.sync_all().map_err(write_error)?;
            Ok(key)
        }
        Err(error) if error.kind() == ErrorKind::AlreadyExists => load_or_generate_host_key(path),
        Err(error) => Err(write_error(error)),
    }
}

/// Reads an OpenSSH `authorized_keys` file.
pub fn read_authorized_keys(path: &Path) -> Result<Vec<PublicKey>, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_authorized_keys(&text)
}

/// Parses OpenSSH `authorized_keys` text: one `[options] type base64 [comment]` per line;
/// blank lines and `#` comments are skipped. Options are accepted and ignored.
pub fn parse_authorized_keys(text: &str) -> Result<Vec<PublicKey>, KeyFileError> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(number, line)| parse_authorized_key(number, line))
        .collect()
}

fn parse_authorized_key(number: usize, line: &str) -> Result<PublicKey, KeyFileError> {
    // The key starts at the first word that parses as one; everything before it is options
    // (which may hold quoted spaces, so they are not parsed word by word).
    let mut first_error = None;
    for (start, _) in line.match_indices(|c: char| !c.is_whitespace()) {
        let at_word_start = start == 0 || line[..start].ends_with(char::is_whitespace);
        if !at_word_start {
            continue;
        }
        match PublicKey::from_openssh(&line[start..]) {
            Ok(key) => return Ok(key),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    Err(KeyFileError::AuthorizedKey {
        line: number,
        reason: first_error.map_or_else(|| "empty".to_owned(), |error| error.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use russh::keys::Algorithm;

    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";

    #[test]
    fn host_key_is_generated_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/host_ed25519");
        let generated = load_or_generate_host_key(&path).unwrap();
        assert_eq!(generated.algorithm(), Algorithm::Ed25519);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        );
        let reloaded = load_or_generate_host_key(&path).unwrap();
        assert_eq!(
            reloaded.public_key().key_data(),
            generated.public_key().key_data()
        );
    }

    #[test]
    fn a_damaged_host_key_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host_ed25519");
        std::fs::write(&path, "not a key").unwrap();
        let error = load_or_generate_host_key(&path).unwrap_err();
        assert!(matches!(error, KeyFileError::PrivateKey { .. }), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a key");
    }

    #[test]
    fn authorized_keys_skip_comments_and_options() {
        let text = format!(
            "# admin's keys\n\n{KEY} admin@laptop\nfrom=\"10.0.0.1,10.0.0.2\",no-pty {KEY}\n  {KEY}\n"
        );
        let keys = parse_authorized_keys(&text).unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[0].comment().as_str_lossy(), "admin@laptop");
        assert!(keys.iter().all(|key| key.algorithm() == Algorithm::Ed25519));
    }

    #[test]
    fn a_bad_authorized_keys_line_is_named() {
        let text = format!("{KEY}\nssh-ed25519 garbage\n");
        let error = parse_authorized_keys(&text).unwrap_err();
        assert!(
            matches!(error, KeyFileError::AuthorizedKey { line: 2, .. }),
            "{error}"
        );
    }
}
