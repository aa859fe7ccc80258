//! `keel abi encode|decode`: Solidity-ABI calldata and output from the command line, so
//! `keel tx call --data` and `keel query call` need no other tool. The encoding is
//! keel-sdk's (the one contracts use); the types are the common static ones plus `bytes`
//! and `string`.

use keel_sdk::abi::{encode_call, encode_seq, AbiType, Bytes, Encode};
use keel_sdk::keccak::selector_of;
use keel_sdk::{Address, B256, U256};
use serde_json::{json, Value};

/// Arguments per call, enough for any function a person types out.
pub const MAX_ARGS: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AbiCliError {
    #[error("signature must look like name(type,...): {0}")]
    Signature(String),
    #[error("unsupported type {0} (uint8..uint256, address, bool, bytes32, bytes, string)")]
    Type(String),
    #[error("{expected} arguments expected, {got} given")]
    Count { expected: usize, got: usize },
    #[error("argument {index} is not a valid {ty}: {value}")]
    Value {
        index: usize,
        ty: String,
        value: String,
    },
    #[error("output does not decode as ({0})")]
    Decode(String),
    #[error("not hex: {0}")]
    Hex(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Uint(u32),
    Address,
    Bool,
    Bytes32,
    Bytes,
    String,
}

fn kind(ty: &str) -> Result<Kind, AbiCliError> {
    let unsupported = || AbiCliError::Type(ty.to_string());
    Ok(match ty {
        "address" => Kind::Address,
        "bool" => Kind::Bool,
        "bytes32" => Kind::Bytes32,
        "bytes" => Kind::Bytes,
        "string" => Kind::String,
        "uint" => Kind::Uint(256),
        _ => {
            // Digits only, no sign or leading zero: the name goes into the selector as
            // typed, so `uint08` or `uint+8` must not pass for `uint8`.
            let digits = ty.strip_prefix("uint").ok_or_else(unsupported)?;
            if digits.is_empty()
                || digits.starts_with('0')
                || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(unsupported());
            }
            let bits: u32 = digits.parse().map_err(|_| unsupported())?;
            if bits == 0 || bits > 256 || !bits.is_multiple_of(8) {
                return Err(unsupported());
            }
            Kind::Uint(bits)
        }
    })
}

/// Canonical type names, from "a, b" (spaces allowed; `uint` means uint256).
fn types(list: &str) -> Result<Vec<(String, Kind)>, AbiCliError> {
    let list = list.trim();
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let out: Vec<(String, Kind)> = list
        .split(',')
        .map(|t| {
            let t = t.trim();
            let k = kind(t)?;
            let canonical = if t == "uint" { "uint256" } else { t };
            Ok((canonical.to_string(), k))
        })
        .collect::<Result<_, AbiCliError>>()?;
    if out.len() > MAX_ARGS {
        return Err(AbiCliError::Count {
            expected: MAX_ARGS,
            got: out.len(),
        });
    }
    Ok(out)
}

fn hex_bytes(s: &str) -> Result<Vec<u8>, AbiCliError> {
    let h = s.strip_prefix("0x").unwrap_or(s);
    hex::decode(h).map_err(|_| AbiCliError::Hex(s.to_string()))
}

/// A decimal or 0x-hex unsigned integer.
fn parse_uint(s: &str) -> Option<U256> {
    if let Some(h) = s.strip_prefix("0x") {
        if h.is_empty() || h.len() > 64 {
            return None;
        }
        let mut word = [0u8; 32];
        let padded = format!("{h:0>64}");
        hex::decode_to_slice(padded, &mut word).ok()?;
        return Some(U256::from_be_bytes(word));
    }
    if s.is_empty() || s.len() > 78 {
        return None;
    }
    let mut v = U256::ZERO;
    for c in s.chars() {
        let d = c.to_digit(10)?;
        v = v
            .checked_mul(U256::from_u64(10))?
            .checked_add(U256::from_u64(u64::from(d)))?;
    }
    Some(v)
}

fn value(index: usize, ty: &str, k: Kind, raw: &str) -> Result<Box<dyn Encode>, AbiCliError> {
    let bad = || AbiCliError::Value {
        index,
        ty: ty.to_string(),
        value: raw.to_string(),
    };
    Ok(match k {
        Kind::Uint(bits) => {
            let v = parse_uint(raw).ok_or_else(bad)?;
            if v.bits() > bits {
                return Err(bad());
            }
            Box::new(v)
        }
        Kind::Address => {
            let b = hex_bytes(raw).map_err(|_| bad())?;
            let a: [u8; 20] = b.try_into().map_err(|_| bad())?;
            Box::new(Address(a))
        }
        Kind::Bool => Box::new(match raw {
            "true" => true,
            "false" => false,
            _ => return Err(bad()),
        }),
        Kind::Bytes32 => {
            let b: B256 = hex_bytes(raw)
                .map_err(|_| bad())?
                .try_into()
                .map_err(|_| bad())?;
            Box::new(b)
        }
        Kind::Bytes => Box::new(Bytes(hex_bytes(raw).map_err(|_| bad())?)),
        Kind::String => Box::new(raw.to_string()),
    })
}

