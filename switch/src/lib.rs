//! rvsd: the rvs daemon, as a library so that the integration tests and
//! fuzz targets reach its parts. What rvsd and its clients share (the
//! control protocol and the configuration model) is the `rvs-proto` crate.
//!
//! | module | what |
//! | --- | --- |
//! | [`control`] | the control socket, the state machine that applies and persists each request, cluster membership as the state machine sees it |
//! | [`datapath`] | the boundary the control plane drives: the trait, the real implementation over `rvs-dataplane`'s polling threads, and the fake the tests use |
//! | [`cluster`] | the etcd agent and its client |
//! | [`obs`] | metrics over HTTP and the logger |
//! | [`kernel`] | what rvsd asks the kernel over netlink: routes, neighbours, links |
//! | [`db`] | the configuration database on disk |

#![warn(missing_docs)]

pub mod cluster;
pub mod control;
pub mod datapath;
pub mod db;
pub mod kernel;
pub mod obs;
