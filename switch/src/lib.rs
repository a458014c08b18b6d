//! rvsd: the rvs daemon, as a library so that the integration tests and
//! fuzz targets reach its parts. What rvsd and its clients share (the
//! control protocol and the configuration model) is the `rvs-proto` crate.

#![warn(missing_docs)]

pub mod cluster;
pub mod datapath;
pub mod db;
pub mod dp;
pub mod etcd;
pub mod log;
pub mod metrics;
pub mod netlink;
pub mod server;
pub mod state;
