//! The node plugin calls of kubelet's CSI volume plugin for one volume, with its paths, secrets
//! and directories: MountDevice/SetUp (stage, publish), TearDown/UnmountDevice (unpublish,
//! unstage) and NodeExpand.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use k8s_openapi::api::core::v1::{Secret, SecretReference};
use kube::{Api, Client};
use rds_csi::csi::v1::node_client::NodeClient;
use rds_csi::csi::v1::node_service_capability::{Type as CapabilityType, rpc};
use rds_csi::csi::v1::{
    CapacityRange, NodeExpandVolumeRequest, NodeGetCapabilitiesRequest, NodePublishVolumeRequest,
    NodeStageVolumeRequest, NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest,
};
use tonic::transport::Channel;

use super::paths::KubeletPaths;
use super::volume::CsiVolume;

/// What the node plugin advertises that changes kubelet's calls.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    pub stage_unstage: bool,
    pub expand: bool,
    pub single_node_multi_writer: bool,
}

impl Capabilities {
    pub async fn of(csi: &mut NodeClient<Channel>) -> anyhow::Result<Capabilities> {
        let rpcs: Vec<rpc::Type> = csi
            .node_get_capabilities(NodeGetCapabilitiesRequest {})
            .await
            .context("NodeGetCapabilities")?
            .into_inner()
            .capabilities
            .into_iter()
            .filter_map(|c| match c.r#type {
                Some(CapabilityType::Rpc(r)) => rpc::Type::try_from(r.r#type).ok(),
                None => None,
            })
            .collect();
        Ok(Capabilities {
            stage_unstage: rpcs.contains(&rpc::Type::StageUnstageVolume),
            expand: rpcs.contains(&rpc::Type::ExpandVolume),
            single_node_multi_writer: rpcs.contains(&rpc::Type::SingleNodeMultiWriter),
        })
    }
}

/// The node plugin as kubelet's CSI volume plugin calls it.
#[derive(Clone)]
pub struct Operations {
    pub csi: NodeClient<Channel>,
    pub client: Client,
    pub paths: KubeletPaths,
    pub driver: String,
    pub capabilities: Capabilities,
}

impl Operations {
    /// The staging path kubelet passes, or none when the plugin does not stage.
    pub fn staging_path(&self, volume: &CsiVolume) -> Option<PathBuf> {
        self.capabilities.stage_unstage.then(|| {
            if volume.block {
                self.paths.block_staging(&volume.pv)
            } else {
                self.paths.staging(&self.driver, &volume.handle)
            }
        })
    }

    /// NodePublishVolume's target: a directory for a file system, a device file for a block
    /// volume.
    pub fn target_path(&self, pod_uid: &str, volume: &CsiVolume) -> PathBuf {
        if volume.block {
            self.paths.block_publish(pod_uid, &volume.pv)
        } else {
            self.paths.mount_target(pod_uid, &volume.pv)
        }
    }

    /// Where the pod finds the volume: the mounted directory, or its link to the device file.
    pub fn pod_path(&self, pod_uid: &str, volume: &CsiVolume) -> PathBuf {
        if volume.block {
            self.paths.block_pod_link(pod_uid, &volume.pv)
        } else {
            self.paths.mount_target(pod_uid, &volume.pv)
        }
    }

    /// NodeStageVolume into a staging directory kubelet makes first.
    pub async fn stage(
        &self,
        volume: &CsiVolume,
        publish_context: &HashMap<String, String>,
    ) -> anyhow::Result<()> {
        let Some(staging) = self.staging_path(volume) else {
            return Ok(());
        };
        create_dir(&staging)?;
        let request = NodeStageVolumeRequest {
            volume_id: volume.handle.clone(),
            publish_context: publish_context.clone(),
            staging_target_path: path(&staging),
            volume_capability: Some(self.capability(volume)),
            secrets: self.secrets(volume.stage_secret.as_ref()).await?,
            volume_context: volume.attributes.clone(),
        };
        self.csi.clone().node_stage_volume(request).await?;
        Ok(())
    }

