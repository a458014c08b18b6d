//! The four single-producer/single-consumer rings an AF_XDP socket shares
//! with the kernel, as libbpf's `xsk.h` drives them: cached copies of the
//! peer's index, batch reserve/submit and peek/release, Acquire loads of the
//! peer's index and Release stores of our own.

use std::io;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// A shared mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mmap {
    /// Maps `len` bytes of `fd` at page offset `pgoff` (a ring of an AF_XDP socket).
    pub(crate) fn ring(fd: RawFd, len: usize, pgoff: u64) -> io::Result<Mmap> {
        // SAFETY: a fresh shared mapping with no address hint replaces no
        // existing memory; the kernel checks `fd`, `len` and `pgoff`.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        Self::wrap(p, len)
    }

    /// Anonymous zeroed memory shaped like a ring (for tests).
    #[cfg(test)]
    pub(crate) fn anon(len: usize) -> io::Result<Mmap> {
        // SAFETY: as in `ring`, anonymous.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        Self::wrap(p, len)
    }

    fn wrap(p: *mut libc::c_void, len: usize) -> io::Result<Mmap> {
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mmap { ptr, len })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from a successful mmap; the ring that
        // owns this mapping is being dropped, so no pointer into it remains.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Where a ring's parts lie in its mapping (`struct xdp_ring_offset`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Offsets {
    pub producer: u64,
    pub consumer: u64,
    pub flags: u64,
    pub desc: u64,
}

impl From<libc::xdp_ring_offset> for Offsets {
    fn from(o: libc::xdp_ring_offset) -> Offsets {
        Offsets { producer: o.producer, consumer: o.consumer, flags: o.flags, desc: o.desc }
    }
}

/// The mapped memory of one ring of `size` entries of `T`.
#[derive(Debug)]
struct RingMem<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    mask: u32,
    size: u32,
    _map: Mmap,
    _t: PhantomData<T>,
}

impl<T: Copy> RingMem<T> {
    /// Bytes to map for a ring of `size` entries laid out as `off`.
    fn map_len(off: &Offsets, size: u32) -> usize {
        off.desc as usize + size as usize * std::mem::size_of::<T>()
    }

    fn new(map: Mmap, off: &Offsets, size: u32) -> RingMem<T> {
        assert!(size.is_power_of_two());
        assert!(Self::map_len(off, size) <= map.len, "ring mapping too short");
        let base = map.ptr.as_ptr();
        // SAFETY: the offsets come from the kernel (XDP_MMAP_OFFSETS) or a
        // test, and the assertion above keeps them inside the mapping; the
        // kernel aligns each index to a cache line and the descriptors to
        // their type, and a mapping is never at address 0.
        unsafe {
            RingMem {
                producer: NonNull::new_unchecked(base.add(off.producer as usize).cast()),
                consumer: NonNull::new_unchecked(base.add(off.consumer as usize).cast()),
                flags: NonNull::new_unchecked(base.add(off.flags as usize).cast()),
                descs: NonNull::new_unchecked(base.add(off.desc as usize).cast()),
                mask: size - 1,
                size,
                _map: map,
                _t: PhantomData,
            }
        }
    }

    #[inline]
    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into our live mapping, aligned (see `new`); the
        // index is only ever accessed atomically, by us and by the kernel.
        unsafe { self.producer.as_ref() }
    }

    #[inline]
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as in `producer`.
        unsafe { self.consumer.as_ref() }
    }

    #[inline]
    fn flags(&self) -> &AtomicU32 {
        // SAFETY: as in `producer`.
        unsafe { self.flags.as_ref() }
    }

    #[inline]
    fn write(&mut self, idx: u32, v: T) {
        // SAFETY: `idx & mask` < size, inside the descriptor array; the
        // slot was reserved (the kernel's consumer index is past it), so the
        // kernel does not read it until we publish the producer index.
        unsafe { self.descs.as_ptr().add((idx & self.mask) as usize).write(v) }
    }

    #[inline]
    fn read(&self, idx: u32) -> T {
        // SAFETY: `idx & mask` < size; the entry was published by the kernel
        // (Acquire load of its producer index) and is ours until release.
        unsafe { self.descs.as_ptr().add((idx & self.mask) as usize).read() }
    }
}

