//! MAC learning table.
/// Placeholder.
#[derive(Debug)]
pub struct Fdb;
