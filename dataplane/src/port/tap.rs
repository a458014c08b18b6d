//! Tap ports (being written on the tap branch).
