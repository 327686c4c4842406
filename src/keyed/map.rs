//! [`ShardedLru`]: the one bounded map of keyed state.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// What a [`ShardedLru`] does with a new key when it is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Make room by forgetting the least recently touched key of the new key's shard (one that the
    /// caller allows to go, if there is one). The shard caps add up to exactly the total, so the
    /// map never holds more; eviction is exact LRU within a shard, approximate across shards.
    EvictLeastRecent,
    /// Refuse the new key. The cap counts the whole map (not per shard), so a key is refused only
    /// when the map holds the cap. For state that must not be lost while in use, such as a count
    /// of requests still in flight: forgetting it would let its key exceed its limit.
    Refuse,
}

/// A new key refused by a full [`ShardedLru`] in [`WhenFull::Refuse`] mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapFull;

/// A bounded map from `u64` keys (made by a [`KeyHasher`](super::KeyHasher)) to small `Copy`
/// values, split over up to 16 mutex-guarded shards so two cores rarely meet on one lock.
///
/// The rate limiter's windows, the in-flight limiter's counts and the lockout's failures all live
/// in one of these; they differ only in what they store, in [`WhenFull`], and in which entries they
/// let go first.
///
/// # Bound
///
/// At most `max_entries` keys, whatever the number of distinct keys offered. With
/// [`WhenFull::EvictLeastRecent`] the keys are spread over a power-of-two number of shards (each
/// with room for at least 64 keys, so a cap below 128 is one shard) whose caps add up to exactly
/// `max_entries`; slots are reused in place, so a full shard never allocates. With
/// [`WhenFull::Refuse`] the cap is global.
///
/// ```
/// use tower_webhooks::keyed::{ShardedLru, WhenFull};
/// let map = ShardedLru::new(2, WhenFull::EvictLeastRecent);
/// map.shard(1).insert_with(1, || 10, |_| true).unwrap();
/// map.shard(2).insert_with(2, || 20, |_| true).unwrap();
/// map.shard(1).get(1); // 1 is now the most recently touched
/// map.shard(3).insert_with(3, || 30, |_| true).unwrap();
/// assert_eq!(map.shard(2).peek(2), None); // 2 was the least recently touched
/// assert_eq!(map.shard(1).peek(1), Some(&10));
/// assert_eq!(map.len(), 2);
/// ```
pub struct ShardedLru<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    len: AtomicUsize,
    max_entries: usize,
    when_full: WhenFull,
}

impl<V> fmt::Debug for ShardedLru<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedLru")
            .field("len", &self.len())
            .field("max_entries", &self.max_entries)
            .field("shards", &self.shards.len())
            .field("when_full", &self.when_full)
            .finish()
    }
}

impl<V> ShardedLru<V> {
    /// Keys held now (one atomic load: under concurrent use, a snapshot).
    #[inline]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no key is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cap.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }
}

/// Most shards a map spreads its keys over: enough that two cores rarely meet on one lock.
const MAX_SHARDS: usize = 16;

/// Fewest keys a shard is given room for, unless the whole cap is smaller: a shard with room for a
/// handful of keys would evict far earlier than the cap suggests.
const MIN_KEYS_PER_SHARD: usize = 64;

/// Room reserved up front per evicting shard of a [`ShardedLru::preallocated`] map, so the default
/// caps never reallocate on the request path while a huge configured cap does not reserve memory
/// it may never use.
const PREALLOCATE_PER_SHARD: usize = 1_024;

impl<V: Copy> ShardedLru<V> {
    /// A map of at most `max_entries` keys (at least one), growing as keys arrive.
    pub fn new(max_entries: usize, when_full: WhenFull) -> Self {
        Self::build(max_entries, when_full, false)
    }

    /// A map of at most `max_entries` keys whose evicting shards reserve room for up to 1,024 keys
    /// each up front, so a busy map with the default caps never reallocates on the request path.
    pub fn preallocated(max_entries: usize, when_full: WhenFull) -> Self {
        Self::build(max_entries, when_full, true)
    }

