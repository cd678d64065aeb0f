//! IP addresses: users' home addresses, shared mobile-carrier ones and the pools reserved for
//! fraud patterns (Tor exits, high scores, exactly 0.800, addresses a later change makes risky).
//! Every pool has its own range, so a fraud IP is never anyone's home IP.

use super::fmt;
use super::places::COUNTRIES;
use super::rng::{mix64, Rng};
use super::world::{RowState, World};

#[derive(Debug, Clone)]
pub struct Ip {
    pub addr: u32,
    /// Thousandths; `None` is a null `risk_score`.
    pub risk: Option<u16>,
    pub vpn: bool,
    pub tor: bool,
    pub row: RowState,
}

impl Ip {
    /// Whether the contract's `risky_ip` rule counts this row as risky.
    pub fn risky(&self) -> bool {
        self.row == RowState::Present && matches!(self.risk, Some(r) if r >= 800 || self.tor)
    }
}

/// IP pools: ranges reserved for one use each, so a fraud IP is never anyone's home IP.
pub struct Pools {
    /// Always risky (Tor, score >= 0.8, exactly 0.800): only fraud sessions use them.
    pub risky: Vec<u32>,
    /// Low risk or without a row until a fraud pattern's change makes them risky.
    pub turning: Vec<u32>,
    /// Shared mobile-carrier addresses (low risk), including two near misses.
    pub carrier: Vec<u32>,
}

pub fn ip_addr(a: u8, b: u8, c: u8, d: u8) -> u32 {
    u32::from_be_bytes([a, b, c, d])
}

pub fn push_ip(out: &mut String, addr: u32) {
    let b = addr.to_be_bytes();
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        fmt::push_u64(out, *x as u64);
    }
}

impl World {
    pub(super) fn home_ip(&mut self, u: u64, cc: &str, rng: &mut Rng) -> u32 {
        let h = mix64(self.seed ^ mix64(u.wrapping_add(0x1F2E_3D4C)));
        let octets = COUNTRIES
            .iter()
            .find(|c| c.code == cc)
            .map(|c| c.octets)
            .unwrap_or(&[]);
        let a = if octets.is_empty() {
            24
        } else {
            octets[(h % octets.len() as u64) as usize]
        };
        let addr = ip_addr(
            a,
            (h >> 8) as u8,
            (h >> 16) as u8,
            1 + ((h >> 24) % 254) as u8,
        );
        let has_row = rng.chance(0.7);
        let risk = match rng.below(100) {
            0..=69 => rng.range(0, 300),
            70..=96 => rng.range(300, 600),
            _ => rng.range(600, 750),
        } as u16;
        self.push_ip(
            addr,
            has_row,
            Some(risk).filter(|_| !rng.chance(0.04)),
            risk >= 300,
            false,
        )
    }

    pub fn push_ip(
        &mut self,
        addr: u32,
        row: bool,
        risk: Option<u16>,
        vpn: bool,
        tor: bool,
    ) -> u32 {
        self.ips.push(Ip {
            addr,
            risk,
            vpn,
            tor,
            row: if row {
                RowState::Present
            } else {
                RowState::Absent
            },
        });
        (self.ips.len() - 1) as u32
    }

    pub(super) fn build_pools(&mut self, rng: &mut Rng, n: usize) {
        for i in 0..n.min(60_000) {
            let (b, c) = ((i / 250) as u8, (i % 250) as u8 + 1);
            let ix = match i % 3 {
                0 => self.push_ip(
                    ip_addr(185, 220, 100u8.wrapping_add(b), c),
                    true,
                    Some(rng.range(50, 400) as u16),
                    true,
                    true,
                ),
                1 => self.push_ip(
                    ip_addr(45, 142, b, c),
                    true,
                    Some(rng.range(810, 990) as u16),
                    true,
                    false,
                ),
                _ => self.push_ip(ip_addr(45, 143, b, c), true, Some(800), false, false),
            };
            self.pools.risky.push(ix);
            let has_row = i % 2 == 0;
            let ix = self.push_ip(
                ip_addr(193, 56, b, c),
                has_row,
                Some(rng.range(100, 500) as u16),
                false,
                false,
            );
            self.pools.turning.push(ix);
        }
        for i in 0..64u32 {
            let a = if i % 2 == 0 { 172 } else { 100 };
            let addr = ip_addr(
                a,
                58 + (i % 4) as u8,
                (mix64(i as u64) >> 8) as u8,
                1 + i as u8,
            );
            let (risk, tor) = match i {
                0 => (Some(799), false), // near miss: just below the threshold
                1 => (None, true),       // near miss: Tor without a risk score is ignored
                _ => (Some(rng.range(20, 450) as u16), false),
            };
            let ix = self.push_ip(addr, true, risk, i % 5 == 0, tor);
            self.pools.carrier.push(ix);
        }
    }
}
