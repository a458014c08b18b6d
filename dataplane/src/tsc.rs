//! The CPU's time-stamp counter, for cycles-per-packet accounting.
//!
//! The one `unsafe` outside the I/O layer: reading the TSC touches no
//! memory. Elsewhere than x86-64 it falls back to nanoseconds, so "cycles"
//! are then nanoseconds.

/// The current cycle count.
#[inline]
pub fn now() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC reads a counter register; it has no memory effects
        // and is available on every x86-64 CPU.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_up() {
        let a = super::now();
        std::thread::sleep(std::time::Duration::from_millis(1));
        assert!(super::now() > a);
    }
}
