//! NodeStageVolume and NodeUnstageVolume: attach the volume's device and mount its file system at
//! the staging path (block volumes are attached only); unmount and detach, keeping the
//! connection while anything else on the node still uses the device.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tonic::Status;

use super::NodeCore;
use super::context::{self, Access, require};
use super::crash::CrashPoint;
use super::host::{DevNum, Device, Found, FsType, HostError, MountEntry, Target, Unhealthy};
use crate::csi::v1::{
    NodeStageVolumeRequest, NodeStageVolumeResponse, NodeUnstageVolumeRequest,
    NodeUnstageVolumeResponse,
};

impl NodeCore {
    pub(super) fn stage(
        &self,
        request: NodeStageVolumeRequest,
    ) -> Result<NodeStageVolumeResponse, Status> {
        require("volume_id", &request.volume_id)?;
        let staging = self.require_path("staging_target_path", &request.staging_target_path)?;
        let usage =
            context::volume_use(request.volume_capability.as_ref(), &request.volume_context)?;
        let target = context::target(
            &request.volume_id,
            &self.host_nqn()?,
            &request.publish_context,
            &request.volume_context,
            self.settings.tunables,
        )?;
        let _volume = self.locks.try_lock(&request.volume_id)?;
        if let Access::Mount { fs, .. } = usage.access
            && let Some(mounted) = self.mount_at(&staging)?
        {
            return self.already_staged(&request.volume_id, &staging, &mounted, fs);
        }
        self.timed("connect", || self.host.fabric.connect(&target))?;
        CrashPoint::Connected.reached();
        let staged = self.attach_and_mount(&request.volume_id, &target, &staging, &usage.access);
        // Whether this call or a crashed earlier one connected, a failed stage leaves no
        // connection behind that nothing uses: the CO does not unstage what never staged.
        if staged.is_err()
            && let Err(error) = self.detach_unused(&request.volume_id, &staging)
        {
            tracing::warn!(message = error.message(), "undoing the connection failed");
        }
        staged.map(|()| NodeStageVolumeResponse {})
    }

    fn attach_and_mount(
        &self,
        volume_id: &str,
        target: &Target,
        staging: &Path,
        access: &Access,
    ) -> Result<(), Status> {
        let device = self.timed("device", || self.host.fabric.device(target))?;
        let Access::Mount { fs, flags } = access else {
            return Ok(());
        };
        self.prepare_fs(volume_id, &device, *fs)?;
        CrashPoint::Formatted.reached();
        if !context::exists(staging) {
            std::fs::create_dir_all(staging).map_err(|e| {
                Status::internal(format!("creating staging path {}: {e}", staging.display()))
            })?;
        }
        self.timed("mount", || {
            self.host
                .mounts
                .mount(&device.path, staging, fs.as_str(), &fs.mount_options(flags))
        })?;
        CrashPoint::Mounted.reached();
        Ok(())
    }

    /// Makes `fs` on a blank device, and again over what an interrupted mkfs of this volume
    /// left; an existing file system must be `fs`.
    fn prepare_fs(&self, volume_id: &str, device: &Device, fs: FsType) -> Result<(), Status> {
        let make = |over_unfinished| {
            self.timed("mkfs", || {
                self.host
                    .format
                    .make(&device.path, fs, volume_id, over_unfinished)
            })
        };
        match self.timed("probe", || self.host.format.probe(&device.path, volume_id))? {
            Found::Blank => make(false)?,
            Found::Unfinished(_) => {
                tracing::warn!(
                    device = %device.path.display(),
                    "the volume's file system was never finished (its mkfs was interrupted); \
                     making it again"
                );
                make(true)?
            }
            Found::Fs(found) if found == fs => {}
            Found::Fs(found) => {
                return Err(HostError::FsMismatch {
                    device: device.path.clone(),
                    found,
                    wanted: fs,
                }
                .into());
            }
        }
        Ok(())
    }

    /// A second stage of a staged volume is a no-op; a stage that asks for another file system
    /// type, or another volume's mount there, is the spec's ALREADY_EXISTS.
    fn already_staged(
        &self,
        volume_id: &str,
        staging: &Path,
        mounted: &MountEntry,
        fs: FsType,
    ) -> Result<NodeStageVolumeResponse, Status> {
        let ours = self.device_of(volume_id)?.map(|d| d.dev);
        if ours != Some(mounted.dev) {
            return Err(Status::already_exists(format!(
                "staging path {} already has {} ({}) mounted, not volume {volume_id}; unstage \
                 that first",
                staging.display(),
                mounted.source,
                mounted.dev
            )));
        }
        if mounted.fs_type != fs.as_str() {
            return Err(Status::already_exists(format!(
                "volume {volume_id} is staged at {} with {}, and this request asks for {fs}; \
                 its file system is never reformatted, so stage it as {}",
                staging.display(),
                mounted.fs_type,
                mounted.fs_type
            )));
        }
        Ok(NodeStageVolumeResponse {})
    }

