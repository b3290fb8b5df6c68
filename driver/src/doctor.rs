//! `rds-csi doctor`: checks, one by one, what the driver needs from the RDS, and says what to fix.
//! It only reads: nothing on the appliance changes. `--snapshots` adds the snapshot-method
//! probes ([`snapshots`]), which write and remove small probe disks; `--all` adds those and the
//! probes of the open RouterOS questions ([`questions`]).

pub mod questions;
pub mod snapshots;

use crate::config::Config;
use crate::rds::command::{Cmd, DiskQuery, Form};
use crate::rds::parse::{
    PoolRecord, RosVersion, parse_key_values, parse_routeros_version, records,
};
use crate::rds::ssh::{HostKeyPin, SshError, SshTransport, Timeouts};
use crate::rds::value::RosPath;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// RouterOS prints `nvme-tcp-server-nqn` from this version on (REFERENCE.md §1).
pub const MIN_VERSION: RosVersion = RosVersion::new(7, 21, 0);

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was found, or what to fix.
    pub detail: String,
}

/// Every check, in the order they ran; later checks are skipped once one fails.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    fn pass(&mut self, name: &'static str, detail: String) {
        self.checks.push(Check {
            name,
            ok: true,
            detail,
        });
    }

    fn fail(&mut self, name: &'static str, detail: String) -> &mut Self {
        self.checks.push(Check {
            name,
            ok: false,
            detail,
        });
        self
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            writeln!(
                f,
                "[{}] {}: {}",
                if c.ok { " ok " } else { "FAIL" },
                c.name,
                c.detail
            )?;
        }
        if self.ok() {
            writeln!(f, "all checks passed")
        } else {
            writeln!(
                f,
                "fix the first failing check and run `rds-csi doctor` again"
            )
        }
    }
}

/// Runs every check against the RDS in `config`.
pub async fn run(config: &Config) -> Report {
    let mut report = Report::default();
    let rds = &config.rds;
    let addr = rds.ssh_addr();

    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    {
        Ok(Ok(_)) => report.pass("reachable", format!("TCP connection to {addr} opened")),
        Ok(Err(e)) => {
            report.fail(
                "reachable",
                format!(
                    "cannot connect to {addr}: {e}; check rds.address, rds.sshPort and the firewall"
                ),
            );
            return report;
        }
        Err(_) => {
            report.fail(
                "reachable",
                format!("no answer from {addr} within 5 s; check rds.address and the network path"),
            );
            return report;
        }
    }

    let pin = match rds.host_key.parse::<HostKeyPin>() {
        Ok(p) => p,
        Err(e) => {
            report.fail(
                "host key",
                format!("rds.hostKey is not a known_hosts line or SHA256 fingerprint: {e}"),
            );
            return report;
        }
    };
    let key = match russh::keys::load_secret_key(&rds.private_key_file, None) {
        Ok(k) => Arc::new(k),
        Err(e) => {
            report.fail(
                "client key",
                format!(
                    "cannot read rds.privateKeyFile {}: {e}",
                    rds.private_key_file.display()
                ),
            );
            return report;
        }
    };
    let timeouts = Timeouts {
        connect: Duration::from_millis(rds.connect_timeout_ms),
        command: Duration::from_millis(rds.command_timeout_ms),
        copy: Duration::from_millis(rds.copy_timeout_ms),
    };
    let ssh = match SshTransport::connect(&addr, &rds.user, key, &pin, timeouts).await {
        Ok(t) => {
            report.pass("host key", format!("matches the pin {pin}"));
            report.pass("login", format!("logged in as {}", rds.user));
            t
        }
        Err(e @ SshError::HostKeyMismatch { .. }) => {
            report.fail("host key", e.to_string());
            return report;
        }
        Err(e) => {
            report.fail("login", e.to_string());
            return report;
        }
    };

    let version = ssh
        .run(Cmd::system_resource().as_str())
        .await
        .map_err(|e| e.to_string())
        .and_then(|out| parse_key_values(&out).map_err(|e| e.to_string()))
        .and_then(|r| {
            let v = r
                .get("version")
                .ok_or("no version line in /system resource print")?;
            parse_routeros_version(v).map_err(|e| e.to_string())
        });
    match version {
        Ok(v) if v >= MIN_VERSION => report.pass("RouterOS version", format!("{v}")),
        Ok(v) => {
            report.fail(
                "RouterOS version",
                format!("{v} is older than {MIN_VERSION}, which rds-csi needs for nvme-tcp-server-nqn; upgrade RouterOS"),
            );
        }
        Err(e) => {
            report.fail("RouterOS version", format!("could not read it: {e}"));
        }
    }

    let pool = match RosPath::parse(&rds.pool) {
        Ok(p) => pool_record(&ssh, &p).await,
        Err(e) => Err(e.to_string()),
    };
    match pool {
        Ok(p) => report.pass(
            "pool",
            format!(
                "{} mounted, {} of {} bytes free",
                p.mount_point, p.free, p.size
            ),
        ),
        Err(e) => {
            report.fail("pool", e);
        }
    }
    report
}

async fn pool_record(ssh: &SshTransport, pool: &RosPath) -> Result<PoolRecord, String> {
    let cmd = Cmd::disk_print(DiskQuery::MountPoint(pool), Form::Detail);
    let out = ssh.run(cmd.as_str()).await.map_err(|e| e.to_string())?;
    let recs = records(Form::Detail, &out).map_err(|e| e.to_string())?;
    let rec = recs.first().ok_or_else(|| {
        format!(
            "no disk is mounted at {pool:?}; set rds.pool to the mount point shown by `/disk print detail where mount-point~\".\"`"
        )
    })?;
    PoolRecord::try_from(rec).map_err(|e| e.to_string())
}
