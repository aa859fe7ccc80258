//! Framing over one TCP stream: the Noise handshake, then length-prefixed messages split
//! into Noise transport messages. Each direction keeps its own nonce counter over a shared
//! stateless transport, so the reader and writer run independently.

use snow::{HandshakeState, StatelessTransportState};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Largest Noise message (the spec's limit), and its AEAD tag.
const NOISE_MAX_BYTES: usize = 65_535;
const TAG_BYTES: usize = 16;
const CHUNK_PLAIN_BYTES: usize = NOISE_MAX_BYTES - TAG_BYTES;
/// The length prefix of an application message.
const LEN_BYTES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("i/o: {0}")]
    Io(String),
    #[error("connection closed by peer")]
    Eof,
    #[error("connection closed")]
    Closed,
    #[error("noise: {0}")]
    Noise(String),
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    Oversized { len: usize, max: usize },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("identity: {0}")]
    Identity(String),
    #[error("handshake timed out")]
    Timeout,
    #[error("this address already has {max} handshakes in progress")]
    TooManyHandshakes { max: usize },
}

impl WireError {
    /// A short, bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            WireError::Io(_) => "io",
            WireError::Eof | WireError::Closed => "closed",
            WireError::Noise(_) => "noise",
            WireError::Oversized { .. } => "oversized",
            WireError::Protocol(_) => "protocol",
            WireError::Identity(_) => "identity",
            WireError::Timeout => "timeout",
            WireError::TooManyHandshakes { .. } => "too_many_handshakes_from_address",
        }
    }
}

fn io(e: std::io::Error) -> WireError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        WireError::Eof
    } else {
        WireError::Io(e.to_string())
    }
}

fn noise(e: snow::Error) -> WireError {
    WireError::Noise(e.to_string())
}

async fn read_noise(stream: &mut OwnedReadHalf) -> Result<Vec<u8>, WireError> {
    let len = usize::from(stream.read_u16().await.map_err(io)?);
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await.map_err(io)?;
    Ok(buf)
}

async fn write_noise(stream: &mut OwnedWriteHalf, bytes: &[u8]) -> Result<(), WireError> {
    let len = u16::try_from(bytes.len()).map_err(|_| WireError::Oversized {
        len: bytes.len(),
        max: NOISE_MAX_BYTES,
    })?;
    let mut out = Vec::with_capacity(2 + bytes.len());
    out.extend(len.to_be_bytes());
    out.extend_from_slice(bytes);
    stream.write_all(&out).await.map_err(io)
}

/// An established session.
#[derive(Debug)]
pub struct Link {
    reader: LinkReader,
    writer: LinkWriter,
    handshake_hash: Vec<u8>,
    /// The key the peer proved it holds (set once its identity verified).
    pub(crate) peer_key: Option<keel_types::PublicKey>,
}

impl Link {
    /// Runs Noise XX over `stream`. `max_frame_bytes` bounds the messages received until
    /// [`Link::set_max_frame_bytes`] raises it (after the peer is authenticated).
    pub async fn handshake(
        stream: TcpStream,
        initiator: bool,
        prologue: &[u8],
        max_frame_bytes: usize,
    ) -> Result<Link, WireError> {
        stream.set_nodelay(true).map_err(io)?;
        let (mut r, mut w) = stream.into_split();
        let params = super::NOISE_PARAMS
            .parse()
            .map_err(|e: snow::Error| WireError::Noise(e.to_string()))?;
        let builder = snow::Builder::new(params);
        let keypair = builder.generate_keypair().map_err(noise)?;
        let builder = builder
            .local_private_key(&keypair.private)
            .prologue(prologue);
        let mut hs: HandshakeState = if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .map_err(noise)?;
        let mut buf = vec![0u8; NOISE_MAX_BYTES];
        let mut payload = vec![0u8; NOISE_MAX_BYTES];
        // XX: → e; ← e, ee, s, es; → s, se.
        while !hs.is_handshake_finished() {
            if hs.is_my_turn() {
                let n = hs.write_message(&[], &mut buf).map_err(noise)?;
                write_noise(&mut w, &buf[..n]).await?;
            } else {
                let msg = read_noise(&mut r).await?;
                hs.read_message(&msg, &mut payload).map_err(noise)?;
            }
        }
        let handshake_hash = hs.get_handshake_hash().to_vec();
        let transport = Arc::new(hs.into_stateless_transport_mode().map_err(noise)?);
        Ok(Link {
            reader: LinkReader {
                stream: r,
                transport: transport.clone(),
                nonce: 0,
                max_frame_bytes,
            },
            writer: LinkWriter {
                stream: w,
                transport,
                nonce: 0,
            },
            peer_key: None,
            handshake_hash,
        })
    }

