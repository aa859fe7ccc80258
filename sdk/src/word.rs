//! The three value types every keel contract handles: 256-bit unsigned integers with
//! Solidity's checked arithmetic, 20-byte addresses and raw 32-byte words.

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, BitAnd, BitOr, Div, Mul, Rem, Sub};

/// A 256-bit unsigned integer. `+ - * / %` behave as Solidity ≥ 0.8: an overflow reverts
/// with `Panic(0x11)` and a division by zero with `Panic(0x12)` (on chain and in the test
/// VM alike); `checked_*` and `overflowing_*` give the raw results.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct U256([u64; 4]); // little-endian limbs: .0[0] is the least significant

impl U256 {
    pub const ZERO: U256 = U256([0; 4]);
    pub const ONE: U256 = U256([1, 0, 0, 0]);
    pub const MAX: U256 = U256([u64::MAX; 4]);

    pub const fn from_u64(v: u64) -> U256 {
        U256([v, 0, 0, 0])
    }

    pub const fn from_u128(v: u128) -> U256 {
        U256([v as u64, (v >> 64) as u64, 0, 0])
    }

    pub const fn from_be_bytes(b: [u8; 32]) -> U256 {
        let mut limbs = [0u64; 4];
        let mut i = 0;
        while i < 32 {
            limbs[3 - i / 8] = (limbs[3 - i / 8] << 8) | b[i] as u64;
            i += 1;
        }
        U256(limbs)
    }

