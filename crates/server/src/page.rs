//! The chat page at `/`: one hand-written HTML page with its script, style sheet and icon, compiled into the binary
//! and talking to this server's own OpenAI API (`/v1/models`, `/v1/chat/completions` streamed).
//!
//! - The page loads without an API key (only `/v1/*` needs one); it is told whether the server wants a key by a
//!   `<meta name="hearth-api-key">` tag, so it can ask for the key before a request fails.
//! - Every file is served with a strict Content-Security-Policy ([`CSP`]): scripts, styles and requests only from
//!   this origin, nothing inline, no frames, no forms posting anywhere. Model output is rendered by the page's own
//!   Markdown renderer, which escapes HTML first and links only `http(s):`/`mailto:` URLs; the policy is the second
//!   wall should that renderer ever let markup through.

use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/chat.js");
const STYLE: &str = include_str!("page/chat.css");
const ICON: &str = include_str!("page/icon.svg");

/// The placeholder in `index.html` that says whether the API wants a key (`required` or `none`).
const KEY_MARK: &str = "{{API_KEY}}";

/// What the page may load and where it may connect: this origin only, and nothing inline.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's routes (state: whether an API key is required).
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(index))
        .route(
            "/chat.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/chat.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route(
            "/favicon.svg",
            get(|| async { asset(ICON, "image/svg+xml") }),
        )
}

async fn index(State(state): State<Arc<AppState>>) -> Response {
    let key = if state.config.api_key.is_some() {
        "required"
    } else {
        "none"
    };
    asset(&INDEX.replace(KEY_MARK, key), "text/html; charset=utf-8")
}

fn asset(body: &str, content_type: &'static str) -> Response {
    let mut res = body.to_string().into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A new binary serves a new page: the browser checks back each time rather than running a stale script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_references_exactly_the_served_files_and_no_inline_code() {
        // The policy forbids inline scripts and styles: the page must not rely on them.
        assert!(INDEX.contains(r#"<script src="/chat.js" defer></script>"#));
        assert!(INDEX.contains(r#"<link rel="stylesheet" href="/chat.css">"#));
        assert!(INDEX.contains(r#"href="/favicon.svg""#));
        assert_eq!(INDEX.matches("<script").count(), 1);
        assert!(!INDEX.contains("<style"));
        assert!(!INDEX.contains(" style="));
        let handler = INDEX.split(" on").skip(1).find(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(handler.is_none(), "an inline event handler: on{handler:?}");
        assert_eq!(INDEX.matches(KEY_MARK).count(), 1);
    }
}