    fn build(max_entries: usize, when_full: WhenFull, preallocate: bool) -> Self {
        let max_entries = max_entries.max(1);
        let shards = match when_full {
            WhenFull::EvictLeastRecent => split_cap(max_entries)
                .map(|cap| {
                    let reserve = if preallocate {
                        cap.min(PREALLOCATE_PER_SHARD)
                    } else {
                        0
                    };
                    Mutex::new(Shard::Lru(LruShard::new(cap, reserve)))
                })
                .collect(),
            // The cap is global, so the shard count only spreads lock contention; the shards grow
            // as keys arrive, and with nothing to evict they need no order: a plain map.
            WhenFull::Refuse => (0..MAX_SHARDS)
                .map(|_| Mutex::new(Shard::Plain(HashMap::with_hasher(PreHashed))))
                .collect(),
        };
        Self {
            shards,
            len: AtomicUsize::new(0),
            max_entries,
            when_full,
        }
    }

    /// Locks the shard of `key`. Hold the guard for one decision; every operation on `key` goes
    /// through it.
    #[inline]
    pub fn shard(&self, key: u64) -> ShardGuard<'_, V> {
        ShardGuard {
            shard: lock(&self.shards[shard_of(key, self.shards.len())]),
            map: self,
        }
    }

    /// Forgets every key.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            let dropped = shard.len();
            shard.clear();
            self.len.fetch_sub(dropped, Ordering::Relaxed);
        }
    }
}

/// Locks a shard. A panic while a shard was held (a caller's closure) leaves it poisoned; its
/// entries are still whole `Copy` values and its links were not being edited by the closure, so
/// the shard is taken as it is rather than every later request panicking too.
#[inline]
fn lock<V>(shard: &Mutex<Shard<V>>) -> MutexGuard<'_, Shard<V>> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The locked shard of a key: see [`ShardedLru::shard`].
pub struct ShardGuard<'a, V> {
    shard: MutexGuard<'a, Shard<V>>,
    map: &'a ShardedLru<V>,
}

impl<V> fmt::Debug for ShardGuard<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardGuard")
            .field("len", &self.shard.len())
            .finish()
    }
}

