//! The models a server answers for. [`Served`] is one loaded model with what a request needs to run on it (its
//! engine thread, tokenizer, chat template, grammar compiler); [`Models`] finds the model a request names, loads it
//! once however many requests wait for it, and unloads it when it has been idle for its keep-alive; a [`Lease`]
//! holds a model while a request uses it, and the keep-alive clock starts when the last lease goes.

use crate::error::ApiError;
use crate::ServerError;
use hearth_constraint::Guide;
use hearth_engine::batch::{BatchConfig, Engine};
use hearth_engine::Model;
use hearth_store::{Store, StoreError};
use hearth_text::{ChatTemplate, Tokenizer};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

mod keep_alive;
mod load;
pub use keep_alive::KeepAlive;

/// One loaded model and everything a request needs to run on it.
pub struct Served {
    /// The name requests use and responses echo.
    pub id: String,
    pub engine: Engine,
    /// The model the engine runs (kept to watch its file).
    pub model: Arc<Model>,
    pub tok: Arc<Tokenizer>,
    /// None when the file's template does not compile: chat requests then fail with the reason.
    pub template: Result<ChatTemplate, String>,
    /// Compiles grammars for this vocabulary (structured output); built in the background at load.
    guide: Arc<OnceLock<Result<Arc<Guide>, String>>>,
    /// Bytes the memory planner counts for this model (weights, KV caches at full context, scratch).
    pub size: u64,
    /// When it was loaded, in seconds since the Unix epoch.
    pub loaded_at: u64,
}

impl Served {
    /// Builds the tokenizer and chat template from the model file and starts the engine thread.
    pub fn start(
        id: String,
        model: Arc<Model>,
        batch: BatchConfig,
        size: u64,
    ) -> Result<Served, ServerError> {
        let tok = Arc::new(Tokenizer::from_gguf(&model.gguf)?);
        let template = ChatTemplate::from_gguf_with(&model.gguf, &tok).map_err(|e| e.to_string());
        let n_ctx_train = model.config.n_ctx_train;
        if batch.n_ctx > n_ctx_train {
            return Err(ServerError::ContextTooLarge {
                n_ctx: batch.n_ctx,
                n_ctx_train,
            });
        }
        let n_vocab = model.config.n_vocab;
        let engine = Engine::start(model.clone(), batch);
        let guide = Arc::new(OnceLock::new());
        // The vocabulary trie takes a few hundred milliseconds (seconds for a 262k vocabulary): build it now, so
        // that the first constrained request does not wait for it. The thread holds the tokenizer, not the model.
        let (g, t) = (guide.clone(), tok.clone());
        let _ = std::thread::Builder::new()
            .name("hearth-guide".into())
            .spawn(move || {
                let _ = build_guide(&g, &t, n_vocab);
            });
        Ok(Served {
            id,
            engine,
            model,
            tok,
            template,
            guide,
            size,
            loaded_at: unix_now(),
        })
    }

    /// The grammar compiler for this model's vocabulary (waits while it is being built).
    pub fn guide(&self) -> Result<Arc<Guide>, String> {
        build_guide(&self.guide, &self.tok, self.model.config.n_vocab)
    }

    /// The context (positions) of each sequence.
    pub fn n_ctx(&self) -> usize {
        self.engine.config().n_ctx
    }

    /// Why this model can no longer answer correctly: its engine thread panicked, or its mapped file was truncated
    /// or written in place. None while healthy.
    pub fn failure(&self) -> Option<String> {
        self.engine
            .failure()
            .or_else(|| self.model.gguf.changed_on_disk())
    }
}

