//! `revenue_hourly` and `revenue_daily` (contract 5).
//!
//! * Inputs: `lines` (accepted order lines, any key), `products` keyed by `product_id`.
//! * Output: [`RevenueRow`] keyed by `(dimension, value, bucket, currency)`.
//! * Cost of one new line: one lookup of its product's cost and one update of its class's
//!   sums in the pricing stage (shared by both granularities); one lookup of its transaction's
//!   key counts for its day, which says for each of the line's 8 keys per granularity whether
//!   the transaction now counts as an order there (its first line for the key) or no longer
//!   does (its last line left); then 16 plain additions of the line's measures, order changes
//!   included, to the keys' sums. O(16). A product's cost change, insert or delete re-prices
//!   that product's classes: O(classes of the product) records of cost and matched lines, 16
//!   key updates each; the lines themselves are not revisited.
//! * State: per product its row's cost and, per class of its lines (hour, currency and the six
//!   dimension values, interned), the summed quantity and line count ([`JoinFold::join_fold`]);
//!   per transaction and day the line count of each key it touches (a 64-bit hash of the key,
//!   compared only among one transaction's keys), retired once the day is below the lateness
//!   horizon; per key its sums ([`SumByKey::sum_by_key`]). No line is kept, no arrangements,
//!   no per-key set of transactions: `orders`, a distinct count, becomes a sum of `+1 / -1`
//!   changes decided where a transaction's lines meet.

use crate::common::{id_hash, AnyLine, Coll};
use differential_dataflow::difference::{Abelian, IsZero, Monoid, Multiply, Semigroup};
use differential_dataflow::AsCollection;
use serde::{Deserialize, Serialize};
use shopdiff_operators::keyed::{JoinFold, JoinFolder, Retire, Rights, ScanByKey, SumByKey};
use shopdiff_schemas::money::Cents;
use shopdiff_schemas::records::Line;
use shopdiff_schemas::rows::{Dimension, RevenueRow};
use shopdiff_schemas::tables::Product;
use shopdiff_schemas::time::{day_start, hour_start, Ms};
use std::hash::{BuildHasher, Hash, Hasher};
use timely::dataflow::operators::vec::Partition;

pub use crate::batch::Granularity;
use shopdiff_schemas::Str;

/// The eight `(dimension, value)` pairs of a line.
pub fn dimensions(l: &Line) -> [(Dimension, Str); 8] {
    dimension_values(
        l.product_id.clone(),
        [
            l.category_id.clone(),
            l.brand.clone(),
            l.country.clone(),
            l.payment_method.clone(),
            l.channel.clone(),
            l.device_type.clone(),
        ],
    )
}

/// The eight `(dimension, value)` pairs of a product and the six other dimension values
/// (category, brand, country, payment method, channel, device type), as a [`Class`] holds them.
fn dimension_values(product: Str, dims: [Str; 6]) -> [(Dimension, Str); 8] {
    let [category, brand, country, payment, channel, device] = dims;
    [
        (Dimension::Total, Str::const_new("all")),
        (Dimension::Category, category),
        (Dimension::Brand, brand),
        (Dimension::Country, country),
        (Dimension::PaymentMethod, payment),
        (Dimension::Channel, channel),
        (Dimension::DeviceType, device),
        (Dimension::Product, product),
    ]
}

// Positions of the counts in [`RevSums`].
const LINES: usize = 0;
const ORDERS: usize = 1;
const ITEMS: usize = 2;
const MATCHED: usize = 3;
// Positions of the money sums in [`RevSums`].
const GROSS: usize = 0;
const DISCOUNT: usize = 1;
const COST: usize = 2;

/// A revenue key's measures, summed together as one difference: counts in 64 bits (a line's
/// quantity is at most 10^6), money in 128 (a line's gross is up to 10^18 cents and a cost
/// times quantity up to 10^22, so their sums need more than an `i64`; contract 4).
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
struct RevSums {
    counts: [i64; 4],
    money: [i128; 3],
}

impl IsZero for RevSums {
    fn is_zero(&self) -> bool {
        self.counts.iter().all(|v| *v == 0) && self.money.iter().all(|v| *v == 0)
    }
}

