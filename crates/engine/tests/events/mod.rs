//! What the engine's tests do with a request's events: collect them, or stop at a token.

#![allow(dead_code)]

use hearth_engine::batch::{Event, Flow, Sink, Usage};
use hearth_engine::Finish;
use std::sync::mpsc;

/// Collects one request's tokens, finish and usage.
pub fn collect(rx: mpsc::Receiver<Event>) -> (Vec<u32>, Finish, Usage) {
    let mut ids = Vec::new();
    for ev in rx {
        match ev {
            Event::Token(s) => ids.push(s.id),
            Event::Done { finish, usage, .. } => return (ids, finish, usage),
            Event::Failed(m) => panic!("request failed: {m}"),
        }
    }
    panic!("the engine dropped the request without Done");
}

/// A sink that answers `Flow::Stop` to the `at`-th token (1-based), as a front-end's text stream does at a stop
/// string, and forwards every event.
pub struct StopAt {
    at: usize,
    seen: usize,
    tx: mpsc::Sender<Event>,
}

impl StopAt {
    pub fn new(at: usize, tx: mpsc::Sender<Event>) -> StopAt {
        StopAt { at, seen: 0, tx }
    }
}

impl Sink for StopAt {
    fn send(&mut self, event: Event) -> Flow {
        let is_token = matches!(event, Event::Token(_));
        if self.tx.send(event).is_err() {
            return Flow::Gone;
        }
        self.seen += usize::from(is_token);
        if is_token && self.seen == self.at {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}
