//! A model's fingerprint: a 64-bit hash of its config and its weights file,
//! computed once at load, that a snapshot carries so that it is only ever
//! restored into the model it was taken from. Not cryptographic: it tells
//! models apart, it does not resist someone forging a collision. The hash is
//! FxHash's step (rotate, xor a little-endian word, multiply) over 8-byte
//! words, ended by SplitMix64's finalizer so that every input bit reaches
//! every output bit; one multiply per 8 bytes, so a 100 MB file takes tens of
//! milliseconds.

const MULTIPLIER: u64 = 0x517c_c1b7_2722_0a95;

/// Hashes byte strings, each with its length, in the order written.
#[derive(Debug, Clone)]
pub struct Hasher(u64);

impl Default for Hasher {
    fn default() -> Self {
        Hasher(0x6b76_6361_6368_6521) // "kvcache!"
    }
}

impl Hasher {
    pub fn write(&mut self, bytes: &[u8]) -> &mut Self {
        self.word(bytes.len() as u64);
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.word(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut last = [0u8; 8];
            last[..tail.len()].copy_from_slice(tail);
            self.word(u64::from_le_bytes(last));
        }
        self
    }

    fn word(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(MULTIPLIER);
    }

    pub fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The hash of `parts`, each written in turn.
pub fn hash(parts: &[&[u8]]) -> u64 {
    let mut hasher = Hasher::default();
    for part in parts {
        hasher.write(part);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_changed_byte_or_length_changes_the_hash() {
        let bytes: Vec<u8> = (0..100u8).collect();
        let base = hash(&[&bytes]);
        assert_eq!(base, hash(&[&bytes]));
        for i in [0, 7, 8, 63, 99] {
            let mut changed = bytes.clone();
            changed[i] ^= 1;
            assert_ne!(hash(&[&changed]), base, "byte {i}");
        }
        assert_ne!(hash(&[&bytes[..99]]), base);
        let mut padded = bytes.clone();
        padded.push(0);
        assert_ne!(hash(&[&padded]), base);
        assert_ne!(hash(&[&bytes[..50], &bytes[50..]]), base);
    }
}
