//! The simulated world: the user base, the catalog and the IP addresses, with the state of the
//! three tables (`customers`, `products`, `ip_reputation`) as the generator changes them.

use super::data::{self, CATEGORIES, CITIES, DEVICES, PAYMENTS};
use super::fmt::{self, push_id};
pub use super::ips::{ip_addr, push_ip, Ip, Pools};
use super::rng::Rng;
use super::GenConfig;
use shopdiff_schemas::time::{Ms, DAY_MS, HOUR_MS};

/// Whether an entity has a row in its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowState {
    Absent,
    Present,
    Deleted,
}

/// Orders a user placed recently, for keeping normal users below the fraud thresholds.
pub const RECENT: usize = 6;

#[derive(Debug, Clone)]
pub struct User {
    pub city: u16,
    pub currency: u8,
    pub device: u8,
    pub payment: u8,
    /// Index of the home IP in [`World::ips`].
    pub ip: u32,
    pub fav: [u8; 2],
    pub row: RowState,
    pub registered: Ms,
    pub tier: u8,
    /// The user is in a session or reserved by a fraud pattern until then.
    pub busy_until: Ms,
    /// `(event time, net cents)` of the user's last orders (ring).
    pub recent: [(Ms, i64); RECENT],
    pub recent_head: u8,
}

impl User {
    /// Time of the latest order, or `Ms::MIN`.
    pub fn last_order(&self) -> Ms {
        self.recent.iter().map(|r| r.0).max().unwrap_or(Ms::MIN)
    }
    pub fn push_order(&mut self, ts: Ms, cents: i64) {
        self.recent[self.recent_head as usize] = (ts, cents);
        self.recent_head = ((self.recent_head as usize + 1) % RECENT) as u8;
    }
    /// `(orders, net cents)` with event time in `(t - window, t]`.
    pub fn since(&self, t: Ms, window: Ms) -> (usize, i64) {
        self.recent
            .iter()
            .filter(|r| r.0 > t - window && r.0 != Ms::MIN)
            .fold((0, 0), |(n, c), r| (n + 1, c + r.1))
    }
}

#[derive(Debug, Clone)]
pub struct Product {
    pub cat: u8,
    /// Global subcategory index (see [`World::subs`]).
    pub sub: u16,
    pub has_sub: bool,
    pub brand: u8,
    pub name: String,
    /// USD cents.
    pub price: i64,
    pub cost: i64,
    pub inventory: i64,
    pub row: RowState,
    pub updated: Option<Ms>,
    /// The line's product fields, pre-rendered: `"product_id":..,...,"brand":"..",`.
    pub frag: String,
}

/// Fixed id widths, sized from the config.
#[derive(Debug, Clone, Copy)]
pub struct Widths {
    pub user: usize,
    pub product: usize,
    pub session: usize,
    pub txn: usize,
    pub event: usize,
}

fn digits(n: u64) -> usize {
    n.max(1).ilog10() as usize + 1
}

pub struct World {
    pub seed: u64,
    pub start: Ms,
    pub users: Vec<User>,
    pub products: Vec<Product>,
    /// Products without an initial row (marketplace items, launches inserted later).
    pub extras: Vec<u32>,
    /// `(category, subcategory)` of each global subcategory.
    pub subs: Vec<(u8, u8)>,
    pub by_sub: Vec<Vec<u32>>,
    pub ips: Vec<Ip>,
    pub pools: Pools,
    pub currencies: Vec<String>,
    pub widths: Widths,
    user_perm: (u64, u64),
}

pub const STREAM_WORLD: u64 = 1;
pub const STREAM_CUSTOMER: u64 = 2;
pub const STREAM_PRODUCT: u64 = 3;
pub const STREAM_IP: u64 = 4;

impl World {
    pub fn build(cfg: &GenConfig) -> World {
        let mut rng = Rng::new(cfg.seed, STREAM_WORLD);
        let n_extra = (cfg.products / 30).max(3);
        let widths = Widths {
            user: digits(cfg.users as u64).max(6),
            product: digits((cfg.products + n_extra * 2) as u64).max(5),
            session: digits(cfg.records).max(9),
            txn: digits(cfg.records).max(9),
            event: digits(cfg.records).max(10),
        };
        let mut subs = Vec::new();
        for (c, cat) in CATEGORIES.iter().enumerate() {
            for s in 0..cat.subs.len() {
                subs.push((c as u8, s as u8));
            }
        }
        let mut w = World {
            seed: cfg.seed,
            start: cfg.start,
            users: Vec::with_capacity(cfg.users),
            products: Vec::new(),
            extras: Vec::new(),
            by_sub: vec![Vec::new(); subs.len()],
            subs,
            ips: Vec::new(),
            pools: Pools {
                risky: Vec::new(),
                turning: Vec::new(),
                carrier: Vec::new(),
            },
            currencies: cfg.currencies.clone(),
            widths,
            user_perm: (1, 0),
        };
        w.build_products(&mut rng, cfg.products, n_extra);
        w.build_users(&mut rng, cfg.users);
        let expected_patterns = (cfg.records as f64 / 6.0 * cfg.anomaly_rate) as usize;
        w.build_pools(&mut rng, 8 + expected_patterns / 2);
        w
    }

