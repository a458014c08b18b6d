//! The per-batch pipeline.
