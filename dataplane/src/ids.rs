//! The ids the packet path indexes its tables by.

/// Index of a port in `Snapshot::ports`; stable while the port exists.
pub type PortId = u16;
/// Index of a bridge in `Snapshot::bridges`.
pub type BridgeId = u16;
/// An 802.1Q VLAN id, 1..=4094.
pub type Vid = u16;