/// A ring we produce into (fill, TX).
#[derive(Debug)]
pub(crate) struct ProdRing<T> {
    mem: RingMem<T>,
    cached_prod: u32,
    /// The kernel's consumer index plus `size`: the first index we may not use.
    cached_cons: u32,
}

impl<T: Copy> ProdRing<T> {
    /// Bytes to map for `size` entries.
    pub(crate) fn map_len(off: &Offsets, size: u32) -> usize {
        RingMem::<T>::map_len(off, size)
    }

    /// Wraps a mapped ring of `size` entries.
    pub(crate) fn new(map: Mmap, off: &Offsets, size: u32) -> ProdRing<T> {
        let mem = RingMem::new(map, off, size);
        let cached_prod = mem.producer().load(Ordering::Relaxed);
        let cached_cons = mem.consumer().load(Ordering::Acquire).wrapping_add(size);
        ProdRing { mem, cached_prod, cached_cons }
    }

    /// Free slots, refreshing our view of the kernel's consumer if fewer than `want`.
    #[inline]
    fn free(&mut self, want: u32) -> u32 {
        let free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free >= want {
            return free;
        }
        self.cached_cons = self.mem.consumer().load(Ordering::Acquire).wrapping_add(self.mem.size);
        self.cached_cons.wrapping_sub(self.cached_prod)
    }

    /// Reserves up to `n` slots; returns the first index and how many.
    #[inline]
    pub(crate) fn reserve(&mut self, n: u32) -> (u32, u32) {
        let got = self.free(n).min(n);
        let idx = self.cached_prod;
        self.cached_prod = self.cached_prod.wrapping_add(got);
        (idx, got)
    }

    /// Gives back the last `n` reserved slots (not yet submitted).
    #[inline]
    pub(crate) fn cancel(&mut self, n: u32) {
        self.cached_prod = self.cached_prod.wrapping_sub(n);
    }

    /// Fills a reserved slot.
    #[inline]
    pub(crate) fn set(&mut self, idx: u32, v: T) {
        self.mem.write(idx, v)
    }

    /// Publishes everything reserved so far to the kernel.
    #[inline]
    pub(crate) fn submit(&mut self) {
        self.mem.producer().store(self.cached_prod, Ordering::Release);
    }

    /// Entries published but not yet taken by the kernel.
    #[inline]
    pub(crate) fn pending(&self) -> u32 {
        self.cached_prod.wrapping_sub(self.mem.consumer().load(Ordering::Acquire))
    }

    /// True when the kernel asks for a syscall to process this ring.
    #[inline]
    pub(crate) fn needs_wakeup(&self) -> bool {
        self.mem.flags().load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }
}

/// A ring the kernel produces into (RX, completion).
#[derive(Debug)]
pub(crate) struct ConsRing<T> {
    mem: RingMem<T>,
    cached_prod: u32,
    cached_cons: u32,
}

impl<T: Copy> ConsRing<T> {
    /// Bytes to map for `size` entries.
    pub(crate) fn map_len(off: &Offsets, size: u32) -> usize {
        RingMem::<T>::map_len(off, size)
    }

    /// Wraps a mapped ring of `size` entries.
    pub(crate) fn new(map: Mmap, off: &Offsets, size: u32) -> ConsRing<T> {
        let mem = RingMem::new(map, off, size);
        let cached_cons = mem.consumer().load(Ordering::Relaxed);
        let cached_prod = mem.producer().load(Ordering::Acquire);
        ConsRing { mem, cached_prod, cached_cons }
    }

