//! The RDS host key the driver trusts.

use std::fmt;
use std::str::FromStr;

use russh::keys::ssh_key::Fingerprint;
use russh::keys::{HashAlg, PublicKey};

/// A pinned host key, held as its fingerprint.
///
/// Parsed from a known_hosts line (`10.0.0.5 ssh-ed25519 AAAA…`), a public key
/// (`ssh-ed25519 AAAA… comment`), or a fingerprint (`SHA256:…`, also inside the line
/// `ssh-keygen -lf` prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyPin {
    fingerprint: Fingerprint,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a host key pin: {0:?}; give a known_hosts line (`10.0.0.5 ssh-ed25519 AAAA…`, as \
     `ssh-keyscan` prints) or a fingerprint (`SHA256:…`, as `ssh-keygen -lf` prints)"
)]
pub struct InvalidHostKeyPin(pub String);

impl HostKeyPin {
    pub fn of_key(key: &PublicKey) -> Self {
        Self {
            fingerprint: key.fingerprint(HashAlg::Sha256),
        }
    }

    /// The fingerprint of `key` in this pin's hash, for comparison and messages.
    pub(super) fn fingerprint_of(&self, key: &PublicKey) -> Fingerprint {
        key.fingerprint(self.fingerprint.algorithm())
    }

    pub(super) fn matches(&self, key: &PublicKey) -> bool {
        self.fingerprint_of(key) == self.fingerprint
    }
}

impl fmt::Display for HostKeyPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fingerprint.fmt(f)
    }
}

impl FromStr for HostKeyPin {
    type Err = InvalidHostKeyPin;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidHostKeyPin(text.to_owned());
        let words: Vec<&str> = text.split_whitespace().collect();
        if let Some(fingerprint) = words.iter().find(|word| word.starts_with("SHA256:")) {
            let fingerprint = fingerprint.parse().map_err(|_| invalid())?;
            return Ok(Self { fingerprint });
        }
        // `type base64 [comment]`, or a known_hosts line with the host names first. Markers
        // (`@cert-authority`, `@revoked`) do not describe a key to pin.
        let key = match words.as_slice() {
            [] => return Err(invalid()),
            [first, ..] if first.starts_with('@') => return Err(invalid()),
            [_, rest @ ..] => PublicKey::from_openssh(&words.join(" "))
                .or_else(|_| PublicKey::from_openssh(&rest.join(" ")))
                .map_err(|_| invalid())?,
        };
        Ok(Self::of_key(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    // `ssh-keygen -lf` of KEY.
    const FINGERPRINT: &str = "SHA256:T7SvZ2cslqpPj6nKzitCBHHlpVF3r3MvLwmFL0fk0IE";

    fn fingerprint_of_key() -> String {
        HostKeyPin::of_key(&PublicKey::from_openssh(KEY).unwrap()).to_string()
    }

    #[test]
    fn every_accepted_form_pins_the_same_key() {
        let expected = fingerprint_of_key();
        for text in [
            format!("10.0.0.5 {KEY}"),
            format!("[rds.example]:2222,10.0.0.5 {KEY} comment"),
            format!("|1|c2FsdA==|aGFzaA== {KEY}"),
            KEY.to_owned(),
            format!("  {KEY} admin@rds  "),
            expected.clone(),
            format!("256 {expected} root@rds (ED25519)"),
        ] {
            let pin: HostKeyPin = text.parse().unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(pin.to_string(), expected, "{text}");
        }
    }

    #[test]
    fn the_fingerprint_is_the_one_openssh_prints() {
        assert_eq!(fingerprint_of_key(), FINGERPRINT);
    }

    #[test]
    fn other_text_is_refused_with_a_hint() {
        for text in [
            "",
            "10.0.0.5",
            "10.0.0.5 ssh-ed25519 AAAAnotbase64",
            "SHA256:tooshort",
            &format!("@revoked 10.0.0.5 {KEY}"),
        ] {
            let error = text.parse::<HostKeyPin>().unwrap_err();
            assert!(error.to_string().contains("known_hosts line"), "{error}");
        }
    }
}
