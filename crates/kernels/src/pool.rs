//! The compute thread pool: persistent workers woken per `parallel_for`, work claimed in chunks from an atomic counter.
//!
//! The calling thread takes part as worker 0. Idle workers spin briefly (a decode step issues the next job within
//! microseconds) and then park, so an idle pool costs no CPU.
//!
//! Workers *enter* a job before touching it and the caller *closes* it once every item is claimed, so the caller
//! waits only for workers that are actually running items: a worker the OS has descheduled (a busy machine) never
//! holds up a call, it simply skips the job.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker polls for a new job before parking (the gap between two matmuls of a decode step is
/// usually shorter; parking and waking costs several microseconds).
const SPIN_TIME: Duration = Duration::from_micros(100);
/// How many times the caller polls for running workers before yielding its time slice between polls.
const WAIT_SPIN_ITERS: u32 = 1_000;

/// `Shared::state` layout: bits 0..32 count the workers inside the current job, bit 32 marks it closed, the bits
/// above hold its generation.
const ACTIVE_MASK: u64 = 0xFFFF_FFFF;
const CLOSED: u64 = 1 << 32;
const GEN_SHIFT: u32 = 33;

/// A job as the workers see it: the closure with its lifetime erased, and the work counter.
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    n_items: usize,
    chunk: usize,
}

struct Shared {
    /// Generation, closed flag and active-worker count of the current job (see `ACTIVE_MASK`).
    state: AtomicU64,
    /// The current job; written by the caller only while the previous job is closed with no worker inside.
    job: std::cell::UnsafeCell<Job>,
    /// Next item to claim.
    next: AtomicUsize,
    /// Set when a worker's closure panicked during the current job.
    panicked: AtomicBool,
    shutdown: AtomicBool,
}

// SAFETY: `job` is written only by the thread holding `ThreadPool::lock` while the state is closed with no active
// worker, and read by workers only between entering the job (a successful CAS on an open state, Acquire) and leaving
// it (fetch_sub, Release).
unsafe impl Sync for Shared {}
// SAFETY: the raw closure pointer inside `Job` is only dereferenced under the protocol above.
unsafe impl Send for Shared {}

thread_local! {
    /// True on a pool worker, or on a caller inside `parallel_for`: nested calls then run inline instead of deadlocking.
    static IN_POOL: Cell<bool> = const { Cell::new(false) };
}

/// Persistent compute workers. `n_threads` counts the calling thread, so `ThreadPool::new(1)` spawns nothing.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serialises `parallel_for` calls from different threads; holds the last generation used.
    lock: Mutex<u64>,
}

impl ThreadPool {
    /// A pool of `n_threads` threads including the caller (values below 1 are treated as 1). Panics when the OS
    /// refuses a thread; [`ThreadPool::try_new`] reports that instead.
    pub fn new(n_threads: usize) -> ThreadPool {
        match ThreadPool::try_new(n_threads) {
            Ok(pool) => pool,
            Err(e) => panic!("failed to spawn a compute thread: {e}"),
        }
    }