    pub const fn to_be_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            out[i] = (self.0[3 - i / 8] >> (56 - 8 * (i % 8))) as u8;
            i += 1;
        }
        out
    }

    pub const fn is_zero(&self) -> bool {
        self.0[0] == 0 && self.0[1] == 0 && self.0[2] == 0 && self.0[3] == 0
    }

    /// The value as a u64 if it fits.
    pub const fn to_u64(&self) -> Option<u64> {
        if self.0[1] == 0 && self.0[2] == 0 && self.0[3] == 0 {
            Some(self.0[0])
        } else {
            None
        }
    }

    /// The low 64 bits (the rest dropped).
    pub const fn low_u64(&self) -> u64 {
        self.0[0]
    }

    pub fn overflowing_add(self, rhs: U256) -> (U256, bool) {
        let mut out = [0u64; 4];
        let mut carry = false;
        for (i, limb) in out.iter_mut().enumerate() {
            let (s1, c1) = self.0[i].overflowing_add(rhs.0[i]);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *limb = s2;
            carry = c1 || c2;
        }
        (U256(out), carry)
    }

    pub fn overflowing_sub(self, rhs: U256) -> (U256, bool) {
        let mut out = [0u64; 4];
        let mut borrow = false;
        for (i, limb) in out.iter_mut().enumerate() {
            let (d1, b1) = self.0[i].overflowing_sub(rhs.0[i]);
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            *limb = d2;
            borrow = b1 || b2;
        }
        (U256(out), borrow)
    }

    /// The low 256 bits of the product and whether any higher bit was set.
    pub fn overflowing_mul(self, rhs: U256) -> (U256, bool) {
        let mut out = [0u64; 4];
        let mut overflow = false;
        for i in 0..4 {
            let mut carry: u128 = 0;
            for j in 0..4 {
                let product = u128::from(self.0[i]) * u128::from(rhs.0[j]) + carry;
                if i + j < 4 {
                    let sum = u128::from(out[i + j]) + (product & u128::from(u64::MAX));
                    out[i + j] = sum as u64;
                    carry = (product >> 64) + (sum >> 64);
                } else {
                    overflow |= product != 0;
                    carry = product >> 64;
                }
            }
            overflow |= carry != 0;
        }
        (U256(out), overflow)
    }

    pub fn checked_add(self, rhs: U256) -> Option<U256> {
        let (v, o) = self.overflowing_add(rhs);
        if o {
            None
        } else {
            Some(v)
        }
    }

    pub fn checked_sub(self, rhs: U256) -> Option<U256> {
        let (v, o) = self.overflowing_sub(rhs);
        if o {
            None
        } else {
            Some(v)
        }
    }

    pub fn checked_mul(self, rhs: U256) -> Option<U256> {
        let (v, o) = self.overflowing_mul(rhs);
        if o {
            None
        } else {
            Some(v)
        }
    }

    /// Quotient and remainder; `None` when dividing by zero.
    pub fn checked_div_rem(self, rhs: U256) -> Option<(U256, U256)> {
        if rhs.is_zero() {
            return None;
        }
        if self < rhs {
            return Some((U256::ZERO, self));
        }
        if let (Some(a), Some(b)) = (self.to_u64(), rhs.to_u64()) {
            return Some((U256::from_u64(a / b), U256::from_u64(a % b)));
        }
        // Restoring long division, one bit at a time from the highest set bit.
        let mut quotient = U256::ZERO;
        let mut remainder = U256::ZERO;
        for bit in (0..self.bits()).rev() {
            remainder = remainder.shl1();
            if self.bit(bit) {
                remainder.0[0] |= 1;
            }
            if remainder >= rhs {
                remainder = remainder.overflowing_sub(rhs).0;
                quotient.0[(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }
        Some((quotient, remainder))
    }

    /// The number of significant bits (0 for zero).
    pub fn bits(&self) -> u32 {
        for i in (0..4).rev() {
            if self.0[i] != 0 {
                return 64 * i as u32 + (64 - self.0[i].leading_zeros());
            }
        }
        0
    }

    pub fn bit(&self, index: u32) -> bool {
        index < 256 && (self.0[(index / 64) as usize] >> (index % 64)) & 1 == 1
    }

    fn shl1(self) -> U256 {
        let mut out = [0u64; 4];
        for (i, limb) in out.iter_mut().enumerate() {
            *limb = (self.0[i] << 1) | if i > 0 { self.0[i - 1] >> 63 } else { 0 };
        }
        U256(out)
    }
}

impl Ord for U256 {
    fn cmp(&self, other: &U256) -> Ordering {
        for i in (0..4).rev() {
            match self.0[i].cmp(&other.0[i]) {
                Ordering::Equal => continue,
                unequal => return unequal,
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for U256 {
    fn partial_cmp(&self, other: &U256) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl From<u64> for U256 {
    fn from(v: u64) -> U256 {
        U256::from_u64(v)
    }
}

impl From<u128> for U256 {
    fn from(v: u128) -> U256 {
        U256::from_u128(v)
    }
}

impl From<bool> for U256 {
    fn from(v: bool) -> U256 {
        U256::from_u64(u64::from(v))
    }
}

impl Add for U256 {
    type Output = U256;
    /// Checked, as Solidity's `+`: reverts with `Panic(0x11)` on overflow.
    fn add(self, rhs: U256) -> U256 {
        self.checked_add(rhs)
            .unwrap_or_else(|| crate::revert::panic(crate::revert::PANIC_OVERFLOW))
    }
}

impl Sub for U256 {
    type Output = U256;
    /// Checked, as Solidity's `-`: reverts with `Panic(0x11)` on underflow.
    fn sub(self, rhs: U256) -> U256 {
        self.checked_sub(rhs)
            .unwrap_or_else(|| crate::revert::panic(crate::revert::PANIC_OVERFLOW))
    }
}

impl Mul for U256 {
    type Output = U256;
    /// Checked, as Solidity's `*`: reverts with `Panic(0x11)` on overflow.
    fn mul(self, rhs: U256) -> U256 {
        self.checked_mul(rhs)
            .unwrap_or_else(|| crate::revert::panic(crate::revert::PANIC_OVERFLOW))
    }
}

impl Div for U256 {
    type Output = U256;
    /// As Solidity's `/`: reverts with `Panic(0x12)` when dividing by zero.
    fn div(self, rhs: U256) -> U256 {
        match self.checked_div_rem(rhs) {
            Some((q, _)) => q,
            None => crate::revert::panic(crate::revert::PANIC_DIVISION_BY_ZERO),
        }
    }
}

impl Rem for U256 {
    type Output = U256;
    /// As Solidity's `%`: reverts with `Panic(0x12)` when dividing by zero.
    fn rem(self, rhs: U256) -> U256 {
        match self.checked_div_rem(rhs) {
            Some((_, r)) => r,
            None => crate::revert::panic(crate::revert::PANIC_DIVISION_BY_ZERO),
        }
    }
}

impl BitAnd for U256 {
    type Output = U256;
    fn bitand(self, rhs: U256) -> U256 {
        U256([
            self.0[0] & rhs.0[0],
            self.0[1] & rhs.0[1],
            self.0[2] & rhs.0[2],
            self.0[3] & rhs.0[3],
        ])
    }
}

impl BitOr for U256 {
    type Output = U256;
    fn bitor(self, rhs: U256) -> U256 {
        U256([
            self.0[0] | rhs.0[0],
            self.0[1] | rhs.0[1],
            self.0[2] | rhs.0[2],
            self.0[3] | rhs.0[3],
        ])
    }
}

/// Decimal, as Solidity tools print uint256.
impl fmt::Display for U256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0");
        }
        let mut digits = [0u8; 78];
        let mut n = 0;
        let mut v = *self;
        let ten = U256::from_u64(10);
        while !v.is_zero() {
            let (q, r) = v.checked_div_rem(ten).unwrap_or((U256::ZERO, U256::ZERO));
            digits[n] = b'0' + r.low_u64() as u8;
            n += 1;
            v = q;
        }
        for d in digits[..n].iter().rev() {
            fmt::Write::write_char(f, char::from(*d))?;
        }
        Ok(())
    }
}

impl fmt::Debug for U256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A 20-byte account or contract address (the same in both environments).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Address(pub [u8; 20]);

impl Address {
    pub const ZERO: Address = Address([0; 20]);

    /// The address as an ABI word: 12 zero bytes, then the 20 bytes.
    pub const fn to_word(self) -> [u8; 32] {
        let mut w = [0u8; 32];
        let mut i = 0;
        while i < 20 {
            w[12 + i] = self.0[i];
            i += 1;
        }
        w
    }

    /// The address in an ABI word, if its 12 high bytes are clear (Solidity's rule).
    pub fn from_word(w: &[u8; 32]) -> Option<Address> {
        if w[..12].iter().any(|b| *b != 0) {
            return None;
        }
        let mut a = [0u8; 20];
        a.copy_from_slice(&w[12..]);
        Some(Address(a))
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 20]
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0x")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A raw 32-byte word (`bytes32`, a hash, a storage slot's contents).
pub type B256 = [u8; 32];
