//! rvsd: the rvs daemon, as a library so `rvsctl` and tests share its
//! control protocol and configuration model.

pub mod capstream;
pub mod cluster;
pub mod config;
pub mod datapath;
pub mod db;
pub mod dp;
pub mod etcd;
pub mod framedesc;
pub mod log;
pub mod metrics;
pub mod netlink;
pub mod pcap;
pub mod proto;
pub mod server;
pub mod state;
