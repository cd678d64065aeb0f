//! A small, fast, portable random number generator (xoshiro256++ seeded by SplitMix64).
//!
//! Hand-written so that a seed keeps producing the same stream whatever version of `rand` the
//! workspace uses: the generator's output is a fixture that tests and benchmarks compare bytes of.

/// SplitMix64: a good 64-bit mix, used for seeding and for per-entity derived values.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256++.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator for `seed` and a `stream` number (independent streams for independent uses).
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut x = seed ^ mix64(stream.wrapping_mul(0xA076_1D64_78BD_642F));
        let mut s = [0u64; 4];
        for v in &mut s {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            *v = mix64(x);
        }
        if s == [0; 4] {
            s[0] = 1;
        }
        Rng { s }
    }

    pub fn u64(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform index into a slice of length `n > 0`.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        lo + self.below((hi - lo) as u64 + 1) as i64
    }

    /// Uniform in `[0, 1)`.
    pub fn f64(&mut self) -> f64 {
        (self.u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.f64() < p
    }

    /// Exponentially distributed with the given mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f64()).ln()
    }

    /// An element of a slice.
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.index(xs.len())]
    }

    /// An index drawn with the given integer weights (not all zero).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| w as u64).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < w as u64 {
                return i;
            }
            x -= w as u64;
        }
        weights.len() - 1
    }

    /// An index skewed towards 0 (popularity): `floor(n * u^k)`.
    pub fn skewed(&mut self, n: usize, k: f64) -> usize {
        let u = self.f64();
        let p = if k == 2.0 { u * u } else { u.powf(k) };
        ((n as f64) * p).min(n as f64 - 1.0) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_spread() {
        let mut a = Rng::new(42, 1);
        let mut b = Rng::new(42, 1);
        let mut c = Rng::new(42, 2);
        let xa: Vec<u64> = (0..8).map(|_| a.u64()).collect();
        let xb: Vec<u64> = (0..8).map(|_| b.u64()).collect();
        let xc: Vec<u64> = (0..8).map(|_| c.u64()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
        let mut counts = [0u32; 10];
        for _ in 0..10_000 {
            counts[a.index(10)] += 1;
        }
        assert!(
            counts.iter().all(|&n| (800..1200).contains(&n)),
            "{counts:?}"
        );
        for _ in 0..1000 {
            let v = a.range(-3, 3);
            assert!((-3..=3).contains(&v));
        }
        assert_eq!(a.weighted(&[0, 5, 0]), 1);
    }
}
