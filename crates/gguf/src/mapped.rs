//! What happens when a mapped model file changes underneath us: [`Watch`] notices it (size or modification time of
//! the open file differs from when it was mapped), and a bus error from reading a page the file no longer has is
//! reported clearly instead of killing the process with a bare `SIGBUS`.
//!
//! Files in hearth's store are never rewritten in place (a new file is written and renamed over the old one, which
//! leaves our mapping of the old file intact), but a user's own path can be: `cp new.gguf model.gguf` truncates the
//! very file we have mapped and writes new bytes into it. Reading a page past the new end then raises `SIGBUS`, and
//! pages still inside it silently hold the new file's bytes. Neither can be undone from inside the process, so:
//! - [`Watch::changed`] is one `fstat` of the file we mapped, cheap enough to call before every request: a server
//!   reports the change on `/health` and stops rather than serve a mix of two files;
//! - a `SIGBUS` handler (installed once, when the first file is mapped) finds the faulting address inside one of
//!   the registered mappings, writes which file shrank to stderr and exits with status 74 (`EX_IOERR`) for a
//!   supervisor to restart us. A bus error anywhere else goes to the handler that was there before (Rust's own
//!   stack-overflow handler, or the default action), so nothing else changes.

use std::fs::File;
use std::time::SystemTime;

/// The exit status after a bus error in a mapped model file (`EX_IOERR` from `sysexits.h`).
pub const EXIT_FILE_CHANGED: i32 = 74;

/// The identity of a mapped file at the time it was mapped; [`Watch::changed`] compares the file with it.
#[derive(Debug)]
pub(crate) struct Watch {
    file: File,
    path: String,
    len: u64,
    modified: Option<SystemTime>,
    _registration: Option<guard::Registration>,
}

impl Watch {
    /// Watches `file` (opened from `path`) whose first `map.len()` bytes are mapped at `map`.
    pub(crate) fn new(file: File, path: String, map: &[u8]) -> std::io::Result<Watch> {
        let meta = file.metadata()?;
        let registration = guard::register(map, &path);
        Ok(Watch {
            len: meta.len(),
            modified: meta.modified().ok(),
            file,
            path,
            _registration: registration,
        })
    }

    /// Why the mapped bytes may no longer be the file's bytes (it was truncated, grown or written since it was
    /// mapped), or None when it looks untouched.
    pub(crate) fn changed(&self) -> Option<String> {
        let meta = match self.file.metadata() {
            Ok(m) => m,
            Err(e) => return Some(format!("{}: cannot check the model file: {e}", self.path)),
        };
        if meta.len() != self.len {
            return Some(format!(
                "the model file {} changed on disk while in use (it was {} bytes, now {}); write a new file and \
                 rename it over the old one instead of changing it in place",
                self.path,
                self.len,
                meta.len()
            ));
        }
        if meta.modified().ok() != self.modified {
            return Some(format!(
                "the model file {} was written to while in use; write a new file and rename it over the old one \
                 instead of changing it in place",
                self.path
            ));
        }
        None
    }
}

#[cfg(unix)]
mod guard {
    //! The process-wide `SIGBUS` handler and its table of mapped files. The table is fixed-size and lock-free so the
    //! handler can read it (a signal handler may only do async-signal-safe things: atomics, `write`, `_exit`).

    use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
    use std::sync::OnceLock;

    const SLOTS: usize = 64;
    /// `start` of a slot being filled or emptied: never a mapping's address (those are page-aligned and non-zero).
    const BUSY: usize = 1;

    struct Slot {
        /// Address of the mapping's first byte; 0 for a free slot.
        start: AtomicUsize,
        len: AtomicUsize,
        /// The message to print (leaked, so a handler running while the slot is freed never reads freed memory).
        msg: AtomicPtr<u8>,
        msg_len: AtomicUsize,
    }

