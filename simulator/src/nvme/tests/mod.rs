//! Unit tests of the pure core, driven by the blocking initiator over an in-memory loopback.

mod codec;
mod faults;
mod loopback;
mod props;
mod trace;
