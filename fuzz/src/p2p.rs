//! What a stranger can send a validator before it is authenticated (p2p/src): the Noise
//! XX handshake messages (read by `snow`) and the identity frame (borsh `Identity`, then the
//! signature check over the handshake hash).

use borsh::{BorshDeserialize, BorshSerialize};
use keel_types::{PublicKey, Signature};
use snow::{Builder, HandshakeState};

/// `net::NOISE_PARAMS` (p2p/src/lib.rs).
const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// `net::IDENTITY_DOMAIN` (private in p2p/src/lib.rs).
const IDENTITY_DOMAIN: &[u8] = b"keel 2026-11 p2p identity v1";
/// The largest Noise message (`wire::NOISE_MAX_BYTES`).
const NOISE_MAX_BYTES: usize = 65_535;
/// Fixed static keys, so a run is a function of its input.
const RESPONDER_STATIC: [u8; 32] = [0x11; 32];
const INITIATOR_STATIC: [u8; 32] = [0x22; 32];
const INITIATOR_EPHEMERAL: [u8; 32] = [0x33; 32];
const RESPONDER_EPHEMERAL: [u8; 32] = [0x44; 32];

/// The layout of `net::Identity` (a private struct of p2p/src/lib.rs, decoded there with
/// `Identity::try_from_slice`): borsh of a struct is its fields in order, so this decodes
/// exactly the bytes the node decodes.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
struct Identity {
    public_key: PublicKey,
    signature: Signature,
}

fn prologue() -> Vec<u8> {
    let mut prologue = b"keel p2p v1".to_vec();
    prologue.extend(crate::FUZZ_CHAIN_ID.to_be_bytes());
    prologue.extend([0u8; 32]);
    prologue
}

fn handshake(initiator: bool) -> Option<HandshakeState> {
    let params = NOISE_PARAMS.parse().ok()?;
    let prologue = prologue();
    let builder = Builder::new(params).prologue(&prologue);
    if initiator {
        builder
            .local_private_key(&INITIATOR_STATIC)
            .fixed_ephemeral_key_for_testing_only(&INITIATOR_EPHEMERAL)
            .build_initiator()
            .ok()
    } else {
        builder
            .local_private_key(&RESPONDER_STATIC)
            .fixed_ephemeral_key_for_testing_only(&RESPONDER_EPHEMERAL)
            .build_responder()
            .ok()
    }
}

/// The first byte picks the frame: 0 the initiator's first handshake message as the
/// listener reads it, 1 the responder's reply as a dialer reads it, anything else the
/// identity frame. The rest is the frame.
pub fn p2p_preauth(data: &[u8]) {
    let Some((&kind, frame)) = data.split_first() else {
        return;
    };
    // The wire's u16 length prefix bounds every handshake message.
    if frame.len() > NOISE_MAX_BYTES {
        return;
    }
    let mut payload = vec![0u8; NOISE_MAX_BYTES];
    match kind % 3 {
        0 => {
            let mut hs = handshake(false).expect("noise parameters are valid");
            let _ = hs.read_message(frame, &mut payload);
        }
        1 => {
            let mut hs = handshake(true).expect("noise parameters are valid");
            let mut out = vec![0u8; NOISE_MAX_BYTES];
            hs.write_message(&[], &mut out)
                .expect("the first message is always writable");
            let _ = hs.read_message(frame, &mut payload);
        }
        _ => identity(frame),
    }
}

fn identity(frame: &[u8]) {
    let Ok(theirs) = Identity::try_from_slice(frame) else {
        return;
    };
    let encoded = borsh::to_vec(&theirs).expect("borsh into Vec<u8> is infallible");
    assert_eq!(encoded, frame, "identity: encode(decode(b)) != b");
    let mut signed = IDENTITY_DOMAIN.to_vec();
    signed.extend_from_slice(&[0u8; 32]);
    let _ = theirs.public_key.verify(&signed, &theirs.signature);
    let _ = theirs.public_key.validate();
}
