//! One step of a normal session: what it writes and what it does next.

use super::engine::Generator;
use super::session::{
    discount, order_net, Act, LineSpec, Order, Session, MAX_NET_HOUR, NO_PRODUCT, WINDOW_MARGIN,
};
use super::world::RECENT;
use super::GenStream;
use shopdiff_schemas::time::{Ms, HOUR_MS};

/// Normal users place at most this many orders in any 10 minutes (velocity alerts above 5).
const MAX_ORDERS_10MIN: usize = 3;
/// A session ends after this many steps at most.
const MAX_STEPS: u8 = 40;

impl Generator {
    /// Performs the session's next action at `t` and schedules the one after, or ends it.
    pub(super) fn step_session(&mut self, slot: u32, t: Ms) {
        let mut s = self.slots[slot as usize].clone();
        let dwell = (self.rng.exp(22_000.0) as Ms + 3_000).min(240_000);
        let act = s.next;
        let mut t_next = None;
        if act == Act::Purchase {
            if self.purchase(&mut s, t) && self.rng.chance(0.3) {
                s.next = Act::Confirm;
                t_next = Some(t + self.rng.range(1_500, 8_000));
            }
        } else {
            let product = self.product_for(&mut s, act);
            let (style, t_ev) = self.ts_style(s.ctx.city, t);
            let json = self.event_json(&s.ctx, t_ev, style, act, product, s.sub, dwell);
            self.produce(GenStream::Behavior, t_ev, std::iter::once(json), true);
            if self.decide(&mut s, act) {
                let delay = if s.next == Act::Purchase {
                    self.rng.range(20_000, 150_000)
                } else {
                    dwell
                };
                t_next = Some(t_ev + delay);
            }
        }
        s.steps += 1;
        match t_next {
            Some(at) if s.steps < MAX_STEPS => {
                self.slots[slot as usize] = s;
                self.reschedule = Some(at);
            }
            _ => {
                let u = &mut self.w.users[s.ctx.user as usize];
                u.busy_until = t + self.rng.range(0, 60_000);
                self.end_session(slot);
            }
        }
    }

    /// The product an action is about (and the session's bookkeeping of views and the cart).
    fn product_for(&mut self, s: &mut Session, act: Act) -> u32 {
        match act {
            Act::ProductView => {
                if self.rng.chance(0.12) {
                    s.sub = self.w.pick_sub(&mut self.rng, s.ctx.user) as u16;
                }
                let p = self
                    .w
                    .pick_in_sub(&mut self.rng, s.sub as usize)
                    .unwrap_or(NO_PRODUCT);
                if p != NO_PRODUCT {
                    s.last = p;
                }
                p
            }
            Act::Search => self
                .w
                .pick_in_sub(&mut self.rng, s.sub as usize)
                .unwrap_or(NO_PRODUCT),
            Act::Other => s.last,
            Act::AddToCart => {
                let qty = [1u8, 1, 1, 1, 1, 1, 1, 2, 2, 3][self.rng.index(10)];
                let n = s.cart_len as usize;
                match s.cart[..n].iter_mut().find(|c| c.0 == s.last) {
                    Some(c) => c.1 = (c.1 + qty).min(3),
                    None if n < 4 => {
                        s.cart[n] = (s.last, qty);
                        s.cart_len += 1;
                    }
                    None => {}
                }
                s.last
            }
            Act::Remove => {
                let n = s.cart_len as usize;
                if n == 0 {
                    return NO_PRODUCT;
                }
                let i = self.rng.index(n);
                let p = s.cart[i].0;
                s.cart[i] = s.cart[n - 1];
                s.cart_len -= 1;
                p
            }
            _ => NO_PRODUCT,
        }
    }

    /// Chooses the next action after `act`; `false` ends the session.
    fn decide(&mut self, s: &mut Session, act: Act) -> bool {
        let r = self.rng.below(100);
        s.next = match act {
            Act::Landing | Act::Category | Act::Search | Act::ProductView | Act::Other => {
                if s.browse_left > 0 {
                    s.browse_left -= 1;
                    match r {
                        0..=21 => Act::Search,
                        22..=71 => Act::ProductView,
                        72..=96 => Act::Category,
                        _ if s.last != NO_PRODUCT => Act::Other,
                        _ => Act::ProductView,
                    }
                } else if s.last == NO_PRODUCT {
                    Act::ProductView
                } else if s.cart_len < 4 && r < 62 {
                    Act::AddToCart
                } else if s.cart_len > 0 && r < 80 {
                    Act::Checkout
                } else {
                    return false;
                }
            }
            Act::AddToCart => match r {
                0..=34 => {
                    s.browse_left = 0;
                    Act::ProductView
                }
                35..=42 => Act::Remove,
                43..=90 => Act::Checkout,
                _ => return false,
            },
            Act::Remove if s.cart_len == 0 => {
                if r < 50 {
                    return false;
                }
                s.browse_left = 1;
                Act::ProductView
            }
            Act::Remove if r < 75 => Act::Checkout,
            Act::Checkout if r < 90 => Act::Purchase,
            _ => return false,
        };
        true
    }

    /// Buys the cart at `t` unless it would bring the user near a fraud threshold.
    fn purchase(&mut self, s: &mut Session, t: Ms) -> bool {
        let user = s.ctx.user;
        let u = &self.w.users[user as usize];
        let (n10, _) = u.since(t, 10 * 60_000 + WINDOW_MARGIN);
        let (n60, c60) = u.since(t, HOUR_MS + WINDOW_MARGIN);
        if n10 >= MAX_ORDERS_10MIN || n60 >= RECENT || s.cart_len == 0 {
            return false;
        }
        let currency = u.currency;
        let mut lines: Vec<LineSpec> = Vec::with_capacity(5);
        let mut items: Vec<(u32, u8)> = s.cart[..s.cart_len as usize].to_vec();
        if self.rng.chance(0.2) {
            if let Some(p) = self.w.pick_in_sub(&mut self.rng, s.sub as usize) {
                if !items.iter().any(|i| i.0 == p) {
                    items.push((p, 1));
                }
            }
        }
        for (product, qty) in items {
            let price = self.w.local_price(product, currency);
            let qty = qty as i64;
            let disc = discount(&mut self.rng, price * qty);
            lines.push(LineSpec {
                product,
                price,
                qty,
                disc,
            });
        }
        while !lines.is_empty() && c60 + order_net(&lines) > MAX_NET_HOUR {
            let i = (0..lines.len())
                .max_by_key(|&i| lines[i].net())
                .unwrap_or(0);
            if lines[i].qty > 1 {
                lines[i].qty -= 1;
                lines[i].disc = discount(&mut self.rng, lines[i].price * lines[i].qty);
            } else {
                lines.remove(i);
            }
        }
        lines.truncate(self.room() as usize);
        if lines.is_empty() {
            return false;
        }
        self.ids.txn += 1;
        let (payment, provider) = self.payment(user);
        let order = Order {
            txn: self.ids.txn,
            currency,
            payment,
            provider,
        };
        s.txn = order.txn;
        let ctx = s.ctx;
        let t = self.emit_order(&ctx, &order, &lines, t, true);
        self.w.users[user as usize].push_order(t, order_net(&lines));
        s.cart_len = 0;
        true
    }
}
