//! [`SumByKey::sum_by_key`]: the sum of each key's differences.

use differential_dataflow::difference::Abelian;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use super::buffer::Buffer;
use super::{push_change, Slot};

/// [`SumByKey::sum_by_key`] on collections of `K` with an abelian difference `R`.
pub trait SumByKey<'scope, K, R> {
    /// The sum of each key's differences, as a row `(key, sum)` while the sum is not zero:
    /// differential's `count()`, kept in a hash map.
    fn sum_by_key(self, name: &str) -> VecCollection<'scope, u64, (K, R), isize>;
}

impl<'scope, K, R> SumByKey<'scope, K, R> for VecCollection<'scope, u64, K, R>
where
    K: ExchangeData + std::hash::Hash,
    R: ExchangeData + Abelian,
{
    fn sum_by_key(self, name: &str) -> VecCollection<'scope, u64, (K, R), isize> {
        let pact = Exchange::new(|u: &(K, u64, R)| u.0.hashed());
        self.inner
            .unary_frontier::<CapacityContainerBuilder<Vec<_>>, _, _, _>(
                pact,
                name,
                move |_capability, _info| {
                    let gauge = crate::state_size::gauge(name);
                    let mut buffer = Buffer::named(name);
                    let mut sums: HashMap<K, Slot<R>> = HashMap::new();
                    // the keys a time touches, with their sums before it
                    let mut touched: Vec<(K, Option<R>)> = Vec::new();
                    let mut rows: Vec<((K, R), isize)> = Vec::new();
                    let mut epoch = 0u64;
                    move |(input, frontier), output| {
                        let port = output.output_index();
                        input.for_each_stamp(|cap, data| {
                            buffer.stash(&cap, port, data.flat_map(|b| b.drain(..)));
                        });
                        while let Some((time, mut batch)) = buffer.next_ready(frontier) {
                            // one lookup per update, no sort (see `fold_by_key`)
                            epoch += 1;
                            for (key, d) in batch.drain(..) {
                                match sums.entry(key) {
                                    Entry::Occupied(mut e) => {
                                        if e.get().epoch != epoch {
                                            let old = e.get().state.clone();
                                            touched.push((e.key().clone(), Some(old)));
                                            e.get_mut().epoch = epoch;
                                        }
                                        e.get_mut().state.plus_equals(&d);
                                    }
                                    Entry::Vacant(e) => {
                                        touched.push((e.key().clone(), None));
                                        e.insert(Slot { state: d, epoch });
                                    }
                                }
                            }
                            buffer.recycle(batch);
                            for (key, old) in touched.drain(..) {
                                let Some(slot) = sums.get(&key) else { continue };
                                let new = (!slot.state.is_zero()).then(|| slot.state.clone());
                                if new.is_none() {
                                    sums.remove(&key);
                                }
                                push_change(&mut rows, key, old, new);
                            }
                            buffer.give(output, time, &mut rows);
                            gauge.set(sums.len(), sums.allocation_size());
                        }
                        buffer.downgrade();
                    }
                },
            )
            .as_collection()
    }
}
