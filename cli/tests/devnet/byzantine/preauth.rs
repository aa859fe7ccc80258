//! Attacks before authentication: oversized and junk pre-auth frames, and idle handshakes
//! from many addresses and /24 prefixes (Linux routes all of 127.0.0.0/8 to lo).

use super::*;

/// Largest Noise message.
const NOISE_MAX: usize = 65_535;

fn prologue(harness: &Harness) -> Vec<u8> {
    let mut prologue = b"keel p2p v1".to_vec();
    prologue.extend(harness.chain_id.to_be_bytes());
    prologue.extend(harness.genesis_hash.0);
    prologue
}

async fn write_noise(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(bytes.len()).expect("noise message");
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(bytes).await
}

async fn read_noise(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

/// A stranger's side of Noise XX with the chain's prologue (no validator identity yet).
async fn noise(addr: &str, prologue: &[u8]) -> (TcpStream, snow::TransportState) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let builder = snow::Builder::new(NOISE_PARAMS.parse().expect("params"));
    let keypair = builder.generate_keypair().expect("keypair");
    let mut hs = builder
        .local_private_key(&keypair.private)
        .prologue(prologue)
        .build_initiator()
        .expect("initiator");
    let mut buf = vec![0u8; NOISE_MAX];
    let mut payload = vec![0u8; NOISE_MAX];
    while !hs.is_handshake_finished() {
        if hs.is_my_turn() {
            let n = hs.write_message(&[], &mut buf).expect("write");
            write_noise(&mut stream, &buf[..n]).await.expect("send");
        } else {
            let msg = read_noise(&mut stream).await.expect("receive");
            hs.read_message(&msg, &mut payload).expect("read");
        }
    }
    (stream, hs.into_transport_mode().expect("transport"))
}

/// Sends one encrypted chunk: `declared` as the message length, then `filler` bytes.
async fn send_chunk(
    stream: &mut TcpStream,
    transport: &mut snow::TransportState,
    declared: u32,
    filler: usize,
) -> std::io::Result<()> {
    let mut plain = declared.to_be_bytes().to_vec();
    plain.resize(4 + filler, 0x5a);
    let mut cipher = vec![0u8; NOISE_MAX];
    let n = transport
        .write_message(&plain, &mut cipher)
        .expect("encrypt");
    write_noise(stream, &cipher[..n]).await
}

/// Whether the node closes `stream` within `within` (reading whatever it sends first).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = vec![0u8; NOISE_MAX];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// `count` TCP connections to `addr` from addresses in 127.0.`prefix`.0/24 that never
/// start the handshake.
async fn idle_connections(addr: &str, prefix: u8, count: usize) -> Vec<TcpStream> {
    let target: std::net::SocketAddr = addr.parse().expect("address");
    let mut out = Vec::new();
    for k in 0..count {
        let host = 1 + (k % 250) as u8;
        let socket = TcpSocket::new_v4().expect("socket");
        let from = std::net::SocketAddr::from(([127, 0, prefix, host], 0));
        socket.bind(from).expect("bind 127.0.x.y");
        if let Ok(stream) = socket.connect(target).await {
            out.push(stream);
        }
    }
    out
}

/// How many of `streams` the node has not closed after `wait`.
async fn still_open(streams: &mut [TcpStream], wait: Duration) -> usize {
    tokio::time::sleep(wait).await;
    let mut open = 0;
    for s in streams.iter_mut() {
        if !closed_within(s, Duration::from_millis(10)).await {
            open += 1;
        }
    }
    open
}

