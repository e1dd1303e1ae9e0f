//! The accept loop under [`crate::serve`]: what a client may hold and for how long, and what happens when the engine
//! fails.
//!
//! - At most [`Limits::max_connections`] connections at once (kept under the process's file-descriptor limit): at
//!   the limit the loop stops accepting, so new clients wait in the kernel's backlog instead of being dropped, and
//!   get in as soon as another connection ends. When accepting fails anyway (`EMFILE`: descriptors used up
//!   elsewhere), the loop waits a moment and tries again rather than stopping.
//! - A connection that does not send a whole request head within [`Limits::header_read_timeout`] is closed, and the
//!   same clock runs while a kept-alive connection waits for its next request, so idle sockets and slowloris heads
//!   are freed (hyper's header-read timeout). A body must arrive within [`Limits::body_read_timeout`]
//!   ([`crate::guard`]), and a client that stops reading its response for [`Limits::write_timeout`] is dropped
//!   (which cancels its generation).
//! - Hyper answers a request it cannot parse (400, 414, 431) itself, with an empty body; [`Conn`] rewrites that
//!   answer into OpenAI's error JSON on its way out.
//! - When the engine fails (a panic: a bug whose damage we cannot bound, see [`crate::AppState::failure`]) or the
//!   model file changes underneath us, the loop stops accepting, lets the connections in flight finish for a few
//!   seconds, and returns the failure: `hearth serve` then exits non-zero so a supervisor (systemd, a container
//!   runtime) restarts it with a fresh engine. Restarting in-process was rejected: the failed thread shared the
//!   model's memory and the compute pool with whatever comes next, and a request that triggers the panic again would
//!   bring it down in a loop that nobody sees; a clean exit is visible and leaves nothing behind.

use crate::AppState;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, Sleep};

/// How much of the server a client may hold, and for how long.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time to send a request head, and the most a kept-alive connection may sit idle between requests.
    pub header_read_timeout: Duration,
    /// Time to send a request body once its head has arrived.
    pub body_read_timeout: Duration,
    /// Time a client may leave a response unread (a write making no progress) before it is dropped.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: default_max_connections(),
            header_read_timeout: Duration::from_secs(15),
            body_read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// 512 connections, or fewer when the descriptor limit is low: 64 descriptors stay for the model, logs and the
/// engine, and the rest is split evenly (a connection uses one; accepting while near the limit would starve both).
fn default_max_connections() -> usize {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `getrlimit` writes one `rlimit` into the valid struct we pass.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            let cur = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
            return cur.saturating_sub(64).clamp(8, 512);
        }
    }
    512
}

/// How long the connections in flight get to finish after the engine failed.
const FAILED_DRAIN: Duration = Duration::from_secs(5);
/// How often the loop looks at the engine's health.
const HEALTH_EVERY: Duration = Duration::from_millis(250);

/// Serves `app(state)` on `listener` until `shutdown` completes (then waits for the requests in flight) or the
/// engine fails (then returns its failure after a short drain).
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let limits = state.config.limits.clone();
    let router = crate::app(state.clone());
    let n_conns = limits.max_connections.max(1);
    let conns = Arc::new(Semaphore::new(n_conns));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut health = tokio::time::interval(HEALTH_EVERY);
    let failure = loop {
        let next = async {
            let permit = conns.clone().acquire_owned().await;
            (permit, listener.accept().await)
        };
        tokio::select! {
            _ = &mut shutdown => break None,
            _ = health.tick() => {
                if let Some(why) = state.failure() {
                    break Some(why);
                }
            }
            (permit, accepted) = next => {
                let Ok(permit) = permit else { break None };
                match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(connection(stream, router.clone(), limits.clone(), stop_rx.clone(), permit));
                    }
                    Err(e) => {
                        drop(permit);
                        // EMFILE/ENFILE/ENOBUFS and aborted handshakes: none of them is the listener's fault.
                        tracing::warn!("accepting a connection: {e}");
                        sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    };
    let _ = stop_tx.send(true);
    let all = conns.acquire_many(n_conns as u32);
    if failure.is_some() {
        let _ = tokio::time::timeout(FAILED_DRAIN, all).await;
    } else {
        let _ = all.await;
    }
    failure.map_or(Ok(()), Err)
}

async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(Conn::new(stream, limits.write_timeout));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(io, TowerToHyperService::new(router));
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// A client socket that gives up on writes making no progress for `write_timeout`, and turns hyper's own empty
/// error answers into JSON.
struct Conn {
    stream: TcpStream,
    write_timeout: Duration,
    /// Armed while a write is blocked.
    stalled: Option<Pin<Box<Sleep>>>,
    /// A rewritten answer still to be sent (and how much of it went out).
    pending: Vec<u8>,
    sent: usize,
}

impl Conn {
    fn new(stream: TcpStream, write_timeout: Duration) -> Conn {
        Conn {
            stream,
            write_timeout,
            stalled: None,
            pending: Vec::new(),
            sent: 0,
        }
    }

    /// Runs a write; a Pending that lasts `write_timeout` becomes a TimedOut error.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match f(Pin::new(&mut self.stream), cx) {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.write_timeout;
                let s = self.stalled.get_or_insert_with(|| Box::pin(sleep(timeout)));
                if s.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    )));
                }
                Poll::Pending
            }
        }
    }

    /// Sends what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let (pending, sent) = (std::mem::take(&mut self.pending), self.sent);
            let r = self.guard(cx, |s, cx| s.poll_write(cx, &pending[sent..]));
            self.pending = pending;
            match ready!(r) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.sent += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Hyper's answer to a request it could not parse, as OpenAI's error JSON (None for anything else). Hyper writes
