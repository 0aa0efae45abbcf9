//! The randomized tests' generator: seeded from `OXETCD_TEST_SEED` when set, else from the
//! clock, and the seed is printed so a failing run can be repeated.

/// xorshift64: small, fast, and the same sequence for the same seed everywhere.
pub struct Rng {
    state: u64,
    seed: u64,
}

impl Rng {
    pub fn seeded() -> Rng {
        let seed = std::env::var("OXETCD_TEST_SEED")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
            | 1;
        println!("OXETCD_TEST_SEED={seed}");
        Rng::from_seed(seed)
    }

    fn from_seed(seed: u64) -> Rng {
        Rng { state: seed, seed }
    }

    /// What this run was seeded with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A generator of its own, for a task that runs beside the others.
    pub fn fork(&mut self) -> Rng {
        Rng::from_seed(self.below(u64::MAX) | 1)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % n
    }
}
