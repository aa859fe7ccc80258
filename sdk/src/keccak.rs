//! Keccak-256 (Ethereum's, not SHA-3) as a `const fn`, so selectors and event topics are
//! computed at compile time from their Solidity signatures: a contract carries the 4 or 32
//! bytes, never the hashing code, unless it hashes at run time (then it should use the
//! cheaper host function, `host::keccak256`).

const ROUND_CONSTANTS: [u64; 24] = [
    0x0000000000000001,
    0x0000000000008082,
    0x800000000000808a,
    0x8000000080008000,
    0x000000000000808b,
    0x0000000080000001,
    0x8000000080008081,
    0x8000000000008009,
    0x000000000000008a,
    0x0000000000000088,
    0x0000000080008009,
    0x000000008000000a,
    0x000000008000808b,
    0x800000000000008b,
    0x8000000000008089,
    0x8000000000008003,
    0x8000000000008002,
    0x8000000000000080,
    0x000000000000800a,
    0x800000008000000a,
    0x8000000080008081,
    0x8000000000008080,
    0x0000000080000001,
    0x8000000080008008,
];
const ROTATIONS: [u32; 25] = [
    0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39, 41, 45, 15, 21, 8, 18, 2, 61, 56, 14,
];
/// Bytes absorbed per permutation for a 256-bit output.
const RATE: usize = 136;

const fn keccak_f(mut a: [u64; 25]) -> [u64; 25] {
    let mut round = 0;
    while round < 24 {
        // θ
        let mut c = [0u64; 5];
        let mut x = 0;
        while x < 5 {
            c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
            x += 1;
        }
        x = 0;
        while x < 5 {
            let d = c[(x + 4) % 5] ^ c[(x + 1) % 5].rotate_left(1);
            let mut y = 0;
            while y < 25 {
                a[x + y] ^= d;
                y += 5;
            }
            x += 1;
        }
        // ρ and π
        let mut b = [0u64; 25];
        x = 0;
        while x < 5 {
            let mut y = 0;
            while y < 5 {
                b[y + 5 * ((2 * x + 3 * y) % 5)] = a[x + 5 * y].rotate_left(ROTATIONS[x + 5 * y]);
                y += 1;
            }
            x += 1;
        }
        // χ
        let mut i = 0;
        while i < 25 {
            let (x, y) = (i % 5, i - i % 5);
            a[i] = b[i] ^ (!b[y + (x + 1) % 5] & b[y + (x + 2) % 5]);
            i += 1;
        }
        // ι
        a[0] ^= ROUND_CONSTANTS[round];
        round += 1;
    }
    a
}

/// A sponge fed byte by byte, by value so that it works in `const fn` on older compilers
/// (the SDK also builds with Debian's rustc 1.63 for wasm32, which has no `&mut` in const).
#[derive(Clone, Copy)]
struct Sponge {
    state: [u64; 25],
    pos: usize,
}

impl Sponge {
    const NEW: Sponge = Sponge {
        state: [0; 25],
        pos: 0,
    };

    const fn push(mut self, byte: u8) -> Sponge {
        self.state[self.pos / 8] ^= (byte as u64) << (8 * (self.pos % 8));
        self.pos += 1;
        if self.pos == RATE {
            self.state = keccak_f(self.state);
            self.pos = 0;
        }
        self
    }

    const fn push_all(mut self, bytes: &[u8]) -> Sponge {
        let mut i = 0;
        while i < bytes.len() {
            self = self.push(bytes[i]);
            i += 1;
        }
        self
    }

    const fn finish(mut self) -> [u8; 32] {
        // Keccak's pad10*1 with domain byte 0x01 (SHA-3 would use 0x06).
        self.state[self.pos / 8] ^= 0x01u64 << (8 * (self.pos % 8));
        self.state[(RATE - 1) / 8] ^= 0x80u64 << (8 * ((RATE - 1) % 8));
        let state = keccak_f(self.state);
        let mut out = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            out[i] = (state[i / 8] >> (8 * (i % 8))) as u8;
            i += 1;
        }
        out
    }
}

/// Keccak-256 of `data`.
pub const fn keccak256(data: &[u8]) -> [u8; 32] {
    Sponge::NEW.push_all(data).finish()
}

/// A Solidity type's canonical name as it appears in signatures: a base name and how many
/// `[]` follow it (kept apart because `const` code cannot concatenate strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeName {
    pub base: &'static str,
    pub arrays: usize,
}

impl TypeName {
    pub const fn of(base: &'static str) -> TypeName {
        TypeName { base, arrays: 0 }
    }

    pub const fn array_of(self) -> TypeName {
        TypeName {
            base: self.base,
            arrays: self.arrays + 1,
        }
    }
}

/// Keccak-256 of the Solidity signature `name(type0,type1,...)`.
pub const fn signature_hash(name: &str, types: &[TypeName]) -> [u8; 32] {
    let mut s = Sponge::NEW.push_all(name.as_bytes()).push(b'(');
    let mut i = 0;
    while i < types.len() {
        if i > 0 {
            s = s.push(b',');
        }
        s = s.push_all(types[i].base.as_bytes());
        let mut depth = 0;
        while depth < types[i].arrays {
            s = s.push(b'[').push(b']');
            depth += 1;
        }
        i += 1;
    }
    s.push(b')').finish()
}

/// The 4-byte function (or error) selector of `name(types...)`.
pub const fn selector(name: &str, types: &[TypeName]) -> [u8; 4] {
    let h = signature_hash(name, types);
    [h[0], h[1], h[2], h[3]]
}

/// The selector of a signature written out, e.g. `selector_of("transfer(address,uint256)")`
/// (no spaces, canonical type names, as Solidity hashes it).
pub const fn selector_of(signature: &str) -> [u8; 4] {
    let h = keccak256(signature.as_bytes());
    [h[0], h[1], h[2], h[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            keccak256(b""),
            *b"\xc5\xd2\x46\x01\x86\xf7\x23\x3c\x92\x7e\x7d\xb2\xdc\xc7\x03\xc0\xe5\x00\xb6\x53\xca\x82\x27\x3b\x7b\xfa\xd8\x04\x5d\x85\xa4\x70"
        );
        assert_eq!(
            selector(
                "transfer",
                &[TypeName::of("address"), TypeName::of("uint256")]
            ),
            [0xa9, 0x05, 0x9c, 0xbb]
        );
        // Longer than one block (136 bytes): the absorb boundary.
        let long = [0x61u8; 300];
        let mut by_parts = Sponge::NEW;
        for b in long {
            by_parts = by_parts.push(b);
        }
        assert_eq!(by_parts.finish(), keccak256(&long));
        const ADDRESS: TypeName = TypeName::of("address");
        const TOPIC: [u8; 32] =
            signature_hash("Transfer", &[ADDRESS, ADDRESS, TypeName::of("uint256")]);
        assert_eq!(TOPIC[..4], [0xdd, 0xf2, 0x52, 0xad]);
        // f(uint256[][],address[]) — array suffixes.
        let nested = signature_hash(
            "f",
            &[
                TypeName::of("uint256").array_of().array_of(),
                ADDRESS.array_of(),
            ],
        );
        assert_eq!(nested, keccak256(b"f(uint256[][],address[])"));
    }
}
