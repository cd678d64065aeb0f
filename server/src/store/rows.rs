//! A view's rows by encoded primary key: the entries in one dense vector, a hash table of
//! 4-byte positions over them.
//!
//! A hash table holding the entries themselves keeps an eighth to a half of its buckets empty,
//! and with a row inline each empty bucket costs a whole entry (a revenue row's is about 200
//! bytes): 2^20 buckets for revenue_hourly's 656k rows of a month, all of them touched, since
//! keys land anywhere. Here an empty bucket costs 4 bytes, and the vector's spare capacity is
//! never written, so it takes no memory. The price is one more indirection per lookup, and a
//! removal that moves the last entry into the hole (one more lookup, to repoint it).

use super::key::EncKey;
use super::view::Slot;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

pub(super) struct Rows<R> {
    /// Positions in `entries`, hashed by their entry's key.
    index: HashTable<u32>,
    entries: Vec<(EncKey, Slot<R>)>,
    hasher: DefaultHashBuilder,
}

impl<R> Default for Rows<R> {
    fn default() -> Self {
        Rows {
            index: HashTable::new(),
            entries: Vec::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }
}

/// The key of the entry at position `i`.
fn key_at<R>(entries: &[(EncKey, Slot<R>)], i: u32) -> &[u8] {
    &entries[i as usize].0
}

impl<R> Rows<R> {
    fn position(&self, key: &[u8]) -> Option<usize> {
        let h = self.hasher.hash_one(key);
        let entries = &self.entries;
        self.index
            .find(h, |&i| key_at(entries, i) == key)
            .map(|&i| i as usize)
    }

    /// The number of keys.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// How many keys fit before the index grows.
    pub(super) fn capacity(&self) -> usize {
        self.index.capacity()
    }

    /// Makes room for `n` more keys.
    pub(super) fn reserve(&mut self, n: usize) {
        let Rows {
            index,
            entries,
            hasher,
        } = self;
        index.reserve(n, |&i| hasher.hash_one(key_at(entries, i)));
        entries.reserve(n);
    }

    /// The bytes the index and the entries' vector hold (the entries' own heap parts, boxed
    /// keys and spilled slots, not included).
    pub(super) fn allocation_size(&self) -> usize {
        self.index.allocation_size()
            + self.entries.capacity() * std::mem::size_of::<(EncKey, Slot<R>)>()
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<&Slot<R>> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    pub(super) fn get_key_value(&self, key: &[u8]) -> Option<(&EncKey, &Slot<R>)> {
        self.position(key).map(|i| {
            let (k, s) = &self.entries[i];
            (k, s)
        })
    }

    /// The key's slot, inserted empty when the key is new: the caller fills it, and calls
    /// [`Rows::remove`] if it leaves it empty.
    pub(super) fn slot_mut(&mut self, key: &[u8]) -> &mut Slot<R> {
        let h = self.hasher.hash_one(key);
        let Rows {
            index,
            entries,
            hasher,
        } = self;
        let at = match index.entry(
            h,
            |&i| key_at(entries, i) == key,
            |&i| hasher.hash_one(key_at(entries, i)),
        ) {
            hashbrown::hash_table::Entry::Occupied(e) => *e.get() as usize,
            hashbrown::hash_table::Entry::Vacant(v) => {
                let at = entries.len();
                let pos = u32::try_from(at).expect("a view holds fewer than 2^32 keys");
                v.insert(pos);
                entries.push((key.into(), Slot::new()));
                at
            }
        };
        &mut entries[at].1
    }

    /// Removes the key and its slot (the last entry moves into its place).
    pub(super) fn remove(&mut self, key: &[u8]) {
        let h = self.hasher.hash_one(key);
        let Rows {
            index,
            entries,
            hasher,
        } = self;
        let Ok(found) = index.find_entry(h, |&i| key_at(entries, i) == key) else {
            return;
        };
        let at = *found.get() as usize;
        found.remove();
        entries.swap_remove(at);
        if let Some((moved, _)) = entries.get(at) {
            let last = entries.len() as u32;
            let h = hasher.hash_one(&**moved);
            if let Some(pos) = index.find_mut(h, |&i| i == last) {
                *pos = at as u32;
            }
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&EncKey, &Slot<R>)> {
        self.entries.iter().map(|(k, s)| (k, s))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Slot<R>> {
        self.entries.iter().map(|(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Vec<u8> {
        format!("k{i}").into_bytes()
    }

    /// Inserts and removes keys in a scrambled order, checking every key against a plain map.
    #[test]
    fn agrees_with_a_map() {
        let mut rows: Rows<u32> = Rows::default();
        let mut map = std::collections::HashMap::new();
        let mut x = 7u64;
        for step in 0..20_000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = (x >> 33) as u32 % 500;
            if (x >> 20).is_multiple_of(3) {
                rows.remove(&key(k));
                map.remove(&k);
            } else {
                let slot = rows.slot_mut(&key(k));
                slot.clear();
                slot.push((step, 1));
                map.insert(k, step);
            }
            if step.is_multiple_of(997) {
                rows.reserve(step as usize % 300);
            }
        }
        assert_eq!(rows.len(), map.len());
        for k in 0..500 {
            let got = rows.get(&key(k)).map(|s| s[0].0);
            assert_eq!(got, map.get(&k).copied(), "key {k}");
        }
        let mut seen: Vec<u32> = rows.values().map(|s| s[0].0).collect();
        let mut want: Vec<u32> = map.values().copied().collect();
        seen.sort();
        want.sort();
        assert_eq!(seen, want);
        for (k, s) in rows.iter() {
            assert_eq!(rows.get_key_value(k).map(|(_, v)| v[0].0), Some(s[0].0));
        }
    }
}
