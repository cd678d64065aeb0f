//! Shared types of the dataflows: the collection alias and a summable vector of measures.

use differential_dataflow::difference::{Abelian, IsZero, Monoid, Multiply, Semigroup};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use shopdiff_operators::keyed::Fold;
use shopdiff_schemas::records::Line;

/// A 64-bit hash of an identifier (transaction or session id) that is only compared for
/// equality (distinct counts), so operators carry a `u64` instead of a string.
pub fn id_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// A multiplicity, as a [`Fold`] of `()` values: with [`Keyed::fold_by_key`] and
/// [`Count::present`], the distinct keys of a collection (differential's `distinct`, kept in
/// a hash map).
///
/// [`Keyed::fold_by_key`]: shopdiff_operators::keyed::Keyed::fold_by_key
#[derive(Default)]
pub struct Count(pub isize);

impl Count {
    /// `Some(())` while the key is present (a positive multiplicity).
    pub fn present(&self) -> Option<()> {
        (self.0 > 0).then_some(())
    }
}

impl Fold<()> for Count {
    fn add(&mut self, _: &(), diff: isize) {
        self.0 += diff;
    }
    fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

/// An order line as the views take it: a `Line` (tests, examples, the benches' single views)
/// or an `Arc<Line>` ([`crate::views::all_views`]: a dozen consumers of one collection then
/// each clone a pointer, not a 320-byte record, and the lines kept in revenue's join state and
/// moved through its exchanges are 8 bytes). Serialized as the line itself between processes.
pub trait AnyLine:
    std::borrow::Borrow<Line> + differential_dataflow::ExchangeData + std::hash::Hash
{
}
impl<T> AnyLine for T where
    T: std::borrow::Borrow<Line> + differential_dataflow::ExchangeData + std::hash::Hash
{
}

/// A collection of `D` in shopdiff's logical time (milliseconds, on tick boundaries).
pub type Coll<'s, D> = VecCollection<'s, u64, D, isize>;

/// Seven measures summed together as one difference, so a `count()` gives all of them per key in
/// one arrangement.
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Sums7(pub [isize; 7]);

impl Sums7 {
    pub fn zero() -> Self {
        Sums7([0; 7])
    }
    /// One measure set, the others zero.
    pub fn unit(i: usize, v: isize) -> Self {
        let mut s = Sums7::zero();
        s.0[i] = v;
        s
    }
}

impl IsZero for Sums7 {
    fn is_zero(&self) -> bool {
        self.0.iter().all(|v| *v == 0)
    }
}

impl Semigroup for Sums7 {
    fn plus_equals(&mut self, rhs: &Self) {
        for (a, b) in self.0.iter_mut().zip(rhs.0.iter()) {
            *a += b;
        }
    }
}

impl Monoid for Sums7 {
    fn zero() -> Self {
        Sums7::zero()
    }
}

impl Abelian for Sums7 {
    fn negate(&mut self) {
        for a in self.0.iter_mut() {
            *a = -*a;
        }
    }
}

impl Multiply<isize> for Sums7 {
    type Output = Sums7;
    fn multiply(mut self, rhs: &isize) -> Sums7 {
        for a in self.0.iter_mut() {
            *a *= rhs;
        }
        self
    }
}

/// A sum of money in cents as a difference (`i128`: sums of accepted lines pass an `i64`,
/// contract 4), multiplied by a collection's `isize` multiplicities.
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct MoneySum(pub i128);

impl IsZero for MoneySum {
    fn is_zero(&self) -> bool {
        self.0 == 0
    }
}

impl Semigroup for MoneySum {
    fn plus_equals(&mut self, rhs: &Self) {
        self.0 += rhs.0;
    }
}

impl Monoid for MoneySum {
    fn zero() -> Self {
        MoneySum(0)
    }
}

impl Abelian for MoneySum {
    fn negate(&mut self) {
        self.0 = -self.0;
    }
}

impl Multiply<isize> for MoneySum {
    type Output = MoneySum;
    fn multiply(self, rhs: &isize) -> MoneySum {
        MoneySum(self.0 * *rhs as i128)
    }
}