    static TABLE: [Slot; SLOTS] = [const {
        Slot {
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            msg: AtomicPtr::new(std::ptr::null_mut()),
            msg_len: AtomicUsize::new(0),
        }
    }; SLOTS];

    /// The handler that was installed before ours, to pass bus errors that are not ours to.
    static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

    /// A registered mapping; dropping it (when the mapping goes) frees the slot.
    #[derive(Debug)]
    pub(crate) struct Registration(usize);

    impl Drop for Registration {
        fn drop(&mut self) {
            TABLE[self.0].start.store(0, Ordering::Release);
        }
    }

    /// Registers a mapping (installing the handler on first use); None when the table is full.
    pub(crate) fn register(map: &[u8], path: &str) -> Option<Registration> {
        if map.is_empty() {
            return None;
        }
        install();
        for (i, slot) in TABLE.iter().enumerate() {
            if slot
                .start
                .compare_exchange(0, BUSY, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let msg = format!(
                "\nhearth: the model file {path} was truncated or overwritten while in use (a bus error reading it); \
                 write a new file and rename it over the old one instead of changing it in place\n"
            );
            let msg: &'static mut [u8] = Box::leak(msg.into_bytes().into_boxed_slice());
            slot.msg_len.store(msg.len(), Ordering::Relaxed);
            slot.msg.store(msg.as_mut_ptr(), Ordering::Relaxed);
            slot.len.store(map.len(), Ordering::Relaxed);
            slot.start.store(map.as_ptr() as usize, Ordering::Release);
            return Some(Registration(i));
        }
        None
    }

    fn install() {
        PREVIOUS.get_or_init(|| {
            // SAFETY: a zeroed `sigaction` is a valid value of this plain C struct; `sigaction` only reads `new`
            // and writes `old`, both valid for the call. The handler below only uses async-signal-safe calls.
            unsafe {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_sigbus as *const () as usize;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut new.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(libc::SIGBUS, &new, &mut old) != 0 {
                    old.sa_sigaction = libc::SIG_DFL;
                }
                old
            }
        });
    }

    extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid `siginfo_t` to an SA_SIGINFO handler; for SIGBUS `si_addr` is the
        // faulting address.
        let addr = unsafe { (*info).si_addr() } as usize;
        for slot in &TABLE {
            let start = slot.start.load(Ordering::Acquire);
            if start > BUSY && addr >= start && addr - start < slot.len.load(Ordering::Relaxed) {
                let msg = slot.msg.load(Ordering::Relaxed);
                let len = slot.msg_len.load(Ordering::Relaxed);
                // SAFETY: `msg` points at `len` leaked (never freed) bytes; `write` and `_exit` are
                // async-signal-safe.
                unsafe {
                    libc::write(2, msg as *const libc::c_void, len);
                    libc::_exit(super::EXIT_FILE_CHANGED);
                }
            }
        }
        // Not a model file: do what would have happened without us.
        let prev = PREVIOUS.get().map_or(libc::SIG_DFL, |p| p.sa_sigaction);
        let flags = PREVIOUS.get().map_or(0, |p| p.sa_flags);
        if prev == libc::SIG_DFL || prev == libc::SIG_IGN {
            // SAFETY: resetting the disposition is async-signal-safe; returning re-runs the faulting access, which
            // now gets the default action (the process ends with SIGBUS, as it would have).
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        } else if flags & libc::SA_SIGINFO != 0 {
            // SAFETY: the previous handler was installed as an SA_SIGINFO handler with this signature.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(prev) };
            f(sig, info, ctx);
        } else {
            // SAFETY: the previous handler was installed as a plain handler with this signature.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(prev) };
            f(sig);
        }
    }
}

#[cfg(not(unix))]
mod guard {
    //! No bus-error report off Unix: the watch alone.
    #[derive(Debug)]
    pub(crate) struct Registration;
    pub(crate) fn register(_map: &[u8], _path: &str) -> Option<Registration> {
        None
    }
}
