//! The `sim` target's RDS: rds-sim in-process on a loopback port, with a freshly generated client key
//! and its host key pinned in the driver configuration it hands out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rds_csi::rds::ssh::HostKeyPin;
use rds_sim::engine::EngineConfig;
use rds_sim::engine::quirks::AllowList;
use rds_sim::server::{Options, RunningSim};
use rds_sim::sim::Sim;

use crate::config::SimSettings;
use crate::target::TargetError;

/// The pool's mount point, as on a factory-configured RDS.
pub const POOL: &str = rds_sim::server::DEFAULT_POOL;
/// The directory under the pool that holds the volumes' backing files.
pub const BASE_DIR: &str = "csi";
/// The RouterOS user the driver logs in as.
const USER: &str = "admin";
/// The NQN prefix of the volumes' subsystems.
pub const NQN_PREFIX: &str = "nqn.2000-02.com.mikrotik";

/// A running simulator and the files it needs, removed when dropped.
pub struct SimRds {
    running: RunningSim,
    client_key: PathBuf,
}

impl SimRds {
    /// Starts rds-sim under `dir` (its data directory and the driver's client key go there).
    pub async fn start(dir: &Path, settings: &SimSettings) -> Result<SimRds, TargetError> {
        let client_key = dir.join("id_ed25519");
        let key = rds_sim::ssh::load_or_generate_host_key(&client_key).map_err(|e| {
            TargetError::Sim(anyhow::Error::new(e).context("generating the client key"))
        })?;
        let loopback = Options::loopback(
            dir.join("rds"),
            key.public_key().clone(),
            settings.pool_size,
        );
        let running = RunningSim::start(Options {
            nvme_listen: Some(([127, 0, 0, 1], 0).into()),
            seed: settings.seed,
            engine: EngineConfig {
                pool_fs: settings.pool_fs,
                quirks: settings.quirks,
                ..loopback.engine
            },
            ..loopback
        })
        .await
        .map_err(TargetError::Sim)?;
        Ok(SimRds {
            running,
            client_key,
        })
    }

    pub fn sim(&self) -> &Arc<Sim> {
        &self.running.sim
    }

    /// The driver configuration (the TOML table of rds-csi's configuration file) that reaches this
    /// simulator, with the host key pinned by fingerprint.
    pub fn driver_config(&self, settings: &SimSettings, host_nqn: &str) -> toml::Table {
        let mut rds = self.rds_config("127.0.0.1");
        // The driver is told what this simulator's allow-list reads, as an operator would be by
        // HARDWARE_VALIDATION.md TC-04 step 1.
        if settings.quirks.allow_list == AllowList::Single {
            rds.insert("allowList".into(), "single".into());
        }

        let mut controller = toml::Table::new();
        controller.insert(
            "maxVolumesPerNode".into(),
            toml_count(settings.max_volumes_per_node),
        );
        let mut node = toml::Table::new();
        node.insert("hostNqn".into(), host_nqn.into());

        let mut config = toml::Table::new();
        config.insert("rds".into(), rds.into());
        config.insert("controller".into(), controller.into());
        config.insert("node".into(), node.into());
        config
    }

    /// The `[rds]` table of an rds-csi configuration that manages this simulator over SSH (the
    /// host key pinned) and tells nodes to reach its NVMe/TCP target at `nvme_address`.
    pub fn rds_config(&self, nvme_address: &str) -> toml::Table {
        rds_table(&self.running, &self.client_key, nvme_address)
    }

    /// The port of the simulator's NVMe/TCP target.
    pub fn nvme_port(&self) -> u16 {
        self.running.nvme_addr.map_or(0, |a| a.port())
    }

    /// Points the driver configuration `table` from [`SimRds::driver_config`] at this simulator's
    /// NVMe/TCP target as a QEMU guest reaches it.
    pub fn reach_nvme_from_guest(&self, table: &mut toml::Table) {
        if let Some(rds) = table.get_mut("rds").and_then(toml::Value::as_table_mut) {
            rds.insert("nvmeAddress".into(), crate::qemu::HOST_ADDR.into());
        }
    }

    pub async fn shutdown(self) {
        self.running.shutdown().await;
    }
}

/// The backing file of the simulator's disk in `slot` (a volume ID is its slot).
pub fn backing_file(sim: &Sim, slot: &str) -> anyhow::Result<PathBuf> {
    let disk = sim
        .disks()
        .into_iter()
        .find(|d| d.slot == slot)
        .ok_or_else(|| anyhow::anyhow!("no disk {slot} on the simulator"))?;
    Ok(sim.backing_path(&disk))
}

/// The `[rds]` table of an rds-csi configuration that manages `running` over SSH as `admin` with
/// `client_key`, the host key pinned by fingerprint, and tells nodes to reach its NVMe/TCP target
/// at `nvme_address` and the port it listens on.
fn rds_table(running: &RunningSim, client_key: &Path, nvme_address: &str) -> toml::Table {
    let pin = HostKeyPin::of_key(&running.host_public_key).to_string();
    let mut rds = toml::Table::new();
    rds.insert("address".into(), "127.0.0.1".into());
    rds.insert("sshPort".into(), i64::from(running.ssh_addr.port()).into());
    rds.insert("user".into(), USER.into());
    rds.insert(
        "privateKeyFile".into(),
        client_key.display().to_string().into(),
    );
    rds.insert("hostKey".into(), pin.into());
    rds.insert("pool".into(), POOL.into());
    rds.insert("baseDir".into(), BASE_DIR.into());
    rds.insert("nqnPrefix".into(), NQN_PREFIX.into());
    rds.insert("nvmeAddress".into(), nvme_address.into());
    if let Some(nvme) = running.nvme_addr {
        rds.insert("nvmePort".into(), i64::from(nvme.port()).into());
    }
    rds
}

/// A count as a TOML integer (TOML has no unsigned integers).
pub fn toml_count(n: u64) -> toml::Value {
    i64::try_from(n).unwrap_or(i64::MAX).into()
}
