//! The smoke fuzzer's mutator: seeded, dependency-free, no coverage feedback. It runs in CI
//! on the committed corpus, so it aims at what breaks length-prefixed decoders: bit flips,
//! inserted and deleted bytes, splices of two inputs, and length fields set to extremes.

/// Mutations stacked on one input at most.
pub const MAX_STACKED_MUTATIONS: u64 = 4;
/// Largest input the mutator grows (libFuzzer's campaign uses its own `-max_len`).
pub const MAX_MUTATED_BYTES: usize = 256 * 1024;
/// Bytes inserted by one insertion at most.
const MAX_INSERT_BYTES: u64 = 64;

/// splitmix64: a tiny, seedable generator (not for anything but choosing mutations).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }
}

/// Values a length or count field is set to: the edges of every width borsh and the wire
/// use, as little- and big-endian words.
const EXTREMES: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    u64::MAX,
];

/// Returns a mutation of `input`; `pool` supplies splice partners.
pub fn mutate(rng: &mut Rng, input: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.below(MAX_STACKED_MUTATIONS);
    for _ in 0..rounds {
        mutate_once(rng, &mut out, pool);
    }
    out.truncate(MAX_MUTATED_BYTES);
    out
}

fn mutate_once(rng: &mut Rng, out: &mut Vec<u8>, pool: &[Vec<u8>]) {
    match rng.below(9) {
        // Flip one bit.
        0 if !out.is_empty() => {
            let i = rng.index(out.len());
            out[i] ^= 1 << rng.below(8);
        }
        // Set one byte to a random or an edge value.
        1 if !out.is_empty() => {
            let i = rng.index(out.len());
            out[i] = match rng.below(4) {
                0 => 0,
                1 => 0xff,
                2 => 0x80,
                _ => rng.next_u64() as u8,
            };
        }
        // Insert random bytes.
        2 => {
            let at = rng.index(out.len() + 1);
            let n = 1 + rng.below(MAX_INSERT_BYTES) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            out.splice(at..at, bytes);
        }
        // Delete a range.
        3 if !out.is_empty() => {
            let at = rng.index(out.len());
            let n = 1 + rng.index((out.len() - at).min(64));
            out.drain(at..at + n);
        }
        // Truncate.
        4 if !out.is_empty() => {
            let len = rng.index(out.len());
            out.truncate(len);
        }
        // Splice: this input's head, another's tail.
        5 if !pool.is_empty() => {
            let other = &pool[rng.index(pool.len())];
            let cut = rng.index(out.len() + 1);
            let from = rng.index(other.len() + 1);
            out.truncate(cut);
            out.extend_from_slice(&other[from..]);
        }
        // Overwrite a 1/2/4/8-byte field with an extreme, either endianness.
        6 | 7 if !out.is_empty() => {
            let width = 1usize << rng.below(4);
            let value = EXTREMES[rng.index(EXTREMES.len())];
            let bytes = if rng.below(2) == 0 {
                value.to_le_bytes()
            } else {
                value.to_be_bytes()
            };
            let field = if rng.below(2) == 0 {
                &bytes[..width]
            } else {
                &bytes[8 - width..]
            };
            let at = rng.index(out.len());
            let end = (at + width).min(out.len());
            out[at..end].copy_from_slice(&field[..end - at]);
        }
        // Duplicate a chunk in place (repeated elements of a sequence).
        _ if !out.is_empty() => {
            let at = rng.index(out.len());
            let n = 1 + rng.index((out.len() - at).min(128));
            let chunk = out[at..at + n].to_vec();
            out.splice(at..at, chunk);
        }
        _ => out.push(rng.next_u64() as u8),
    }
}
