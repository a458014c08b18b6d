//! What rvsd shows of itself: Prometheus metrics over HTTP, logs, and its
//! readiness to systemd.

pub mod http;
pub mod log;
pub mod metrics;
pub mod notify;
