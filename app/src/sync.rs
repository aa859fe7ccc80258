//! Serving catch-up from the store: finalized blocks plus the certificate (or the headers
//! leading to one) that proves them, and the records that make that possible.

use keel_consensus::{Message, MAX_SYNC_BLOCKS, MAX_SYNC_HEADERS};
use keel_state::StateError;
use keel_store::Store;
use keel_types::{Canonical, Certificate, Header, Height};

const CERT_PREFIX: &[u8] = b"cert/";
/// Bytes of blocks in one sync response: the message limit less room for the headers (each
/// ≤ 233 bytes) and the certificate.
const SYNC_RESPONSE_BUDGET_BYTES: usize =
    keel_consensus::MAX_MESSAGE_BYTES - MAX_SYNC_HEADERS * 256 - 64 * 1024;
const SUFFIX_PREFIX: &[u8] = b"suffix/";

fn key(prefix: &[u8], n: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend(n.to_be_bytes());
    k
}

/// Records the finalization certificate of a block finalized directly.
pub fn put_certificate(
    store: &Store,
    height: Height,
    cert: &Certificate,
) -> Result<(), StateError> {
    store.put_aux(&key(CERT_PREFIX, height), &cert.encode())
}

/// Records the empty suffix blocks (headers) and certificate that finalized an epoch's last
/// block through descendants.
pub fn put_epoch_suffix(
    store: &Store,
    epoch: u64,
    headers: &[Header],
    cert: &Certificate,
) -> Result<(), StateError> {
    let value = borsh::to_vec(&(headers.to_vec(), cert.clone()))
        .map_err(|e| StateError::Corrupt(e.to_string()))?;
    store.put_aux(&key(SUFFIX_PREFIX, epoch), &value)
}

/// The finalization certificate recorded for `height`, if it was finalized directly.
pub fn certificate_of(store: &Store, height: Height) -> Result<Option<Certificate>, StateError> {
    store
        .get_aux(&key(CERT_PREFIX, height))?
        .map(|v| Certificate::decode(&v).map_err(|e| StateError::Corrupt(e.to_string())))
        .transpose()
}

/// The finalization that proves block `height`: its own certificate, or, for an epoch's
/// last block finalized through its suffix, the suffix's certificate.
pub fn finalization_of(
    store: &Store,
    height: Height,
    epoch_length: u64,
) -> Result<Option<Certificate>, StateError> {
    if let Some(cert) = certificate_of(store, height)? {
        return Ok(Some(cert));
    }
    if height == 0 || epoch_length == 0 || !height.is_multiple_of(epoch_length) {
        return Ok(None);
    }
    Ok(epoch_suffix(store, height / epoch_length - 1)?.map(|(_, cert)| cert))
}

fn certificate_at_or_after(
    store: &Store,
    height: Height,
) -> Result<Option<(Height, Certificate)>, StateError> {
    let Some((k, v)) = store.next_aux(CERT_PREFIX, &key(CERT_PREFIX, height))? else {
        return Ok(None);
    };
    let h = k[CERT_PREFIX.len()..]
        .try_into()
        .map(Height::from_be_bytes)
        .map_err(|_| StateError::Corrupt("certificate key".into()))?;
    let cert = Certificate::decode(&v).map_err(|e| StateError::Corrupt(e.to_string()))?;
    Ok(Some((h, cert)))
}

/// The suffix headers and certificate recorded for `epoch`, if its last block was finalized
/// through descendants.
pub fn epoch_suffix(
    store: &Store,
    epoch: u64,
) -> Result<Option<(Vec<Header>, Certificate)>, StateError> {
    let Some(v) = store.get_aux(&key(SUFFIX_PREFIX, epoch))? else {
        return Ok(None);
    };
    borsh::from_slice(&v)
        .map(Some)
        .map_err(|e| StateError::Corrupt(e.to_string()))
}

/// A `SyncResponse` for `from_height`, one epoch at a time (the certificate must verify
/// against the requester's set), or `None` if this node cannot prove that range.
pub fn response(
    store: &Store,
    from_height: Height,
    epoch_length: u64,
) -> Result<Option<Message>, StateError> {
    let tip = store.latest().map_or(0, |l| l.height);
    if from_height == 0 || from_height > tip {
        return Ok(None);
    }
    let epoch = (from_height - 1) / epoch_length;
    let epoch_last = epoch.saturating_add(1).saturating_mul(epoch_length);
    let window_end = tip
        .min(epoch_last)
        .min(from_height + MAX_SYNC_BLOCKS as u64 - 1);
    // Blocks up to the window's end, and within the message size (a response must decode
    // on the other side; at least one block always goes).
    let mut blocks = Vec::new();
    let mut bytes = 0usize;
    for h in from_height..=window_end {
        let Some(b) = store.block(h)? else {
            return Ok(None); // pruned
        };
        bytes += b.encode().len();
        if !blocks.is_empty() && bytes > SYNC_RESPONSE_BUDGET_BYTES {
            break;
        }
        blocks.push(b);
    }
    let window_end = from_height + blocks.len() as u64 - 1;
    // 1. The last block in the window with its own certificate.
    if let Some((h, cert)) = certificate_at_or_after(store, from_height)? {
        if h <= window_end {
            let mut top = h;
            let mut top_cert = cert;
            while let Some((next, c)) = certificate_at_or_after(store, top + 1)? {
                if next > window_end {
                    break;
                }
                top = next;
                top_cert = c;
            }
            blocks.truncate((top - from_height + 1) as usize);
            return Ok(Some(Message::SyncResponse {
                blocks,
                headers: Vec::new(),
                finalization: top_cert,
            }));
        }
        // 2. Headers from the window's end to the next certified block of the epoch.
        if h <= epoch_last && h - window_end <= MAX_SYNC_HEADERS as u64 {
            let mut headers = Vec::new();
            for height in window_end + 1..=h {
                match store.block(height)? {
                    Some(b) => headers.push(b.header),
                    None => return Ok(None),
                }
            }
            return Ok(Some(Message::SyncResponse {
                blocks,
                headers,
                finalization: cert,
            }));
        }
    }
    // 3. At the epoch's end: the headers to its last block, then the suffix proof.
    if window_end == epoch_last || tip >= epoch_last {
        if let Some((suffix, cert)) = epoch_suffix(store, epoch)? {
            let mut headers = Vec::new();
            for height in window_end + 1..=epoch_last {
                match store.block(height)? {
                    Some(b) => headers.push(b.header),
                    None => return Ok(None),
                }
            }
            headers.extend(suffix);
            if headers.len() > MAX_SYNC_HEADERS {
                return Ok(None);
            }
            return Ok(Some(Message::SyncResponse {
                blocks,
                headers,
                finalization: cert,
            }));
        }
    }
    Ok(None)
}
