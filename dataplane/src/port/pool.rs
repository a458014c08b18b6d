//! Frame memory shared by the ports of one polling thread.
//!
//! One page-aligned anonymous mapping of `FRAME_SIZE` chunks. For AF_XDP it
//! is registered as the UMEM, so the kernel writes received frames straight
//! into it; copy ports (tap, in-memory) place frames at `HEADROOM` inside a
//! chunk, leaving room in front for a VLAN tag or tunnel headers.

use std::io;
use std::ptr::NonNull;
use std::sync::Arc;

/// Bytes per frame chunk (the AF_XDP UMEM chunk size).
pub const FRAME_SIZE: usize = 2048;
/// Bytes in front of a received frame's data, as AF_XDP leaves
/// (`XDP_PACKET_HEADROOM`); copy ports leave the same.
pub const HEADROOM: usize = 256;
/// The largest frame a chunk holds after the headroom.
pub const MAX_FRAME: usize = FRAME_SIZE - HEADROOM;

/// A frame in a [`Pool`]: byte offset of its first byte and its length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Desc {
    /// Offset of the frame's first byte from the start of the pool.
    pub addr: u64,
    /// Frame length in bytes.
    pub len: u32,
}

impl Desc {
    /// Offset of the chunk that holds this frame.
    pub fn chunk(self) -> u64 {
        self.addr & !(FRAME_SIZE as u64 - 1)
    }
}

/// The mapping behind a pool: kept alive by the pool and by every AF_XDP
/// socket that registered it, so it is unmapped only after the last one.
#[derive(Debug)]
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Region` is only an owned mapping (pointer + length); access to
// the bytes goes through `Pool`, which is not shared between threads.
unsafe impl Send for Region {}
// SAFETY: see above: `&Region` gives out only the raw address and length.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `len` bytes of zeroed, page-aligned memory.
    pub fn new(len: usize) -> io::Result<Arc<Region>> {
        // SAFETY: an anonymous private mapping with no address hint touches
        // no existing memory; the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Arc::new(Region { ptr, len }))
    }

    /// Start address of the mapping (for UMEM registration).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length mapping (never made by `new`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from a successful mmap and nothing can
        // reach the memory once the last Arc is gone.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Frame chunks of one polling thread and the list of free ones.
#[derive(Debug)]
pub struct Pool {
    region: Arc<Region>,
    free: Vec<u64>,
    frames: u32,
}

impl Pool {
    /// A pool of `frames` chunks, all free.
    pub fn new(frames: u32) -> io::Result<Pool> {
        let region = Region::new(frames as usize * FRAME_SIZE)?;
        let free = (0..frames as u64).rev().map(|i| i * FRAME_SIZE as u64).collect();
        Ok(Pool { region, free, frames })
    }

    /// The mapping, for registering it with the kernel.
    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// Number of chunks in the pool.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Number of chunks free right now.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Takes a free chunk; returns its offset.
    #[inline]
    pub fn alloc(&mut self) -> Option<u64> {
        self.free.pop()
    }

    /// Returns the chunk holding `addr` to the free list.
    #[inline]
    pub fn free(&mut self, addr: u64) {
        debug_assert!((addr as usize) < self.region.len);
        debug_assert!(self.free.len() < self.frames as usize, "double free of {addr:#x}");
        self.free.push(addr & !(FRAME_SIZE as u64 - 1));
    }

    /// The bytes of `d`. Panics if `d` is not inside one chunk of this pool
    /// (a bug in a port, never a property of received data).
    #[inline]
    pub fn data(&self, d: Desc) -> &[u8] {
        let (start, len) = self.check(d);
        // SAFETY: `check` proved the range lies in one chunk of the mapping;
        // the caller owns the descriptor, so the kernel is not writing it.
        unsafe { std::slice::from_raw_parts(self.region.as_ptr().add(start), len) }
    }

    /// The bytes of `d`, writable.
    #[inline]
    pub fn data_mut(&mut self, d: Desc) -> &mut [u8] {
        let (start, len) = self.check(d);
        // SAFETY: as in `data`; `&mut self` makes the slice unique.
        unsafe { std::slice::from_raw_parts_mut(self.region.as_ptr().add(start), len) }
    }

    /// The whole chunk at offset `chunk` (a value from `alloc`), writable.
    #[inline]
    pub fn chunk_mut(&mut self, chunk: u64) -> &mut [u8] {
        self.data_mut(Desc { addr: chunk & !(FRAME_SIZE as u64 - 1), len: FRAME_SIZE as u32 })
    }

    /// Two distinct frames at once, the first read-only (for copying).
    #[inline]
    pub fn pair_mut(&mut self, src: Desc, dst: Desc) -> (&[u8], &mut [u8]) {
        let (s, sl) = self.check(src);
        let (d, dl) = self.check(dst);
        assert_ne!(src.chunk(), dst.chunk(), "frames share a chunk");
        // SAFETY: both ranges are checked to be inside the mapping, and they
        // lie in different chunks, so they do not overlap.
        unsafe {
            (
                std::slice::from_raw_parts(self.region.as_ptr().add(s), sl),
                std::slice::from_raw_parts_mut(self.region.as_ptr().add(d), dl),
            )
        }
    }

    #[inline]
    fn check(&self, d: Desc) -> (usize, usize) {
        let start = d.addr as usize;
        let len = d.len as usize;
        let chunk_end = (d.chunk() as usize) + FRAME_SIZE;
        assert!(start + len <= chunk_end && chunk_end <= self.region.len, "descriptor {d:?} outside its chunk");
        (start, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_roundtrip() {
        let mut p = Pool::new(4).unwrap();
        let a = p.alloc().unwrap();
        let b = p.alloc().unwrap();
        assert_ne!(a, b);
        p.data_mut(Desc { addr: a + HEADROOM as u64, len: 4 }).copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(p.data(Desc { addr: a + HEADROOM as u64, len: 4 }), &[1, 2, 3, 4]);
        p.free(a + 100);
        assert_eq!(p.free_count(), 3);
        assert_eq!(p.alloc(), Some(a));
    }

    #[test]
    #[should_panic]
    fn desc_crossing_chunk_panics() {
        let p = Pool::new(2).unwrap();
        p.data(Desc { addr: 2000, len: 100 });
    }
}
