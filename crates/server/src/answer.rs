//! One job's answer as the parts that the Ollama and Anthropic front-ends render in their own shapes: reasoning,
//! text and whole tool calls, in the order the model wrote them, then how it ended. The same engine events and text
//! stream as the OpenAI endpoints ([`completions::follow`]), read for calls by the same parser.

use crate::completions::{self, Job};
use crate::error::ApiError;
use crate::render::End;
use crate::text::Out;
use crate::AppState;
use hearth_constraint::tools::{Call, CallParser, Piece as CallPiece};
use std::time::Instant;
use tokio::sync::mpsc;

/// A piece of the answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// A reasoning model's thinking.
    Reasoning(String),
    /// Answer text (outside tool calls).
    Text(String),
    /// One whole tool call.
    Call(Call),
}

/// Submits `job` to the engine (the one scheduler) and returns its events.
pub async fn start(
    state: &std::sync::Arc<AppState>,
    job: &mut Job,
) -> Result<mpsc::UnboundedReceiver<Out>, ApiError> {
    completions::submit(state, job).await
}

/// Follows one job to its end, handing each part to `on_part` (which returns false when its client went away). A
/// job that reads tool calls ends with finish `tool_calls` when the model called one and otherwise stopped.
pub async fn drive(
    state: &AppState,
    job: &Job,
    rx: &mut mpsc::UnboundedReceiver<Out>,
    t0: Instant,
    mut on_part: impl FnMut(Part) -> bool,
) -> Result<End, ApiError> {
    let mut calls = job.tools.then(CallParser::new);
    let mut end = completions::follow(state, &job.served, rx, t0, |d, _| {
        if !d.reasoning.is_empty() && !on_part(Part::Reasoning(d.reasoning)) {
            return false;
        }
        let pieces = match calls.as_mut() {
            Some(p) => p.push(&d.text),
            None => vec![CallPiece::Text(d.text)],
        };
        emit(pieces, &mut on_part)
    })
    .await?;
    if let Some(p) = calls.as_mut() {
        let pieces = p.finish();
        if !emit(pieces, &mut on_part) {
            return Err(ApiError::internal("The client went away"));
        }
        if p.calls() > 0 && end.finish == "stop" {
            end.finish = "tool_calls";
        }
    }
    Ok(end)
}

/// Passes `pieces` on as parts (empty text left out); false when the client went away.
fn emit(pieces: Vec<CallPiece>, on_part: &mut impl FnMut(Part) -> bool) -> bool {
    pieces.into_iter().all(|p| match p {
        CallPiece::Text(t) if t.is_empty() => true,
        CallPiece::Text(t) => on_part(Part::Text(t)),
        CallPiece::Call { call, .. } => on_part(Part::Call(call)),
    })
}

/// The whole answer, collected: its parts (consecutive text and reasoning merged) and the end.
pub async fn collect(
    state: &AppState,
    job: &Job,
    rx: &mut mpsc::UnboundedReceiver<Out>,
    t0: Instant,
) -> Result<(Vec<Part>, End), ApiError> {
    let mut parts: Vec<Part> = Vec::new();
    let end = drive(state, job, rx, t0, |p| {
        match (parts.last_mut(), p) {
            (Some(Part::Text(a)), Part::Text(b)) => a.push_str(&b),
            (Some(Part::Reasoning(a)), Part::Reasoning(b)) => a.push_str(&b),
            (_, p) => parts.push(p),
        }
        true
    })
    .await?;
    Ok((parts, end))
}

/// The arguments of a call as a JSON object (the parser only passes on calls whose arguments parse).
pub fn arguments(call: &Call) -> serde_json::Value {
    serde_json::from_str(&call.arguments)
        .unwrap_or_else(|_| serde_json::Value::Object(Default::default()))
}
