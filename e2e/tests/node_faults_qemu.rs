//! The node fault suite under the real kernel NVMe/TCP initiator: `rds-csi node` in a QEMU guest
//! is killed at each crash point of stage and publish (a file system and a raw block volume),
//! started again, and retried as kubelet retries; then unpublished and unstaged. Nothing may be
//! left in the guest: no NVMe/TCP controller of the volume, no mount, no device node. The loop-mode
//! suite (`driver/tests/node_loop/faults.rs`) checks the same on loop devices, and more (nothing
//! formatted twice, interrupted mkfs); this one checks what only the kernel initiator has.
//!
//! The guest runs the `rds-csi` binary of this build, which carries crash points when the
//! workspace's tests built it (`cargo nextest run --workspace`, as `.ci/run` does).

use std::collections::HashMap;

use rds_csi::csi::v1::volume_capability::access_mode::Mode;
use rds_csi::node::crash::CrashPoint;
use rds_e2e::qemu::kernel_node::KernelNodeRig;
use rds_e2e::qemu::kubelet_calls::Kubelet;
use rds_e2e::qemu::node_plugin::NodePluginConfig;
use rds_e2e::requests;

const HOST_NQN: &str = "nqn.2014-08.org.nvmexpress:uuid:0d1e2f30-4a5b-4c6d-8e7f-90a1b2c3fa17";
const SIZE: u64 = 64 << 20;
/// kubelet retries a failed call with a backoff; the restarted plugin answers the first or
/// second (its gRPC channel reconnects), so a handful is plenty.
const RETRIES: u32 = 20;

/// Each crash point, with the kind of volume that reaches it.
const CASES: [(CrashPoint, bool); 7] = [
    (CrashPoint::Connected, false),
    (CrashPoint::Formatted, false),
    (CrashPoint::Mounted, false),
    (CrashPoint::Published, false),
    (CrashPoint::Connected, true),
    (CrashPoint::DeviceNode, true),
    (CrashPoint::Linked, true),
];

type Call = fn(&Kubelet, &KernelNodeRig) -> Result<(), tonic::Status>;

/// `call` until it succeeds, as kubelet retries it.
fn retried(rig: &KernelNodeRig, kubelet: &Kubelet, what: &str, call: Call) {
    let mut last = None;
    for attempt in 0..RETRIES {
        match call(kubelet, rig) {
            Ok(()) => return,
            Err(status) => last = Some(status),
        }
        std::thread::sleep(std::time::Duration::from_millis(50 << attempt.min(4)));
    }
    panic!(
        "{what} of {} never succeeded: {last:?}\n{}",
        kubelet.volume.id,
        rig.plugin.log_tail()
    );
}

fn guest(rig: &KernelNodeRig, command: &str) -> String {
    rig.plugin.run_ok(command).unwrap_or_else(|e| panic!("{e}"))
}

fn killed_at(rig: &mut KernelNodeRig, index: usize, point: CrashPoint, block: bool) {
    let capability = if block {
        requests::block_capability(Mode::SingleNodeWriter)
    } else {
        requests::fs_capability("ext4")
    };
    let name = format!("pvc-node-faults-{index}");
    let volume = rig
        .create_and_publish(&name, SIZE, &HashMap::new(), capability.clone())
        .unwrap();
    let kubelet = Kubelet::new(volume, capability, "faults");
    let steps: [(&str, Call); 2] = [("stage", Kubelet::stage), ("publish", Kubelet::publish)];

    rig.plugin.restart(Some(point.name())).unwrap();
    let failed = steps
        .iter()
        .position(|(_, call)| call(&kubelet, rig).is_err());
    assert!(
        failed.is_some() && rig.plugin.has_died(),
        "the plugin did not die at {}: does its binary carry crash points (built by the \
         workspace's tests)?\n{}",
        point.name(),
        rig.plugin.log_tail()
    );
    rig.plugin.restart(None).unwrap();
    for (what, call) in steps {
        retried(rig, &kubelet, what, call);
    }

    // The publication works: the pod's data goes through it.
    let target = &kubelet.target;
    if block {
        guest(
            rig,
            &format!(
                "head -c 1048576 /dev/urandom >/tmp/pattern
                 dd if=/tmp/pattern of={target} bs=1M count=1 oflag=direct 2>/dev/null
                 dd if={target} bs=1M count=1 iflag=direct 2>/dev/null | cmp - /tmp/pattern"
            ),
        );
    } else {
        guest(
            rig,
            &format!(
                "echo {} >{target}/x && sync && grep -qx {} {target}/x",
                point.name(),
                point.name()
            ),
        );
    }

    retried(rig, &kubelet, "unpublish", Kubelet::unpublish);
    retried(rig, &kubelet, "unstage", Kubelet::unstage);
    let id = &kubelet.volume.id;
    let nqn = &kubelet.volume.publish["nqn"];
    let left = guest(
        rig,
        &format!(
            "grep -F {id} /proc/mounts
             for c in /sys/class/nvme/*; do
               [ -e \"$c/subsysnqn\" ] && [ \"$(cat $c/subsysnqn)\" = {nqn} ] && echo controller ${{c##*/}}
             done
             find {staging} {target} -type b 2>/dev/null
             true",
            staging = kubelet.staging,
        ),
    );
    assert_eq!(
        left.trim(),
        "",
        "killed at {} ({}): left in the guest",
        point.name(),
        if block { "block" } else { "ext4" }
    );
    rig.unpublish_and_delete(&kubelet.volume).unwrap();
}

#[test]
fn a_node_plugin_killed_at_each_step_under_the_kernel_initiator_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = NodePluginConfig {
        binary: None,
        node: toml::Table::new(),
        extra_files: Vec::new(),
        memory_mb: 1024,
    };
    let mut rig = match KernelNodeRig::start(dir.path(), HOST_NQN, config) {
        Ok(rig) => rig,
        Err(e) => match e.skip_reason() {
            Some(reason) => return eprintln!("SKIPPED: {reason}"),
            None => panic!("{e}"),
        },
    };
    for (index, (point, block)) in CASES.into_iter().enumerate() {
        killed_at(&mut rig, index, point, block);
    }
    rig.shutdown();
}