    fn build_products(&mut self, rng: &mut Rng, n: usize, n_extra: usize) {
        let cat_w: Vec<u32> = CATEGORIES.iter().map(|c| c.weight).collect();
        for i in 0..n + n_extra {
            let cat = rng.weighted(&cat_w);
            let c = &CATEGORIES[cat];
            let s = rng.index(c.subs.len());
            let brand = rng.index(c.brands.len());
            let name = product_name(rng, c.brands[brand], &c.subs[s]);
            let price = shop_price(rng, &c.subs[s]);
            let cost = price * rng.range(35, 78) / 100;
            let inventory = match rng.below(20) {
                0 => 0,
                1 | 2 => rng.range(1, 9),
                _ => rng.range(10, 2000),
            };
            let global_sub = self.subs.iter().position(|x| *x == (cat as u8, s as u8));
            let global_sub = global_sub.unwrap_or(0);
            let extra = i >= n;
            let mut p = Product {
                cat: cat as u8,
                sub: global_sub as u16,
                has_sub: !rng.chance(0.05),
                brand: brand as u8,
                name,
                price,
                cost,
                inventory,
                row: if extra {
                    RowState::Absent
                } else {
                    RowState::Present
                },
                updated: None,
                frag: String::new(),
            };
            p.frag = self.product_frag(i as u32, &p);
            self.by_sub[global_sub].push(i as u32);
            if extra {
                self.extras.push(i as u32);
            }
            self.products.push(p);
        }
    }

    fn product_frag(&self, i: u32, p: &Product) -> String {
        let c = &CATEGORIES[p.cat as usize];
        let mut s = String::with_capacity(160);
        fmt::key(&mut s, "product_id");
        s.push('"');
        push_id(&mut s, "P", i as u64, self.widths.product);
        s.push_str("\",");
        fmt::kv_str(&mut s, "product_name", &p.name);
        fmt::kv_str(&mut s, "category_id", c.id);
        fmt::kv_str(&mut s, "category_name", c.name);
        if p.has_sub {
            fmt::kv_str(
                &mut s,
                "subcategory",
                c.subs[self.subs[p.sub as usize].1 as usize].name,
            );
        } else if i.is_multiple_of(2) {
            s.push_str("\"subcategory\":null,");
        }
        fmt::kv_str(&mut s, "brand", c.brands[p.brand as usize]);
        s
    }

    /// Adds a product (a launch inserted during the stream) and returns its index.
    pub fn add_product(&mut self, rng: &mut Rng) -> u32 {
        let template = self.products[rng.index(self.products.len())].clone();
        let i = self.products.len() as u32;
        let mut p = template;
        p.name = format!("{} New", p.name);
        p.row = RowState::Absent;
        p.frag = self.product_frag(i, &p);
        self.by_sub[p.sub as usize].push(i);
        self.products.push(p);
        i
    }

    fn build_users(&mut self, rng: &mut Rng, n: usize) {
        let city_w: Vec<u32> = CITIES.iter().map(|c| c.weight).collect();
        let dev_w: Vec<u32> = DEVICES.iter().map(|d| d.weight).collect();
        let cat_w: Vec<u32> = CATEGORIES.iter().map(|c| c.weight).collect();
        for u in 0..n {
            let city = rng.weighted(&city_w);
            let cc = CITIES[city].country;
            let local = data::country(cc).currency;
            let currency = self.currencies.iter().position(|c| c == local).unwrap_or(0);
            let region = region(cc);
            let pay_w: Vec<u32> = PAYMENTS.iter().map(|p| p.weights[region]).collect();
            let roll = rng.below(1000);
            let (row, registered) = if roll < 30 {
                (
                    RowState::Absent,
                    self.start - rng.range(DAY_MS, 400 * DAY_MS),
                )
            } else if roll < 55 {
                (
                    RowState::Present,
                    self.start + rng.range(HOUR_MS, 40 * DAY_MS),
                )
            } else {
                (
                    RowState::Present,
                    self.start - rng.range(HOUR_MS, 3 * 365 * DAY_MS),
                )
            };
            let ip = self.home_ip(u as u64, cc, rng);
            self.users.push(User {
                city: city as u16,
                currency: currency as u8,
                device: rng.weighted(&dev_w) as u8,
                payment: rng.weighted(&pay_w) as u8,
                ip,
                fav: [rng.weighted(&cat_w) as u8, rng.weighted(&cat_w) as u8],
                row,
                registered,
                tier: rng.weighted(&[60, 25, 11, 4]) as u8,
                busy_until: Ms::MIN,
                recent: [(Ms::MIN, 0); RECENT],
                recent_head: 0,
            });
        }
        // a fixed scrambling of user indices so popularity is not correlated with ids
        let n = n.max(1) as u64;
        let mut mult = (0x9E37_79B9u64 % n) | 1;
        while gcd(mult, n) != 1 {
            mult += 2;
        }
        self.user_perm = (mult, rng.below(n));
    }

