//! [`ApiError`]: every way a request can fail, rendered as OpenAI's error JSON with the matching status code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// A failed request: `{"error": {"message", "type", "param", "code"}}` with `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400: the request is malformed or asks for something impossible; `param` names the field.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "Incorrect or missing API key: send it as 'Authorization: Bearer KEY' (or 'x-api-key: KEY')"
                .into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    pub fn model_not_found(asked: &str, served: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("The model '{asked}' does not exist; this server runs '{served}'"),
            kind: "invalid_request_error",
            param: Some("model".into()),
            code: Some("model_not_found"),
        }
    }

    /// 404: no model in the store answers to `asked`; `why` says how to install one.
    pub fn no_such_model(asked: &str, why: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("The model '{asked}' is not available: {why}"),
            kind: "invalid_request_error",
            param: Some("model".into()),
            code: Some("model_not_found"),
        }
    }

    /// 503: the model does not fit in the memory budget even with every idle model unloaded. `busy` names the
    /// models in use that hold the rest.
    pub fn no_memory(
        id: &str,
        need: &hearth_store::MemoryEstimate,
        available: u64,
        budget: u64,
        busy: &[String],
    ) -> ApiError {
        use hearth_store::format_bytes;
        let held = if busy.is_empty() {
            String::new()
        } else {
            format!("; in use: {}", busy.join(", "))
        };
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "Not enough memory to load the model '{id}': it needs {} ({}) and {} of the server's memory \
                 budget of {} can be freed{held}. Retry when those requests end, or serve with a smaller \
                 --ctx-size or --parallel.",
                format_bytes(need.total),
                need.breakdown(),
                format_bytes(available),
                format_bytes(budget),
            ),
            kind: "server_error",
            param: Some("model".into()),
            code: Some("insufficient_memory"),
        }
    }

    pub fn queue_full(max_queued: usize) -> ApiError {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!("The server is busy ({max_queued} requests are waiting); retry later"),
            kind: "rate_limit_error",
            param: None,
            code: Some("rate_limit_exceeded"),
        }
    }

    pub fn not_found(path: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("No route for {path}"),
            kind: "invalid_request_error",
            param: None,
            code: None,
        }
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// Any other status (from the HTTP layer: 405, 408, 413, 415, 421, …), as an `invalid_request_error` for a 4xx
    /// and a `server_error` otherwise.
    pub fn status(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind: if status.is_client_error() {
                "invalid_request_error"
            } else {
                "server_error"
            },
            param: None,
            code: None,
        }
    }

    /// The error body, also sent as the last SSE event when a stream fails after it started.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