impl Semigroup for RevSums {
    fn plus_equals(&mut self, rhs: &Self) {
        for (a, b) in self.counts.iter_mut().zip(rhs.counts.iter()) {
            *a += b;
        }
        for (a, b) in self.money.iter_mut().zip(rhs.money.iter()) {
            *a += b;
        }
    }
}

impl Monoid for RevSums {
    fn zero() -> Self {
        RevSums::default()
    }
}

impl Abelian for RevSums {
    fn negate(&mut self) {
        self.counts.iter_mut().for_each(|a| *a = -*a);
        self.money.iter_mut().for_each(|a| *a = -*a);
    }
}

impl Multiply<isize> for RevSums {
    type Output = RevSums;
    fn multiply(mut self, rhs: &isize) -> RevSums {
        self.counts.iter_mut().for_each(|a| *a *= *rhs as i64);
        self.money.iter_mut().for_each(|a| *a *= *rhs as i128);
        self
    }
}

/// A line on its way to the revenue views, priced by its product's current cost; or, when a
/// product's row changes, the re-pricing of that product's lines of one class.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priced<L> {
    /// A line (or its retraction) with its product's cost: `Some(cost)` while a products row
    /// exists, `None` (an unmatched line) otherwise.
    Line(L, Option<Cents>),
    /// Lines of one product and [`Class`] priced at one cost: they add `quantity * cost` to
    /// their keys' `cost` and count `lines` as matched, nothing else. A product's row change
    /// retracts its classes at the old cost and inserts them at the new one.
    Class(Box<ClassLines>),
}

/// What the revenue keys of a line depend on besides its transaction and measures: its hour,
/// currency and dimension values. Lines of one product and class have the same 16 keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClassLines {
    pub product: Str,
    pub hour: Ms,
    pub currency: Str,
    /// category, brand, country, payment method, channel, device type
    pub dims: [Str; 6],
    pub quantity: i64,
    pub lines: i64,
    pub cost: Cents,
}

/// A class as the pricing stage keeps it: the hour and interned strings (currency, then the
/// six dimension values), 40 bytes, with the class's summed quantity and line count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Class {
    hour: Ms,
    ids: [u32; 7],
}

/// Strings to small integers and back, local to one pricing operator: dimension values and
/// currencies repeat across millions of lines, so the classes hold 4-byte ids. It grows with
/// the distinct values seen (as the revenue views' rows do) and never shrinks.
#[derive(Default)]
struct Interner {
    ids: hashbrown::HashMap<Str, u32>,
    names: Vec<Str>,
}

impl Interner {
    fn id(&mut self, s: &Str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        // more than 2^32 distinct values would need hundreds of gigabytes of names first
        let i = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(s.clone());
        self.ids.insert(s.clone(), i);
        i
    }

    fn name(&self, i: u32) -> Str {
        self.names.get(i as usize).cloned().unwrap_or_default()
    }
}

/// The pricing stage's folder: per product, its lines as `(quantity, lines)` sums per class.
#[derive(Default)]
struct Pricer {
    names: Interner,
    classes: usize,
}

impl Pricer {
    fn class(&mut self, l: &Line) -> Class {
        let n = &mut self.names;
        Class {
            hour: hour_start(l.ts),
            ids: [
                n.id(&l.currency),
                n.id(&l.category_id),
                n.id(&l.brand),
                n.id(&l.country),
                n.id(&l.payment_method),
                n.id(&l.channel),
                n.id(&l.device_type),
            ],
        }
    }

    fn lines(&self, product: &Str, c: &Class, sums: (i64, i64), cost: Cents) -> ClassLines {
        let n = &self.names;
        ClassLines {
            product: product.clone(),
            hour: c.hour,
            currency: n.name(c.ids[0]),
            dims: std::array::from_fn(|i| n.name(c.ids[i + 1])),
            quantity: sums.0,
            lines: sums.1,
            cost,
        }
    }
}

impl<L: AnyLine> JoinFolder<Str, L, Cents, Priced<L>> for Pricer {
    type State = hashbrown::HashMap<Class, (i64, i64)>;

