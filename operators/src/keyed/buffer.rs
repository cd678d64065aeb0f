//! The buffer behind every operator of this module: updates held until their time completes.

use std::collections::BTreeMap;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::{Capability, InputCapability};
use timely::progress::frontier::MutableAntichain;

/// The output handle of these operators: updates `(data, time, diff)` in vectors.
type VecOutput<'a, D, R> =
    OutputBuilderSession<'a, u64, CapacityContainerBuilder<Vec<(D, u64, R)>>>;

/// Updates `(data, diff)` waiting for their time to complete, and one capability at or below
/// all of them.
pub(super) struct Buffer<X, R> {
    pending: BTreeMap<u64, Vec<(X, R)>>,
    held: Option<Capability<u64>>,
    /// Emptied vectors of applied times, reused for new times: a time's vector can hold
    /// megabytes (a batch of 1,000 lines is 16,000 revenue updates at one time), and a fresh one
    /// per time cost page faults on new memory, the largest single cost of an update.
    spare: Vec<Vec<(X, R)>>,
    /// Updates waiting, and the gauge they are reported to (`<operator> waiting`).
    waiting: usize,
    gauge: Option<crate::state_size::Gauge>,
}

impl<X, R> Default for Buffer<X, R> {
    fn default() -> Self {
        Buffer {
            pending: BTreeMap::new(),
            held: None,
            spare: Vec::new(),
            waiting: 0,
            gauge: None,
        }
    }
}

impl<X, R> Buffer<X, R> {
    /// A buffer whose waiting updates (and spare vectors) are reported as `<name> waiting`.
    pub(super) fn named(name: &str) -> Self {
        Buffer {
            gauge: Some(crate::state_size::gauge(&format!("{name} waiting"))),
            ..Buffer::default()
        }
    }

    /// Reports the waiting updates and the bytes of the vectors that hold them or wait to.
    fn report(&self) {
        if let Some(g) = &self.gauge {
            let spare: usize = self.spare.iter().map(Vec::capacity).sum();
            let bytes = (self.waiting + spare) * std::mem::size_of::<(X, R)>();
            g.set(self.waiting, bytes);
        }
    }

    /// Buffers a message's updates by time and keeps a capability for its least time.
    pub(super) fn stash(
        &mut self,
        cap: &InputCapability<u64>,
        port: usize,
        updates: impl Iterator<Item = (X, u64, R)>,
    ) {
        if let Some(cap) = cap.retain_least(port) {
            if self
                .held
                .as_ref()
                .is_none_or(|held| cap.time() < held.time())
            {
                self.held = Some(cap);
            }
        }
        let spare = &mut self.spare;
        for (x, time, diff) in updates {
            self.pending
                .entry(time)
                .or_insert_with(|| spare.pop().unwrap_or_default())
                .push((x, diff));
            self.waiting += 1;
        }
        self.report();
    }

    /// Takes back an applied time's vector (emptied here) for later times; keeps a few.
    pub(super) fn recycle(&mut self, mut v: Vec<(X, R)>) {
        if self.spare.len() < 4 {
            v.clear();
            self.spare.push(v);
        }
        self.report();
    }

    /// The earliest buffered time the frontier has passed, with its updates.
    pub(super) fn next_ready(
        &mut self,
        frontier: &MutableAntichain<u64>,
    ) -> Option<(u64, Vec<(X, R)>)> {
        self.next_ready_all(&[frontier])
    }

    /// The earliest buffered time every input frontier has passed, with its updates.
    pub(super) fn next_ready_all(
        &mut self,
        frontiers: &[&MutableAntichain<u64>],
    ) -> Option<(u64, Vec<(X, R)>)> {
        let entry = self.pending.first_entry()?;
        if frontiers.iter().any(|f| f.less_equal(entry.key())) {
            return None;
        }
        let (time, updates) = entry.remove_entry();
        self.waiting -= updates.len();
        Some((time, updates))
    }

    /// Sends `rows` (drained) at `time`, a time that was buffered; nothing when empty.
    pub(super) fn give<D: Clone + 'static, R2: Clone + 'static>(
        &self,
        output: &mut VecOutput<'_, D, R2>,
        time: u64,
        rows: &mut Vec<(D, R2)>,
    ) {
        if rows.is_empty() {
            return;
        }
        let cap = self.capability(time);
        output
            .session(&cap)
            .give_iterator(rows.drain(..).map(|(x, r)| (x, time, r)));
    }

    /// A capability for a time that was buffered.
    fn capability(&self, time: u64) -> Capability<u64> {
        match self.held.as_ref().filter(|held| *held.time() <= time) {
            Some(held) => held.delayed(&time),
            None => panic!("keyed aggregate: updates at time {time} without a capability"),
        }
    }

    /// Keeps the capability at the earliest buffered time, or drops it when nothing waits.
    pub(super) fn downgrade(&mut self) {
        match self.pending.keys().next() {
            Some(&next) => {
                if let Some(held) = self.held.as_mut().filter(|held| *held.time() < next) {
                    held.downgrade(&next);
                }
            }
            None => self.held = None,
        }
    }
}
