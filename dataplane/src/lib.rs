//! The rvs packet path as a library.
//!
//! Pure pieces (`wire`, `fdb`, `pipeline`) parse frames and take forwarding
//! decisions without touching a socket or a clock; `port` holds the I/O
//! backends behind one narrow trait, and `pmd` joins the two in the polling
//! loop. Everything but `port` can be tested without privileges.

#![deny(missing_docs)]

pub mod bpf;
pub mod capture;
pub mod egress;
pub mod fastpath;
pub mod fdb;
pub mod flow_cache;
pub mod fnv;
pub mod ids;
pub mod neigh;
pub mod pipeline;
pub mod pmd;
pub mod port;
pub mod prefetch;
pub mod responder;
mod seqslot;
pub mod snapshot;
pub mod stats;
pub mod testing;
pub mod tsc;
pub mod wire;
