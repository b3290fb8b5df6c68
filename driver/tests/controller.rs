//! The real driver (Identity and Controller over a UNIX socket) against an in-process rds-sim,
//! with the simulator's state checked after each step.

#[path = "controller/harness.rs"]
mod harness;

#[path = "controller/errors.rs"]
mod errors;
#[path = "controller/identity.rs"]
mod identity;
#[path = "controller/lifecycle.rs"]
mod lifecycle;
#[path = "controller/recovery.rs"]
mod recovery;
