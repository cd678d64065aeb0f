//! The JSON writers of the two event streams: a behavior event and a transaction line, in the
//! seed's field order, written by hand into a reused buffer from pre-rendered fragments.

use super::data::{self, CATEGORIES, CHANNELS, CITIES, DEVICES, PAYMENTS};
use super::engine::Generator;
use super::fmt::{self, push_cents, push_id, push_mills, push_ts, TsStyle};
use super::session::{Act, Attr, Ctx, Disc, LineSpec, Order, NO_PRODUCT};
use super::world::push_ip;
use shopdiff_schemas::time::Ms;

/// Pre-rendered JSON fragments of places and devices.
pub struct Frags {
    tx_loc: Vec<String>,
    ev_loc: Vec<String>,
    tx_dev: Vec<String>,
    ev_dev: Vec<String>,
}

impl Frags {
    pub fn build() -> Frags {
        let tx_loc = CITIES
            .iter()
            .map(|c| {
                format!(
                    "\"user_location\":{{\"country\":\"{}\",\"state\":\"{}\",\"city\":\"{}\",\"zip_code\":\"{}\",\"latitude\":{},\"longitude\":{}}},",
                    c.country, c.state, c.city, c.zip, c.lat, c.lon
                )
            })
            .collect();
        let ev_loc = CITIES
            .iter()
            .map(|c| {
                format!(
                    "\"user_location\":{{\"country\":\"{}\",\"state\":\"{}\",\"city\":\"{}\",\"ip_address\":\"",
                    c.country, c.state, c.city
                )
            })
            .collect();
        let tx_dev = DEVICES
            .iter()
            .map(|d| {
                format!(
                    "\"device_info\":{{\"type\":\"{}\",\"os\":\"{}\",\"browser\":\"{}\",\"user_agent\":\"{}\"}}",
                    d.kind, d.os, d.browser, d.user_agent
                )
            })
            .collect();
        let ev_dev = DEVICES
            .iter()
            .map(|d| {
                format!(
                    "\"device_info\":{{\"type\":\"{}\",\"os\":\"{}\",\"browser\":\"{}\",\"screen_resolution\":\"{}\",\"viewport_size\":\"{}\"}}}}",
                    d.kind, d.os, d.browser, d.screen, d.viewport
                )
            })
            .collect();
        Frags {
            tx_loc,
            ev_loc,
            tx_dev,
            ev_dev,
        }
    }
}

impl Generator {
    fn push_attr(out: &mut String, a: Attr) {
        match a.form {
            1 => {}
            2 => out.push_str(",\"marketing_attribution\":null"),
            3 => out.push_str(
                ",\"marketing_attribution\":{\"campaign_id\":null,\"channel\":null,\"referrer\":null}",
            ),
            _ => {
                let ch = &CHANNELS[a.channel as usize];
                out.push_str(",\"marketing_attribution\":{\"campaign_id\":");
                match data::CAMPAIGNS.get(a.campaign as usize) {
                    Some(c) if ch.campaigns => {
                        out.push('"');
                        out.push_str(c);
                        out.push('"');
                    }
                    _ => out.push_str("null"),
                }
                out.push_str(",\"channel\":\"");
                out.push_str(ch.name);
                out.push_str("\",\"referrer\":");
                match ch.referrers.get(a.referrer as usize % ch.referrers.len().max(1)) {
                    Some(r) if !ch.referrers.is_empty() => {
                        out.push('"');
                        out.push_str(r);
                        out.push('"');
                    }
                    _ => out.push_str("null"),
                }
                out.push('}');
            }
        }
    }

