//! The control plane: the socket clients talk to, and the state machine
//! that validates, applies and persists what they ask for.

pub mod server;
pub mod state;
