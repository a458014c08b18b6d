//! What rvsd asks the kernel outside the packet path.

pub mod missdev;
pub mod netlink;
pub mod peer;
