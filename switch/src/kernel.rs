//! What rvsd asks the kernel outside the packet path.

pub mod netlink;
pub mod peer;
