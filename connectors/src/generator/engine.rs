//! The generator's core: the simulation clock, session arrivals, and delivery. Records are
//! produced in event-time order, jittered by up to 2.5 s into delivery order through a small
//! heap, and handed out once no later production can come before them.

use super::changes::{self, Plan};
use super::deliver::{stream_ix, Queue};
use super::records::Frags;
use super::rng::Rng;
use super::season::events_per_hour;
use super::session::Session;
use super::world::World;
use super::{Anomaly, GenConfig, GenError, GenItem, GenStats, GenStream, InitialTables, Note};
use shopdiff_schemas::time::{Ms, HOUR_MS};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Behavior events per session, on average (calibrates arrivals to the seed's hourly volumes).
const EVENTS_PER_SESSION: f64 = 5.4;
/// Records of a stream are delivered at most this much behind its newest record, unless late.
pub const MAX_DISORDER_MS: Ms = 2_499;
/// The allowed lateness a late record is beyond.
pub const LATENESS_MS: Ms = 5_000;

/// Counters for ids and ordering.
#[derive(Debug, Default)]
pub(super) struct Ids {
    pub session: u64,
    pub txn: u64,
    pub event: u64,
    pub seq: u64,
}

/// Per-record probabilities of delivery noise.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct NoiseP {
    pub bad: f64,
    pub dup: f64,
    pub late: f64,
}

/// The workload generator as an iterator of [`GenItem`]s in delivery order.
pub struct Generator {
    pub(super) cfg: GenConfig,
    pub(super) w: World,
    pub(super) frags: Frags,
    /// Traffic decisions (sessions, orders).
    pub(super) rng: Rng,
    /// Delivery noise: jitter, bad records, duplicates, late records.
    pub(super) noise: Rng,
    /// Fraud patterns.
    pub(super) frng: Rng,
    /// Table changes.
    pub(super) crng: Rng,
    pub(super) clock: Ms,
    next_arrival: Ms,
    rate_hour: Ms,
    mean_gap: f64,
    sessions: BinaryHeap<Reverse<(Ms, u64, u32)>>,
    pub(super) slots: Vec<Session>,
    /// Set by a session step that continues: when its next step is due.
    pub(super) reschedule: Option<Ms>,
    free: Vec<u32>,
    pub(super) out: Queue,
    pub(super) late: [Queue; 2],
    pub(super) ready: VecDeque<GenItem>,
    pub(super) newest: [Ms; 2],
    pub(super) last_sent: Ms,
    pub(super) produced: u64,
    pub(super) finished: bool,
    pub(super) ids: Ids,
    pub(super) anomalies: Vec<Anomaly>,
    tables: InitialTables,
    pub(super) plan: Plan,
    pub(super) p: NoiseP,
    /// Bad records made so far per event stream (the first ones cycle through every reason).
    pub(super) bad_made: [u64; 2],
    /// The rule whose turn it is, and the patterns made per rule.
    pub(super) pattern_turn: u64,
    pub(super) rule_made: [u64; 4],
    pool: Vec<String>,
    pub(super) stats: GenStats,
}

