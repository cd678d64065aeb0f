//! Reads: a selection (key, filters, order, paging) evaluated against a view's rows at an
//! `as_of`, within a deadline.

use super::fold::add_row;
use super::key::{enc_keyvals, key_of, EncKey, Key, KeyVal};
use super::view::{Inner, Slot, ViewStore};
use shopdiff_schemas::rows::{Row, Value};

/// A read's selection: key lookup, column filters, order, paging.
#[derive(Debug, Clone, Default)]
pub struct Select {
    pub key: Option<Key>,
    /// `(column index, wanted value as JSON text)`.
    pub filters: Vec<(usize, String)>,
    pub order_by: Option<usize>,
    pub desc: bool,
    pub limit: Option<usize>,
    pub offset: usize,
    /// Keyset paging: only rows whose key is after this one (key order).
    pub after: Option<Key>,
    /// Give up past this instant ([`ReadError::Deadline`]): a read's cost is bounded.
    pub deadline: Option<std::time::Instant>,
}

/// Why a read has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The history no longer holds the `as_of` asked for.
    Gone,
    /// The read ran past its deadline.
    Deadline,
}

/// Counts a read's steps and looks at the clock at the first and every 1024th.
struct Budget {
    deadline: Option<std::time::Instant>,
    steps: u32,
}

impl Budget {
    fn new(deadline: Option<std::time::Instant>) -> Self {
        Budget { deadline, steps: 0 }
    }

    fn step(&mut self) -> Result<(), ReadError> {
        self.steps = self.steps.wrapping_add(1);
        match self.deadline {
            Some(d) if self.steps % 1024 == 1 && std::time::Instant::now() >= d => {
                Err(ReadError::Deadline)
            }
            _ => Ok(()),
        }
    }
}

/// The text a filter compares with: the value as JSON shows it, without quotes.
pub fn filter_text(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Str(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Money(c) => shopdiff_schemas::money::format_cents(*c),
        Value::Time(t) => shopdiff_schemas::time::format_rfc3339(*t),
        Value::Ratio(v, p) => format!("{}", *v as f64 / 10f64.powi(*p as i32)),
        Value::Number(n) => format!("{n}"),
        Value::Bool(b) => b.to_string(),
    }
}

fn matches(row: &[Value], filters: &[(usize, String)]) -> bool {
    filters.iter().all(|(i, want)| {
        let v = &row[*i];
        let text = filter_text(v);
        if text == *want {
            return true;
        }
        // numbers compare as numbers: `monetary=12.3` matches 12.30
        match (v.as_f64(), want.parse::<f64>()) {
            (Some(a), Ok(b)) => a == b,
            _ => false,
        }
    })
}

fn cmp_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        // nulls last in ascending order
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Time(x), Value::Time(y)) | (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Money(x), Value::Money(y)) => x.cmp(y),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => filter_text(a).cmp(&filter_text(b)),
        },
    }
}

/// A row ordered for `order_by` (then by key, so the order is total and stable).
struct Ranked {
    v: Vec<Value>,
    col: usize,
    key_len: usize,
    desc: bool,
}

impl Ranked {
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        let o = cmp_values(&self.v[self.col], &other.v[self.col]);
        let o = if self.desc { o.reverse() } else { o };
        o.then_with(|| {
            self.v[..self.key_len]
                .iter()
                .map(KeyVal::of)
                .cmp(other.v[..other.key_len].iter().map(KeyVal::of))
        })
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.order(other).is_eq()
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order(other)
    }
}

/// An answer: the rows' values (all columns, in column order) and how many matched.
#[derive(Debug, Clone)]
pub struct Answer {
    pub rows: Vec<Vec<Value>>,
    pub total: usize,
}

