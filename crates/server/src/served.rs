//! The one place the Ollama and Anthropic handlers reach a model and the store: which model a request's name
//! means, what is loaded, and where models are installed. Models come from [`AppState::served`] (the store's,
//! loaded on demand, or the one model served).

use crate::error::ApiError;
use crate::{AppState, KeepAlive, Lease, LoadedModel};
use hearth_store::Store;
use std::sync::Arc;

/// Ollama's clients add a `:latest` tag to names they list; it is the same model.
pub fn bare(name: &str) -> &str {
    name.strip_suffix(":latest").unwrap_or(name)
}

/// The model a request names, loaded if need be and held by the returned lease. `keep_alive` is how long the model
/// should stay loaded after this request.
pub async fn model(
    state: &Arc<AppState>,
    name: &str,
    keep_alive: Option<KeepAlive>,
) -> Result<Lease, ApiError> {
    if name.is_empty() {
        return Err(ApiError::invalid("'model' is required", Some("model")));
    }
    state.served(Some(bare(name)), keep_alive).await
}

/// The models loaded now.
pub fn loaded(state: &AppState) -> Vec<LoadedModel> {
    state.models.loaded()
}

/// Whether `name` is a model this server holds loaded (and so must not be deleted under it).
pub fn is_loaded(state: &AppState, name: &str) -> bool {
    let bare = bare(name);
    loaded(state).iter().any(|m| m.id == bare)
}

/// The model store (the server's own when it serves the store; else `$HEARTH_HOME`, else `~/.cache/hearth`).
pub fn store(state: &AppState) -> Result<Store, ApiError> {
    match state.models.source() {
        Some(s) => Ok(s.clone()),
        None => {
            Store::open_default().map_err(|e| ApiError::internal(format!("The model store: {e}")))
        }
    }
}