    pub(super) fn unstage(
        &self,
        request: NodeUnstageVolumeRequest,
    ) -> Result<NodeUnstageVolumeResponse, Status> {
        require("volume_id", &request.volume_id)?;
        let staging = self.require_path("staging_target_path", &request.staging_target_path)?;
        let _volume = self.locks.try_lock(&request.volume_id)?;
        if let Some(mounted) = self.mount_at(&staging)? {
            self.check_mount_is_ours(&request.volume_id, &staging, &mounted)?;
            self.refuse_while_reconnecting(&request.volume_id)?;
            self.host.mounts.unmount(&staging)?;
        } else {
            super::publish::unstage_block(self, &request.volume_id, &staging)?;
        }
        self.detach_unused(&request.volume_id, &staging)
            .map(|()| NodeUnstageVolumeResponse {})
    }

    /// An unmount whose controller is reconnecting waits in the kernel for its last writes until
    /// the controller is back or ctrl_loss_tmo gives it up (600 s by default). UNAVAILABLE now
    /// keeps the same data safe without holding the call, a thread and the volume's lock that
    /// long; the CO retries, and the unmount goes ahead once the controller is live or gone.
    fn refuse_while_reconnecting(&self, volume_id: &str) -> Result<(), Status> {
        let Some(attached) = self.host.fabric.find(volume_id)? else {
            return Ok(());
        };
        match self.host.fabric.health(&attached) {
            Err(Unhealthy::Reconnecting(why)) => Err(Status::unavailable(format!(
                "volume {volume_id} is not unstaged yet: {why}; its unmount would wait until \
                 the RDS answers again or ctrl_loss_tmo gives the controller up, so retry later"
            ))),
            _ => Ok(()),
        }
    }

    /// Disconnects the volume unless some mount on the node still uses its device (another
    /// staging of the same subsystem, or a publication the CO has not undone), or a raw block
    /// publication links the device node in `staging`.
    fn detach_unused(&self, volume_id: &str, staging: &Path) -> Result<(), Status> {
        let Some(attached) = self.host.fabric.find(volume_id)? else {
            return Ok(());
        };
        if super::publish::block_publications(staging) > 0 {
            tracing::info!("keeping the connection: a raw block publication links the device");
            return Ok(());
        }
        if let Some(device) = &attached.device {
            let users = self.users(device.dev, None)?;
            if !users.is_empty() {
                tracing::info!(
                    users = ?users,
                    "keeping the connection: the device is still mounted elsewhere"
                );
                return Ok(());
            }
        }
        self.host.fabric.disconnect(&attached)?;
        Ok(())
    }

    /// The device of an attached volume, if the kernel has one.
    pub(super) fn device_of(&self, volume_id: &str) -> Result<Option<Device>, Status> {
        Ok(self
            .host
            .fabric
            .find(volume_id)?
            .and_then(|attached| attached.device))
    }

    /// The mount at exactly `path`, the last one when mounts are stacked.
    pub(super) fn mount_at(&self, path: &Path) -> Result<Option<MountEntry>, Status> {
        Ok(self
            .host
            .mounts
            .list()?
            .into_iter()
            .rfind(|m| m.mount_point == path))
    }

    /// Mount points of `dev`, except `except`.
    pub(super) fn users(&self, dev: DevNum, except: Option<&Path>) -> Result<Vec<PathBuf>, Status> {
        Ok(self
            .host
            .mounts
            .list()?
            .into_iter()
            .filter(|m| m.dev == dev && Some(m.mount_point.as_path()) != except)
            .map(|m| m.mount_point)
            .collect())
    }

    /// Runs one step of a stage and logs how long it took (the latency split the benchmark
    /// prints).
    fn timed<T>(
        &self,
        step: &'static str,
        work: impl FnOnce() -> Result<T, HostError>,
    ) -> Result<T, HostError> {
        let start = Instant::now();
        let result = work();
        tracing::debug!(
            step,
            ms = start.elapsed().as_secs_f64() * 1e3,
            ok = result.is_ok(),
            "step"
        );
        result
    }
}