impl<R: Row> ViewStore<R> {
    /// Answers a selection (see [`AnyView::select_within`](super::AnyView::select_within)).
    pub(super) fn select_rows(
        &self,
        sel: &Select,
        as_of: u64,
        current: u64,
    ) -> Result<Answer, ReadError> {
        let mut budget = Budget::new(sel.deadline);
        let after = sel.after.as_ref().map(|k| enc_keyvals(k));
        let mut g = self.inner.lock();
        // a read of one key at the current `as_of` adds the staged updates of its key; any
        // other read merges them first
        let key = sel
            .key
            .as_ref()
            .filter(|_| as_of >= current)
            .map(|k| enc_keyvals(k));
        let staged_key = match &key {
            Some(k) if !g.staged.is_empty() => self.key_slot(&g, k),
            Some(_) => None,
            None => {
                self.merge_locked(&mut g);
                None
            }
        };
        let g = g;
        let t = as_of as i64;
        let mut out: Vec<Vec<Value>> = Vec::new();
        let mut total = None;
        if as_of >= current {
            let mut slots: Vec<(&EncKey, &Slot<R>)> = match &key {
                Some(_) if !g.staged.is_empty() => {
                    staged_key.iter().map(|(k, slot)| (k, slot)).collect()
                }
                Some(k) => g.rows.get_key_value(k).into_iter().collect(),
                None => g.rows.iter().collect(),
            };
            if let Some(a) = &after {
                slots.retain(|(k, _)| **k > *a);
            }
            let want = sel.limit.map(|l| sel.offset.saturating_add(l));
            if let (Some(i), Some(k)) = (sel.order_by, want) {
                // top-k without materialising every row: a bounded heap whose top is the
                // worst row kept so far (ties go by key, so the order does not depend on the
                // map's)
                let key_len = self.def.key_len;
                let mut heap: std::collections::BinaryHeap<Ranked> = Default::default();
                let mut total = 0usize;
                for (r, n) in slots.into_iter().flat_map(|(_, slot)| slot) {
                    budget.step()?;
                    let v = r.values(t);
                    if !matches(&v, &sel.filters) {
                        continue;
                    }
                    for _ in 0..(*n).max(0) {
                        total += 1;
                        let item = Ranked {
                            v: v.clone(),
                            col: i,
                            key_len,
                            desc: sel.desc,
                        };
                        if heap.len() < k {
                            heap.push(item);
                        } else if heap.peek().is_some_and(|top| item < *top) {
                            heap.pop();
                            heap.push(item);
                        }
                    }
                }
                let rows: Vec<Vec<Value>> = heap
                    .into_sorted_vec()
                    .into_iter()
                    .skip(sel.offset)
                    .map(|x| x.v)
                    .collect();
                return Ok(Answer { rows, total });
            }
            // key order; when nothing filters or reorders, only the first `want` keys sorted
            // (every key holds at least one row)
            let head = want.filter(|w| {
                *w > 0 && *w < slots.len() && sel.filters.is_empty() && sel.order_by.is_none()
            });
            if let Some(w) = head {
                total = Some(
                    slots
                        .iter()
                        .flat_map(|(_, slot)| slot.iter())
                        .map(|(_, n)| (*n).max(0) as usize)
                        .sum(),
                );
                slots.select_nth_unstable_by(w - 1, |a, b| a.0.cmp(b.0));
                slots.truncate(w);
            }
            slots.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (r, n) in slots.into_iter().flat_map(|(_, slot)| slot) {
                budget.step()?;
                let v = r.values(t);
                if matches(&v, &sel.filters) {
                    for _ in 0..(*n).max(0) {
                        out.push(v.clone());
                    }
                }
            }
        } else {
            let rows = self.rows_at(&g, as_of, current).ok_or(ReadError::Gone)?;
            drop(g);
            for r in rows {
                budget.step()?;
                let v = r.values(t);
                let key_ok = sel.key.as_ref().is_none_or(|k| {
                    v[..self.def.key_len]
                        .iter()
                        .map(KeyVal::of)
                        .eq(k.iter().cloned())
                });
                let after_ok = sel.after.as_ref().is_none_or(|a| {
                    v[..self.def.key_len]
                        .iter()
                        .map(KeyVal::of)
                        .cmp(a.iter().cloned())
                        .is_gt()
                });
                if key_ok && after_ok && matches(&v, &sel.filters) {
                    out.push(v);
                }
            }
            out.sort_by(|a, b| {
                a[..self.def.key_len]
                    .iter()
                    .map(KeyVal::of)
                    .cmp(b[..self.def.key_len].iter().map(KeyVal::of))
            });
        }
        let total = total.unwrap_or(out.len());
        if let Some(i) = sel.order_by {
            let desc = sel.desc;
            let by = |a: &Vec<Value>, b: &Vec<Value>| {
                let o = cmp_values(&a[i], &b[i]);
                if desc {
                    o.reverse()
                } else {
                    o
                }
            };
            let want = sel.offset.saturating_add(sel.limit.unwrap_or(usize::MAX));
            if want < out.len() / 2 && want > 0 {
                // top-k: partition then sort only the head
                out.select_nth_unstable_by(want - 1, by);
                out.truncate(want);
            }
            out.sort_by(by);
        }
        let rows: Vec<Vec<Value>> = out
            .into_iter()
            .skip(sel.offset)
            .take(sel.limit.unwrap_or(usize::MAX))
            .collect();
        Ok(Answer { rows, total })
    }

    /// The rows of key `key` (encoded) at the current `as_of`: the merged rows with the staged
    /// updates of that key added (a scan of the staged updates, which are one update's worth).
    fn key_slot(&self, g: &Inner<R>, key: &[u8]) -> Option<(EncKey, Slot<R>)> {
        let mut slot: Slot<R> = g.rows.get(key).cloned().unwrap_or_default();
        let mut k = Vec::with_capacity(64);
        let staged = &g.staged[g.merged.min(g.staged.len())..];
        // one pass for the key's updates (usually a `-old, +new` pair), then insertions
        // before retractions
        let mut mine: Vec<&(R, u64, isize)> = Vec::new();
        for u in staged {
            key_of(&self.def, &u.0, &mut k);
            if k == key {
                mine.push(u);
            }
        }
        let ins = mine.iter().filter(|u| u.2 > 0);
        for (r, _, d) in ins.chain(mine.iter().filter(|u| u.2 < 0)) {
            add_row(&mut slot, r, *d);
        }
        (!slot.is_empty()).then(|| (key.into(), slot))
    }
}
