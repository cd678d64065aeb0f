//! Delivery: items leave in `(delivery time, sequence)` order once the simulation clock has
//! passed them (nothing produced later can come before); late records are held back until
//! their stream's newest record is more than 5 s ahead of them.

use super::engine::{Generator, LATENESS_MS};
use super::{GenItem, GenStream, Note};
use shopdiff_schemas::time::Ms;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Items waiting for delivery, smallest `(key, seq)` first. The heap holds small entries; the
/// items sit in a slab.
#[derive(Default)]
pub(super) struct Queue {
    heap: BinaryHeap<Reverse<(Ms, u64, u32)>>,
    slab: Vec<Option<GenItem>>,
    free: Vec<u32>,
}

impl Queue {
    pub fn push(&mut self, key: Ms, seq: u64, item: GenItem) {
        let slot = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(item);
                i
            }
            None => {
                self.slab.push(Some(item));
                (self.slab.len() - 1) as u32
            }
        };
        self.heap.push(Reverse((key, seq, slot)));
    }

    /// `(key, seq)` of the next item.
    pub fn peek(&self) -> Option<(Ms, u64)> {
        self.heap.peek().map(|r| (r.0 .0, r.0 .1))
    }

    pub fn pop(&mut self) -> Option<(Ms, GenItem)> {
        let Reverse((key, _, slot)) = self.heap.pop()?;
        self.free.push(slot);
        self.slab[slot as usize].take().map(|item| (key, item))
    }
}

pub(super) fn stream_ix(s: GenStream) -> usize {
    match s {
        GenStream::Transactions => 0,
        _ => 1,
    }
}

impl Generator {
    fn deliver(&mut self, key: Ms, mut item: GenItem) {
        self.last_sent = self.last_sent.max(key);
        item.sent = self.last_sent;
        let s = item.stream;
        let release =
            s != GenStream::Change && matches!(item.note, Note::Valid | Note::Duplicate { .. });
        if release {
            let i = stream_ix(s);
            self.newest[i] = self.newest[i].max(item.ts);
        }
        self.count(&item);
        self.ready.push_back(item);
        if release {
            let i = stream_ix(s);
            while self.late[i].peek().is_some_and(|l| l.0 <= self.newest[i]) {
                let (_, mut l) = self.late[i].pop().expect("peeked");
                l.sent = self.last_sent;
                self.count(&l);
                self.ready.push_back(l);
            }
        }
    }

    fn count(&mut self, item: &GenItem) {
        let st = &mut self.stats;
        match item.stream {
            GenStream::Transactions => st.transactions += 1,
            GenStream::Behavior => st.behavior += 1,
            GenStream::Change => st.changes += 1,
        }
        match item.note {
            Note::Bad(_) => st.bad += 1,
            Note::Duplicate { .. } => st.duplicates += 1,
            Note::Late => st.late += 1,
            Note::Valid => {}
        }
        if item.stream != GenStream::Change && !matches!(item.note, Note::Bad(_)) {
            st.first_event = st.first_event.min(item.ts);
            st.last_event = st.last_event.max(item.ts);
        }
        st.anomalies = self.anomalies.len() as u64;
    }

    /// The next line in delivery order, or `None` when everything has been delivered.
    pub fn next_item(&mut self) -> Option<GenItem> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            let due = self.out.peek().map(|p| self.finished || p.0 <= self.clock);
            if due == Some(true) {
                let (key, item) = self.out.pop().expect("peeked");
                self.deliver(key, item);
                continue;
            }
            if !self.finished {
                self.step();
                continue;
            }
            // the end: what is still held back as late goes out in threshold order
            let i = match (self.late[0].peek(), self.late[1].peek()) {
                (Some(a), Some(b)) => (b < a) as usize,
                (Some(_), None) => 0,
                (None, Some(_)) => 1,
                (None, None) => {
                    self.stats.anomalies = self.anomalies.len() as u64;
                    return None;
                }
            };
            let (_, mut l) = self.late[i].pop().expect("peeked");
            l.sent = self.last_sent;
            if self.newest[i].saturating_sub(l.ts) <= LATENESS_MS {
                l.note = Note::Valid; // the stream ended before it could fall behind
            }
            self.count(&l);
            return Some(l);
        }
    }
}

impl Iterator for Generator {
    type Item = GenItem;
    fn next(&mut self) -> Option<GenItem> {
        self.next_item()
    }
}