impl<V: Copy> ShardGuard<'_, V> {
    /// The value of `key`, now the most recently touched of its shard.
    #[inline]
    pub fn get(&mut self, key: u64) -> Option<&mut V> {
        match &mut *self.shard {
            Shard::Lru(shard) => {
                let i = *shard.index.get(&key)?;
                shard.touch(i);
                Some(&mut shard.slots[i].value)
            }
            Shard::Plain(map) => map.get_mut(&key),
        }
    }

    /// The value of `key`, leaving the order alone.
    #[inline]
    pub fn peek(&self, key: u64) -> Option<&V> {
        match &*self.shard {
            Shard::Lru(shard) => {
                let i = *shard.index.get(&key)?;
                Some(&shard.slots[i].value)
            }
            Shard::Plain(map) => map.get(&key),
        }
    }

    /// The value of `key`, touched, or a new entry made by `value`.
    ///
    /// When the map is full: with [`WhenFull::EvictLeastRecent`] the least recently touched key of
    /// the shard for which `evictable` says yes is forgotten (if it says no to all, the least
    /// recently touched one is), and with [`WhenFull::Refuse`] the new key is refused.
    #[inline]
    pub fn insert_with(
        &mut self,
        key: u64,
        value: impl FnOnce() -> V,
        evictable: impl FnMut(&V) -> bool,
    ) -> Result<&mut V, MapFull> {
        let map = self.map;
        match &mut *self.shard {
            Shard::Lru(shard) => {
                if let Some(&i) = shard.index.get(&key) {
                    shard.touch(i);
                    return Ok(&mut shard.slots[i].value);
                }
                let i = if shard.index.len() < shard.cap {
                    map.len.fetch_add(1, Ordering::Relaxed);
                    shard.place(key, value())
                } else {
                    shard.replace_victim(key, value(), evictable)
                };
                shard.index.insert(key, i);
                Ok(&mut shard.slots[i].value)
            }
            // One probe of the table whether the key is there or not.
            Shard::Plain(plain) => match plain.entry(key) {
                Entry::Occupied(entry) => Ok(entry.into_mut()),
                Entry::Vacant(entry) => {
                    // Count first, so concurrent inserts in other shards can never take the map
                    // past its cap together.
                    if map.len.fetch_add(1, Ordering::AcqRel) >= map.max_entries {
                        map.len.fetch_sub(1, Ordering::AcqRel);
                        return Err(MapFull);
                    }
                    Ok(entry.insert(value()))
                }
            },
        }
    }

    /// Applies `update` to the value of `key`, if there is one, without touching it; the entry is
    /// forgotten when `update` says so. Whether `key` was there.
    #[inline]
    pub fn update_or_remove(&mut self, key: u64, update: impl FnOnce(&mut V) -> Keep) -> bool {
        match &mut *self.shard {
            Shard::Lru(shard) => {
                let Some(&i) = shard.index.get(&key) else {
                    return false;
                };
                if update(&mut shard.slots[i].value) == Keep::Yes {
                    return true;
                }
                shard.index.remove(&key);
                shard.release(i);
            }
            // One probe for the update and the removal both.
            Shard::Plain(plain) => {
                let Entry::Occupied(mut entry) = plain.entry(key) else {
                    return false;
                };
                if update(entry.get_mut()) == Keep::Yes {
                    return true;
                }
                entry.remove();
            }
        }
        self.map.len.fetch_sub(1, Ordering::AcqRel);
        true
    }

    /// Forgets `key`, returning its value.
    #[inline]
    pub fn remove(&mut self, key: u64) -> Option<V> {
        let value = match &mut *self.shard {
            Shard::Lru(shard) => {
                let i = shard.index.remove(&key)?;
                shard.release(i);
                shard.slots[i].value
            }
            Shard::Plain(plain) => plain.remove(&key)?,
        };
        self.map.len.fetch_sub(1, Ordering::AcqRel);
        Some(value)
    }

    /// Keys held by this shard.
    pub fn len(&self) -> usize {
        self.shard.len()
    }

    /// Whether this shard holds no key.
    pub fn is_empty(&self) -> bool {
        self.shard.len() == 0
    }
}

/// Whether [`ShardGuard::update_or_remove`] keeps the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Keep it.
    Yes,
    /// Forget it.
    No,
}

/// The shard caps for a total cap: a power-of-two count of shards, each with room for at least one
/// key, whose caps add up to exactly `cap`.
pub(crate) fn split_cap(cap: usize) -> impl Iterator<Item = usize> {
    let shards = shard_count(cap);
    let (base, extra) = (cap / shards, cap % shards);
    (0..shards).map(move |i| base + usize::from(i < extra))
}

/// A power of two, at most [`MAX_SHARDS`], with at least [`MIN_KEYS_PER_SHARD`] keys per shard
/// (one shard for caps below twice that).
pub(crate) fn shard_count(cap: usize) -> usize {
    let limit = (cap / MIN_KEYS_PER_SHARD).clamp(1, MAX_SHARDS);
    // The largest power of two not above `limit`.
    1 << (usize::BITS - 1 - limit.leading_zeros())
}

/// The shard of a key. The bits used here are neither the low bits (the index's bucket) nor the
/// top seven (its control byte), so keys in one shard still spread over its table.
#[inline]
fn shard_of(key: u64, shards: usize) -> usize {
    (key >> 40) as usize & (shards - 1)
}

/// The index's hasher: keys are already uniformly distributed keyed hashes, so hashing them again
/// would only cost time.
#[derive(Clone, Copy, Debug, Default)]
struct PreHashed;

impl BuildHasher for PreHashed {
    type Hasher = PreHashedHasher;

