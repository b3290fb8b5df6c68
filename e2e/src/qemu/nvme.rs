//! NVMe/TCP in the guest: connecting the kernel initiator through /dev/nvme-fabrics, finding a
//! subsystem's namespace once the kernel scanned it, and the kernel's own nvmet target (configured
//! through configfs) that rds-sim's target is compared with; and rds-sim serving a disk to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rds_sim::sim::Sim;
use rds_sim::ssh::Reply;

use super::{Guest, GuestError};
use crate::config::SimSettings;
use crate::sim_rds::SimRds;

/// Where and how the kernel initiator connects.
#[derive(Debug, Clone)]
pub struct Connect<'a> {
    pub traddr: &'a str,
    pub port: u16,
    pub nqn: &'a str,
    pub host_nqn: &'a str,
    /// More fabrics options, comma separated (`reconnect_delay=1,ctrl_loss_tmo=30`), or empty.
    pub options: &'a str,
}

impl Connect<'_> {
    /// The line /dev/nvme-fabrics takes.
    pub fn fabrics_line(&self) -> String {
        let Connect {
            traddr,
            port,
            nqn,
            host_nqn,
            options,
        } = self;
        let mut line =
            format!("transport=tcp,traddr={traddr},trsvcid={port},nqn={nqn},hostnqn={host_nqn}");
        if !options.is_empty() {
            line.push(',');
            line.push_str(options);
        }
        line
    }
}

/// Connects the kernel initiator, as the node plugin does: one write to /dev/nvme-fabrics, answered
/// on the same descriptor with the new controller's instance. Returns the controller (`nvmeN`).
pub fn connect(guest: &Guest, connect: &Connect<'_>) -> Result<String, GuestError> {
    let command = format!(
        "exec 4<>/dev/nvme-fabrics
         echo {} >&4
         read -r reply <&4
         echo $reply",
        connect.fabrics_line()
    );
    let output = guest.run_ok(&command)?;
    output
        .stdout
        .trim()
        .split(',')
        .find_map(|field| field.strip_prefix("instance="))
        .map(|instance| format!("nvme{instance}"))
        .ok_or(GuestError::CommandFailed { command, output })
}

/// The block device (`/dev/nvmeXnY`) of subsystem `nqn`'s namespace, waiting (up to 10 s) for the
/// kernel's asynchronous scan that follows a connect.
pub fn namespace_device(guest: &Guest, nqn: &str) -> Result<String, GuestError> {
    let output = guest.run_ok(&format!(
        "for i in $(seq 100); do
           for subsys in /sys/class/nvme-subsystem/*; do
             [ \"$(cat $subsys/subsysnqn 2>/dev/null)\" = {nqn} ] || continue
             for ns in $subsys/nvme*n*; do [ -b /dev/${{ns##*/}} ] && echo /dev/${{ns##*/}} && exit 0; done
           done
           sleep 0.1
         done
         dmesg | tail -30 >&2; echo 'namespace of {nqn} never appeared' >&2; exit 1"
    ))?;
    Ok(output.stdout.trim().to_string())
}

/// Deletes a controller and waits until the kernel has removed it.
pub fn delete_controller(guest: &Guest, controller: &str) -> Result<(), GuestError> {
    guest.run_ok(&format!(
        "echo 1 >/sys/class/nvme/{controller}/delete_controller
         for i in $(seq 100); do [ -e /sys/class/nvme/{controller} ] || exit 0; sleep 0.1; done
         echo '{controller} still present after delete_controller' >&2; exit 1"
    ))?;
    Ok(())
}

/// A UUID given as 32 hex digits in the 8-4-4-4-12 form sysfs and configfs use.
pub fn uuid_text(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A subsystem of the guest kernel's nvmet target: one namespace on a sparse tmpfs file, any host
/// allowed, listening on 127.0.0.1:`port`.
#[derive(Debug, Clone)]
pub struct KernelTarget<'a> {
    pub nqn: &'a str,
    pub size: u64,
    pub port: u16,
    /// The namespace's UUID, also its NGUID, as rds-sim reports them (32 hex digits).
    pub uuid_hex: &'a str,
    pub serial: &'a str,
}

