//! Key files: an ed25519 secret seed with its public key and address, as JSON, readable by
//! the owner only.

use keel_types::{Address, PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: not a keel key file: {reason}")]
    Parse { path: String, reason: String },
    #[error("{0} already exists; refusing to overwrite a key (move it away first)")]
    Exists(String),
}

/// Why a key file's fields do not make a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("secret_seed: {0}")]
    Seed(#[from] hex::FromHexError),
    #[error("public_key does not match secret_seed")]
    PublicKeyMismatch,
    #[error("address does not match public_key")]
    AddressMismatch,
}

/// The JSON form of a key file. `secret_seed` is the 32-byte ed25519 seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub address: Address,
    pub public_key: PublicKey,
    pub secret_seed: String,
}

impl KeyFile {
    pub fn from_secret(secret: &SecretKey) -> KeyFile {
        let public_key = secret.public_key();
        KeyFile {
            address: Address::from_public_key(&public_key),
            public_key,
            secret_seed: format!("0x{}", hex::encode(secret.seed())),
        }
    }

    /// The secret key, after checking that the stored public key and address match it.
    pub fn secret(&self) -> Result<SecretKey, KeyFileError> {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(self.secret_seed.trim_start_matches("0x"), &mut seed)?;
        let secret = SecretKey::from_seed(seed);
        if secret.public_key() != self.public_key {
            return Err(KeyFileError::PublicKeyMismatch);
        }
        if Address::from_public_key(&self.public_key) != self.address {
            return Err(KeyFileError::AddressMismatch);
        }
        Ok(secret)
    }
}

/// A fresh key from the operating system's random number generator.
pub fn generate() -> SecretKey {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    SecretKey::from_seed(seed)
}

/// Write `secret` to `path` (mode 0600), never overwriting an existing file.
pub fn write(path: &Path, secret: &SecretKey) -> Result<KeyFile, KeyError> {
    let io = |error| KeyError::Io {
        path: path.display().to_string(),
        error,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file = KeyFile::from_secret(secret);
    let mut json = serde_json::to_vec_pretty(&file).map_err(|e| io(std::io::Error::other(e)))?;
    json.push(b'\n');
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => KeyError::Exists(path.display().to_string()),
        _ => io(e),
    })?;
    out.write_all(&json).map_err(io)?;
    out.sync_all().map_err(io)?;
    Ok(file)
}

/// Read and check a key file.
pub fn read(path: &Path) -> Result<SecretKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|error| KeyError::Io {
        path: path.display().to_string(),
        error,
    })?;
    let parse = |reason: String| KeyError::Parse {
        path: path.display().to_string(),
        reason,
    };
    let file: KeyFile = serde_json::from_str(&text).map_err(|e| parse(e.to_string()))?;
    file.secret().map_err(|e| parse(e.to_string()))
}
