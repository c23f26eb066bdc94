//! Leases over a JetStream KV bucket: exactly one node owns each key (a destination) at a time.
//!
//! The bucket's `max_age` is the lease TTL: a key's value disappears `ttl` after its last
//! write, so a dead node's leases lapse within the TTL. [`Leases::try_acquire`] creates the key
//! only if absent (or deleted/expired); [`Leases::renew`] rewrites it only at the revision this
//! node last wrote, so after a lapse and another node's acquire the renew fails and the lease
//! is known lost. Renew well within the TTL (a third of it is usual).
//!
//! [`Members`] uses a bucket of the same kind for cluster membership.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;

use super::{NatsError, QueueError, Result};

fn err<E: std::fmt::Display>(op: &'static str) -> impl FnOnce(E) -> QueueError {
    move |e| {
        QueueError::Nats(NatsError::Request {
            op,
            message: e.to_string(),
        })
    }
}

/// Opens (creating if needed) a KV bucket. The bucket's stream is created directly, as the
/// client's `create_key_value` does: its account query does not parse 2.9 servers' answers.
pub(super) async fn kv_bucket(
    js: &jetstream::Context,
    bucket: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: jetstream::stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        num_replicas: replicas.max(1),
        ..Default::default()
    })
    .await
    .map_err(err("creating a KV bucket"))?;
    js.get_key_value(bucket)
        .await
        .map_err(err("opening a KV bucket"))
}

/// The keys of a bucket matching `pattern` (`cursor.*`, `>`), deleted ones included. They come
/// from the bucket stream's subject list, which the server computes in one go: the client's
/// key listing (a consumer over the bucket) skips keys rewritten while it runs, and cursors and
/// memberships are rewritten all the time.
pub(super) async fn keys(store: &kv::Store, pattern: &str) -> Result<Vec<String>> {
    use futures_util::StreamExt;
    let mut subjects = store
        .stream
        .info_builder()
        .subjects(format!("{}{pattern}", store.prefix))
        .fetch()
        .await
        .map_err(err("listing keys"))?;
    let mut out = Vec::new();
    while let Some(s) = subjects.next().await {
        let (subject, _) = s.map_err(err("listing keys"))?;
        if let Some(k) = subject.strip_prefix(store.prefix.as_str()) {
            out.push(k.to_string());
        }
    }
    Ok(out)
}

/// One node's view of a lease bucket.
pub struct Leases {
    store: kv::Store,
    node_id: String,
    ttl: Duration,
    /// Revision of each lease this node holds.
    held: Mutex<HashMap<String, u64>>,
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('.')
        && !key.ends_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=/.".contains(&b))
}

impl Leases {
    /// Opens (creating if needed) the bucket `bucket` with `max_age = ttl`.
    pub async fn open(
        js: jetstream::Context,
        bucket: &str,
        node_id: &str,
        ttl: Duration,
        replicas: usize,
    ) -> Result<Self> {
        if ttl < Duration::from_secs(1) {
            return Err(NatsError::Options("lease ttl must be at least 1 s".into()).into());
        }
        let store = kv_bucket(&js, bucket, ttl, replicas).await?;
        Ok(Leases {
            store,
            node_id: node_id.to_string(),
            ttl,
            held: Mutex::new(HashMap::new()),
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes the lease if nobody holds it. True when this node holds it now.
    pub async fn try_acquire(&self, key: &str) -> Result<bool> {
        if !valid_key(key) {
            return Err(NatsError::Options("invalid lease key".into()).into());
        }
        let value = Bytes::from(self.node_id.clone());
        match self.store.create(key, value.clone()).await {
            Ok(rev) => {
                self.held
                    .lock()
                    .expect("poisoned")
                    .insert(key.to_string(), rev);
                Ok(true)
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                // Held by this node already (e.g. acquired before a restart): take it over.
                let entry = self
                    .store
                    .entry(key)
                    .await
                    .map_err(err("reading a lease"))?;
                if let Some(entry) = entry
                    && entry.operation == kv::Operation::Put
                    && entry.value == value
                {
                    return self.write(key, entry.revision).await;
                }
                Ok(false)
            }
            Err(e) => Err(err("acquiring a lease")(e)),
        }
    }

    /// Extends a lease this node holds. False (and forgotten) when it was lost.
    pub async fn renew(&self, key: &str) -> Result<bool> {
        let rev = self.held.lock().expect("poisoned").get(key).copied();
        match rev {
            Some(rev) => self.write(key, rev).await,
            None => Ok(false),
        }
    }

    async fn write(&self, key: &str, rev: u64) -> Result<bool> {
        match self
            .store
            .update(key, Bytes::from(self.node_id.clone()), rev)
            .await
        {
            Ok(new) => {
                self.held
                    .lock()
                    .expect("poisoned")
                    .insert(key.to_string(), new);
                Ok(true)
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                self.held.lock().expect("poisoned").remove(key);
                Ok(false)
            }
            Err(e) => Err(err("renewing a lease")(e)),
        }
    }

    /// Gives a lease up (only if this node still holds it).
    pub async fn release(&self, key: &str) -> Result<()> {
        let rev = self.held.lock().expect("poisoned").remove(key);
        if let Some(rev) = rev {
            // Lost meanwhile: nothing to release.
            let _ = self.store.delete_expect_revision(key, Some(rev)).await;
        }
        Ok(())
    }

    /// Whether this node believes it holds the lease (as of its last acquire or renew).
    pub fn holds(&self, key: &str) -> bool {
        self.held.lock().expect("poisoned").contains_key(key)
    }

    /// The node holding a lease right now, as the bucket has it (`None`: free).
    pub async fn holder(&self, key: &str) -> Result<Option<String>> {
        let entry = self
            .store
            .entry(key)
            .await
            .map_err(err("reading a lease"))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| String::from_utf8_lossy(&e.value).into_owned()))
    }
}

/// Cluster membership over a KV bucket whose `max_age` is the TTL: each node writes its own key
/// every TTL/3, so a node is listed while it is alive and drops out within the TTL once it dies.
pub struct Members {
    store: kv::Store,
    node_id: String,
}

impl Members {
    pub async fn open(
        js: jetstream::Context,
        bucket: &str,
        node_id: &str,
        ttl: Duration,
        replicas: usize,
    ) -> Result<Self> {
        if !valid_key(node_id) {
            return Err(NatsError::Options("invalid node id".into()).into());
        }
        let store = kv_bucket(&js, bucket, ttl, replicas).await?;
        Ok(Members {
            store,
            node_id: node_id.to_string(),
        })
    }

    /// Announces this node as alive (for another TTL).
    pub async fn heartbeat(&self) -> Result<()> {
        self.store
            .put(&self.node_id, Bytes::new())
            .await
            .map(|_| ())
            .map_err(err("announcing this node"))
    }

    /// The nodes alive now (this one included once it has sent a heartbeat), sorted; a left
    /// node's delete marker is filtered out by reading each key.
    pub async fn live(&self) -> Result<Vec<String>> {
        let keys = keys(&self.store, ">").await?;
        let values =
            futures_util::future::join_all(keys.iter().map(|k| self.store.get(k.clone()))).await;
        let mut out = Vec::new();
        for (k, v) in keys.into_iter().zip(values) {
            if v.map_err(err("reading a node"))?.is_some() {
                out.push(k);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Leaves the cluster at once (graceful shutdown), instead of after the TTL.
    pub async fn leave(&self) -> Result<()> {
        self.store
            .delete(&self.node_id)
            .await
            .map_err(err("leaving the cluster"))
    }
}