#[test]
fn byzantine_preauth_attacks_are_refused_and_cost_nothing() {
    let _guard = serial();
    let (mut cluster, harness) = devnet(26_030);
    harness.seen().echo = true;
    let load = start_load(&cluster, &[0, 1], 35, 14, &[0, 1, 2, 3]);
    cluster.wait_height(&HONEST, 3, PROGRESS_TIMEOUT);
    let prologue = prologue(&harness);
    let target = cluster.p2p(0);

    // 1. Oversized identity frames: far above the pre-auth bound, and between it and the
    //    authenticated frame limit (which a node without the pre-auth bound would accept).
    let oversized_before = rejected(&cluster, 0, "oversized");
    let declared = [
        u32::MAX,
        1 << 30,
        8 << 20,
        (MAX_PREAUTH_FRAME_BYTES + 1) as u32,
    ];
    for &len in &declared {
        let closed = cluster.rt.block_on(async {
            let (mut stream, mut transport) = noise(&target, &prologue).await;
            let started = tokio::time::Instant::now();
            // Keep sending the declared bytes until the node hangs up.
            let mut sent = 0usize;
            let mut ok = send_chunk(&mut stream, &mut transport, len, 1024)
                .await
                .is_ok();
            while ok && sent < len as usize && started.elapsed() < PROMPT_CLOSE {
                ok = send_chunk(&mut stream, &mut transport, 0, NOISE_MAX - 4 - 16 - 4)
                    .await
                    .is_ok();
                sent += NOISE_MAX;
                if sent > (16 << 20) {
                    break;
                }
            }
            closed_within(&mut stream, PROMPT_CLOSE.saturating_sub(started.elapsed())).await
        });
        assert!(
            closed,
            "a pre-auth frame declaring {len} bytes was not refused promptly"
        );
    }
    let oversized = rejected(&cluster, 0, "oversized") - oversized_before;
    assert!(
        oversized >= declared.len() as u64,
        "{oversized} of {} oversized pre-auth frames refused as oversized",
        declared.len()
    );

    // 2. Junk within the bounds: a full-size junk first handshake message, and a junk
    //    identity of exactly the pre-auth bound.
    let (noise_before, protocol_before) = (
        rejected(&cluster, 0, "noise"),
        rejected(&cluster, 0, "protocol"),
    );
    cluster.rt.block_on(async {
        let mut stream = TcpStream::connect(&target).await.expect("connect");
        let junk: Vec<u8> = (0..NOISE_MAX).map(|i| (i * 31 % 251) as u8).collect();
        write_noise(&mut stream, &junk)
            .await
            .expect("junk message 1");
        // The responder may take any 32 bytes as a key; its reply then gets junk back.
        let _ = write_noise(&mut stream, &junk).await;
        assert!(
            closed_within(&mut stream, PROMPT_CLOSE).await,
            "a junk handshake was not refused promptly"
        );
        let (mut stream, mut transport) = noise(&target, &prologue).await;
        let filler = MAX_PREAUTH_FRAME_BYTES - 4;
        send_chunk(&mut stream, &mut transport, filler as u32, filler)
            .await
            .expect("junk identity");
        assert!(
            closed_within(&mut stream, PROMPT_CLOSE).await,
            "a junk identity was not refused promptly"
        );
    });
    assert!(
        rejected(&cluster, 0, "noise") > noise_before,
        "junk handshake"
    );
    assert!(
        rejected(&cluster, 0, "protocol") > protocol_before,
        "junk identity"
    );

    // 3. One /24 holds at most its slots, whatever the number of addresses it uses.
    let per_prefix_before = rejected(&cluster, 0, "too_many_handshakes_from_address");
    let attempts = 5 * MAX_PENDING_HANDSHAKES_PER_IP;
    let open = cluster.rt.block_on(async {
        let mut streams = idle_connections(&target, 1, attempts).await;
        still_open(&mut streams, Duration::from_millis(500)).await
    });
    let refused = rejected(&cluster, 0, "too_many_handshakes_from_address") - per_prefix_before;
    eprintln!("one /24: {open} of {attempts} idle handshakes held, {refused} refused");
    assert!(
        open <= MAX_PENDING_HANDSHAKES_PER_IP,
        "{open} held from one /24"
    );
    assert!(refused >= (attempts - MAX_PENDING_HANDSHAKES_PER_IP) as u64);

    // 4. Hundreds of idle handshakes from many /24s on every honest validator at once, held
    //    for several handshake timeouts, while validator 2 restarts: the established links
    //    keep finalizing, and validator 2 is reached through the slots left free.
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    let prefixes: Vec<u8> = (10..14).collect();
    for i in HONEST {
        for &prefix in &prefixes {
            let (addr, stop, opened) = (cluster.p2p(i), stop.clone(), opened.clone());
            cluster.rt.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let streams =
                        idle_connections(&addr, prefix, 3 * MAX_PENDING_HANDSHAKES_PER_IP).await;
                    opened.fetch_add(streams.len() as u64, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(HANDSHAKE_TIMEOUT_MS / 2)).await;
                }
            });
        }
    }
    keeps_finalizing(&cluster, &HONEST);
    cluster.kill9(2);
    std::thread::sleep(Duration::from_secs(2));
    cluster.spawn(2);
    let top = cluster.height(0).expect("height");
    cluster.wait_height(&HONEST, top + PROGRESS_HEIGHTS, PROGRESS_TIMEOUT);

    // 5. More prefixes than the listener has slots for: the listener's own bound holds and
    //    established links are untouched.
    let global_before = rejected(&cluster, 0, "too_many_handshakes");
    let wide: Vec<u8> = (20..32).collect();
    let held = cluster.rt.block_on(async {
        let mut all = Vec::new();
        for &prefix in &wide {
            all.extend(idle_connections(&target, prefix, MAX_PENDING_HANDSHAKES_PER_IP).await);
        }
        still_open(&mut all, Duration::from_millis(500)).await
    });
    keeps_finalizing(&cluster, &HONEST);
    stop.store(true, Ordering::Relaxed);
    let global = rejected(&cluster, 0, "too_many_handshakes") - global_before;
    eprintln!(
        "{} idle handshakes opened from {} /24s on each validator; {held} held of {} from {} /24s ({global} refused by the listener bound)",
        opened.load(Ordering::Relaxed),
        prefixes.len(),
        wide.len() * MAX_PENDING_HANDSHAKES_PER_IP,
        wide.len()
    );
    assert!(held <= MAX_PENDING_HANDSHAKES, "{held} handshakes held");
    assert!(
        opened.load(Ordering::Relaxed) >= 300,
        "hundreds of idle handshakes"
    );
    finish_load(&cluster, load);
    honest_nodes_unharmed(&cluster, &BTreeMap::new());
}
