//! rds-e2e: end-to-end suites for rds-csi. A [`target::Target`] is the driver serving the CSI API on
//! a UNIX socket, backed by the RDS the environment names (`RDS_E2E_TARGET`, see [`config`]); a
//! [`fixture::Fixture`] is one case's view of it; [`suite`] turns cases into libtest-mimic trials.
//! See `e2e/README.md`.

pub mod binaries;
pub mod cluster;
pub mod config;
pub mod container;
pub mod csi_sanity;
pub mod driver_server;
pub mod fixture;
pub mod go_tools;
pub mod node_host;
pub mod observed;
pub mod qemu;
pub mod relay;
pub mod requests;
pub mod sanity;
pub mod sidecar;
pub mod sim_rds;
pub mod suite;
pub mod target;
pub use sim_rds::{BASE_DIR, NQN_PREFIX, POOL};