/// One value per type, parsed from the arguments.
fn values(tys: &[(String, Kind)], args: &[String]) -> Result<Vec<Box<dyn Encode>>, AbiCliError> {
    if tys.len() != args.len() {
        return Err(AbiCliError::Count {
            expected: tys.len(),
            got: args.len(),
        });
    }
    tys.iter()
        .zip(args)
        .enumerate()
        .map(|(i, ((ty, k), raw))| value(i, ty, *k, raw))
        .collect()
}

/// A type list with at most one enclosing pair of parentheses removed.
fn type_list(list: &str) -> &str {
    let list = list.trim();
    list.strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .unwrap_or(list)
}

/// `name(type,...)` and the arguments → 0x calldata.
pub fn encode(signature: &str, args: &[String]) -> Result<String, AbiCliError> {
    let bad = || AbiCliError::Signature(signature.to_string());
    let (name, rest) = signature.split_once('(').ok_or_else(bad)?;
    let inner = rest.strip_suffix(')').ok_or_else(bad)?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(bad());
    }
    let tys = types(inner)?;
    let values = values(&tys, args)?;
    let canonical = format!(
        "{name}({})",
        tys.iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    let refs: Vec<&dyn Encode> = values.iter().map(|v| v.as_ref()).collect();
    Ok(format!(
        "0x{}",
        hex::encode(encode_call(selector_of(&canonical), &refs))
    ))
}

/// Output bytes → a JSON array of the values: integers as decimal strings, addresses,
/// bytes and bytes32 as 0x-hex, bools, strings.
pub fn decode(types_list: &str, data: &str) -> Result<Value, AbiCliError> {
    let list = type_list(types_list);
    let tys = types(list)?;
    let bytes = hex_bytes(data)?;
    let bad = || AbiCliError::Decode(list.to_string());
    let mut out = Vec::with_capacity(tys.len());
    for (i, (_, k)) in tys.iter().enumerate() {
        let head = 32 * i;
        out.push(match k {
            Kind::Uint(bits) => {
                let v = U256::decode_at(&bytes, head).map_err(|_| bad())?;
                if v.bits() > *bits {
                    return Err(bad());
                }
                json!(v.to_string())
            }
            Kind::Address => {
                let a = Address::decode_at(&bytes, head).map_err(|_| bad())?;
                json!(format!("0x{}", hex::encode(a.0)))
            }
            Kind::Bool => json!(bool::decode_at(&bytes, head).map_err(|_| bad())?),
            Kind::Bytes32 => json!(format!(
                "0x{}",
                hex::encode(B256::decode_at(&bytes, head).map_err(|_| bad())?)
            )),
            Kind::Bytes => json!(format!(
                "0x{}",
                hex::encode(Bytes::decode_at(&bytes, head).map_err(|_| bad())?.0)
            )),
            Kind::String => json!(String::decode_at(&bytes, head).map_err(|_| bad())?),
        });
    }
    Ok(Value::Array(out))
}

/// Encodes values without a selector (constructor arguments for `keel tx deploy --args`).
pub fn encode_args(types_list: &str, args: &[String]) -> Result<String, AbiCliError> {
    let tys = types(type_list(types_list))?;
    let values = values(&tys, args)?;
    let refs: Vec<&dyn Encode> = values.iter().map(|v| v.as_ref()).collect();
    Ok(format!("0x{}", hex::encode(encode_seq(&refs))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn encodes_like_solidity() {
        let bob = "0x00000000000000000000000000000000000000bb";
        assert_eq!(
            encode("transfer(address, uint)", &s(&[bob, "100"])).expect("encode"),
            format!("0xa9059cbb{:0>64}{:064x}", "bb", 100)
        );
        assert_eq!(encode("totalSupply()", &[]).expect("encode"), "0x18160ddd");
        let out = format!("0x{:064x}{:064x}", 7, 1);
        assert_eq!(
            decode("(uint256,bool)", &out).expect("decode"),
            json!(["7", true])
        );
        let text = encode_args("string", &s(&["router: mode 2"])).expect("args");
        assert_eq!(
            decode("string", &text).expect("decode"),
            json!(["router: mode 2"])
        );
        assert_eq!(
            encode_args("uint256", &s(&["0x10"])).expect("hex"),
            format!("0x{:064x}", 16)
        );
    }

    #[test]
    fn refuses_what_does_not_fit() {
        for (sig, args) in [
            ("f(uint8)", s(&["256"])),
            ("f(uint256)", s(&["-1"])),
            ("f(uint256)", s(&["1".repeat(80).as_str()])),
            ("f(address)", s(&["0x1234"])),
            ("f(bool)", s(&["yes"])),
            ("f(int256)", s(&["1"])),
            ("f(uint256[])", s(&["1"])),
            ("f(uint256)", s(&[])),
            ("f uint256", s(&["1"])),
            ("f(uint08)", s(&["1"])),
            ("f(uint+8)", s(&["1"])),
        ] {
            assert!(encode(sig, &args).is_err(), "{sig} {args:?}");
        }
        assert!(decode("uint8", &format!("0x{:064x}", 256)).is_err());
        assert!(decode("uint256", "0x1234").is_err());
        assert!(
            decode("((uint256))", &format!("0x{:064x}", 1)).is_err(),
            "one pair only"
        );
    }
}
