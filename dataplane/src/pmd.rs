//! The polling loop.
