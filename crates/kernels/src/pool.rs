//! The compute thread pool: persistent workers woken per `parallel_for`, work claimed in chunks from an atomic counter.
//!
//! The calling thread takes part as worker 0. Idle workers spin briefly (a decode step issues the next job within
//! microseconds) and then park, so an idle pool costs no CPU.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// How many times an idle worker polls for a new job before parking.
const SPIN_ITERS: u32 = 20_000;
/// How many times the caller polls for stragglers before yielding its time slice between polls.
const WAIT_SPIN_ITERS: u32 = 2_000;

/// A job as the workers see it: the closure with its lifetime erased, and the work counter.
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    n_items: usize,
    chunk: usize,
}

struct Shared {
    /// Bumped (SeqCst) once per job; workers compare it with the last one they ran.
    generation: AtomicU64,
    /// The current job; written by the caller only while every worker is idle.
    job: std::cell::UnsafeCell<Job>,
    /// Next item to claim.
    next: AtomicUsize,
    /// Workers (not counting the caller) that have not finished the current job.
    running: AtomicUsize,
    /// Set when a worker's closure panicked during the current job.
    panicked: AtomicBool,
    shutdown: AtomicBool,
}

// SAFETY: `job` is written only by the thread holding `ThreadPool::lock` while `running == 0` (no worker reads it),
// and read by workers only between observing a new `generation` (Acquire) and decrementing `running` (Release).
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
    /// Serialises `parallel_for` calls from different threads.
    lock: Mutex<()>,
}

impl ThreadPool {
    /// A pool of `n_threads` threads including the caller (values below 1 are treated as 1).
    pub fn new(n_threads: usize) -> ThreadPool {
        let n_threads = n_threads.max(1);
        let noop: &(dyn Fn(usize) + Sync) = &|_| {};
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: std::cell::UnsafeCell::new(Job {
                f: noop as *const _,
                n_items: 0,
                chunk: 1,
            }),
            next: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
        });
        let workers = (1..n_threads)
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("hearth-compute-{i}"))
                    .spawn(move || worker_loop(&shared))
                    .expect("failed to spawn a compute thread")
            })
            .collect();
        ThreadPool {
            shared,
            workers,
            lock: Mutex::new(()),
        }
    }

    /// Threads that run work, the caller included.
    pub fn n_threads(&self) -> usize {
        self.workers.len() + 1
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
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let sh = &*self.shared;
        let n_threads = self.n_threads();
        let chunk = (n_items / (n_threads * 4)).max(1);
        let f_dyn: &(dyn Fn(usize) + Sync) = &f;
        // SAFETY: we hold `lock` and the previous job ended with `running == 0`, so no worker reads `job` now.
        // The erased lifetime is sound because this function does not return before every worker is done with `f`.
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
        sh.running.store(self.workers.len(), Ordering::Relaxed);
        sh.generation.fetch_add(1, Ordering::SeqCst);
        for w in &self.workers {
            // Cheap (one atomic swap) when the worker is still spinning.
            w.thread().unpark();
        }

        IN_POOL.with(|c| c.set(true));
        let result = catch_unwind(AssertUnwindSafe(|| run_chunks(sh, f_dyn, n_items, chunk)));
        IN_POOL.with(|c| c.set(false));

        let mut spins = 0u32;
        while sh.running.load(Ordering::Acquire) != 0 {
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

fn worker_loop(sh: &Shared) {
    IN_POOL.with(|c| c.set(true));
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        loop {
            let g = sh.generation.load(Ordering::Acquire);
            if g != seen {
                seen = g;
                break;
            }
            if sh.shutdown.load(Ordering::Acquire) {
                return;
            }
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
                spins += 1;
            } else {
                // The caller unparks every worker after bumping `generation`; park's token makes this race-free.
                std::thread::park();
            }
        }
        // SAFETY: a new generation was observed (Acquire) and `running` is not yet decremented, so the caller keeps
        // `job` and the closure it points to alive and unchanged.
        let (f, n_items, chunk) = unsafe {
            let job = &*sh.job.get();
            (&*job.f, job.n_items, job.chunk)
        };
        if catch_unwind(AssertUnwindSafe(|| run_chunks(sh, f, n_items, chunk))).is_err() {
            sh.panicked.store(true, Ordering::Relaxed);
        }
        sh.running.fetch_sub(1, Ordering::Release);
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
