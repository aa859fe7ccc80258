//! Snapshot sync over the node's p2p network: [`SnapshotTransport`] for a [`Network`] and its
//! inbound queue, and the sync run on a thread that may block.

use super::client::{sync_over, SnapshotTransport, SyncParams};
use super::SnapshotSyncError;
use keel_app::genesis::Genesis;
use keel_p2p::{Inbound, NetMessage, Network, SnapshotMessage};
use keel_store::{Store, StoreOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

struct NetTransport<'a> {
    net: &'a Network,
    inbound: &'a mut mpsc::Receiver<Inbound>,
    runtime: Handle,
    started: Instant,
}

impl SnapshotTransport for NetTransport<'_> {
    fn connected(&self) -> Vec<u16> {
        self.net.connected()
    }

    fn known(&self) -> usize {
        // `add_peers` of nothing returns the table.
        self.net.add_peers(&[]).len()
    }

    fn link(&self, peer: u16) -> Option<u64> {
        self.net.link_generation(peer)
    }

    fn send(&mut self, peer: u16, message: &SnapshotMessage) {
        self.net
            .send(peer, &NetMessage::Snapshot(Box::new(message.clone())));
    }

    fn recv(
        &mut self,
        timeout_ms: u64,
    ) -> Result<Option<(u16, SnapshotMessage)>, SnapshotSyncError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        let inbound = &mut *self.inbound;
        self.runtime.block_on(async move {
            loop {
                match tokio::time::timeout_at(deadline, inbound.recv()).await {
                    Err(_) => return Ok(None),
                    Ok(None) => return Err(SnapshotSyncError::Closed),
                    Ok(Some(Inbound {
                        from,
                        message: NetMessage::Snapshot(message),
                        ..
                    })) => return Ok(Some((from, *message))),
                    // Consensus traffic waits for the driver's start; it re-syncs anyway.
                    Ok(Some(_)) => {}
                }
            }
        })
    }

    fn pause(&mut self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn wall_ms(&self) -> u64 {
        crate::driver::now_ms()
    }
}

/// Restores `path` to the latest epoch boundary the peers serve ([`sync_over`]), on this
/// thread taken out of the runtime's workers while it blocks.
pub async fn sync(
    net: &Network,
    inbound: &mut mpsc::Receiver<Inbound>,
    genesis: &Genesis,
    params: &SyncParams,
    path: &Path,
    options: StoreOptions,
) -> Result<Arc<Store>, SnapshotSyncError> {
    let runtime = Handle::current();
    tokio::task::block_in_place(|| {
        let mut transport = NetTransport {
            net,
            inbound,
            runtime,
            started: Instant::now(),
        };
        sync_over(&mut transport, genesis, params, path, options).map(|synced| synced.store)
    })
}
