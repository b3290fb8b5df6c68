//! The machine the node plugin acts on: this host (the `sim` target's loop mode, or `hardware`'s
//! kernel initiator), or a QEMU guest (the `qemu` target). The sanity cases make the CO's
//! directories there and check what the node left there (mounts, attachments) through this.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rds_csi::node::host::{LinuxMounts, Mounts};

use crate::qemu::node_plugin::NodePlugin;
use crate::qemu::sh_quote;
use crate::suite::Skip;

/// Where the `qemu` target's node keeps its staging and target paths, in the guest.
const GUEST_NODE_DIR: &str = "/var/lib/rds-e2e/node";

/// What the node has set up: mounts under the target's node directory, and its attachments (loop
/// devices over the simulator's files, or NVMe/TCP controllers of the driver's subsystems).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState {
    pub mounts: Vec<String>,
    pub attachments: Vec<String>,
}

pub struct NodeHost {
    place: Place,
    /// The driver's subsystem NQN prefix: other NVMe/TCP controllers on the machine are not the
    /// node's doing.
    nqn_prefix: String,
}

pub enum Place {
    /// The node plugin runs in this process; `loop_root` is set in loop mode.
    Local {
        dir: PathBuf,
        loop_root: Option<PathBuf>,
    },
    Guest(NodePlugin),
}

impl NodeHost {
    pub fn new(place: Place, nqn_prefix: &str) -> NodeHost {
        NodeHost {
            place,
            nqn_prefix: nqn_prefix.to_owned(),
        }
    }

    /// The directory for the node's staging and target paths, on the node's machine.
    pub fn dir(&self) -> PathBuf {
        match &self.place {
            Place::Local { dir, .. } => dir.clone(),
            Place::Guest(_) => PathBuf::from(GUEST_NODE_DIR),
        }
    }

    /// The node plugin in a guest, when the node is there rather than in this process.
    pub fn guest_plugin(&self) -> Option<&NodePlugin> {
        match &self.place {
            Place::Local { .. } => None,
            Place::Guest(plugin) => Some(plugin),
        }
    }

    /// `mkdir -p` on the node's machine.
    pub fn create_dir_all(&self, path: &Path) -> anyhow::Result<()> {
        match &self.place {
            Place::Local { .. } => std::fs::create_dir_all(path)
                .with_context(|| format!("creating {}", path.display())),
            Place::Guest(plugin) => {
                let quoted = sh_quote(&path.display().to_string());
                guest(plugin, &format!("mkdir -p {quoted}"))
                    .map(drop)
                    .with_context(|| format!("creating {} in the guest", path.display()))
            }
        }
    }

    /// Whether `path` exists on the node's machine.
    pub fn exists(&self, path: &str) -> anyhow::Result<bool> {
        match &self.place {
            Place::Local { .. } => Ok(Path::new(path).exists()),
            Place::Guest(plugin) => {
                let quoted = sh_quote(path);
                let answer = guest(plugin, &format!("[ -e {quoted} ] && echo yes || echo no"))?;
                Ok(answer.trim() == "yes")
            }
        }
    }

    /// Skips a case that attaches volumes where the node cannot: loop mode needs root and loop
    /// devices.
    pub fn can_attach(&self) -> Result<(), Skip> {
        let Place::Local {
            loop_root: Some(_), ..
        } = &self.place
        else {
            return Ok(());
        };
        let root = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
        if root.ok() != Some(0) {
            return Err(Skip(
                "the node attaches with loop devices on the sim target, which needs root".into(),
            ));
        }
        if !Path::new("/dev/loop-control").exists() {
            return Err(Skip(
                "the node attaches with loop devices on the sim target, and /dev/loop-control \
                 does not exist"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The node's mounts under [`NodeHost::dir`] and its attachments now.
    pub fn state(&self) -> anyhow::Result<HostState> {
        let dir = self.dir();
        let mut state = match &self.place {
            Place::Local { loop_root, .. } => HostState {
                mounts: LinuxMounts
                    .list()?
                    .into_iter()
                    .filter(|m| m.mount_point.starts_with(&dir))
                    .map(|m| m.mount_point.display().to_string())
                    .collect(),
                attachments: match loop_root {
                    Some(root) => loops_over(root)?,
                    None => tcp_controllers(&self.nqn_prefix)?,
                },
            },
            Place::Guest(plugin) => guest_state(plugin, &dir, &self.nqn_prefix)?,
        };
        state.attachments.sort();
        Ok(state)
    }
}

/// Loop devices whose backing file lies under `root`, as `loopN <file>`.
fn loops_over(root: &Path) -> anyhow::Result<Vec<String>> {
    let root = root.display().to_string();
    let mut loops = Vec::new();
    for entry in std::fs::read_dir("/sys/block")?.flatten() {
        let backing =
            std::fs::read_to_string(entry.path().join("loop/backing_file")).unwrap_or_default();
        if backing.starts_with(&root) {
            loops.push(format!(
                "{} {}",
                entry.file_name().to_string_lossy(),
                backing.trim()
            ));
        }
    }
    Ok(loops)
}

/// This host's NVMe/TCP controllers of subsystems under `nqn_prefix`, as `nvmeN <subsystem NQN>`.
fn tcp_controllers(nqn_prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut controllers = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/class/nvme") else {
        return Ok(controllers);
    };
    for entry in entries.flatten() {
        let read = |name: &str| std::fs::read_to_string(entry.path().join(name));
        let nqn = read("subsysnqn").unwrap_or_default();
        if read("transport").is_ok_and(|t| t.trim() == "tcp") && nqn.starts_with(nqn_prefix) {
            controllers.push(format!(
                "{} {}",
                entry.file_name().to_string_lossy(),
                nqn.trim()
            ));
        }
    }
    Ok(controllers)
}

/// The guest's mounts under `dir` (one `M <path>` line each) and NVMe/TCP controllers of
/// subsystems under `nqn_prefix` (`C <name> <subsystem NQN>`), read in one command.
fn guest_state(plugin: &NodePlugin, dir: &Path, nqn_prefix: &str) -> anyhow::Result<HostState> {
    let listing = guest(
        plugin,
        &format!(
            "awk -v dir={} 'index($2, dir) == 1 {{ print \"M \" $2 }}' /proc/mounts
             for c in /sys/class/nvme/nvme*; do
               [ \"$(cat $c/transport 2>/dev/null)\" = tcp ] || continue
               nqn=$(cat $c/subsysnqn)
               case $nqn in {}*) echo \"C ${{c##*/}} $nqn\" ;; esac
             done
             true",
            sh_quote(&format!("{}/", dir.display())),
            sh_quote(nqn_prefix)
        ),
    )?;
    let mut state = HostState {
        mounts: Vec::new(),
        attachments: Vec::new(),
    };
    for line in listing.lines() {
        match line.split_once(' ') {
            Some(("M", path)) => state.mounts.push(path.to_owned()),
            Some(("C", controller)) => state.attachments.push(controller.to_owned()),
            _ => anyhow::bail!("unexpected line {line:?} in the guest's mounts and controllers"),
        }
    }
    Ok(state)
}

/// Runs `command` in the guest; the guest answers in milliseconds, so the caller's runtime thread
/// is lent to it rather than handed a blocking task.
fn guest(plugin: &NodePlugin, command: &str) -> anyhow::Result<String> {
    tokio::task::block_in_place(|| plugin.run_ok(command)).map_err(anyhow::Error::msg)
}