impl Generator {
    /// A generator for `cfg` (checked by [`GenConfig::validate`]): builds the user base, the
    /// catalog and the initial tables; records are made as the iterator is pulled.
    pub fn new(cfg: GenConfig) -> Result<Generator, GenError> {
        cfg.validate()?;
        let mut w = World::build(&cfg);
        let frags = Frags::build();
        let mut crng = Rng::new(cfg.seed, 13);
        let tables = changes::initial_tables(&mut w, &cfg, &mut crng);
        let rest = (1.0 - cfg.bad_rate - cfg.duplicate_rate).max(0.1);
        let p = NoiseP {
            bad: cfg.bad_rate / rest,
            dup: cfg.duplicate_rate / rest,
            late: cfg.late_rate / rest,
        };
        let stats = GenStats {
            products: tables.products.len() as u64,
            customers: tables.customers.len() as u64,
            ip_reputation: tables.ip_reputation.len() as u64,
            bad: tables
                .products
                .iter()
                .chain(&tables.customers)
                .chain(&tables.ip_reputation)
                .filter(|l| matches!(l.note, Note::Bad(_)))
                .count() as u64,
            first_event: Ms::MAX,
            last_event: Ms::MIN,
            ..GenStats::default()
        };
        let plan = Plan::new(&cfg);
        Ok(Generator {
            rng: Rng::new(cfg.seed, 10),
            noise: Rng::new(cfg.seed, 11),
            frng: Rng::new(cfg.seed, 12),
            crng,
            clock: cfg.start,
            next_arrival: cfg.start,
            rate_hour: Ms::MIN,
            mean_gap: 1.0,
            sessions: BinaryHeap::new(),
            slots: Vec::new(),
            reschedule: None,
            free: Vec::new(),
            out: Queue::default(),
            late: [Queue::default(), Queue::default()],
            ready: VecDeque::new(),
            newest: [Ms::MIN; 2],
            last_sent: Ms::MIN,
            produced: 0,
            finished: cfg.records == 0,
            ids: Ids::default(),
            anomalies: Vec::new(),
            tables,
            plan,
            p,
            bad_made: [0; 2],
            pattern_turn: 0,
            rule_made: [0; 4],
            pool: Vec::new(),
            stats,
            w,
            frags,
            cfg,
        })
    }

    pub fn config(&self) -> &GenConfig {
        &self.cfg
    }

    /// The initial rows of `products`, `customers` and `ip_reputation`.
    pub fn tables(&self) -> &InitialTables {
        &self.tables
    }

    /// The fraud patterns injected so far (all of them once the iterator is exhausted).
    pub fn anomalies(&self) -> &[Anomaly] {
        &self.anomalies
    }

    /// Counts of the lines delivered so far (`elapsed` and `bytes` are left to the caller).
    pub fn stats(&self) -> &GenStats {
        &self.stats
    }

    /// Hands an item's buffer back for reuse (optional; saves an allocation per record).
    pub fn recycle(&mut self, item: GenItem) {
        if self.pool.len() < 256 {
            self.pool.push(item.json);
        }
    }

    /// An empty buffer for a record.
    pub(super) fn buf(&mut self) -> String {
        match self.pool.pop() {
            Some(mut s) => {
                s.clear();
                s
            }
            None => String::with_capacity(768),
        }
    }

    /// Event records that may still be produced.
    pub(super) fn room(&self) -> u64 {
        self.cfg.records.saturating_sub(self.produced)
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.ids.seq += 1;
        self.ids.seq
    }

    /// Queues an item for delivery at simulated time `key` (never before the clock).
    pub(super) fn push_out(
        &mut self,
        key: Ms,
        stream: GenStream,
        ts: Ms,
        json: String,
        note: Note,
    ) {
        debug_assert!(key >= self.clock, "{key} < {}", self.clock);
        if stream != GenStream::Change {
            self.produced += 1;
        }
        let seq = self.next_seq();
        let item = GenItem {
            stream,
            ts,
            sent: key,
            json,
            note,
        };
        self.out.push(key, seq, item);
    }

    /// A delivery delay: mostly small, sometimes up to [`MAX_DISORDER_MS`].
    pub(super) fn jitter(&mut self) -> Ms {
        match self.noise.below(100) {
            0..=54 => self.noise.range(0, 50),
            55..=89 => self.noise.range(50, 800),
            _ => self.noise.range(800, MAX_DISORDER_MS),
        }
    }