    /// Takes up to `n` available entries; returns the first index and how many.
    #[inline]
    pub(crate) fn peek(&mut self, n: u32) -> (u32, u32) {
        let mut avail = self.cached_prod.wrapping_sub(self.cached_cons);
        if avail == 0 {
            self.cached_prod = self.mem.producer().load(Ordering::Acquire);
            avail = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        let got = avail.min(n);
        let idx = self.cached_cons;
        self.cached_cons = self.cached_cons.wrapping_add(got);
        (idx, got)
    }

    /// Reads a peeked entry.
    #[inline]
    pub(crate) fn get(&self, idx: u32) -> T {
        self.mem.read(idx)
    }

    /// Hands every peeked entry back to the kernel.
    #[inline]
    pub(crate) fn release(&mut self) {
        self.mem.consumer().store(self.cached_cons, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFF: Offsets = Offsets { producer: 0, consumer: 64, flags: 128, desc: 192 };

    /// A ring in plain memory plus a raw view of its indices, standing in
    /// for the kernel side.
    fn mem(size: u32, start: u32) -> (Mmap, *const AtomicU32, *const AtomicU32) {
        let m = Mmap::anon(RingMem::<u64>::map_len(&OFF, size)).unwrap();
        let base = m.ptr.as_ptr();
        // SAFETY: offsets 0 and 64 are inside the fresh mapping and aligned.
        let (p, c) = unsafe {
            (base.add(OFF.producer as usize) as *const AtomicU32, base.add(OFF.consumer as usize) as *const AtomicU32)
        };
        // SAFETY: as above; the mapping lives until the ring made from it drops.
        unsafe {
            (*p).store(start, Ordering::Relaxed);
            (*c).store(start, Ordering::Relaxed);
        }
        (m, p, c)
    }

    #[test]
    fn producer_reserves_submits_and_wraps() {
        for start in [0u32, u32::MAX - 3] {
            let (m, p, c) = mem(8, start);
            let mut r = ProdRing::<u64>::new(m, &OFF, 8);
            let (idx, n) = r.reserve(5);
            assert_eq!((idx, n), (start, 5));
            for i in 0..n {
                r.set(idx.wrapping_add(i), i as u64 * 10);
            }
            r.submit();
            // SAFETY: the mapping is owned by `r`, alive here.
            assert_eq!(unsafe { (*p).load(Ordering::Acquire) }, start.wrapping_add(5));
            assert_eq!(r.pending(), 5);
            // Only 3 slots left until the kernel consumes.
            assert_eq!(r.reserve(5).1, 3);
            r.submit();
            assert_eq!(r.reserve(1).1, 0);
            // Kernel consumes 6 entries.
            // SAFETY: as above.
            unsafe { (*c).store(start.wrapping_add(6), Ordering::Release) };
            assert_eq!(r.pending(), 2);
            let (idx, n) = r.reserve(10);
            assert_eq!((idx, n), (start.wrapping_add(8), 6));
            assert_eq!(r.mem.read(start), 0);
            assert_eq!(r.mem.read(start.wrapping_add(4)), 40);
        }
    }

    #[test]
    fn consumer_peeks_and_releases() {
        for start in [0u32, u32::MAX - 1] {
            let (m, p, c) = mem(4, start);
            let mut r = ConsRing::<u64>::new(m, &OFF, 4);
            assert_eq!(r.peek(4).1, 0);
            for i in 0..3u32 {
                r.mem.write(start.wrapping_add(i), 100 + i as u64);
            }
            // SAFETY: the mapping is owned by `r`, alive here.
            unsafe { (*p).store(start.wrapping_add(3), Ordering::Release) };
            let (idx, n) = r.peek(2);
            assert_eq!((idx, n), (start, 2));
            assert_eq!(r.get(idx.wrapping_add(1)), 101);
            let (idx, n) = r.peek(8);
            assert_eq!((idx, n), (start.wrapping_add(2), 1));
            assert_eq!(r.get(idx), 102);
            r.release();
            // SAFETY: as above.
            assert_eq!(unsafe { (*c).load(Ordering::Acquire) }, start.wrapping_add(3));
            assert_eq!(r.peek(8).1, 0);
        }
    }

    #[test]
    fn wakeup_flag() {
        let (m, _, _) = mem(4, 0);
        let r = ProdRing::<u64>::new(m, &OFF, 4);
        assert!(!r.needs_wakeup());
        r.mem.flags().store(libc::XDP_RING_NEED_WAKEUP, Ordering::Relaxed);
        assert!(r.needs_wakeup());
    }
}
