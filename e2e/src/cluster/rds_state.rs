//! What is on the RDS, as rds-sim's control API serves it (`GET /state`): the process cluster
//! reads its in-process simulator's state through the same JSON, so both targets judge one form.

use anyhow::Context;
use rds_sim::sim::Sim;
use rds_sim::store::Disk;
use serde::Deserialize;

use crate::sim_rds::{BASE_DIR, POOL};

/// The disks and files on the RDS.
#[derive(Debug, Clone, Deserialize)]
pub struct RdsContents {
    pub disks: Vec<Disk>,
    pub files: Vec<RdsFile>,
}

/// A file on the RDS, as `/file print` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct RdsFile {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub size: u64,
}

impl RdsContents {
    /// The contents of an in-process simulator.
    pub fn of(sim: &Sim) -> anyhow::Result<RdsContents> {
        let json = serde_json::to_value(sim.state()).context("rds-sim's state as JSON")?;
        serde_json::from_value(json).context("rds-sim's state, read as the control API serves it")
    }

    /// The contents from the control API's `/state` answer.
    pub fn from_json(text: &str) -> anyhow::Result<RdsContents> {
        serde_json::from_str(text).context("rds-sim's /state answer")
    }

    /// The disk in slot `slot`, if there is one.
    pub fn disk(&self, slot: &str) -> Option<&Disk> {
        self.disks.iter().find(|d| d.slot == slot)
    }

    /// Fails unless no disk is left and no file under the driver's directory
    /// (`<pool>/<baseDir>/`, the chart's defaults).
    pub fn ensure_empty(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.disks.is_empty(),
            "disks left on the RDS: {:?}",
            self.disks
        );
        let prefix = format!("{POOL}/{BASE_DIR}/");
        let files: Vec<_> = self
            .files
            .iter()
            .filter(|f| f.name.starts_with(&prefix) && f.kind != "directory")
            .collect();
        anyhow::ensure!(files.is_empty(), "files left on the RDS: {files:?}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_simulators_state_reads_as_contents_and_what_is_left_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let rds = crate::sim_rds::SimRds::start(dir.path(), &Default::default())
            .await
            .unwrap();
        let empty = RdsContents::of(rds.sim()).unwrap();
        empty.ensure_empty().unwrap();
        // The base directory itself may stay.
        let text = format!(
            r#"{{"disks": [], "files": [{{"name": "{POOL}/{BASE_DIR}", "type": "directory", "size": 0}},
                {{"name": "{POOL}/{BASE_DIR}/pvc-1.img", "type": ".img file", "size": 4096}}],
              "pool": {{}}, "sessions": []}}"#
        );
        let left = RdsContents::from_json(&text).unwrap();
        let message = left.ensure_empty().unwrap_err().to_string();
        assert!(message.contains("pvc-1.img"), "{message}");
        rds.shutdown().await;
    }
}
