//! The kernel's NVMe/TCP initiator, driven the way nvme-cli drives it but without it: connect by
//! writing an option string to `/dev/nvme-fabrics`, find controllers and namespaces in
//! `/sys/class/nvme` and `/sys/class/nvme-subsystem`, disconnect with `delete_controller`.
//!
//! The sysfs and /dev roots are fields so the unit tests run it against a fake tree.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Attached, Device, Fabric, Target, Unhealthy, wait_for};
use crate::node::host::{DevNum, HostError};
use crate::rds::value::Nqn;

/// The kernel initiator.
#[derive(Debug, Clone)]
pub struct KernelFabric {
    /// `/sys`.
    pub sys: PathBuf,
    /// `/dev`.
    pub dev: PathBuf,
    /// How long to wait for a namespace's block device after connecting.
    pub device_wait: Duration,
}

impl Default for KernelFabric {
    fn default() -> KernelFabric {
        KernelFabric {
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
            device_wait: Duration::from_secs(30),
        }
    }
}

/// One NVMe controller as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Controller {
    name: String,
    nqn: String,
    /// `traddr`, `trsvcid`, `src_addr`… from the `address` file.
    address: BTreeMap<String, String>,
    state: String,
}

impl KernelFabric {
    /// Whether this kernel can connect NVMe/TCP: the nvme_tcp module is loaded.
    pub fn available(sys: &Path) -> bool {
        sys.join("module/nvme_tcp").exists()
    }

    fn fabrics(&self) -> PathBuf {
        self.dev.join("nvme-fabrics")
    }