    pub fn handshake_hash(&self) -> &[u8] {
        &self.handshake_hash
    }

    /// The largest message accepted from now on.
    pub fn set_max_frame_bytes(&mut self, max_frame_bytes: usize) {
        self.reader.max_frame_bytes = max_frame_bytes;
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.writer.send(bytes).await
    }

    pub async fn recv(&mut self) -> Result<Vec<u8>, WireError> {
        self.reader.recv().await
    }

    pub fn split(self) -> (LinkReader, LinkWriter) {
        (self.reader, self.writer)
    }
}

#[derive(Debug)]
pub struct LinkReader {
    stream: OwnedReadHalf,
    transport: Arc<StatelessTransportState>,
    nonce: u64,
    max_frame_bytes: usize,
}

impl LinkReader {
    async fn chunk_within(&mut self, idle: Option<Duration>) -> Result<Vec<u8>, WireError> {
        match idle {
            None => self.next_chunk().await,
            Some(idle) => tokio::time::timeout(idle, self.next_chunk())
                .await
                .map_err(|_| WireError::Timeout)?,
        }
    }

    async fn next_chunk(&mut self) -> Result<Vec<u8>, WireError> {
        let ciphertext = read_noise(&mut self.stream).await?;
        let mut plain = vec![0u8; ciphertext.len()];
        let n = self
            .transport
            .read_message(self.nonce, &ciphertext, &mut plain)
            .map_err(noise)?;
        self.nonce += 1;
        plain.truncate(n);
        Ok(plain)
    }

    /// One application message; its declared length is checked before allocating.
    pub async fn recv(&mut self) -> Result<Vec<u8>, WireError> {
        self.recv_within(None).await
    }

    /// [`Self::recv`], failing with [`WireError::Timeout`] when no chunk arrives for `idle`.
    /// Counted per chunk, not per message, so a large message on a slow but live link is
    /// not cut off.
    pub async fn recv_within(&mut self, idle: Option<Duration>) -> Result<Vec<u8>, WireError> {
        let first = self.chunk_within(idle).await?;
        let Some(len) = first.get(..LEN_BYTES) else {
            return Err(WireError::Protocol("chunk shorter than a length".into()));
        };
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        if len > self.max_frame_bytes {
            return Err(WireError::Oversized {
                len,
                max: self.max_frame_bytes,
            });
        }
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&first[LEN_BYTES..]);
        while out.len() < len {
            let chunk = self.chunk_within(idle).await?;
            if chunk.is_empty() {
                return Err(WireError::Protocol("empty chunk".into()));
            }
            out.extend(chunk);
        }
        if out.len() != len {
            return Err(WireError::Protocol(format!(
                "message declared {len} bytes, chunks carried {}",
                out.len()
            )));
        }
        Ok(out)
    }
}

#[derive(Debug)]
pub struct LinkWriter {
    stream: OwnedWriteHalf,
    transport: Arc<StatelessTransportState>,
    nonce: u64,
}

impl LinkWriter {
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let len = u32::try_from(bytes.len()).map_err(|_| WireError::Oversized {
            len: bytes.len(),
            max: u32::MAX as usize,
        })?;
        let mut plain = Vec::with_capacity(LEN_BYTES + bytes.len());
        plain.extend(len.to_be_bytes());
        plain.extend_from_slice(bytes);
        let mut cipher = vec![0u8; NOISE_MAX_BYTES];
        for chunk in plain.chunks(CHUNK_PLAIN_BYTES) {
            let n = self
                .transport
                .write_message(self.nonce, chunk, &mut cipher)
                .map_err(noise)?;
            self.nonce += 1;
            write_noise(&mut self.stream, &cipher[..n]).await?;
        }
        Ok(())
    }
}