    /// NodePublishVolume for the pod (kubelet makes the target's parent directory), and for a
    /// block volume the pod's link to the device file.
    pub async fn publish(
        &self,
        pod_uid: &str,
        volume: &CsiVolume,
        publish_context: &HashMap<String, String>,
    ) -> anyhow::Result<()> {
        let target = self.target_path(pod_uid, volume);
        if let Some(parent) = target.parent() {
            create_dir(parent)?;
        }
        let request = NodePublishVolumeRequest {
            volume_id: volume.handle.clone(),
            publish_context: publish_context.clone(),
            staging_target_path: self
                .staging_path(volume)
                .map(|p| path(&p))
                .unwrap_or_default(),
            target_path: path(&target),
            volume_capability: Some(self.capability(volume)),
            readonly: volume.read_only,
            secrets: self.secrets(volume.publish_secret.as_ref()).await?,
            volume_context: volume.attributes.clone(),
        };
        self.csi.clone().node_publish_volume(request).await?;
        if volume.block {
            let link = self.paths.block_pod_link(pod_uid, &volume.pv);
            if let Some(parent) = link.parent() {
                create_dir(parent)?;
            }
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link)
                .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
        }
        Ok(())
    }

    /// NodeUnpublishVolume, then kubelet's removal of what it made for the pod.
    pub async fn unpublish(&self, pod_uid: &str, volume: &CsiVolume) -> anyhow::Result<()> {
        let target = self.target_path(pod_uid, volume);
        let request = NodeUnpublishVolumeRequest {
            volume_id: volume.handle.clone(),
            target_path: path(&target),
        };
        self.csi.clone().node_unpublish_volume(request).await?;
        if volume.block {
            let _ = std::fs::remove_file(self.paths.block_pod_link(pod_uid, &volume.pv));
        }
        // Best effort, as kubelet's removeMountDir: the plugin may have removed them already.
        let _ = std::fs::remove_dir(&target);
        if let Some(parent) = target.parent() {
            let _ = std::fs::remove_dir(parent);
        }
        Ok(())
    }

    /// NodeUnstageVolume, then the removal of the staging directory.
    pub async fn unstage(&self, volume: &CsiVolume) -> anyhow::Result<()> {
        let Some(staging) = self.staging_path(volume) else {
            return Ok(());
        };
        let request = NodeUnstageVolumeRequest {
            volume_id: volume.handle.clone(),
            staging_target_path: path(&staging),
        };
        self.csi.clone().node_unstage_volume(request).await?;
        let _ = std::fs::remove_dir(&staging);
        if !volume.block
            && let Some(parent) = staging.parent()
        {
            let _ = std::fs::remove_dir(parent);
        }
        Ok(())
    }

    /// NodeExpandVolume to `bytes` at the pod's publish target, with the staging path.
    pub async fn expand(
        &self,
        pod_uid: &str,
        volume: &CsiVolume,
        bytes: i64,
    ) -> anyhow::Result<()> {
        let request = NodeExpandVolumeRequest {
            volume_id: volume.handle.clone(),
            volume_path: path(&self.target_path(pod_uid, volume)),
            capacity_range: Some(CapacityRange {
                required_bytes: bytes,
                limit_bytes: 0,
            }),
            staging_target_path: self
                .staging_path(volume)
                .map(|p| path(&p))
                .unwrap_or_default(),
            volume_capability: Some(self.capability(volume)),
            secrets: self.secrets(volume.expand_secret.as_ref()).await?,
        };
        self.csi.clone().node_expand_volume(request).await?;
        Ok(())
    }

    fn capability(&self, volume: &CsiVolume) -> rds_csi::csi::v1::VolumeCapability {
        volume.capability(self.capabilities.single_node_multi_writer)
    }

    /// The data of the Secret `reference` names, as kubelet's `getCredentialsFromSecret`.
    async fn secrets(
        &self,
        reference: Option<&SecretReference>,
    ) -> anyhow::Result<HashMap<String, String>> {
        let Some(reference) = reference else {
            return Ok(HashMap::new());
        };
        let namespace = reference.namespace.as_deref().unwrap_or("default");
        let name = reference.name.as_deref().unwrap_or_default();
        let secret = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get(name)
            .await
            .with_context(|| format!("fetching Secret {namespace}/{name}"))?;
        Ok(secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect())
    }
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn path(p: &Path) -> String {
    p.display().to_string()
}
