//! What rvsd shows of itself: Prometheus metrics over HTTP, and logs.

pub mod http;
pub mod log;
pub mod metrics;
