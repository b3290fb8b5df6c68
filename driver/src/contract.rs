//! The contract between the controller and the node plugin: what ControllerPublishVolume puts
//! in the publish context, which StorageClass parameters reach the node in the volume context,
//! and which volume capabilities both accept. The node imports nothing from `controller`, so the
//! two sides meet only here.

pub mod capability;

use tonic::Status;

/// The publish context keys the node plugin reads.
pub const ADDRESS: &str = "address";
pub const PORT: &str = "port";
pub const NQN: &str = "nqn";
/// The disk's `file-path` on the RDS: loop mode finds the backing file by it (`node.loopRoot`).
pub const FILE_PATH: &str = "filePath";

/// The StorageClass parameters the controller passes to the node in the volume context.
pub const FS_TYPE: &str = "fsType";
pub const CTRL_LOSS_TMO: &str = "ctrlLossTmo";
pub const RECONNECT_DELAY: &str = "reconnectDelay";
pub const KEEP_ALIVE_TMO: &str = "keepAliveTmo";
pub const NR_IO_QUEUES: &str = "nrIoQueues";

/// INVALID_ARGUMENT when a required string field is empty.
pub fn require(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!("{field} is required")))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every `.rs` file under `dir`.
    fn sources(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }

    /// The node meets the controller only through this module; a `controller::` path in the
    /// node would tie the two back together.
    #[test]
    fn the_node_imports_nothing_from_the_controller() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.join("node.rs")];
        sources(&src.join("node"), &mut files);
        assert!(files.len() > 10, "{files:?}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(
                !text.contains("controller::"),
                "{} uses the controller module; move what it needs into contract",
                file.display()
            );
        }
    }
}
