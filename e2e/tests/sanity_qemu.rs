//! The sanity suite's Node Service cases, and csi-sanity's Node Service specs, on the `qemu`
//! target whatever `RDS_E2E_TARGET` says: `rds-csi node` in a QEMU guest attaching with the real
//! kernel NVMe/TCP initiator, rds-sim and the controller on the host, each case driving the node's
//! gRPC from the host. A guest takes longer to boot under TCG than a case takes to run, so the
//! cases run in turn as one trial on one guest, proved clean after each (`suite::in_turn`);
//! csi-sanity, a process of its own, boots its own. Outside CI, a machine that cannot run QEMU
//! skips both, saying why.

use rds_e2e::config::{Settings, TargetKind};
use rds_e2e::csi_sanity;
use rds_e2e::suite;

/// The trial of our own Node cases.
const NODE_CASES: &str = "Node Service and CSI spec [Node Server] cases, in turn on one guest";

fn on_qemu(settings: &mut Settings) {
    settings.target = TargetKind::Qemu;
}

fn main() {
    suite::run(vec![
        suite::in_turn(NODE_CASES, on_qemu, rds_e2e::sanity::node_cases()),
        csi_sanity::trial(
            csi_sanity::NODE_TRIAL,
            csi_sanity::NODE_SPECS,
            on_qemu,
            env!("CARGO_BIN_EXE_guest-path"),
        ),
    ])
}
