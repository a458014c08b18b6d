//! A hint to the CPU to start loading a cache line that will be read soon.

/// Starts fetching the cache line holding `*p` into every cache level.
#[inline(always)]
pub fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it neither reads into a register nor
    // faults, whatever the address; SSE, which it needs, is part of the
    // x86_64 baseline. `p` is a valid reference anyway.
    unsafe {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((p as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