    fn left(
        &mut self,
        _product: &Str,
        state: &mut Self::State,
        right: &Rights<Cents>,
        l: L,
        d: isize,
        out: &mut Vec<(Priced<L>, isize)>,
    ) {
        let line: &Line = l.borrow();
        let class = self.class(line);
        let (quantity, lines) = (line.quantity.saturating_mul(d as i64), d as i64);
        match state.entry(class) {
            hashbrown::hash_map::Entry::Occupied(mut e) => {
                let s = e.get_mut();
                s.0 += quantity;
                s.1 += lines;
                if *s == (0, 0) {
                    e.remove();
                    self.classes -= 1;
                }
            }
            hashbrown::hash_map::Entry::Vacant(e) => {
                e.insert((quantity, lines));
                self.classes += 1;
            }
        }
        match right {
            [] => out.push((Priced::Line(l, None), d)),
            [(cost, n)] => out.push((Priced::Line(l, Some(*cost)), d * n)),
            more => {
                for (cost, n) in more {
                    out.push((Priced::Line(l.clone(), Some(*cost)), d * n));
                }
            }
        }
    }

    fn right(
        &mut self,
        product: &Str,
        state: &Self::State,
        old: &Rights<Cents>,
        new: &Rights<Cents>,
        out: &mut Vec<(Priced<L>, isize)>,
    ) {
        for (class, sums) in state {
            for (cost, n) in old {
                let lines = self.lines(product, class, *sums, *cost);
                out.push((Priced::Class(Box::new(lines)), -n));
            }
            for (cost, n) in new {
                let lines = self.lines(product, class, *sums, *cost);
                out.push((Priced::Class(Box::new(lines)), *n));
            }
        }
    }

    fn is_empty(&self, state: &Self::State) -> bool {
        state.is_empty()
    }

    fn heap_bytes(&self) -> usize {
        // a class entry (and its control byte) in its product's map, at the maps' load
        let entry = std::mem::size_of::<(Class, (i64, i64))>() + 1;
        let names = self.names.names.capacity() * std::mem::size_of::<Str>()
            + self.names.ids.allocation_size();
        self.classes * entry * 8 / 7 + names
    }
}

/// Every line with its product's current cost ([`Priced::Line`]), and the re-pricing of a
/// product's lines when its row changes ([`Priced::Class`]). The lines are not kept: per
/// product, only their quantities and counts per class (hour, currency, dimension values),
/// so the state follows the distinct classes, not the lines, and a product's change costs
/// O(its classes), one record per class, not per line.
pub fn priced_lines<'s, L: AnyLine>(
    lines: Coll<'s, L>,
    products: Coll<'s, (Str, Product)>,
) -> Coll<'s, Priced<L>> {
    // products are keyed by id, so a line matches at most one row
    lines
        .map(|l: L| (l.borrow().product_id.clone(), l))
        .join_fold(
            "PricedLines",
            products.map(|(id, p)| (id, p.cost)),
            Pricer::default(),
        )
}

/// Maintains `revenue_hourly` or `revenue_daily`.
pub fn revenue<'s, L: AnyLine>(
    lines: Coll<'s, L>,
    products: Coll<'s, (Str, Product)>,
    g: Granularity,
) -> Coll<'s, RevenueRow> {
    let grans: &'static [Granularity] = match g {
        Granularity::Hourly => &[Granularity::Hourly],
        Granularity::Daily => &[Granularity::Daily],
    };
    revenue_rows(priced_lines(lines, products), grans, None).map(|(_, row)| row)
}

/// `revenue_hourly` and `revenue_daily` from lines priced by [`priced_lines`]: one transaction
/// stage and one sum for both. `retire` (see [`crate::config::ViewsConfig::retire_days`]) lets
/// the transaction stage forget a transaction's day once no line can reach it.
pub fn revenue_views<'s, L: AnyLine>(
    priced: Coll<'s, Priced<L>>,
    retire: Option<Retire<(u64, Ms)>>,
) -> (Coll<'s, RevenueRow>, Coll<'s, RevenueRow>) {
    let rows = revenue_rows(priced, &[Granularity::Hourly, Granularity::Daily], retire);
    // split by granularity (tag 0 hourly, 1 daily) without cloning the rows to both sides
    let mut parts: Vec<Coll<'s, RevenueRow>> = rows
        .inner
        .partition(2, |((g, row), t, d)| (u64::from(g), (row, t, d)))
        .into_iter()
        .map(|s| s.as_collection())
        .collect();
    let daily = parts.swap_remove(Granularity::Daily as usize);
    let hourly = parts.swap_remove(Granularity::Hourly as usize);
    (hourly, daily)
}