impl KernelTarget<'_> {
    /// Creates the subsystem, its namespace and the port in configfs. The guest must have no other
    /// nvmet port 1.
    pub fn start(&self, guest: &Guest) -> Result<(), GuestError> {
        let KernelTarget {
            nqn,
            size,
            port,
            uuid_hex,
            serial,
        } = self;
        let uuid = uuid_text(uuid_hex);
        guest.run_ok(&format!(
            "set -e
             cfg=/sys/kernel/config/nvmet
             truncate -s {size} /tmp/nvmet-backing
             subsys=$cfg/subsystems/{nqn}
             mkdir $subsys
             echo 1 >$subsys/attr_allow_any_host
             echo -n {serial} >$subsys/attr_serial
             ns=$subsys/namespaces/1
             mkdir $ns
             echo -n /tmp/nvmet-backing >$ns/device_path
             echo {uuid} >$ns/device_uuid
             echo {uuid} >$ns/device_nguid
             echo 1 >$ns/buffered_io
             echo 1 >$ns/enable
             port=$cfg/ports/1
             mkdir $port
             echo tcp >$port/addr_trtype
             echo ipv4 >$port/addr_adrfam
             echo 127.0.0.1 >$port/addr_traddr
             echo {port} >$port/addr_trsvcid
             ln -s $subsys $port/subsystems/{nqn}"
        ))?;
        Ok(())
    }
}

/// rds-sim with its NVMe/TCP target on a loopback port, which the guest reaches at
/// [`super::HOST_ADDR`]; commands go through its CLI engine as an SSH session's would.
pub struct SimTarget {
    rt: tokio::runtime::Runtime,
    rds: SimRds,
}

/// A disk exported with `/disk add`, as the host sees it.
#[derive(Debug, Clone)]
pub struct ExportedDisk {
    pub backing: PathBuf,
    /// The namespace UUID (also its NGUID) as 32 hex digits.
    pub uuid_hex: String,
    pub serial: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SimTargetError {
    #[error("starting rds-sim: {0:#}")]
    Start(anyhow::Error),
    #[error("rds-sim hung up on {0:?}")]
    Hangup(String),
    #[error("rds-sim answered {line:?} with {output:?}")]
    Refused { line: String, output: String },
    #[error("no disk in slot {0:?} after /disk add")]
    NoDisk(String),
}

impl SimTarget {
    /// Starts rds-sim with its data (and a generated client key) under `dir`, in a runtime of its
    /// own.
    pub fn start(dir: &Path) -> Result<SimTarget, SimTargetError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| SimTargetError::Start(e.into()))?;
        let settings = SimSettings {
            pool_size: 16 << 30,
            ..SimSettings::default()
        };
        let rds = rt
            .block_on(SimRds::start(dir, &settings))
            .map_err(|e| SimTargetError::Start(e.into()))?;
        Ok(SimTarget { rt, rds })
    }

    pub fn sim(&self) -> &Arc<Sim> {
        self.rds.sim()
    }

    /// The runtime the simulator runs on, for host-side async work beside it (a driver server).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// The `[rds]` table of an rds-csi configuration that manages this simulator over SSH (the
    /// host key pinned) and tells nodes to connect to its NVMe/TCP target at `nvme_address`.
    pub fn rds_config(&self, nvme_address: &str) -> toml::Table {
        self.rds.rds_config(nvme_address)
    }

    /// The NVMe/TCP target's port.
    pub fn port(&self) -> u16 {
        self.rds.nvme_port()
    }

    /// Runs a RouterOS command line as an SSH session would; returns its output.
    pub fn routeros(&self, line: &str) -> Result<String, SimTargetError> {
        let sim = self.sim();
        self.rt.block_on(async {
            let (session, _) = sim.open_session("admin", ([127, 0, 0, 1], 1).into());
            let reply = sim.exec(session, line).await;
            sim.close_session(session);
            match reply {
                Reply::Output { text, .. } => Ok(text),
                Reply::Hangup => Err(SimTargetError::Hangup(line.to_string())),
            }
        })
    }

    /// Adds a file disk of `size` bytes in `slot`, exported as `nqn` to `allowed_host`.
    pub fn export_disk(
        &self,
        slot: &str,
        nqn: &str,
        size: u64,
        allowed_host: &str,
    ) -> Result<ExportedDisk, SimTargetError> {
        let line = format!(
            r#"/disk add type=file file-path="storage-pool/csi/{slot}.img" file-size={size} slot="{slot}" nvme-tcp-export=yes nvme-tcp-server-port={} nvme-tcp-server-nqn="{nqn}" nvme-tcp-server-allow-host-name="{allowed_host}""#,
            self.port()
        );
        let output = self.routeros(&line)?;
        if !output.is_empty() {
            return Err(SimTargetError::Refused { line, output });
        }
        let sim = self.sim();
        let disk = sim
            .disks()
            .into_iter()
            .find(|d| d.slot == slot)
            .ok_or_else(|| SimTargetError::NoDisk(slot.to_string()))?;
        Ok(ExportedDisk {
            backing: sim.backing_path(&disk),
            uuid_hex: disk.uuid.replace('-', ""),
            serial: disk.uuid.chars().take(20).collect(),
        })
    }

    pub fn shutdown(self) {
        self.rt.block_on(self.rds.shutdown());
    }
}