    /// A user, skewed towards a popular few, scrambled over the ids.
    pub fn pick_user(&self, rng: &mut Rng) -> u32 {
        let n = self.users.len() as u64;
        let r = rng.skewed(self.users.len(), 1.25) as u64;
        ((r * self.user_perm.0 + self.user_perm.1) % n) as u32
    }

    /// A product of the subcategory, popular ones first; skips deleted ones when it can.
    pub fn pick_in_sub(&self, rng: &mut Rng, sub: usize) -> Option<u32> {
        let list = &self.by_sub[sub];
        if list.is_empty() {
            return None;
        }
        for _ in 0..3 {
            let p = list[rng.skewed(list.len(), 2.0)];
            if self.products[p as usize].row != RowState::Deleted {
                return Some(p);
            }
        }
        Some(list[rng.index(list.len())])
    }

    /// A subcategory the user is likely to browse.
    pub fn pick_sub(&self, rng: &mut Rng, user: u32) -> usize {
        let u = &self.users[user as usize];
        let subs: Vec<usize> = if rng.chance(0.6) {
            let cat = u.fav[rng.index(2)];
            (0..self.subs.len())
                .filter(|&s| self.subs[s].0 == cat)
                .collect()
        } else {
            Vec::new()
        };
        let sub = if subs.is_empty() {
            rng.index(self.subs.len())
        } else {
            *rng.pick(&subs)
        };
        if self.by_sub[sub].is_empty() {
            self.products[rng.index(self.products.len())].sub as usize
        } else {
            sub
        }
    }

    /// The product's price in the given currency, in cents, with the shop's endings.
    pub fn local_price(&self, product: u32, currency: u8) -> i64 {
        let usd = self.products[product as usize].price;
        let rate = data::usd_rate_permille(&self.currencies[currency as usize]);
        if rate == 1000 {
            return usd;
        }
        let cents = (usd * rate + 500) / 1000;
        if usd % 100 == 99 && cents >= 100 {
            cents / 100 * 100 - 1
        } else {
            cents
        }
    }

    pub fn user_id(&self, u: u32) -> String {
        fmt::id("U", u as u64, self.widths.user)
    }
}

/// A product name: brand, adjective, noun and sometimes a model.
fn product_name(rng: &mut Rng, brand: &str, sub: &data::Sub) -> String {
    let noun = rng.pick(sub.nouns);
    let adj = rng.pick(data::ADJECTIVES);
    let mut name = format!("{brand} {adj} {noun}");
    match rng.below(4) {
        0 => name.push_str(" 2024"),
        1 => {
            let letter = (b'A' + rng.below(26) as u8) as char;
            name.push_str(&format!(" {letter}{}", rng.range(1, 9) * 100));
        }
        2 => name.push_str(&format!(" Gen {}", rng.range(2, 5))),
        _ => {}
    }
    name
}

/// A log-uniform USD price in cents in the subcategory's range, with a shop's endings.
fn shop_price(rng: &mut Rng, sub: &data::Sub) -> i64 {
    let (lo, hi) = (sub.lo as f64, sub.hi as f64);
    let dollars = (lo * (hi / lo).powf(rng.f64())).round() as i64;
    match rng.below(4) {
        0 => dollars * 100,
        1 if dollars > 20 => dollars * 100 - 5,
        _ => dollars * 100 - 1,
    }
}

/// 0 North America, 1 Europe, 2 elsewhere (payment weights).
pub fn region(country: &str) -> usize {
    match country {
        "US" | "CA" => 0,
        "GB" | "DE" | "FR" | "ES" | "IT" | "NL" | "IE" => 1,
        _ => 2,
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
