//! Seeded randomness for challenges, timestamps and GUIDs, so that a seeded run repeats
//! byte for byte. Not for secrets that must resist an attacker: the mocks guard nothing.

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, and good enough to make distinct
/// challenges; the stream is fully determined by the seed.
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        SeededRng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.fill(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_different_seeds_differ() {
        let a: [u8; 16] = SeededRng::new(7).bytes();
        let b: [u8; 16] = SeededRng::new(7).bytes();
        let c: [u8; 16] = SeededRng::new(8).bytes();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
