//! Tap ports.