    /// Like [`ThreadPool::new`], but a thread the OS refuses (too many threads, too little memory for stacks) is
    /// an error; the threads already started are stopped and joined.
    pub fn try_new(n_threads: usize) -> std::io::Result<ThreadPool> {
        let n_threads = n_threads.max(1);
        let noop: &(dyn Fn(usize) + Sync) = &|_| {};
        let shared = Arc::new(Shared {
            state: AtomicU64::new(CLOSED),
            job: std::cell::UnsafeCell::new(Job {
                f: noop as *const _,
                n_items: 0,
                chunk: 1,
            }),
            next: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
        });
        let mut pool = ThreadPool {
            shared,
            workers: Vec::with_capacity(n_threads - 1),
            lock: Mutex::new(0),
        };
        for i in 1..n_threads {
            let shared = Arc::clone(&pool.shared);
            // On error `pool` is dropped here, which stops and joins the workers started so far.
            let worker = std::thread::Builder::new()
                .name(format!("hearth-compute-{i}"))
                .spawn(move || worker_loop(&shared))?;
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    /// Threads that run work, the caller included.
    pub fn n_threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(i, row_i)` for every `row_len`-sized row of `out` (rows in parallel); returns when all are done.
    ///
    /// Panics when `out` is not a whole number of rows.
    pub fn for_each_row<T: Send, F>(&self, out: &mut [T], row_len: usize, f: F)
    where
        F: Fn(usize, &mut [T]) + Sync,
    {
        /// The base of `out`, shared by the tasks: each row it leads to is written by exactly one task.
        struct Rows<T>(*mut T);
        // SAFETY: the tasks get distinct, non-overlapping rows of a buffer of `T: Send`; no two threads touch the
        // same element.
        unsafe impl<T: Send> Sync for Rows<T> {}
        assert!(
            row_len > 0 && out.len().is_multiple_of(row_len),
            "output is not a whole number of rows"
        );
        let n_rows = out.len() / row_len;
        let base = Rows(out.as_mut_ptr());
        self.parallel_for(n_rows, |i| {
            let base = &base;
            // SAFETY: i < n_rows, so the row lies inside `out`, and rows of distinct i do not overlap; `out` is
            // borrowed mutably for the whole call, so nothing else reads or writes it meanwhile.
            let row = unsafe { std::slice::from_raw_parts_mut(base.0.add(i * row_len), row_len) };
            f(i, row);
        });
    }

    /// Runs `f(i)` for every `i` in `0..n_items` on all threads; returns when all calls are done.
    ///
    /// Panics from `f` are re-raised here after every thread has stopped. Nested calls (from inside `f`) run inline.
    pub fn parallel_for<F: Fn(usize) + Sync>(&self, n_items: usize, f: F) {
        if n_items == 0 {
            return;
        }
        if self.workers.is_empty() || n_items == 1 || IN_POOL.with(|c| c.get()) {
            (0..n_items).for_each(f);
            return;
        }
        let mut generation = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let sh = &*self.shared;
        let chunk = (n_items / (self.n_threads() * 4)).max(1);
        let f_dyn: &(dyn Fn(usize) + Sync) = &f;
        // SAFETY: we hold `lock` and the previous job was closed with no worker inside, so nobody reads `job` now.
        // The erased lifetime is sound because this function does not return before every worker that entered the
        // job has left it, and no worker can enter after it is closed.
        unsafe {
            *sh.job.get() = Job {
                f: std::mem::transmute::<
                    *const (dyn Fn(usize) + Sync + '_),
                    *const (dyn Fn(usize) + Sync + 'static),
                >(f_dyn as *const _),
                n_items,
                chunk,
            };
        }
        sh.next.store(0, Ordering::Relaxed);
        sh.panicked.store(false, Ordering::Relaxed);
        *generation = generation.wrapping_add(1) & (u64::MAX >> GEN_SHIFT);
        sh.state.store(*generation << GEN_SHIFT, Ordering::Release);
        for w in &self.workers {
            // Cheap (one atomic swap) when the worker is still spinning.
            w.thread().unpark();
        }

        IN_POOL.with(|c| c.set(true));
        let result = catch_unwind(AssertUnwindSafe(|| run_chunks(sh, f_dyn, n_items, chunk)));
        IN_POOL.with(|c| c.set(false));

        // Every item is claimed now: close the job and wait for the workers still inside it.
        sh.state.fetch_or(CLOSED, Ordering::AcqRel);
        let mut spins = 0u32;
        while sh.state.load(Ordering::Acquire) & ACTIVE_MASK != 0 {
            if spins < WAIT_SPIN_ITERS {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
        if let Err(payload) = result {
            std::panic::resume_unwind(payload);
        }
        if sh.panicked.load(Ordering::Relaxed) {
            panic!("a closure passed to ThreadPool::parallel_for panicked on a worker thread");
        }
    }
}

fn run_chunks(sh: &Shared, f: &(dyn Fn(usize) + Sync), n_items: usize, chunk: usize) {
    loop {
        let start = sh.next.fetch_add(chunk, Ordering::Relaxed);
        if start >= n_items {
            return;
        }
        for i in start..(start + chunk).min(n_items) {
            f(i);
        }
    }
}

/// Tries to enter the open job of generation `generation`; false when it is closed or already replaced.
fn enter(sh: &Shared, generation: u64) -> bool {
    let mut s = sh.state.load(Ordering::Acquire);
    loop {
        if s >> GEN_SHIFT != generation || s & CLOSED != 0 {
            return false;
        }
        match sh
            .state
            .compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return true,
            Err(now) => s = now,
        }
    }
}

fn worker_loop(sh: &Shared) {
    IN_POOL.with(|c| c.set(true));
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        let mut spin_start: Option<Instant> = None;
        let generation = loop {
            let g = sh.state.load(Ordering::Acquire) >> GEN_SHIFT;
            if g != seen {
                break g;
            }
            if sh.shutdown.load(Ordering::Acquire) {
                return;
            }
            spins = spins.wrapping_add(1);
            // Check the clock only every 64 polls.
            let spinning = !spins.is_multiple_of(64)
                || spin_start.get_or_insert_with(Instant::now).elapsed() < SPIN_TIME;
            if spinning {
                std::hint::spin_loop();
            } else {
                spin_start = None;
                // The caller unparks every worker after publishing a job; park's token makes this race-free.
                std::thread::park();
            }
        };
        seen = generation;
        if !enter(sh, generation) {
            continue;
        }
        // SAFETY: we are inside an open job (entered above), so the caller keeps `job` and its closure alive and
        // unchanged until we leave.
        let (f, n_items, chunk) = unsafe {
            let job = &*sh.job.get();
            (&*job.f, job.n_items, job.chunk)
        };
        if catch_unwind(AssertUnwindSafe(|| run_chunks(sh, f, n_items, chunk))).is_err() {
            sh.panicked.store(true, Ordering::Relaxed);
        }
        sh.state.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        for w in self.workers.drain(..) {
            w.thread().unpark();
            let _ = w.join();
        }
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.n_threads())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn pool_is_send_sync() {
        assert_send_sync::<ThreadPool>();
    }

    #[test]
    fn every_item_runs_exactly_once() {
        for n_threads in [1, 2, 3] {
            let pool = ThreadPool::new(n_threads);
            assert_eq!(pool.n_threads(), n_threads);
            for n_items in [0usize, 1, 2, 3, 7, 64, 1000, 10_007] {
                for _repeat in 0..3 {
                    let hits: Vec<AtomicUsize> =
                        (0..n_items).map(|_| AtomicUsize::new(0)).collect();
                    pool.parallel_for(n_items, |i| {
                        hits[i].fetch_add(1, Ordering::Relaxed);
                    });
                    assert!(
                        hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                        "n_threads {n_threads}, n_items {n_items}"
                    );
                }
            }
        }
    }

    #[test]
    fn work_spreads_over_threads() {
        let pool = ThreadPool::new(3);
        let ids = Mutex::new(std::collections::HashSet::new());
        pool.parallel_for(64, |_| {
            std::thread::sleep(std::time::Duration::from_millis(2));
            ids.lock().unwrap().insert(std::thread::current().id());
        });
        assert!(
            ids.lock().unwrap().len() >= 2,
            "only one thread did the work"
        );
    }

    #[test]
    fn many_tiny_jobs_and_workers_park() {
        let pool = ThreadPool::new(3);
        let total = AtomicUsize::new(0);
        for k in 0..2000 {
            pool.parallel_for(k % 5, |i| {
                total.fetch_add(i + 1, Ordering::Relaxed);
            });
            if k % 500 == 0 {
                // Let the workers go to sleep and check they wake up again.
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        // sum over k of (k%5)(k%5+1)/2 = 400 * (0 + 1 + 3 + 6 + 10)
        assert_eq!(total.load(Ordering::Relaxed), 400 * 20);
    }

    #[test]
    fn nested_and_concurrent_calls_are_safe() {
        let pool = Arc::new(ThreadPool::new(2));
        let count = AtomicUsize::new(0);
        pool.parallel_for(4, |_| {
            pool.parallel_for(3, |_| {
                count.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(count.load(Ordering::Relaxed), 12);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    let c = AtomicUsize::new(0);
                    for _ in 0..200 {
                        pool.parallel_for(10, |_| {
                            c.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                    c.load(Ordering::Relaxed)
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 2000);
        }
    }

    #[test]
    fn panics_propagate_and_pool_survives() {
        let pool = ThreadPool::new(3);
        for _ in 0..5 {
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.parallel_for(100, |i| {
                    if i % 7 == 3 {
                        panic!("boom {i}");
                    }
                })
            }));
            assert!(r.is_err());
        }
        let total = AtomicUsize::new(0);
        pool.parallel_for(100, |i| {
            total.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(total.load(Ordering::Relaxed), 4950);
    }
}