/// A revenue key: granularity (as `u8`), dimension, value, bucket, currency.
pub type RevKey = (u8, Dimension, Str, Ms, Str);

/// A revenue key with its 64-bit hash, computed once where a line's keys are made: the
/// transaction stage, the sums' exchange and their hash map then hash 8 bytes instead of two
/// strings. The hash is seeded with a constant, so every worker and process computes the same
/// for the same key (equal keys, equal hashes: `Eq` compares the hash first, then the key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct HashedKey {
    hash: u64,
    key: RevKey,
}

impl HashedKey {
    fn new(key: RevKey) -> HashedKey {
        let hasher = foldhash::fast::FixedState::with_seed(0x5d1f_4e11_0000_0001);
        HashedKey {
            hash: hasher.hash_one(&key),
            key,
        }
    }
}

impl Hash for HashedKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The rows of the granularities `grans`, tagged with theirs (`Granularity as u8`).
fn revenue_rows<'s, L: AnyLine>(
    priced: Coll<'s, Priced<L>>,
    grans: &'static [Granularity],
    retire: Option<Retire<(u64, Ms)>>,
) -> Coll<'s, (u8, RevenueRow)> {
    // a product's re-priced classes: their cost and matched lines, nothing else
    let repriced = priced
        .clone()
        .flat_map(|p: Priced<L>| match p {
            Priced::Class(c) => Some(c),
            Priced::Line(..) => None,
        })
        .explode(move |c: Box<ClassLines>| {
            let mut s = RevSums::default();
            s.counts[MATCHED] = c.lines;
            s.money[COST] = c.quantity as i128 * c.cost as i128;
            let dims = dimension_values(c.product, c.dims);
            let (hour, currency) = (c.hour, c.currency);
            grans.iter().flat_map(move |&g| {
                let currency = currency.clone();
                dims.clone().into_iter().map(move |(dim, v)| {
                    let key: RevKey = (g as u8, dim, v, g.bucket(hour), currency.clone());
                    (HashedKey::new(key), s)
                })
            })
        });
    // a transaction's lines meet per day (a key's bucket is within one day), so the day's
    // state can be retired once no line of it can come
    priced
        .flat_map(|p: Priced<L>| match p {
            Priced::Line(l, cost) => {
                let key = (
                    id_hash(&l.borrow().transaction_id),
                    day_start(l.borrow().ts),
                );
                Some((key, (l, cost)))
            }
            Priced::Class(_) => None,
        })
        .scan_by_key_retiring(
            "RevenueOrders",
            retire,
            move |_tx, keys: &mut TxKeys, (l, cost): (L, Option<Cents>), d, out| {
                let l: &Line = l.borrow();
                let mut s = RevSums::default();
                s.counts[LINES] = 1;
                s.counts[ITEMS] = l.quantity;
                s.money[GROSS] = l.gross() as i128;
                s.money[DISCOUNT] = l.discount as i128;
                if let Some(c) = cost {
                    s.money[COST] = l.quantity as i128 * c as i128;
                    s.counts[MATCHED] = 1;
                }
                let s = s.multiply(&d);
                for &g in grans {
                    let bucket = g.bucket(l.ts);
                    for (dim, v) in dimensions(l) {
                        let key = HashedKey::new((g as u8, dim, v, bucket, l.currency.clone()));
                        let mut m = s;
                        m.counts[ORDERS] = keys.add(key.hash, d) as i64;
                        out.push((key, m));
                    }
                }
            },
            TxKeys::is_empty,
        )
        .concat(repriced)
        .sum_by_key("RevenueSums")
        .map(|(k, s)| {
            let (g, dimension, value, bucket, currency) = k.key;
            let row = RevenueRow {
                dimension,
                value,
                bucket,
                currency,
                orders: s.counts[ORDERS],
                items: s.counts[ITEMS],
                gross: s.money[GROSS],
                discount: s.money[DISCOUNT],
                net: s.money[GROSS] - s.money[DISCOUNT],
                cost: s.money[COST],
                unmatched_lines: s.counts[LINES] - s.counts[MATCHED],
            };
            (g, row)
        })
}

