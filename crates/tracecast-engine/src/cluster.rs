//! Cluster mode: several nodes share one PostgreSQL store and one NATS JetStream queue
//! ([`NatsQueue`]).
//!
//! Every node serves the API, ingest, status and metrics. Each destination is delivered by one
//! node at a time, the holder of its lease (`d.<id>` in the `PREFIX_LEASES` bucket, see
//! [`Leases`]), so its concurrency limit holds across the cluster. Nodes announce themselves in
//! `PREFIX_NODES` ([`Members`]). A destination's preferred node is picked by rendezvous hashing
//! over the live nodes: destinations spread evenly, and when a node joins or leaves only the
//! destinations it gains or loses move.
//!
//! Every tick (a third of the lease TTL) each node, in [`crate::Engine`]'s `balance`:
//! - renews the leases it holds, and stops a destination whose lease it lost (or could not
//!   renew for two thirds of the TTL), so two nodes never keep delivering one destination;
//! - hands over a destination whose preferred node is another live node: it stops the worker,
//!   writes its cursor, releases the lease and tells the others, who take it at once;
//! - acquires the destinations preferred to it, and any lease that has been free for two ticks
//!   (its preferred node is not taking it).
//!
//! A node that dies stops renewing; its leases lapse after the TTL, and the next tick of
//! another node takes them: a destination is delivered again within TTL + TTL/3 of the death,
//! from its last persisted cursor, with its retry state (see
//! [`crate::queue::RetryState`]). Records of the dead node's in-flight batches are sent again:
//! delivery is at least once.
//!
//! Destination changes are broadcast on `prefix.config`: every node reloads its destinations
//! from the store when a change is announced, so a change made on one node applies on the node
//! delivering the destination within milliseconds. The periodic reload
//! (`config_refresh_ms`) remains as a fallback for a lost announcement.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::queue::{Leases, Members, NatsQueue, Result};

/// What a node of a cluster needs besides the shared queue.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// This node's name (`[A-Za-z0-9_-]`, unique in the cluster).
    pub node_id: String,
    /// How long a lease (and a membership) outlives its last renewal.
    pub lease_ttl: Duration,
}

pub(crate) struct Cluster {
    pub nats: Arc<NatsQueue>,
    pub leases: Leases,
    pub members: Members,
    pub node_id: String,
    pub ttl: Duration,
    /// Consecutive ticks each destination's lease was seen free while preferred elsewhere.
    pub free_ticks: Mutex<HashMap<Uuid, u32>>,
    /// When each lease held here was last renewed.
    pub renewed: Mutex<HashMap<Uuid, Instant>>,
}

impl Cluster {
    pub async fn join(nats: Arc<NatsQueue>, opts: ClusterOptions) -> Result<Cluster> {
        let leases = nats.leases(&opts.node_id, opts.lease_ttl).await?;
        let members = nats.members(&opts.node_id, opts.lease_ttl).await?;
        members.heartbeat().await?;
        Ok(Cluster {
            nats,
            leases,
            members,
            node_id: opts.node_id,
            ttl: opts.lease_ttl,
            free_ticks: Mutex::new(HashMap::new()),
            renewed: Mutex::new(HashMap::new()),
        })
    }

    pub fn tick(&self) -> Duration {
        self.ttl / 3
    }

    /// The live nodes, this one included.
    pub async fn nodes(&self) -> Result<Vec<String>> {
        self.members.heartbeat().await?;
        let mut nodes = self.members.live().await?;
        if !nodes.contains(&self.node_id) {
            nodes.push(self.node_id.clone());
            nodes.sort();
        }
        Ok(nodes)
    }

    /// Whether a lease renewal failing with an error (not a loss) has gone on for too long to
    /// keep delivering: another node may take the lease once the TTL runs out.
    pub fn renewal_overdue(&self, id: Uuid) -> bool {
        self.renewed
            .lock()
            .expect("poisoned")
            .get(&id)
            .is_none_or(|at| at.elapsed() >= self.ttl * 2 / 3)
    }

    /// Counts a tick on which a destination's lease was free; true once it has been free for
    /// two ticks in a row.
    pub fn free_for_long(&self, id: Uuid, free: bool) -> bool {
        let mut ticks = self.free_ticks.lock().expect("poisoned");
        if !free {
            ticks.remove(&id);
            return false;
        }
        let n = ticks.entry(id).or_insert(0);
        *n += 1;
        *n >= 2
    }
}

/// A destination's lease key.
pub(crate) fn lease_key(id: Uuid) -> String {
    format!("d.{}", id.simple())
}

/// The node a destination prefers: the highest hash of (destination, node) (rendezvous hashing).
pub(crate) fn preferred(id: Uuid, nodes: &[String]) -> Option<&str> {
    nodes
        .iter()
        .max_by_key(|node| {
            let mut h = Sha256::new();
            h.update(id.as_bytes());
            h.update(node.as_bytes());
            let d = h.finalize();
            u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
        })
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_spreads_destinations_and_moves_only_a_leaving_nodes_share() {
        let three: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let two: Vec<String> = ["a", "c"].iter().map(|s| s.to_string()).collect();
        let ids: Vec<Uuid> = (0..3000u128).map(Uuid::from_u128).collect();
        let mut per_node: HashMap<&str, usize> = HashMap::new();
        for id in &ids {
            *per_node.entry(preferred(*id, &three).unwrap()).or_default() += 1;
        }
        for node in ["a", "b", "c"] {
            let n = per_node[node];
            assert!((800..1200).contains(&n), "{node} prefers {n} of 3000");
        }
        // "b" leaves: only its destinations move; the others keep their node.
        for id in &ids {
            let before = preferred(*id, &three).unwrap();
            let after = preferred(*id, &two).unwrap();
            if before != "b" {
                assert_eq!(before, after);
            }
        }
        assert_eq!(preferred(ids[0], &[]), None);
    }
}