/// those as a bare head with `content-length: 0` and a 400, 414 or 431 status; every answer of ours to an error
/// has a JSON body ([`crate::guard`] sees to it), so nothing of ours matches.
pub fn rewrite_hyper_error(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let (status_line, rest) = text.split_once("\r\n")?;
    if !rest.ends_with("\r\n\r\n") || rest.len() > 512 {
        return None;
    }
    let code = status_line.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    let message = match code {
        "400" => "The request could not be parsed as HTTP/1.1",
        "414" => "The request URI is too long",
        "431" => "The request's header fields are too large",
        _ => return None,
    };
    let lines: Vec<&str> = rest.trim_end().split("\r\n").collect();
    if !lines
        .iter()
        .any(|l| l.eq_ignore_ascii_case("content-length: 0"))
        || lines.iter().any(|l| {
            l.get(..13)
                .is_some_and(|h| h.eq_ignore_ascii_case("content-type:"))
        })
    {
        return None;
    }
    let status = axum::http::StatusCode::from_bytes(code.as_bytes()).ok()?;
    let body = crate::error::ApiError::status(status, message)
        .body()
        .to_string();
    let mut out = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for l in lines {
        if !l.is_empty() && !l.to_ascii_lowercase().starts_with("content-length:") {
            out += l;
            out += "\r\n";
        }
    }
    out += "\r\n";
    out += &body;
    Some(out.into_bytes())
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        if buf.starts_with(b"HTTP/1.1 4") {
            if let Some(out) = rewrite_hyper_error(buf) {
                this.pending = out;
                this.sent = 0;
                // Claim the original bytes; the replacement goes out now and on the next calls.
                let _ = this.poll_pending(cx)?;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        this.guard(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        this.guard(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        this.guard(cx, |s, cx| s.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_errors_become_json_and_ours_stay() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 07:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite_hyper_error(head).expect("rewritten")).expect("utf-8");
        let (h, body) = out.split_once("\r\n\r\n").expect("head and body");
        assert!(h.starts_with("HTTP/1.1 431 "), "{h}");
        assert!(h.contains("content-type: application/json"), "{h}");
        assert!(
            h.contains(&format!("content-length: {}", body.len())),
            "{h}"
        );
        assert!(h.contains("date: "), "{h}");
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        for ours in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 80\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        ] {
            assert_eq!(rewrite_hyper_error(ours), None);
        }
    }

    /// A client that connects and never reads: the server's writes fill the socket buffers and then stall. The
    /// write must fail with TimedOut shortly after `write_timeout`, not block for ever (the slot and the
    /// sequence behind it would never be freed). Mutation: dropping the stall timer in `guard` makes this hang
    /// until the outer timeout and fail.
    #[tokio::test]
    async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
        use tokio::io::AsyncWriteExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::net::TcpSocket::new_v4().expect("socket");
        client.set_recv_buffer_size(4096).expect("rcvbuf");
        let _client = client.connect(addr).await.expect("connect");
        let (stream, _) = listener.accept().await.expect("accept");
        let mut conn = Conn::new(stream, Duration::from_millis(200));
        let chunk = vec![b'x'; 64 * 1024];
        let outcome = tokio::time::timeout(Duration::from_secs(20), async {
            let mut written = 0usize;
            loop {
                if let Err(e) = conn.write_all(&chunk).await {
                    return (e, written);
                }
                written += chunk.len();
            }
        })
        .await;
        let (err, written) = outcome.expect("the stalled write never timed out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(written > 0, "nothing could be written before the stall");
    }
}
