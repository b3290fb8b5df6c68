//! The one place that reads and writes a disk's `nvme-tcp-server-allow-host-name`.
//!
//! Its format is undocumented (REFERENCE.md §13 item 3). One host NQN is the narrowest reading,
//! and what a volume published to one node gets, byte for byte as before lists existed. A volume
//! published to two nodes (a KubeVirt live migration) needs a list: this driver assumes RouterOS
//! reads several host names separated by commas, as rds-sim does (simulator/FIDELITY.md). A host
//! NQN cannot hold a comma ([`Nqn::parse`]), so the list reads back unambiguously.
//!
//! An empty value would admit every host, so a volume published to no node carries
//! [`FENCED_HOST`], which no host uses, and reads back as no host.
//!
//! Whether the RDS reads a list at all is the operator's setting, [`Reading`] (`rds.allowList`):
//! SSH alone cannot tell, it takes NVMe/TCP connects from two hosts (HARDWARE_VALIDATION.md TC-04
//! step 1). With [`Reading::Single`] the controller never writes a list (controller/publish.rs).

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::command::FENCED_HOST;
use super::value::Nqn;

/// How the RDS reads `nvme-tcp-server-allow-host-name` (`rds.allowList`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reading {
    /// Host names separated by commas: a volume may be attached to two nodes during a KubeVirt
    /// live migration.
    #[default]
    List,
    /// One host name: a volume is attached to one node, always.
    Single,
}

impl Reading {
    /// The setting's value, as `rds.allowList` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reading::List => "list",
            Reading::Single => "single",
        }
    }
}

impl FromStr for Reading {
    type Err = String;

    fn from_str(text: &str) -> Result<Reading, String> {
        [Reading::List, Reading::Single]
            .into_iter()
            .find(|reading| reading.as_str() == text)
            .ok_or_else(|| format!("{text:?} is neither list nor single"))
    }
}

const SEPARATOR: char = ',';

/// The hosts a printed allow-list admits, in order; none for empty or [`FENCED_HOST`].
pub fn parse(value: &str) -> Vec<String> {
    value
        .split(SEPARATOR)
        .map(str::trim)
        .filter(|host| !host.is_empty() && *host != FENCED_HOST)
        .map(str::to_owned)
        .collect()
}

/// The value that admits exactly `hosts`: [`FENCED_HOST`] for none, the host itself for one,
/// the hosts separated by commas for more.
pub fn render(hosts: &[Nqn]) -> String {
    if hosts.is_empty() {
        return FENCED_HOST.to_owned();
    }
    hosts
        .iter()
        .map(Nqn::as_str)
        .collect::<Vec<_>>()
        .join(&SEPARATOR.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "nqn.2014-08.org.nvmexpress:uuid:a";
    const B: &str = "nqn.2014-08.org.nvmexpress:uuid:b";

    fn nqns(hosts: &[&str]) -> Vec<Nqn> {
        hosts.iter().map(|h| Nqn::parse(h).unwrap()).collect()
    }

    #[test]
    fn one_host_is_the_host_itself_and_none_is_the_fenced_host() {
        assert_eq!(render(&nqns(&[A])), A);
        assert_eq!(render(&[]), FENCED_HOST);
        assert_eq!(parse(A), [A]);
        assert!(parse(FENCED_HOST).is_empty());
        assert!(parse("").is_empty());
    }

    #[test]
    fn two_hosts_are_comma_separated_and_read_back_in_order() {
        let value = render(&nqns(&[A, B]));
        assert_eq!(value, format!("{A},{B}"));
        assert_eq!(parse(&value), [A, B]);
        // Spaces after a comma, or a fenced entry left in a list, change nothing.
        assert_eq!(parse(&format!("{B}, {A}")), [B, A]);
        assert_eq!(parse(&format!("{FENCED_HOST},{A}")), [A]);
    }

    #[test]
    fn render_then_parse_is_the_identity() {
        for hosts in [&[][..], &[A], &[A, B], &[B, A]] {
            assert_eq!(parse(&render(&nqns(hosts))), hosts);
        }
    }
}