    /// Writes one behavior event.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn event_json(
        &mut self,
        ctx: &Ctx,
        t: Ms,
        style: TsStyle,
        act: Act,
        product: u32,
        sub: u16,
        dwell: Ms,
    ) -> String {
        let mut s = self.buf();
        self.ids.event += 1;
        self.push_ids(&mut s, ("{\"event_id\":\"", "E", self.ids.event), ctx);
        let et = act.event_type();
        fmt::kv_str(&mut s, "event_type", et);
        fmt::kv_str(&mut s, "event_category", data::event_category(et));
        let query = if act == Act::Search {
            self.search_query(product, sub)
        } else {
            String::new()
        };
        self.push_page(&mut s, act, product, sub, &query);
        s.push_str("\",\"timestamp\":\"");
        push_ts(&mut s, t, style);
        s.push_str("\",\"duration_ms\":");
        fmt::push_i64(&mut s, (dwell - self.rng.range(0, 1500)).max(150));
        s.push(',');
        match self.rng.below(200) {
            0 => {}
            1 => s.push_str("\"event_properties\":null,"),
            _ => self.push_props(&mut s, act, product, &query),
        }
        s.push_str(&self.frags.ev_loc[ctx.city as usize]);
        push_ip(&mut s, ctx.ip);
        s.push_str("\"},");
        s.push_str(&self.frags.ev_dev[ctx.device as usize]);
        s
    }

    /// Writes `{"<id key>":"<id>","user_id":"..","session_id":"..",` (or a null session).
    fn push_ids(&self, s: &mut String, (open, prefix, id): (&str, &str, u64), ctx: &Ctx) {
        let wd = self.w.widths;
        s.push_str(open);
        push_id(s, prefix, id, if prefix == "T" { wd.txn } else { wd.event });
        s.push_str("\",\"user_id\":\"");
        push_id(s, "U", ctx.user as u64, wd.user);
        match ctx.session {
            Some(id) => {
                s.push_str("\",\"session_id\":\"");
                push_id(s, "S", id, wd.session);
                s.push_str("\",");
            }
            None => s.push_str("\",\"session_id\":null,"),
        }
    }

    /// A search: a noun of the subcategory, sometimes with a brand.
    fn search_query(&mut self, product: u32, sub: u16) -> String {
        let (c, s) = self.w.subs[sub as usize];
        let mut query = String::new();
        if product != NO_PRODUCT && self.rng.chance(0.4) {
            let p = &self.w.products[product as usize];
            let brand = CATEGORIES[p.cat as usize].brands[p.brand as usize];
            query.push_str(&brand.to_ascii_lowercase());
            query.push(' ');
        }
        let nouns = CATEGORIES[c as usize].subs[s as usize].nouns;
        query.push_str(&self.rng.pick(nouns).to_ascii_lowercase());
        query
    }

    /// Writes `"page_url":"..","page_title":"..` (without the closing quote).
    fn push_page(&self, s: &mut String, act: Act, product: u32, sub: u16, query: &str) {
        let (cat_i, sub_i) = self.w.subs[sub as usize];
        let cat = &CATEGORIES[cat_i as usize];
        let subc = &cat.subs[sub_i as usize];
        s.push_str("\"page_url\":\"");
        match act {
            Act::Landing => s.push('/'),
            Act::Category => {
                s.push_str("/c/");
                s.push_str(cat.slug);
                s.push('/');
                s.push_str(subc.slug);
            }
            Act::Search => {
                s.push_str("/search?q=");
                for c in query.chars() {
                    match c {
                        ' ' => s.push('+'),
                        '&' => s.push_str("%26"),
                        '\'' => s.push_str("%27"),
                        c => s.push(c),
                    }
                }
            }
            Act::ProductView | Act::Other | Act::AddToCart => {
                s.push_str("/p/");
                push_id(s, "P", product as u64, self.w.widths.product);
            }
            Act::Remove => s.push_str("/cart"),
            Act::Checkout | Act::Purchase => s.push_str("/checkout"),
            Act::Confirm => s.push_str("/order/confirmation"),
        }
        s.push_str("\",\"page_title\":\"");
        match act {
            Act::Landing => s.push_str("ShopDiff - Online Store"),
            Act::Category => {
                s.push_str(subc.name);
                s.push_str(" - ");
                s.push_str(cat.name);
                s.push_str(" - ShopDiff");
            }
            Act::Search => s.push_str("Search results - ShopDiff"),
            Act::ProductView | Act::Other | Act::AddToCart => {
                s.push_str(&self.w.products[product as usize].name);
                s.push_str(" - ShopDiff");
            }
            Act::Remove => s.push_str("Your cart - ShopDiff"),
            Act::Checkout | Act::Purchase => s.push_str("Checkout - ShopDiff"),
            Act::Confirm => s.push_str("Thank you for your order - ShopDiff"),
        }
    }

    fn push_props(&mut self, s: &mut String, act: Act, product: u32, query: &str) {
        s.push_str("\"event_properties\":{\"product_id\":");
        let with_product = matches!(
            act,
            Act::ProductView | Act::Other | Act::AddToCart | Act::Remove
        );
        if with_product && product != NO_PRODUCT {
            s.push('"');
            push_id(s, "P", product as u64, self.w.widths.product);
            s.push('"');
        } else {
            s.push_str("null");
        }
        s.push_str(",\"search_query\":");
        if query.is_empty() {
            s.push_str("null");
        } else {
            s.push('"');
            s.push_str(query);
            s.push('"');
        }
        s.push_str(",\"filter_applied\":");
        if matches!(act, Act::Search | Act::Category) && self.rng.chance(0.35) {
            const FILTERS: [&str; 6] = [
                "[\"price:0-50\"]",
                "[\"price:50-200\",\"rating:4+\"]",
                "[\"sort:price_asc\"]",
                "[\"in_stock:true\"]",
                "[\"rating:4+\"]",
                "[\"price:200-1000\",\"sort:newest\"]",
            ];
            s.push_str(FILTERS[self.rng.index(FILTERS.len())]);
        } else {
            s.push_str("null");
        }
        s.push_str(",\"scroll_depth\":");
        fmt::push_i64(s, self.rng.range(0, 100));
        s.push_str(",\"clicks\":");
        fmt::push_i64(s, self.rng.range(0, 8));
        s.push_str("},");
    }

    /// Writes one transaction line; `ts` is the order's timestamp text.
    pub(super) fn line_json(
        &mut self,
        ctx: &Ctx,
        order: &Order,
        line: &LineSpec,
        ts: &str,
    ) -> String {
        let mut s = self.buf();
        self.push_ids(&mut s, ("{\"transaction_id\":\"", "T", order.txn), ctx);
        s.push_str(&self.w.products[line.product as usize].frag);
        s.push_str("\"price\":");
        push_cents(&mut s, line.price);
        s.push_str(",\"quantity\":");
        fmt::push_i64(&mut s, line.qty);
        match line.disc {
            Disc::Zero => s.push_str(",\"discount_applied\":0"),
            Disc::ZeroFloat => s.push_str(",\"discount_applied\":0.0"),
            Disc::Absent => {}
            Disc::Null => s.push_str(",\"discount_applied\":null"),
            Disc::Mills(m) => {
                s.push_str(",\"discount_applied\":");
                push_mills(&mut s, m);
            }
        }
        let pay = &PAYMENTS[order.payment as usize];
        s.push_str(",\"payment_method\":\"");
        s.push_str(pay.method);
        s.push_str("\",\"payment_provider\":\"");
        s.push_str(pay.providers[order.provider as usize % pay.providers.len()]);
        s.push_str("\",\"currency\":\"");
        s.push_str(&self.w.currencies[order.currency as usize]);
        s.push_str("\",\"timestamp\":\"");
        s.push_str(ts);
        s.push_str("\",");
        s.push_str(&self.frags.tx_loc[ctx.city as usize]);
        s.push_str(&self.frags.tx_dev[ctx.device as usize]);
        Self::push_attr(&mut s, ctx.attr);
        s.push('}');
        s
    }
}