    fn build_hasher(&self) -> Self::Hasher {
        PreHashedHasher(0)
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct PreHashedHasher(u64);

impl Hasher for PreHashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys reach this hasher; fold anything else in rather than drop it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

const NIL: usize = usize::MAX;

/// One shard: ordered for a map that evicts, plain for one that refuses.
enum Shard<V> {
    Lru(LruShard<V>),
    Plain(HashMap<u64, V, PreHashed>),
}

impl<V> Shard<V> {
    fn len(&self) -> usize {
        match self {
            Shard::Lru(shard) => shard.index.len(),
            Shard::Plain(map) => map.len(),
        }
    }

    fn clear(&mut self) {
        match self {
            Shard::Lru(shard) => shard.clear(),
            Shard::Plain(map) => map.clear(),
        }
    }
}

/// An ordered shard: an index from key to slot, the slots in a doubly linked list from most to
/// least recently touched, and a free list of slots whose keys were removed. Slots are reused in
/// place, so a full shard never allocates.
struct LruShard<V> {
    index: HashMap<u64, usize, PreHashed>,
    slots: Vec<Slot<V>>,
    head: usize,
    tail: usize,
    free: usize,
    cap: usize,
}

struct Slot<V> {
    key: u64,
    value: V,
    prev: usize,
    next: usize,
}

impl<V> LruShard<V> {
    fn new(cap: usize, reserve: usize) -> Self {
        Self {
            index: HashMap::with_capacity_and_hasher(reserve, PreHashed),
            slots: Vec::with_capacity(reserve),
            head: NIL,
            tail: NIL,
            free: NIL,
            cap,
        }
    }

    fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.head = NIL;
        self.tail = NIL;
        self.free = NIL;
    }

    /// A slot for a new key, from the free list or the end of the vector, linked in front.
    fn place(&mut self, key: u64, value: V) -> usize {
        let slot = Slot {
            key,
            value,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free {
            NIL => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
            i => {
                self.free = self.slots[i].next;
                self.slots[i] = slot;
                i
            }
        };
        self.link_front(i);
        i
    }

    /// Reuses the slot of the least recently touched evictable key (or of the least recently touched
    /// key, if none is) for `key`.
    fn replace_victim(
        &mut self,
        key: u64,
        value: V,
        mut evictable: impl FnMut(&V) -> bool,
    ) -> usize {
        let mut victim = self.tail;
        while victim != NIL && !evictable(&self.slots[victim].value) {
            victim = self.slots[victim].prev;
        }
        if victim == NIL {
            victim = self.tail;
        }
        self.index.remove(&self.slots[victim].key);
        self.unlink(victim);
        self.slots[victim] = Slot {
            key,
            value,
            prev: NIL,
            next: NIL,
        };
        self.link_front(victim);
        victim
    }

    /// Returns slot `i`, whose key has left the index, to the free list.
    fn release(&mut self, i: usize) {
        self.unlink(i);
        self.slots[i].next = self.free;
        self.free = i;
    }

    #[inline]
    fn touch(&mut self, i: usize) {
        if self.head != i {
            self.unlink(i);
            self.link_front(i);
        }
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.slots[i].prev, self.slots[i].next);
        match prev {
            NIL => self.head = next,
            p => self.slots[p].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n].prev = prev,
        }
    }

    fn link_front(&mut self, i: usize) {
        self.slots[i].prev = NIL;
        self.slots[i].next = self.head;
        match self.head {
            NIL => self.tail = i,
            h => self.slots[h].prev = i,
        }
        self.head = i;
    }

