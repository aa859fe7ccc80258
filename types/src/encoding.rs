//! The canonical encoding: one version byte, then the borsh encoding of the value.
//!
//! Borsh is canonical by construction (fixed-width little-endian integers, length-prefixed
//! sequences, no maps with free order), so equal values always encode to equal bytes, which
//! is what hashing and signing need. The version byte lets an object's layout evolve: a
//! decoder names the versions it knows and rejects every other one.
//!
//! Decoding is the trust boundary for bytes from peers, RPC and disk. It checks, in order:
//! the input length against the type's documented bound, the version byte, the borsh body,
//! that no bytes trail it, and then the type's own field bounds (`validate`).

use borsh::{BorshDeserialize, BorshSerialize};

/// Why bytes did not decode to a value. Every variant is a property of the input, never an
/// internal failure, so callers can report it to whoever sent the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{kind}: input is empty")]
    Empty { kind: &'static str },
    #[error("{kind}: {len_bytes} bytes exceeds the bound of {max_bytes} bytes")]
    TooLarge {
        kind: &'static str,
        len_bytes: usize,
        max_bytes: usize,
    },
    #[error("{kind}: unknown encoding version {got} (this node knows version {known})")]
    UnknownVersion {
        kind: &'static str,
        got: u8,
        known: u8,
    },
    #[error("{kind}: input ends before the value is complete")]
    Truncated { kind: &'static str },
    #[error("{kind}: {count} trailing bytes after the value")]
    TrailingBytes { kind: &'static str, count: usize },
    #[error("{kind}: malformed: {reason}")]
    Malformed { kind: &'static str, reason: String },
    #[error("{kind}: field {field} has {len} elements/bytes, over the bound of {max}")]
    FieldTooLarge {
        kind: &'static str,
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{kind}: invalid field {field}: {reason}")]
    InvalidField {
        kind: &'static str,
        field: &'static str,
        reason: String,
    },
}

/// Values whose bound is at most this many bytes get their whole bound reserved by
/// [`Canonical::encode`]; larger ones start at `ENCODE_START_BYTES` and grow.
pub const ENCODE_CAPACITY_BYTES: usize = 1024;
const ENCODE_START_BYTES: usize = 64;

/// A type with one canonical, versioned binary form.
pub trait Canonical: BorshSerialize + BorshDeserialize + Sized {
    /// Name used in errors and in hash domains.
    const KIND: &'static str;
    /// The encoding version this build writes and accepts.
    const VERSION: u8;
    /// Upper bound on the encoded length, version byte included.
    const MAX_ENCODED_BYTES: usize;

    /// Field-level bounds a borsh decode cannot express (vector lengths, ranges).
    fn validate(&self) -> Result<(), DecodeError> {
        Ok(())
    }

    /// The canonical bytes of this value.
    fn encode(&self) -> Vec<u8> {
        // Room for the whole value up front when its bound is small (an account record with
        // a policy's spending grew its buffer twice from 64 bytes: a profile's hot spot).
        let capacity = match Self::MAX_ENCODED_BYTES <= ENCODE_CAPACITY_BYTES {
            true => Self::MAX_ENCODED_BYTES,
            false => ENCODE_START_BYTES,
        };
        let mut out = Vec::with_capacity(capacity);
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical bytes of this value to `out` (what [`Canonical::encode`]
    /// returns), for a caller that puts them after bytes of its own without a second buffer.
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(Self::VERSION);
        // Writing into a Vec cannot fail; borsh only errors on I/O.
        BorshSerialize::serialize(self, out).expect("borsh into Vec<u8> is infallible");
    }

    /// Decodes canonical bytes, rejecting anything that is not exactly one valid value.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let kind = Self::KIND;
        if bytes.len() > Self::MAX_ENCODED_BYTES {
            return Err(DecodeError::TooLarge {
                kind,
                len_bytes: bytes.len(),
                max_bytes: Self::MAX_ENCODED_BYTES,
            });
        }
        let (&version, mut body) = bytes.split_first().ok_or(DecodeError::Empty { kind })?;
        if version != Self::VERSION {
            return Err(DecodeError::UnknownVersion {
                kind,
                got: version,
                known: Self::VERSION,
            });
        }
        let value = <Self as BorshDeserialize>::deserialize(&mut body)
            .map_err(|e| borsh_error(kind, &e))?;
        if !body.is_empty() {
            return Err(DecodeError::TrailingBytes {
                kind,
                count: body.len(),
            });
        }
        value.validate()?;
        Ok(value)
    }
}

fn borsh_error(kind: &'static str, error: &std::io::Error) -> DecodeError {
    // borsh reports running out of input as InvalidData with this message (and UnexpectedEof
    // from some readers); everything else is a structural error.
    let message = error.to_string();
    if error.kind() == std::io::ErrorKind::UnexpectedEof
        || message.contains("Unexpected length of input")
    {
        DecodeError::Truncated { kind }
    } else {
        DecodeError::Malformed {
            kind,
            reason: message,
        }
    }
}

/// Checks a length against a bound, for use in `validate`.
pub fn check_len(
    kind: &'static str,
    field: &'static str,
    len: usize,
    max: usize,
) -> Result<(), DecodeError> {
    if len > max {
        return Err(DecodeError::FieldTooLarge {
            kind,
            field,
            len,
            max,
        });
    }
    Ok(())
}
