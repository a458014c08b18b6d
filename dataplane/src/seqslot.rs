//! A slot of a shared lookup table: `N` words behind a sequence counter.
//! Readers never wait (they read again if a writer was inside), writers
//! take the slot by making the counter odd, so a lookup costs a few loads
//! and no lock, and writers contend only on the very same slot. The FDB
//! and the neighbour table are made of these.

use std::hint;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

/// `N` words read and written as one.
pub(crate) struct SeqSlot<const N: usize> {
    seq: AtomicU32,
    words: [AtomicU64; N],
}

impl<const N: usize> Default for SeqSlot<N> {
    fn default() -> Self {
        SeqSlot { seq: AtomicU32::new(0), words: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

impl<const N: usize> SeqSlot<N> {
    /// A consistent copy of the words, without waiting for writers.
    #[inline]
    pub(crate) fn read(&self) -> [u64; N] {
        loop {
            let s1 = self.seq.load(Acquire);
            if s1 & 1 == 0 {
                let w = std::array::from_fn(|i| self.words[i].load(Acquire));
                if self.seq.load(Acquire) == s1 {
                    return w;
                }
            }
            hint::spin_loop();
        }
    }

    /// Takes the slot for writing; the guard releases it.
    #[inline]
    pub(crate) fn lock(&self) -> SeqGuard<'_, N> {
        loop {
            let s = self.seq.load(Relaxed);
            if s & 1 == 0 && self.seq.compare_exchange_weak(s, s + 1, Acquire, Relaxed).is_ok() {
                return SeqGuard(self);
            }
            hint::spin_loop();
        }
    }
}

/// A slot taken for writing.
pub(crate) struct SeqGuard<'a, const N: usize>(&'a SeqSlot<N>);

impl<const N: usize> SeqGuard<'_, N> {
    /// The words as they are.
    #[inline]
    pub(crate) fn get(&self) -> [u64; N] {
        std::array::from_fn(|i| self.0.words[i].load(Relaxed))
    }

    /// Word `i` as it is.
    #[inline]
    pub(crate) fn word(&self, i: usize) -> u64 {
        self.0.words[i].load(Relaxed)
    }

    /// Replaces the words (readers see all of them or none).
    #[inline]
    pub(crate) fn set(&self, w: [u64; N]) {
        for (a, v) in self.0.words.iter().zip(w) {
            a.store(v, Release);
        }
    }
}

impl<const N: usize> Drop for SeqGuard<'_, N> {
    fn drop(&mut self) {
        self.0.seq.fetch_add(1, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Writers keep both words equal; no reader ever sees them differ.
    #[test]
    fn readers_see_whole_writes() {
        let slot = Arc::new(SeqSlot::<2>::default());
        let writers: Vec<_> = (0..2)
            .map(|t| {
                let s = slot.clone();
                std::thread::spawn(move || {
                    for n in 0..20_000u64 {
                        let g = s.lock();
                        let v = g.word(0).wrapping_add(n * 2 + t);
                        g.set([v, v]);
                    }
                })
            })
            .collect();
        for _ in 0..20_000 {
            let [a, b] = slot.read();
            assert_eq!(a, b);
        }
        for w in writers {
            w.join().unwrap();
        }
    }
}
