//! Splitting an output buffer into rows that the compute pool's threads fill in parallel.

use hearth_kernels::ThreadPool;

/// A pointer that may cross threads: each row it leads to is written by exactly one task.
struct RowPtr(*mut f32);
// SAFETY: `for_each_row` hands each task a distinct, non-overlapping row; no two threads touch the same memory.
unsafe impl Sync for RowPtr {}
// SAFETY: as for Sync: the pointer is only dereferenced at disjoint rows, while `out` is borrowed mutably.
unsafe impl Send for RowPtr {}

/// Runs `f(i, row_i)` for every `row_len`-sized row of `out`, in parallel on `pool`.
pub fn for_each_row<F>(pool: &ThreadPool, out: &mut [f32], row_len: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    assert!(
        row_len > 0 && out.len().is_multiple_of(row_len),
        "output is not a whole number of rows"
    );
    let n_rows = out.len() / row_len;
    let base = RowPtr(out.as_mut_ptr());
    pool.parallel_for(n_rows, |i| {
        let base = &base;
        // SAFETY: i < n_rows, so the row lies inside `out`, and rows of distinct i do not overlap; `out` is
        // borrowed mutably for the whole call, so nothing else reads or writes it meanwhile.
        let row = unsafe { std::slice::from_raw_parts_mut(base.0.add(i * row_len), row_len) };
        f(i, row);
    });
}
