//! The seeded generator of the coordinators' simulations (test only): xorshift64*, seeded
//! from `SLUICE_SEED` when set (to replay a failure), else from the clock; the seed is
//! printed either way.

/// A small deterministic generator.
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for the simulation `name`, its seed printed.
    pub(crate) fn seeded(name: &str) -> (Self, u64) {
        let seed = std::env::var("SLUICE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
            .max(1);
        eprintln!("{name}: SLUICE_SEED={seed}");
        (Rng(seed), seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
