//! What a shared flow needs of a Kubernetes cluster, whichever it is: the API, two nodes, I/O
//! through a pod's claim, what is on the RDS, what a node still holds. The process cluster and
//! the kind cluster differ only in how each of these is reached, one arm per method.

use std::os::unix::fs::FileTypeExt;

use kube::Client;

use super::kind::KindCluster;
use super::kubelet;
use super::objects::NAMESPACE;
use super::rds_state::RdsContents;
use super::target::{ClusterTarget, NODES};

/// A cluster a flow runs on.
#[derive(Clone, Copy)]
pub enum Cluster<'a> {
    /// The control plane, the chart's pods and the kubelet stand-ins as processes on this host:
    /// a pod's claim is where the stand-in published it here, the RDS is the in-process rds-sim.
    Processes(&'a ClusterTarget),
    /// A kind cluster: a pod's claim is reached with `kubectl exec`, the RDS through rds-sim's
    /// control API, a node with `docker exec`.
    Kind(&'a KindCluster),
}

/// The claim `data` of pod `pod` on `node`, as [`super::objects::pod`] makes it: a mounted file
/// system, or a block device when `block`.
#[derive(Debug, Clone, Copy)]
pub struct PodVolume<'a> {
    pub node: &'a str,
    pub pod: &'a str,
    pub block: bool,
}

/// The volume's name in the suites' pods.
const VOLUME: &str = "data";

impl<'a> Cluster<'a> {
    /// A client with cluster-admin's rights.
    pub fn client(self) -> Client {
        match self {
            Cluster::Processes(target) => target.client(),
            Cluster::Kind(kind) => kind.client(),
        }
    }

    /// Two nodes that run pods, so a volume can move.
    pub fn nodes(self) -> [&'a str; 2] {
        match self {
            Cluster::Processes(_) => NODES,
            Cluster::Kind(kind) => kind.nodes(),
        }
    }

    /// Writes the pattern of `seed` (`len` bytes) into the volume, synced.
    pub async fn write_pattern(
        self,
        at: PodVolume<'_>,
        seed: u64,
        len: usize,
    ) -> anyhow::Result<()> {
        match self {
            Cluster::Processes(target) => {
                kubelet::write_pattern(&published(target, at)?, seed, len)
            }
            Cluster::Kind(kind) => kind.write_pattern(at.pod, at.block, seed, len).await,
        }
    }

    /// Fails unless the volume holds the pattern of `seed` (`len` bytes).
    pub async fn read_pattern(
        self,
        at: PodVolume<'_>,
        seed: u64,
        len: usize,
    ) -> anyhow::Result<()> {
        match self {
            Cluster::Processes(target) => kubelet::read_pattern(&published(target, at)?, seed, len),
            Cluster::Kind(kind) => kind.read_pattern(at.pod, at.block, seed, len).await,
        }
    }

    /// The size of the file system mounted for the pod.
    pub async fn filesystem_bytes(self, at: PodVolume<'_>) -> anyhow::Result<u64> {
        match self {
            Cluster::Processes(target) => {
                let stat = rustix::fs::statvfs(&published(target, at)?)?;
                Ok(stat.f_blocks * stat.f_frsize)
            }
            Cluster::Kind(kind) => kind.filesystem_bytes(at.pod).await,
        }
    }

    /// Whether the pod's device is a block device.
    pub async fn is_block_device(self, at: PodVolume<'_>) -> anyhow::Result<bool> {
        match self {
            Cluster::Processes(target) => {
                let meta = std::fs::metadata(published(target, at)?)?;
                Ok(meta.file_type().is_block_device())
            }
            Cluster::Kind(kind) => kind.is_block_device(at.pod).await,
        }
    }

    /// The disks and files on the RDS.
    pub async fn rds(self) -> anyhow::Result<RdsContents> {
        match self {
            Cluster::Processes(target) => target.rds_contents(),
            Cluster::Kind(kind) => kind.rds().await,
        }
    }

    /// What `node` still holds of CSI volumes: mount points, device files and links under
    /// kubelet's CSI directories.
    pub async fn left_on_node(self, node: &str) -> anyhow::Result<Vec<String>> {
        match self {
            Cluster::Processes(target) => target.left_on_node(node),
            Cluster::Kind(kind) => kind.left_on_node(node).await,
        }
    }
}

/// Where the kubelet stand-in published the pod's volume on this host.
fn published(target: &ClusterTarget, at: PodVolume<'_>) -> anyhow::Result<std::path::PathBuf> {
    target
        .node(at.node)?
        .kubelet
        .published_path(NAMESPACE, at.pod, VOLUME)
}