fn build_guide(
    cell: &OnceLock<Result<Arc<Guide>, String>>,
    tok: &Arc<Tokenizer>,
    n_vocab: usize,
) -> Result<Arc<Guide>, String> {
    cell.get_or_init(|| {
        Guide::new(tok.clone(), n_vocab)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    })
    .clone()
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A loaded model as `/api/ps` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedModel {
    pub id: String,
    /// Bytes the memory planner counts for it.
    pub size: u64,
    /// Requests using it now.
    pub active: usize,
    /// When it will be unloaded if no request comes: None while in use or when kept forever.
    pub expires_at: Option<SystemTime>,
    /// Seconds since the Unix epoch.
    pub loaded_at: u64,
}

/// A served model held by a request: dereferences to [`Served`]. While any lease on a model lives, it stays loaded;
/// when the last one is dropped its keep-alive clock starts (with the keep-alive the request asked for, if any).
pub struct Lease {
    served: Arc<Served>,
    keep_alive: Option<KeepAlive>,
    inner: Arc<Inner>,
}

impl std::ops::Deref for Lease {
    type Target = Served;
    fn deref(&self) -> &Served {
        &self.served
    }
}

impl Clone for Lease {
    fn clone(&self) -> Lease {
        let mut t = self.inner.lock();
        if let Some(slot) = t.slot_mut(&self.served) {
            slot.active += 1;
        }
        Lease {
            served: self.served.clone(),
            keep_alive: self.keep_alive,
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut t = self.inner.lock();
        if let Some(slot) = t.slot_mut(&self.served) {
            slot.active = slot.active.saturating_sub(1);
            slot.last_used = Instant::now();
            if let Some(k) = self.keep_alive {
                slot.keep_alive = k;
            }
        }
        drop(t);
        self.inner.wake.notify_all();
    }
}

/// Where models come from.
enum Catalog {
    /// One model, loaded at start and kept; it also answers to `aliases`.
    One { id: String, aliases: Vec<String> },
    /// Every model in the store, loaded when a request names it.
    Store(Store),
}

/// One loaded model's bookkeeping.
struct Slot {
    served: Arc<Served>,
    /// Leases alive.
    active: usize,
    /// When the last lease was dropped (or the model was loaded).
    last_used: Instant,
    keep_alive: KeepAlive,
}

impl Slot {
    /// When this model unloads if nothing uses it: never while in use or kept forever.
    fn expires(&self) -> Option<Instant> {
        match self.keep_alive {
            _ if self.active > 0 => None,
            KeepAlive::Forever => None,
            KeepAlive::For(d) => Some(self.last_used + d),
        }
    }
}

/// How a load ended, as the requests waiting for it see it (`None` while it runs).
type LoadState = Option<Result<(), ApiError>>;

#[derive(Default)]
struct Table {
    loaded: HashMap<String, Slot>,
    /// Models being loaded, with the bytes the planner reserved for each.
    loading: HashMap<String, (watch::Receiver<LoadState>, u64)>,
    closing: bool,
}

impl Table {
    fn slot_mut(&mut self, served: &Arc<Served>) -> Option<&mut Slot> {
        self.loaded
            .get_mut(&served.id)
            .filter(|s| Arc::ptr_eq(&s.served, served))
    }

    /// Bytes the planner counts as taken: loaded models and the reservations of those being loaded.
    fn in_use(&self) -> u64 {
        let loaded = self.loaded.values().map(|s| s.served.size);
        let loading = self.loading.values().map(|(_, b)| *b);
        loaded.chain(loading).fold(0, u64::saturating_add)
    }
}

/// What a server in store mode is allowed.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Bytes all loaded models together may take (see [`crate::plan`] for what a model counts).
    pub budget: u64,
    /// How long an idle model stays loaded unless a request says otherwise.
    pub keep_alive: KeepAlive,
    pub batch: BatchConfig,
}

struct Inner {
    catalog: Catalog,
    plan: Plan,
    /// Models loaded since start (each load of each model counts once).
    loads: std::sync::atomic::AtomicU64,
    table: Mutex<Table>,
    /// Signalled when a lease is dropped or the server closes: the reaper looks at the clocks again.
    wake: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves the table consistent (every change is one statement).
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The models a server answers for.
pub struct Models {
    inner: Arc<Inner>,
}

impl Models {
    /// Serves `model` alone, as `id` (and `aliases`), loaded now and never unloaded.
    pub fn one(
        id: String,
        aliases: Vec<String>,
        model: Arc<Model>,
        batch: BatchConfig,
    ) -> Result<Models, ServerError> {
        let served = Arc::new(Served::start(id.clone(), model, batch.clone(), 0)?);
        let mut table = Table::default();
        table.loaded.insert(
            id.clone(),
            Slot {
                served,
                active: 0,
                last_used: Instant::now(),
                keep_alive: KeepAlive::Forever,
            },
        );
        let plan = Plan {
            budget: u64::MAX,
            keep_alive: KeepAlive::Forever,
            batch,
        };
        Ok(Models::with(Catalog::One { id, aliases }, plan, table))
    }

    /// Serves every model in `store`, each loaded when a request first names it and unloaded when idle.
    pub fn store(store: Store, plan: Plan) -> Models {
        Models::with(Catalog::Store(store), plan, Table::default())
    }

    fn with(catalog: Catalog, plan: Plan, table: Table) -> Models {
        let inner = Arc::new(Inner {
            catalog,
            plan,
            loads: Default::default(),
            table: Mutex::new(table),
            wake: Condvar::new(),
        });
        if matches!(inner.catalog, Catalog::Store(_)) {
            start_reaper(&inner);
        }
        Models { inner }
    }

    /// The store this server serves from (None when it serves one model).
    pub fn source(&self) -> Option<&Store> {
        match &self.inner.catalog {
            Catalog::Store(s) => Some(s),
            Catalog::One { .. } => None,
        }
    }

    /// The model a request names (`None`: the server's default), loaded if need be, held until the lease is
    /// dropped; `keep_alive` replaces the model's keep-alive from the end of this request on.
    pub async fn get(
        &self,
        asked: Option<&str>,
        keep_alive: Option<KeepAlive>,
    ) -> Result<Lease, ApiError> {
        let (id, path) = self.resolve(asked).await?;
        loop {
            let mut rx = {
                let mut t = self.inner.lock();
                if let Some(slot) = t.loaded.get_mut(&id) {
                    slot.active += 1;
                    return Ok(Lease {
                        served: slot.served.clone(),
                        keep_alive,
                        inner: self.inner.clone(),
                    });
                }
                let Some(path) = &path else {
                    return Err(ApiError::unavailable(format!(
                        "The model '{id}' is not loaded"
                    )));
                };
                match t.loading.get(&id) {
                    Some((rx, _)) => rx.clone(),
                    None => load::start(&self.inner, &mut t, id.clone(), path.clone())?,
                }
            };
            // Whoever started the load, it runs on its own task: a waiter that goes away cancels nothing.
            let ended = match rx.wait_for(Option::is_some).await {
                Ok(state) => state.clone(),
                Err(_) => Some(Err(ApiError::internal(format!("loading '{id}' stopped")))),
            };
            if let Some(Err(e)) = ended {
                return Err(e);
            }
        }
    }

    /// The id of the model `asked` names, and its file when it may need loading.
    async fn resolve(&self, asked: Option<&str>) -> Result<(String, Option<PathBuf>), ApiError> {
        let store = match &self.inner.catalog {
            Catalog::One { id, aliases } => {
                return match asked {
                    Some(m) if m != id && !aliases.iter().any(|a| a == m) => {
                        Err(ApiError::model_not_found(m, id))
                    }
                    _ => Ok((id.clone(), None)),
                }
            }
            Catalog::Store(store) => store.clone(),
        };
        let Some(asked) = asked.map(str::to_string) else {
            return Err(ApiError::invalid(
                "'model' is required: this server serves every model in its store (GET /v1/models lists them)",
                Some("model"),
            ));
        };
        let found = tokio::task::spawn_blocking(move || store.find(&asked).map_err(|e| (asked, e)))
            .await
            .map_err(|e| ApiError::internal(format!("finding the model: {e}")))?;
        match found {
            Ok(m) => match <[PathBuf; 1]>::try_from(m.paths) {
                Ok([path]) => Ok((m.name, Some(path))),
                Err(parts) => Err(ApiError::invalid(
                    format!(
                        "The model '{}' is split into {} files; the engine loads single-file GGUFs so far",
                        m.name,
                        parts.len()
                    ),
                    Some("model"),
                )),
            },
            Err((asked, e @ StoreError::NotInstalled(_))) => {
                Err(ApiError::no_such_model(&asked, &e.to_string()))
            }
            Err((asked, e @ StoreError::BadName { .. })) => {
                Err(ApiError::no_such_model(&asked, &e.to_string()))
            }
            Err((_, e)) => Err(ApiError::internal(e.to_string())),
        }
    }

    /// The models loaded now, by id.
    pub fn loaded(&self) -> Vec<LoadedModel> {
        let now = (Instant::now(), SystemTime::now());
        let t = self.inner.lock();
        let mut out: Vec<LoadedModel> = t
            .loaded
            .values()
            .map(|s| LoadedModel {
                id: s.served.id.clone(),
                size: s.served.size,
                active: s.active,
                expires_at: s
                    .expires()
                    .map(|e| now.1 + e.saturating_duration_since(now.0)),
                loaded_at: s.served.loaded_at,
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Unloads `id` as soon as no request uses it (after `hearth rm`, or Ollama's `keep_alive: 0` with no prompt).
    /// Returns whether it was loaded.
    pub fn unload(&self, id: &str) -> bool {
        let mut t = self.inner.lock();
        let Some(slot) = t.loaded.get_mut(id) else {
            return false;
        };
        if matches!(self.inner.catalog, Catalog::Store(_)) {
            slot.keep_alive = KeepAlive::For(Duration::ZERO);
            slot.last_used = Instant::now();
        }
        drop(t);
        self.inner.wake.notify_all();
        true
    }

    /// How many times a model was loaded since the server started.
    pub fn loads(&self) -> u64 {
        self.inner.loads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The planner's budget and what loaded (and loading) models take of it, in bytes.
    pub fn memory(&self) -> (u64, u64) {
        (self.inner.plan.budget, self.inner.lock().in_use())
    }

    /// Every loaded model (for health and metrics; holding these keeps nothing loaded longer than a moment).
    pub(crate) fn each_loaded(&self) -> Vec<Arc<Served>> {
        let t = self.inner.lock();
        t.loaded.values().map(|s| s.served.clone()).collect()
    }
}

impl Drop for Models {
    fn drop(&mut self) {
        self.inner.lock().closing = true;
        self.inner.wake.notify_all();
    }
}

/// Starts the thread that unloads models whose keep-alive ran out. It holds the table only weakly, and ends when
/// the server closes.
fn start_reaper(inner: &Arc<Inner>) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let _ = std::thread::Builder::new()
        .name("hearth-unload".into())
        .spawn(move || reap(weak));
}

/// The longest the reaper sleeps without looking (so that it notices a closed server).
const REAP_CHECK: Duration = Duration::from_secs(1);

fn reap(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let mut t = inner.lock();
        if t.closing {
            return;
        }
        let now = Instant::now();
        let due: Vec<String> = t
            .loaded
            .iter()
            .filter(|(_, s)| s.expires().is_some_and(|e| e <= now))
            .map(|(id, _)| id.clone())
            .collect();
        let gone: Vec<Slot> = due.iter().filter_map(|id| t.loaded.remove(id)).collect();
        if gone.is_empty() {
            let next = t.loaded.values().filter_map(Slot::expires).min();
            let wait = next.map_or(REAP_CHECK, |e| {
                e.saturating_duration_since(now).min(REAP_CHECK)
            });
            let _ = inner.wake.wait_timeout(t, wait);
            continue;
        }
        drop(t);
        // Dropping the last handle stops the engine thread and unmaps the file: outside the lock.
        drop(gone);
    }
}
