//! The one place the Ollama and Anthropic handlers reach a model and the store: which model a request's name
//! means, what is loaded, and where models are installed. (One model per server today; serving the whole store
//! changes only this file.)

use crate::error::ApiError;
use crate::AppState;
use hearth_store::Store;
use std::sync::Arc;

/// The model a request names, ready to take jobs. Ollama's clients add a `:latest` tag to names they list; it is
/// the same model. `keep_alive` is how long the model should stay loaded after this request (not used while the
/// server runs one preloaded model).
pub fn model(
    state: &Arc<AppState>,
    name: &str,
    _keep_alive: Option<std::time::Duration>,
) -> Result<Arc<AppState>, ApiError> {
    let served = &state.config.model_id;
    let bare = name.strip_suffix(":latest").unwrap_or(name);
    if name.is_empty() {
        return Err(ApiError::invalid("'model' is required", Some("model")));
    }
    if bare != served {
        return Err(ApiError::model_not_found(name, served));
    }
    Ok(state.clone())
}

/// The names of the models loaded now, with their states.
pub fn loaded(state: &Arc<AppState>) -> Vec<(String, Arc<AppState>)> {
    vec![(state.config.model_id.clone(), state.clone())]
}

/// Whether `name` is a model this server holds loaded (and so must not be deleted under it).
pub fn is_loaded(state: &Arc<AppState>, name: &str) -> bool {
    let bare = name.strip_suffix(":latest").unwrap_or(name);
    loaded(state).iter().any(|(n, _)| n == bare)
}

/// The model store (`$HEARTH_HOME`, else `~/.cache/hearth`).
pub fn store() -> Result<Store, ApiError> {
    Store::open_default().map_err(|e| ApiError::internal(format!("The model store: {e}")))
}
