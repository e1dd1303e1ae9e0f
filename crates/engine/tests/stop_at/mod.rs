//! A sink shared by the engine's tests.

use hearth_engine::batch::{Event, Flow, Sink};
use std::sync::mpsc;

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
