//! Wire formats: zero-copy views over frame bytes.
//!
//! Each view is made with `new_checked`, which proves the buffer long enough
//! for every accessor, so no accessor can panic on any input.

pub mod checksum;
pub mod ethernet;
pub mod ip;
pub mod vlan;
pub mod vxlan;

pub use ethernet::{EtherType, EthernetFrame, MacAddr};