    #[cfg(test)]
    fn order(&self) -> Vec<u64> {
        let mut order = Vec::new();
        let mut at = self.head;
        while at != NIL {
            order.push(self.slots[at].key);
            at = self.slots[at].next;
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<V: Copy>(map: &ShardedLru<V>) -> Vec<u64> {
        match &*lock(&map.shards[0]) {
            Shard::Lru(shard) => shard.order(),
            Shard::Plain(_) => panic!("not ordered"),
        }
    }

    #[test]
    fn shard_caps_add_up_and_are_never_zero() {
        for cap in [1, 2, 3, 5, 15, 16, 17, 100, 4_096, 4_097] {
            let caps: Vec<usize> = split_cap(cap).collect();
            assert_eq!(caps.iter().sum::<usize>(), cap, "cap {cap}");
            assert!(caps.iter().all(|&c| c >= 1), "cap {cap}: {caps:?}");
            assert!(caps.len().is_power_of_two() && caps.len() <= MAX_SHARDS);
        }
        assert_eq!(shard_count(1), 1);
        assert_eq!(shard_count(127), 1);
        assert_eq!(shard_count(128), 2);
        assert_eq!(shard_count(1_000), 8);
        assert_eq!(shard_count(4_096), 16);
    }

    #[test]
    fn a_full_shard_evicts_its_least_recently_touched_key() {
        let map = ShardedLru::new(3, WhenFull::EvictLeastRecent);
        for key in [1, 2, 3] {
            map.shard(key)
                .insert_with(key, || key * 10, |_| true)
                .unwrap();
        }
        // Touching 1 makes 2 the least recently touched; peeking 2 does not save it.
        assert_eq!(map.shard(1).get(1).copied(), Some(10));
        assert_eq!(map.shard(2).peek(2), Some(&20));
        map.shard(4).insert_with(4, || 40, |_| true).unwrap();
        assert_eq!(keys(&map), [4, 1, 3]);
        assert_eq!(map.len(), 3);
        assert_eq!(map.shard(2).peek(2), None);
        // An existing key keeps its value.
        assert_eq!(*map.shard(1).insert_with(1, || 99, |_| true).unwrap(), 10);
        assert_eq!(keys(&map), [1, 4, 3]);
    }

    #[test]
    fn eviction_skips_entries_the_caller_keeps_unless_all_are_kept() {
        let map = ShardedLru::new(3, WhenFull::EvictLeastRecent);
        // Odd values are "locked": kept while anything else can go.
        for (key, value) in [(1, 1), (2, 2), (3, 3)] {
            map.shard(key).insert_with(key, || value, |_| true).unwrap();
        }
        let unlocked = |v: &u32| v % 2 == 0;
        map.shard(4).insert_with(4, || 5, unlocked).unwrap();
        // 1 was least recent but locked; 2 went.
        assert_eq!(keys(&map), [4, 3, 1]);
        // All locked now: the least recently touched goes after all.
        map.shard(5).insert_with(5, || 7, unlocked).unwrap();
        assert_eq!(keys(&map), [5, 4, 3]);
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn removed_slots_are_reused_and_the_length_follows() {
        let map = ShardedLru::new(2, WhenFull::EvictLeastRecent);
        map.shard(1).insert_with(1, || 1, |_| true).unwrap();
        map.shard(2).insert_with(2, || 2, |_| true).unwrap();
        assert_eq!(map.shard(1).remove(1), Some(1));
        assert_eq!(map.shard(1).remove(1), None);
        assert_eq!(map.len(), 1);
        map.shard(3).insert_with(3, || 3, |_| true).unwrap();
        // Room was free: nothing evicted, no slot added.
        assert_eq!(keys(&map), [3, 2]);
        match &*lock(&map.shards[0]) {
            Shard::Lru(shard) => assert_eq!(shard.slots.len(), 2),
            Shard::Plain(_) => panic!("not ordered"),
        }
        map.clear();
        assert!(map.is_empty());
    }

    #[test]
    fn refuse_mode_counts_the_whole_map_and_a_refusal_leaves_no_trace() {
        let map = ShardedLru::new(2, WhenFull::Refuse);
        // Keys in different shards: the cap is global all the same.
        let (a, b, c) = (1 << 40, 2 << 40, 3 << 40);
        map.shard(a).insert_with(a, || 1, |_| true).unwrap();
        map.shard(b).insert_with(b, || 1, |_| true).unwrap();
        assert_eq!(map.shard(c).insert_with(c, || 1, |_| true), Err(MapFull));
        assert_eq!(map.len(), 2);
        // A present key is still reachable.
        assert!(map.shard(a).insert_with(a, || 9, |_| true).is_ok());
        map.shard(a).remove(a);
        assert!(map.shard(c).insert_with(c, || 1, |_| true).is_ok());
        assert_eq!(map.len(), 2);
    }
}