    fn controllers(&self) -> Result<Vec<Controller>, HostError> {
        let class = self.sys.join("class/nvme");
        let entries = match fs::read_dir(&class) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(HostError::io(format!("reading {}", class.display()))(e)),
        };
        let mut controllers = Vec::new();
        for entry in entries.flatten() {
            let dir = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            // A controller deleted between the listing and the read is simply gone.
            let (Some(nqn), Some(state)) = (attr(&dir, "subsysnqn"), attr(&dir, "state")) else {
                continue;
            };
            let address = attr(&dir, "address")
                .unwrap_or_default()
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect();
            controllers.push(Controller {
                name,
                nqn,
                address,
                state,
            });
        }
        controllers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(controllers)
    }

    /// The namespace block device of subsystem `nqn`: the multipath head in the subsystem's
    /// directory, else the namespace under one of its controllers.
    fn namespace(&self, nqn: &str) -> Result<Option<Device>, HostError> {
        let mut dirs = Vec::new();
        if let Ok(subsystems) = fs::read_dir(self.sys.join("class/nvme-subsystem")) {
            for subsystem in subsystems.flatten() {
                if attr(&subsystem.path(), "subsysnqn").as_deref() == Some(nqn) {
                    dirs.push(subsystem.path());
                }
            }
        }
        for controller in self.controllers()?.into_iter().filter(|c| c.nqn == nqn) {
            dirs.push(self.sys.join("class/nvme").join(controller.name));
        }
        for dir in dirs {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| is_namespace(name))
                .collect();
            names.sort();
            for name in names {
                let ns = dir.join(&name);
                let (Some(dev), Some(sectors)) = (attr(&ns, "dev"), attr(&ns, "size")) else {
                    continue;
                };
                let path = self.dev.join(&name);
                if !path.exists() {
                    continue;
                }
                let dev: DevNum = dev.parse().map_err(HostError::BadTarget)?;
                return Ok(Some(Device {
                    path,
                    dev,
                    size: sectors.parse::<u64>().unwrap_or(0) * 512,
                }));
            }
        }
        Ok(None)
    }

    fn write_attr(&self, controller: &str, file: &str) -> Result<(), HostError> {
        let path = self.sys.join("class/nvme").join(controller).join(file);
        match fs::OpenOptions::new().write(true).open(&path) {
            Ok(mut f) => f
                .write_all(b"1")
                .map_err(HostError::io(format!("writing 1 to {}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(HostError::io(format!("opening {}", path.display()))(e)),
        }
    }
}

/// `nvme1n1`, not `nvme1c2n1` (a multipath member) nor `nvme1`.
fn is_namespace(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("nvme") else {
        return false;
    };
    let Some((controller, ns)) = rest.split_once('n') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(controller) && digits(ns)
}

/// A sysfs attribute, trimmed; `None` when it cannot be read.
fn attr(dir: &Path, name: &str) -> Option<String> {
    fs::read_to_string(dir.join(name))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The kernel wants a numeric `traddr`; resolve a host name once here.
fn resolve(address: &str, port: u16) -> Result<IpAddr, HostError> {
    if let Ok(ip) = address.parse::<IpAddr>() {
        return Ok(ip);
    }
    (address, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .map(|a| a.ip())
        .ok_or_else(|| {
            HostError::BadTarget(format!(
                "cannot resolve the NVMe/TCP address {address:?} (rds.nvmeAddress) to an IP address"
            ))
        })
}

/// The option string `/dev/nvme-fabrics` takes (what `nvme connect` writes); public so that
/// bench-node's steps by hand connect exactly as the plugin does.
pub fn connect_options(target: &Target, traddr: IpAddr) -> Result<String, HostError> {
    for (what, nqn) in [("subsystem", &target.nqn), ("host", &target.host_nqn)] {
        Nqn::parse(nqn).map_err(|e| HostError::BadTarget(format!("the {what} NQN: {e}")))?;
    }
    let t = &target.tunables;
    let mut line = format!(
        "transport=tcp,traddr={traddr},trsvcid={},nqn={},hostnqn={},ctrl_loss_tmo={},\
         reconnect_delay={},keep_alive_tmo={}",
        target.port,
        target.nqn,
        target.host_nqn,
        t.ctrl_loss_tmo,
        t.reconnect_delay,
        t.keep_alive_tmo
    );
    if let Some(queues) = t.nr_io_queues {
        line.push_str(&format!(",nr_io_queues={queues}"));
    }
    Ok(line)
}

impl Fabric for KernelFabric {
    fn connect(&self, target: &Target) -> Result<(), HostError> {
        let traddr = resolve(&target.address, target.port)?.to_string();
        let port = target.port.to_string();
        let existing = self.controllers()?.into_iter().find(|c| {
            c.nqn == target.nqn
                && c.address.get("traddr") == Some(&traddr)
                && c.address.get("trsvcid") == Some(&port)
                && c.state != "deleting"
        });
        if let Some(controller) = existing {
            tracing::debug!(
                controller = controller.name,
                state = controller.state,
                "reusing"
            );
            return Ok(());
        }
        let line = connect_options(target, traddr.parse().expect("formatted from an IpAddr"))?;
        let fabrics = self.fabrics();
        let mut file = match fs::OpenOptions::new().read(true).write(true).open(&fabrics) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(HostError::NoFabrics(fabrics));
            }
            Err(e) => return Err(HostError::io(format!("opening {}", fabrics.display()))(e)),
        };
        file.write_all(line.as_bytes())
            .map_err(HostError::io(format!(
                "connecting {} at {}:{} (writing to {})",
                target.nqn,
                target.address,
                target.port,
                fabrics.display()
            )))?;
        // The kernel answers `instance=N,cntlid=M`; a name for the log only.
        let mut answer = String::new();
        let _ = file.read_to_string(&mut answer);
        tracing::info!(nqn = target.nqn, answer = answer.trim(), "connected");
        Ok(())
    }

    fn device(&self, target: &Target) -> Result<Device, HostError> {
        wait_for(self.device_wait, || self.namespace(&target.nqn))?.ok_or_else(|| {
            HostError::DeviceTimeout {
                what: target.nqn.clone(),
                waited_ms: self.device_wait.as_millis(),
            }
        })
    }

    fn find(&self, volume_id: &str) -> Result<Option<Attached>, HostError> {
        let suffix = format!(":{volume_id}");
        let controllers: Vec<Controller> = self
            .controllers()?
            .into_iter()
            .filter(|c| c.nqn.ends_with(&suffix))
            .collect();
        let Some(first) = controllers.first() else {
            return Ok(None);
        };
        Ok(Some(Attached {
            device: self.namespace(&first.nqn)?,
            controllers: controllers.into_iter().map(|c| c.name).collect(),
        }))
    }

    fn disconnect(&self, attached: &Attached) -> Result<(), HostError> {
        for controller in &attached.controllers {
            self.write_attr(controller, "delete_controller")?;
        }
        Ok(())
    }

    fn rescan(&self, attached: &Attached) -> Result<u64, HostError> {
        for controller in &attached.controllers {
            self.write_attr(controller, "rescan_controller")?;
        }
        let nqn = self
            .controllers()?
            .into_iter()
            .find(|c| attached.controllers.contains(&c.name))
            .map(|c| c.nqn)
            .ok_or_else(|| {
                HostError::Gone(format!(
                    "NVMe controller {}",
                    attached.controllers.join(", ")
                ))
            })?;
        let current = self.namespace(&nqn)?.map_or(0, |d| d.size);
        // The kernel's scan runs asynchronously after the write above, so sysfs may still show
        // the old size: ask the controller for the namespace's size and wait for the block
        // device to take it.
        let Some(device) = &attached.device else {
            return Ok(current);
        };
        let size = match identify::namespace_bytes(&device.path) {
            Ok(size) => size,
            Err(error) => {
                tracing::warn!(
                    device = %device.path.display(),
                    %error,
                    "cannot identify the namespace; using the size sysfs shows"
                );
                return Ok(current);
            }
        };
        let grown = wait_for(self.device_wait, || {
            Ok(self
                .namespace(&nqn)?
                .map(|d| d.size)
                .filter(|&now| now >= size))
        })?;
        Ok(grown.unwrap_or(current))
    }

    fn health(&self, attached: &Attached) -> Result<(), Unhealthy> {
        let controllers = self
            .controllers()
            .map_err(|e| Unhealthy::Broken(e.to_string()))?;
        let ours: Vec<&Controller> = controllers
            .iter()
            .filter(|c| attached.controllers.contains(&c.name))
            .collect();
        if ours.iter().any(|c| c.state == "live") {
            return Ok(());
        }
        if ours.is_empty() {
            return Err(Unhealthy::Broken(format!(
                "NVMe controller {} is gone: the kernel gave up reconnecting (ctrl_loss_tmo)",
                attached.controllers.join(", ")
            )));
        }
        let states: Vec<String> = ours
            .iter()
            .map(|c| format!("{} is {}", c.name, c.state))
            .collect();
        // `deleting` and `dead` will not come back; `new` is a connect still under way.
        if ours
            .iter()
            .any(|c| matches!(c.state.as_str(), "connecting" | "resetting"))
        {
            return Err(Unhealthy::Reconnecting(format!(
                "NVMe controller {}: the RDS is not reachable over NVMe/TCP, the kernel is \
                 reconnecting and I/O waits",
                states.join(", ")
            )));
        }
        Err(Unhealthy::Broken(format!(
            "NVMe controller {}",
            states.join(", ")
        )))
    }
}

/// Identify Namespace through the NVMe admin passthrough ioctl of `<linux/nvme_ioctl.h>`.
mod identify {
    use std::fs::File;
    use std::io;
    use std::path::Path;

    use crate::node::host::nvme_admin;

    const IDENTIFY: u8 = 0x06;
    const IDENTIFY_DATA: usize = 4096;

    /// The namespace's size in bytes as its controller reports it now.
    pub fn namespace_bytes(device: &Path) -> io::Result<u64> {
        let file = File::open(device)?;
        let nsid = nvme_admin::namespace_id(&file)?;
        let mut data = vec![0u8; IDENTIFY_DATA];
        // CNS 0 in cdw10: the Identify Namespace data structure.
        nvme_admin::admin_read(&file, "Identify Namespace", IDENTIFY, nsid, 0, &mut data)?;
        Ok(size_of_identify(&data))
    }

    /// NSZE (blocks) times the block size of the format FLBAS selects.
    pub(super) fn size_of_identify(data: &[u8]) -> u64 {
        let nsze = u64::from_le_bytes(data[0..8].try_into().expect("8 bytes"));
        let format = usize::from(data[26] & 0x0f);
        let lbads = data[128 + 4 * format + 2];
        nsze << lbads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::host::fabric::Tunables;

    const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-0123456789abcdef0123456789ab";
    const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:1";

    /// A fake /sys and /dev in a temporary directory.
    struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        fn new() -> Tree {
            let tree = Tree {
                dir: tempfile::tempdir().unwrap(),
            };
            fs::create_dir_all(tree.sys().join("class/nvme")).unwrap();
            fs::create_dir_all(tree.sys().join("class/nvme-subsystem")).unwrap();
            fs::create_dir_all(tree.dev()).unwrap();
            fs::write(tree.dev().join("nvme-fabrics"), "").unwrap();
            tree
        }
        fn sys(&self) -> PathBuf {
            self.dir.path().join("sys")
        }
        fn dev(&self) -> PathBuf {
            self.dir.path().join("dev")
        }
        fn fabric(&self) -> KernelFabric {
            KernelFabric {
                sys: self.sys(),
                dev: self.dev(),
                device_wait: Duration::from_millis(30),
            }
        }
        fn controller(&self, name: &str, nqn: &str, traddr: &str, state: &str) {
            let dir = self.sys().join("class/nvme").join(name);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("subsysnqn"), format!("{nqn}\n")).unwrap();
            fs::write(dir.join("state"), format!("{state}\n")).unwrap();
            fs::write(
                dir.join("address"),
                format!("traddr={traddr},trsvcid=4420,src_addr=10.0.0.9\n"),
            )
            .unwrap();
            fs::write(dir.join("delete_controller"), "").unwrap();
            fs::write(dir.join("rescan_controller"), "").unwrap();
        }
        /// A multipath head namespace in subsystem `subsys`.
        fn head(&self, subsys: &str, nqn: &str, name: &str, dev: &str, sectors: u64) {
            let dir = self.sys().join("class/nvme-subsystem").join(subsys);
            fs::create_dir_all(dir.join(name)).unwrap();
            fs::write(dir.join("subsysnqn"), format!("{nqn}\n")).unwrap();
            fs::write(dir.join(name).join("dev"), format!("{dev}\n")).unwrap();
            fs::write(dir.join(name).join("size"), format!("{sectors}\n")).unwrap();
            fs::write(self.dev().join(name), "").unwrap();
        }
        fn written(&self, path: &str) -> String {
            fs::read_to_string(self.dir.path().join(path)).unwrap()
        }
    }

    fn target() -> Target {
        Target {
            volume_id: "pvc-0123456789abcdef0123456789ab".into(),
            nqn: NQN.into(),
            address: "10.0.0.5".into(),
            port: 4420,
            host_nqn: HOST.into(),
            file_path: None,
            tunables: Tunables {
                nr_io_queues: Some(2),
                ..Tunables::default()
            },
        }
    }

    #[test]
    fn connect_writes_the_option_string_to_nvme_fabrics() {
        let tree = Tree::new();
        tree.fabric().connect(&target()).unwrap();
        assert_eq!(
            tree.written("dev/nvme-fabrics"),
            format!(
                "transport=tcp,traddr=10.0.0.5,trsvcid=4420,nqn={NQN},hostnqn={HOST},\
                 ctrl_loss_tmo=600,reconnect_delay=5,keep_alive_tmo=15,nr_io_queues=2"
            )
        );
    }

    #[test]
    fn a_controller_for_the_same_nqn_and_address_is_reused() {
        let tree = Tree::new();
        tree.controller("nvme0", NQN, "10.0.0.5", "connecting");
        tree.fabric().connect(&target()).unwrap();
        assert_eq!(tree.written("dev/nvme-fabrics"), "");
        // Another address, or a controller being deleted, is not the same connection.
        let tree = Tree::new();
        tree.controller("nvme0", NQN, "10.0.0.6", "live");
        tree.controller("nvme1", NQN, "10.0.0.5", "deleting");
        tree.fabric().connect(&target()).unwrap();
        assert!(tree.written("dev/nvme-fabrics").contains("traddr=10.0.0.5"));
    }

    #[test]
    fn without_the_initiator_connect_says_to_load_it() {
        let tree = Tree::new();
        fs::remove_file(tree.dev().join("nvme-fabrics")).unwrap();
        let message = tree.fabric().connect(&target()).unwrap_err().to_string();
        assert!(message.contains("modprobe nvme-tcp"), "{message}");
    }

    #[test]
    fn bad_nqns_never_reach_the_kernel() {
        let tree = Tree::new();
        let mut bad = target();
        bad.host_nqn = "host,traddr=1.2.3.4".into();
        let message = tree.fabric().connect(&bad).unwrap_err().to_string();
        assert!(message.contains("host NQN"), "{message}");
        assert_eq!(tree.written("dev/nvme-fabrics"), "");
    }

    #[test]
    fn the_device_is_found_through_the_subsystem_nqn() {
        let tree = Tree::new();
        tree.controller(
            "nvme0",
            "nqn.2000-02.com.mikrotik:other",
            "10.0.0.5",
            "live",
        );
        tree.head(
            "nvme-subsys0",
            "nqn.2000-02.com.mikrotik:other",
            "nvme0n1",
            "259:0",
            8,
        );
        tree.controller("nvme1", NQN, "10.0.0.5", "live");
        tree.head("nvme-subsys1", NQN, "nvme1n1", "259:1", 2048);
        let device = tree.fabric().device(&target()).unwrap();
        assert_eq!(device.path, tree.dev().join("nvme1n1"));
        assert_eq!(device.dev.to_string(), "259:1");
        assert_eq!(device.size, 1 << 20);
    }

    #[test]
    fn a_namespace_under_the_controller_is_found_without_multipath() {
        let tree = Tree::new();
        tree.controller("nvme2", NQN, "10.0.0.5", "live");
        let ns = tree.sys().join("class/nvme/nvme2/nvme2n1");
        fs::create_dir_all(&ns).unwrap();
        fs::write(ns.join("dev"), "259:7").unwrap();
        fs::write(ns.join("size"), "16").unwrap();
        // The hidden multipath member is never the device.
        fs::create_dir_all(tree.sys().join("class/nvme/nvme2/nvme2c2n1")).unwrap();
        fs::write(tree.dev().join("nvme2n1"), "").unwrap();
        let device = tree.fabric().device(&target()).unwrap();
        assert_eq!(device.path, tree.dev().join("nvme2n1"));
    }

    #[test]
    fn a_device_that_never_appears_times_out_with_advice() {
        let tree = Tree::new();
        tree.controller("nvme1", NQN, "10.0.0.5", "live");
        let message = tree.fabric().device(&target()).unwrap_err().to_string();
        assert!(message.contains(NQN), "{message}");
        assert!(message.contains("ControllerPublishVolume"), "{message}");
    }

    #[test]
    fn find_disconnect_rescan_and_health_work_by_volume_id() {
        let tree = Tree::new();
        let fabric = tree.fabric();
        assert_eq!(
            fabric.find("pvc-0123456789abcdef0123456789ab").unwrap(),
            None
        );
        tree.controller("nvme1", NQN, "10.0.0.5", "live");
        tree.head("nvme-subsys1", NQN, "nvme1n1", "259:1", 2048);
        let attached = fabric
            .find("pvc-0123456789abcdef0123456789ab")
            .unwrap()
            .unwrap();
        assert_eq!(attached.controllers, ["nvme1"]);
        assert_eq!(attached.device.as_ref().unwrap().dev.to_string(), "259:1");
        fabric.health(&attached).unwrap();
        assert_eq!(fabric.rescan(&attached).unwrap(), 1 << 20);
        assert_eq!(tree.written("sys/class/nvme/nvme1/rescan_controller"), "1");
        fabric.disconnect(&attached).unwrap();
        assert_eq!(tree.written("sys/class/nvme/nvme1/delete_controller"), "1");

        fs::write(tree.sys().join("class/nvme/nvme1/state"), "connecting\n").unwrap();
        let Err(Unhealthy::Reconnecting(message)) = fabric.health(&attached) else {
            panic!("a connecting controller is reconnecting");
        };
        assert!(message.contains("nvme1 is connecting"), "{message}");
        fs::write(tree.sys().join("class/nvme/nvme1/state"), "deleting\n").unwrap();
        let Err(Unhealthy::Broken(message)) = fabric.health(&attached) else {
            panic!("a deleting controller does not come back");
        };
        assert!(message.contains("nvme1 is deleting"), "{message}");
        fs::remove_dir_all(tree.sys().join("class/nvme/nvme1")).unwrap();
        let Err(Unhealthy::Broken(message)) = fabric.health(&attached) else {
            panic!("a removed controller does not come back");
        };
        assert!(message.contains("gone"), "{message}");
        // Disconnecting what is gone already succeeds.
        fabric.disconnect(&attached).unwrap();
    }

    #[test]
    fn identify_namespace_gives_blocks_times_the_formats_block_size() {
        let mut data = vec![0u8; 4096];
        data[0..8].copy_from_slice(&1024u64.to_le_bytes());
        // Format 1 (4 KiB blocks) selected; format 0 is 512-byte blocks.
        data[26] = 1;
        data[128 + 2] = 9;
        data[128 + 4 + 2] = 12;
        assert_eq!(identify::size_of_identify(&data), 4 << 20);
    }

    #[test]
    fn namespace_names_are_told_from_paths_and_controllers() {
        assert!(is_namespace("nvme0n1"));
        assert!(is_namespace("nvme12n3"));
        assert!(!is_namespace("nvme0c1n1"));
        assert!(!is_namespace("nvme0"));
        assert!(!is_namespace("nvme-subsys0"));
    }
}
