//! One implementation of the hex text form shared by the fixed-size byte newtypes (`Hash`,
//! `Address`, `PublicKey`): `0x`-prefixed lowercase hex out; `0x`-prefixed or bare hex of
//! exactly the right length in; serde as that string.

macro_rules! hex_bytes {
    ($name:ident, $len:expr) => {
        impl $name {
            pub fn to_hex(&self) -> String {
                format!("0x{}", hex::encode(self.0))
            }

            /// Parses `0x`-prefixed or bare hex of exactly the type's length.
            pub fn from_hex(text: &str) -> Result<$name, hex::FromHexError> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(text.strip_prefix("0x").unwrap_or(text), &mut out)?;
                Ok($name(out))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                $name::from_hex(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use hex_bytes;
