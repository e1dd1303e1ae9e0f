//! Loading a model of the store: plan its memory (unloading the least recently used idle models when it does not
//! fit, refusing with the numbers when nothing can be freed), map it, start its engine, and tell every request that
//! waits for it. One load per model at a time, on its own task: a request that goes away cancels nothing.

use super::{Inner, LoadState, Served, Slot, Table};
use crate::error::ApiError;
use crate::plan;
use hearth_engine::{Model, ModelConfig};
use hearth_gguf::Gguf;
use hearth_store::format_bytes;
use hearth_store::memory::{self, MemoryEstimate};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// Registers the load of `id` from `path` (call with the table locked, after checking that it is neither loaded
/// nor loading) and starts it; returns what waiters watch.
pub(super) fn start(
    inner: &Arc<Inner>,
    t: &mut Table,
    id: String,
    path: PathBuf,
) -> Result<watch::Receiver<LoadState>, ApiError> {
    let (tx, rx) = watch::channel(None);
    t.loading.insert(id.clone(), (rx.clone(), 0));
    let inner = inner.clone();
    tokio::spawn(async move {
        let task = {
            let (inner, id) = (inner.clone(), id.clone());
            tokio::task::spawn_blocking(move || load(&inner, id, &path))
        };
        let result = match task.await {
            Ok(r) => r,
            Err(e) => {
                inner.lock().loading.remove(&id);
                Err(ApiError::internal(format!("loading '{id}' failed: {e}")))
            }
        };
        let _ = tx.send(Some(result));
    });
    Ok(rx)
}

/// Removes the `loading` entry however a load ends (on success it goes in the same lock as the model comes in).
struct Loading<'a> {
    inner: &'a Inner,
    id: &'a str,
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        self.inner.lock().loading.remove(self.id);
    }
}

fn load(inner: &Arc<Inner>, id: String, path: &PathBuf) -> Result<(), ApiError> {
    let _loading = Loading { inner, id: &id };
    let failed = |e: &dyn std::fmt::Display| {
        ApiError::internal(format!("The model '{id}' cannot be loaded: {e}"))
    };
    let gguf = Gguf::open(path).map_err(|e| failed(&e))?;
    let config = ModelConfig::from_gguf(&gguf).map_err(|e| failed(&e))?;
    let mut batch = inner.plan.batch.clone();
    batch.n_ctx = batch.n_ctx.min(config.n_ctx_train).max(1);
    let weights = memory::weight_bytes(std::slice::from_ref(&gguf));
    let need = plan::served_estimate(&plan::shape(&config, batch.kv_type, weights), &batch);
    let evicted = {
        let mut t = inner.lock();
        reserve(&mut t, inner.plan.budget, &id, &need)?
    };
    // Dropping the last handle stops an engine thread and unmaps its file: outside the lock.
    drop(evicted);
    let model = Model::from_gguf(gguf).map_err(|e| failed(&e))?;
    model
        .new_cache_typed(1, batch.kv_type)
        .map_err(|e| failed(&e))?;
    let served =
        Served::start(id.clone(), Arc::new(model), batch, need.total).map_err(|e| failed(&e))?;
    inner
        .loads
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut t = inner.lock();
    t.loading.remove(&id);
    t.loaded.insert(
        id.clone(),
        Slot {
            served: Arc::new(served),
            active: 0,
            last_used: Instant::now(),
            keep_alive: inner.plan.keep_alive,
        },
    );
    Ok(())
}

/// Reserves `need` for `id` within `budget`, unloading the least recently used idle models first when that makes
/// it fit; refuses (having unloaded nothing) when even unloading every idle model would not. Returns the models to
/// drop.
fn reserve(
    t: &mut Table,
    budget: u64,
    id: &str,
    need: &MemoryEstimate,
) -> Result<Vec<Slot>, ApiError> {
    let free = budget.saturating_sub(t.in_use());
    let idle: u64 = t
        .loaded
        .values()
        .filter(|s| s.active == 0)
        .map(|s| s.served.size)
        .fold(0, u64::saturating_add);
    if need.total > free.saturating_add(idle) {
        let mut busy: Vec<String> = t
            .loaded
            .values()
            .filter(|s| s.active > 0)
            .map(|s| format!("{} ({})", s.served.id, format_bytes(s.served.size)))
            .collect();
        busy.extend(
            t.loading
                .iter()
                .filter(|(other, (_, b))| other.as_str() != id && *b > 0)
                .map(|(other, (_, b))| format!("{other} ({}, loading)", format_bytes(*b))),
        );
        busy.sort();
        return Err(ApiError::no_memory(
            id,
            need,
            free.saturating_add(idle),
            budget,
            &busy,
        ));
    }
    let mut evicted = Vec::new();
    while need.total > budget.saturating_sub(t.in_use()) {
        let victim = t
            .loaded
            .iter()
            .filter(|(_, s)| s.active == 0)
            .min_by_key(|(_, s)| s.last_used)
            .map(|(k, _)| k.clone());
        match victim.and_then(|v| t.loaded.remove(&v)) {
            Some(slot) => evicted.push(slot),
            None => break, // cannot happen: the idle models cover the need
        }
    }
    if let Some(entry) = t.loading.get_mut(id) {
        entry.1 = need.total;
    }
    Ok(evicted)
}
