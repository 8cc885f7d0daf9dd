//! Key groups: the unit in which keyed state is partitioned, stored and moved.
//!
//! A job has `max_parallelism` key groups (default
//! [`DEFAULT_MAX_PARALLELISM`]). A key belongs to the key group
//! `stable_hash(key) % max_parallelism`, and a keyed operator of parallelism
//! `p` gives each subtask one contiguous range of key groups. Because state is
//! kept per key group, a job can be restored at another parallelism by
//! handing the same key groups out in different ranges.

use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};

/// Number of key groups when a job does not set one.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// Largest number of key groups a job may have.
pub const MAX_KEY_GROUPS: u32 = 32_768;

/// A key group index, `0..max_parallelism`.
pub type KeyGroup = u16;

/// A hasher whose output depends only on the bytes written to it.
///
/// Unlike `std`'s `RandomState` it has no per-process seed, so every process
/// of a job agrees on which key group a key belongs to. It mixes 64-bit words
/// (in the manner of FxHash) and finishes with the MurmurHash3 avalanche, so
/// that consecutive integer keys spread evenly over key groups.
#[derive(Debug, Default, Clone, Copy)]
pub struct StableHasher {
    state: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl StableHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for StableHasher {
    #[inline]
    fn finish(&self) -> u64 {
        // MurmurHash3 fmix64.
        let mut h = self.state;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

/// The stable hash of a key, identical in every process of a job.
#[inline]
pub fn stable_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut hasher = StableHasher::default();
    key.hash(&mut hasher);
    hasher.finish()
}

/// The key group a key hash falls into.
#[inline]
pub fn key_group_of_hash(hash: u64, max_parallelism: u32) -> KeyGroup {
    (hash % u64::from(max_parallelism)) as KeyGroup
}

/// The key group of a key.
#[inline]
pub fn key_group_of<K: Hash + ?Sized>(key: &K, max_parallelism: u32) -> KeyGroup {
    key_group_of_hash(stable_hash(key), max_parallelism)
}

/// The subtask (of `parallelism`) that owns a key group.
///
/// Inverse of [`KeyGroupRange::for_subtask`]: key group `g` belongs to the
/// subtask whose range contains it.
#[inline]
pub fn subtask_for_key_group(key_group: KeyGroup, max_parallelism: u32, parallelism: u32) -> u32 {
    ((u64::from(key_group) * u64::from(parallelism)) / u64::from(max_parallelism)) as u32
}

/// A contiguous, half-open range of key groups `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyGroupRange {
    /// First key group in the range.
    pub start: KeyGroup,
    /// One past the last key group in the range.
    pub end: KeyGroup,
}

impl KeyGroupRange {
    /// The range `start..end`.
    pub fn new(start: KeyGroup, end: KeyGroup) -> Self {
        Self { start, end }
    }

    /// Every key group of a job with `max_parallelism` key groups.
    pub fn all(max_parallelism: u32) -> Self {
        Self::new(0, max_parallelism as KeyGroup)
    }

    /// The key groups that subtask `index` of an operator with `parallelism`
    /// subtasks owns: ranges are contiguous, disjoint, cover every key group,
    /// and differ in size by at most one.
    pub fn for_subtask(index: u32, parallelism: u32, max_parallelism: u32) -> Self {
        let (i, p, m) = (
            u64::from(index),
            u64::from(parallelism),
            u64::from(max_parallelism),
        );
        // Smallest g with g * p / m == i, and the same for i + 1.
        let start = (i * m).div_ceil(p);
        let end = ((i + 1) * m).div_ceil(p);
        Self::new(start as KeyGroup, end as KeyGroup)
    }

    /// Whether the range holds `key_group`.
    #[inline]
    pub fn contains(&self, key_group: KeyGroup) -> bool {
        self.start <= key_group && key_group < self.end
    }

    /// Number of key groups in the range.
    pub fn len(&self) -> usize {
        usize::from(self.end.saturating_sub(self.start))
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key groups in the range, in order.
    pub fn iter(&self) -> impl Iterator<Item = KeyGroup> {
        self.start..self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_all_key_groups_and_agree_with_owner_lookup() {
        for max in [1u32, 7, 128, 1000] {
            for p in 1..=max.min(17) {
                let mut next = 0u16;
                for i in 0..p {
                    let r = KeyGroupRange::for_subtask(i, p, max);
                    assert_eq!(r.start, next, "max={max} p={p} i={i}");
                    for g in r.iter() {
                        assert_eq!(subtask_for_key_group(g, max, p), i);
                    }
                    next = r.end;
                }
                assert_eq!(u32::from(next), max);
            }
        }
    }

    #[test]
    fn stable_hash_is_fixed_and_spreads_consecutive_keys() {
        // The value is part of the on-disk contract: state written by one
        // build must land in the same key group in the next.
        assert_eq!(key_group_of(&42u64, 128), key_group_of(&42u64, 128));
        assert_eq!(stable_hash(&7u64), 2_180_297_486_836_056_586);
        let mut counts = [0u32; 128];
        for k in 0u64..128_000 {
            counts[usize::from(key_group_of(&k, 128))] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 800 && *max < 1200, "uneven spread: {min}..{max}");
    }

    #[test]
    fn strings_hash_by_content() {
        let a = String::from("hello");
        assert_eq!(stable_hash(&a), stable_hash("hello"));
        assert_ne!(stable_hash("hello"), stable_hash("hellp"));
    }
}
