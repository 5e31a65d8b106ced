//! A model's fingerprint: a 64-bit hash of its config and its weights file,
//! computed once at load, that a snapshot carries so that it is only ever
//! restored into the model it was taken from; the snapshot's checksum is the
//! same hash of its bytes. XXH3 (64-bit, from `xxhash-rust`): not
//! cryptographic, it tells inputs apart, it does not resist someone forging a
//! collision; it reads several GB/s, so hashing a weights file costs little
//! beside reading it.

use xxhash_rust::xxh3::Xxh3;

/// Each part is hashed with its length first, so `["ab", "c"]` and `["a", "bc"]` differ.
const SEED: u64 = 0x6b76_6361_6368_6521; // "kvcache!"

/// The hash of `parts`, each written in turn with its length.
pub fn hash(parts: &[&[u8]]) -> u64 {
    let mut hasher = Hasher::new();
    for part in parts {
        hasher.part(part);
    }
    hasher.digest()
}

/// [`hash`] of parts given a piece at a time: each part's length, then its bytes.
pub struct Hasher(Xxh3);

impl Hasher {
    pub fn new() -> Self {
        Hasher(Xxh3::with_seed(SEED))
    }

    /// A whole part: its length, then its bytes.
    pub fn part(&mut self, bytes: &[u8]) {
        self.part_len(bytes.len());
        self.update(bytes);
    }

    /// Starts a part of `len` bytes, whose bytes [`Self::update`] then gives.
    pub fn part_len(&mut self, len: usize) {
        self.0.update(&(len as u64).to_le_bytes());
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn digest(&self) -> u64 {
        self.0.digest()
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
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

    #[test]
    fn a_part_given_in_pieces_hashes_as_a_whole() {
        let bytes: Vec<u8> = (0..100u8).collect();
        let mut hasher = Hasher::new();
        hasher.part_len(bytes.len());
        for piece in bytes.chunks(7) {
            hasher.update(piece);
        }
        assert_eq!(hasher.digest(), hash(&[&bytes]));
    }

    #[test]
    fn is_xxh3_of_the_length_prefixed_parts() {
        // XXH3's own one-shot function over the same bytes: the streaming use above adds nothing.
        let mut joined = 3u64.to_le_bytes().to_vec();
        joined.extend_from_slice(b"abc");
        assert_eq!(
            hash(&[b"abc"]),
            xxhash_rust::xxh3::xxh3_64_with_seed(&joined, SEED)
        );
    }
}