    /// Produces valid records sharing one event time and delivery slot (a behavior event, or
    /// the lines of one order), adding delivery noise when `noisy`.
    pub(super) fn produce(
        &mut self,
        stream: GenStream,
        ts: Ms,
        jsons: impl IntoIterator<Item = String>,
        noisy: bool,
    ) {
        let key = ts + self.jitter();
        for json in jsons {
            if noisy && self.noise.chance(self.p.late) {
                let threshold = ts + LATENESS_MS + self.noise.range(500, 30_000);
                let seq = self.next_seq();
                self.produced += 1;
                let item = GenItem {
                    stream,
                    ts,
                    sent: threshold,
                    json,
                    note: Note::Late,
                };
                self.late[stream_ix(stream)].push(threshold, seq, item);
                continue;
            }
            let dup = noisy && self.room() > 1 && self.noise.chance(self.p.dup);
            let bad = noisy && self.room() > 1 + dup as u64 && self.noise.chance(self.p.bad);
            let copy = (dup || bad).then(|| json.clone());
            self.push_out(key, stream, ts, json, Note::Valid);
            if let Some(orig) = copy {
                if dup {
                    let (text, changed) = super::defects::duplicate(self, stream, &orig);
                    let later = key + self.noise.range(0, (ts + MAX_DISORDER_MS - key).max(0));
                    self.push_out(later, stream, ts, text, Note::Duplicate { changed });
                }
                if bad {
                    let (text, reason) = super::defects::bad_record(self, stream, &orig);
                    let k = key + self.noise.range(0, 300);
                    self.push_out(k, stream, ts, text, Note::Bad(reason));
                }
            }
        }
    }

    /// Starts a session at the clock's time.
    pub(super) fn add_session(&mut self, s: Session, first_step: Ms) {
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = s;
                i
            }
            None => {
                self.slots.push(s);
                (self.slots.len() - 1) as u32
            }
        };
        self.schedule(slot, first_step);
    }

    pub(super) fn schedule(&mut self, slot: u32, at: Ms) {
        let seq = self.next_seq();
        self.sessions.push(Reverse((at, seq, slot)));
    }

    pub(super) fn end_session(&mut self, slot: u32) {
        self.free.push(slot);
    }

    /// Simulated time that `records` more event records are expected to take at the current
    /// volume (behavior events plus about one transaction line per ten).
    pub(super) fn expected_ms(&self, records: u64) -> Ms {
        (records as f64 * self.mean_gap / (EVENTS_PER_SESSION * 1.1)) as Ms
    }

    fn update_rate(&mut self) {
        let hour = self.clock.div_euclid(HOUR_MS);
        if hour != self.rate_hour {
            self.rate_hour = hour;
            let per_hour = events_per_hour(self.clock) * self.cfg.volume / EVENTS_PER_SESSION;
            self.mean_gap = HOUR_MS as f64 / per_hour.max(1e-6);
        }
    }

    /// Advances the simulation by one action: a session step or a session arrival.
    pub(super) fn step(&mut self) {
        if self.room() == 0 {
            self.finished = true;
            return;
        }
        changes::due(self);
        let next_step = self.sessions.peek().map(|r| (r.0).0);
        match next_step {
            Some(t) if t <= self.next_arrival => {
                let Reverse((t, _, slot)) = *self.sessions.peek().expect("peeked");
                self.clock = self.clock.max(t);
                self.step_session(slot, self.clock);
                // the session's next step replaces it at the top of the heap (one sift)
                match self.reschedule.take() {
                    Some(at) => {
                        let seq = self.next_seq();
                        if let Some(mut top) = self.sessions.peek_mut() {
                            *top = Reverse((at, seq, slot));
                        }
                    }
                    None => {
                        self.sessions.pop();
                    }
                }
            }
            _ => {
                self.clock = self.clock.max(self.next_arrival);
                self.update_rate();
                let gap = self.rng.exp(self.mean_gap).max(1.0) as Ms;
                self.next_arrival = self.clock + gap;
                self.arrive();
            }
        }
    }

    /// A new visit: usually a normal session, sometimes a fraud pattern.
    fn arrive(&mut self) {
        if self.cfg.anomaly_rate > 0.0
            && self.frng.chance(self.cfg.anomaly_rate)
            && super::fraud::start_pattern(self)
        {
            return;
        }
        self.start_session();
    }
}
