//! rds-sim: a RouterOS (RDS) stand-in. A real SSH server speaking the RouterOS CLI with RouterOS's
//! exact text, persistent state, a real NVMe/TCP target, and fault injection.
//! See `ARCHITECTURE.md` at the repository root for the map.

pub mod control;
pub mod copies;
pub mod engine;
pub mod faults;
pub mod nvme;
pub mod routeros;
pub mod server;
pub mod sim;
pub mod ssh;
pub mod store;