/// One transaction's revenue keys (64-bit hashes) with how many of its lines each has: a small
/// vector searched linearly while the transaction has few keys (most have 16 to 40), a hash map
/// past [`TX_KEYS_SMALL`], so a line of a transaction with thousands of lines still costs
/// O(16), not O(the transaction's keys).
///
/// Keys are told apart by their 64-bit hash alone (the full key is compared in the sums): two
/// keys of one transaction with equal hashes, about one chance in 10^16 for a transaction of
/// 40 keys, would count that transaction's order once for both.
#[derive(Default)]
enum TxKeys {
    #[default]
    Empty,
    Small(Vec<(u64, isize)>),
    Large(hashbrown::HashMap<u64, isize>),
}

/// The most keys a transaction keeps in a vector.
const TX_KEYS_SMALL: usize = 64;

impl TxKeys {
    /// Adds `d` lines to key `h`; returns the change of "this transaction is an order of the
    /// key": `1` when its count became positive, `-1` when it stopped being positive, else 0.
    fn add(&mut self, h: u64, d: isize) -> isize {
        let (before, after) = match self {
            TxKeys::Empty => {
                // a line brings 8 keys per granularity: room for one line of both at once, so
                // a transaction's first lines do not regrow the vector line by line
                let mut v = Vec::with_capacity(16);
                v.push((h, d));
                *self = TxKeys::Small(v);
                (false, d > 0)
            }
            TxKeys::Small(v) => match v.iter().position(|(k, _)| *k == h) {
                Some(i) => {
                    let before = v[i].1 > 0;
                    v[i].1 += d;
                    let after = v[i].1 > 0;
                    if v[i].1 == 0 {
                        v.swap_remove(i);
                    }
                    (before, after)
                }
                None if v.len() < TX_KEYS_SMALL => {
                    v.push((h, d));
                    (false, d > 0)
                }
                None => {
                    let mut m: hashbrown::HashMap<u64, isize> = v.drain(..).collect();
                    m.insert(h, d);
                    *self = TxKeys::Large(m);
                    (false, d > 0)
                }
            },
            TxKeys::Large(m) => {
                let n = m.entry(h).or_insert(0);
                let before = *n > 0;
                *n += d;
                let after = *n > 0;
                if *n == 0 {
                    m.remove(&h);
                }
                (before, after)
            }
        };
        after as isize - before as isize
    }

    fn is_empty(&self) -> bool {
        match self {
            TxKeys::Empty => true,
            TxKeys::Small(v) => v.is_empty(),
            TxKeys::Large(m) => m.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order changes of a transaction's keys match a plain count per key, below and past
    /// the switch to a hash map, with retractions.
    #[test]
    fn tx_keys_report_when_a_key_starts_and_stops_counting() {
        let mut keys = TxKeys::default();
        let mut counts = std::collections::HashMap::<u64, isize>::new();
        let mut step = |keys: &mut TxKeys, h: u64, d: isize| {
            let n = counts.entry(h).or_insert(0);
            let before = *n > 0;
            *n += d;
            let expected = (*n > 0) as isize - before as isize;
            assert_eq!(keys.add(h, d), expected, "key {h}, diff {d}");
        };
        for h in 0..200u64 {
            step(&mut keys, h % 150, 1);
        }
        assert!(matches!(keys, TxKeys::Large(_)));
        for h in 0..200u64 {
            step(&mut keys, h % 150, -1);
        }
        assert!(keys.is_empty());
        step(&mut keys, 7, 1);
        step(&mut keys, 7, 1);
        step(&mut keys, 7, -2);
        assert!(keys.is_empty());
    }
}
