//! Weight matrices repacked once at load time so that one kernel serves any number of tokens: 16 rows are
//! interleaved, and one AVX-512 VNNI `vpdpbusd` multiplies 4 elements of 16 rows with the same 4 elements of a token.
//!
//! Why one kernel: a token's output must not depend on how many tokens share its batch (the server promises that a
//! request's greedy text does not depend on what else is being served), and prompt processing wants the weights
//! reused across many tokens. Here every (row, token) output runs the same chain of operations, group by group,
//! whatever the tile shape or the number of tokens:
//!
//! ```text
//! isum = sum(q_e * qa_e) - offset * sum(qa_e)      exact, i32
//! acc  = fma(f32(isum) * da, wd, acc)
//! acc  = fma(wm, sa, acc)                           only formats with a min term
//! ```
//!
//! `q` are the weight quants as unsigned bytes (`value = wd * (q - offset) + wm`), `qa` the token's signed activation
//! quants, `da` their scale and `sa` the activation group's scaled sum. `dot_reference` (in the tests) is the chain
//! in scalar code, one element at a time; the portable kernel and the SIMD ones (`packed_x86`) equal it bit for bit.
//!
//! Layout: panels of 16 rows (the last one padded with zeros); in a panel, group after group: the scales `wd` of
//! the 16 rows, their min terms `wm` (min formats only), both f16 where the format stores them so (exactly the file's
//! values) and f32 for the K-quants' products `d * scale`; then the quants as vectors of 16 rows x 4 bytes. Quants of
//! 4 to 6 bits keep their low 4 bits as nibbles (vector `j` holds quad `j` in its low and quad `j + group / 8` in its
//! high nibbles) and each higher bit as a 64-bit mask per nibble half, so Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 take exactly
//! their size in the file.

use crate::formats::{f16_at, f32_at, q8_k};
use crate::matmul::{kernel, SharedOut};
use crate::{DType, Isa, MatmulError, QuantError, ThreadPool, WeightMatrix};
use std::cell::RefCell;

/// Rows per panel (the 16 lanes of a zmm).
pub const PANEL: usize = 16;

/// Rows packed between two calls of the release callback of [`PackedMatrix::new_releasing`].
const RELEASE_ROWS: usize = 4096;

/// Whether models should repack their matrices at load: on x86-64, whatever the selected ISA (the VNNI, AVX2 and
/// scalar kernels compute packed products with the same bits, so `HEARTH_ISA` changes speed, not numbers), unless
/// `HEARTH_REPACK=0` (keeps every matrix in the file mapping, like llama.cpp's `--repack 0`).
pub fn packing_enabled() -> bool {
    cfg!(target_arch = "x86_64") && std::env::var("HEARTH_REPACK").map_or(true, |v| v.trim() != "0")
}

/// Unpacks one GGUF row into quants `(cols)` as unsigned bytes and, per group, the scale `wd` and min term `wm`.
pub(crate) type UnpackRow = fn(row: &[u8], q: &mut [u8], wd: &mut [f32], wm: &mut [f32]);

/// How a weight format maps onto the packed form.
#[derive(Clone, Copy)]
pub(crate) struct Format {
    /// Elements per group (one `wd`, `wm`).
    pub group: usize,
    /// Bits per quant: 4, 5 or 6 (nibbles and bit masks) or 8 (bytes).
    pub bits: u32,
    /// `value = wd * (q - offset) [+ wm]`.
    pub offset: i32,
    /// The format has a min term `wm`.
    pub min: bool,
    /// Scales (and min terms) are stored as f16 rather than f32.
    pub f16_scales: bool,
    /// Unpacks one GGUF row (the format's own code).
    pub unpack_row: UnpackRow,
}

/// The width of the scales (and min terms) in the packed layout.
#[derive(Clone, Copy)]
pub(crate) enum Scales {
    /// As the file stores them (Q4_0 ... Q8_0: exactly its values).
    F16,
    /// The K-quants' products `d * scale` (exact in f32).
    F32,
}

impl Format {
    /// A format with `value = wd * (q - offset)`: `group` elements of `bits`-bit quants per scale.
    pub(crate) const fn with_offset(
        group: usize,
        bits: u32,
        offset: i32,
        scales: Scales,
        unpack_row: UnpackRow,
    ) -> Format {
        Format {
            group,
            bits,
            offset,
            min: false,
            f16_scales: matches!(scales, Scales::F16),
            unpack_row,
        }
    }

    /// A format with `value = wd * q + wm`: `group` elements of `bits`-bit quants per scale and min term.
    pub(crate) const fn with_min(
        group: usize,
        bits: u32,
        scales: Scales,
        unpack_row: UnpackRow,
    ) -> Format {
        Format {
            min: true,
            ..Format::with_offset(group, bits, 0, scales, unpack_row)
        }
    }

    /// The packed form of `dtype`, from its row of the format registry.
    pub(crate) fn for_dtype(dtype: DType) -> Option<Format> {
        crate::formats::spec(dtype)?.packed
    }

    /// Bytes of the 16 scales (or min terms) of one group.
    pub(crate) fn scale_bytes(&self) -> usize {
        PANEL * if self.f16_scales { 2 } else { 4 }
    }

    /// Offset of the quants in a group.
    pub(crate) fn quant_offset(&self) -> usize {
        self.scale_bytes() * (1 + self.min as usize)
    }

    /// Quant vectors (16 rows x 4 bytes) per group: byte vectors, or nibble vectors of two quads each.
    pub(crate) fn quant_vectors(&self) -> usize {
        self.group / if self.bits == 8 { 4 } else { 8 }
    }

    /// Offset in a group of the mask pair (low half, high half) of nibble vector `j` for bit `4 + plane`.
    pub(crate) fn mask_offset(&self, plane: usize, j: usize) -> usize {
        self.quant_offset() + 64 * self.quant_vectors() + 16 * (plane * self.quant_vectors() + j)
    }

    /// Bytes of one group of one panel: scales, min terms, quants.
    pub(crate) fn group_bytes(&self) -> usize {
        let planes = if self.bits == 8 {
            0
        } else {
            self.bits as usize - 4
        };
        self.quant_offset() + 64 * self.quant_vectors() + 16 * planes * self.quant_vectors()
    }
}

/// `dst[l] = src[l] & 0x0F` and `dst[half + l] = src[l] >> 4`, `half = src.len()`: how Q4_0, Q4_1, Q5_0, Q5_1 and
/// the K-quants lay out their low 4 bits.
#[inline]
pub(crate) fn split_nibbles(src: &[u8], dst: &mut [u8]) {
    let (lo, hi) = dst.split_at_mut(src.len());
    for ((l, h), &x) in lo.iter_mut().zip(hi).zip(src) {
        *l = x & 0x0F;
        *h = x >> 4;
    }
}

/// `q[j] |= ((bits >> j) & 1) << 4`: Q5_0 and Q5_1's fifth bits.
#[inline]
pub(crate) fn add_fifth_bits(bits: u32, q: &mut [u8]) {
    for (j, x) in q.iter_mut().enumerate() {
        *x |= (((bits >> j) & 1) << 4) as u8;
    }
}

/// One thread's unpacked row: quants `(cols)`, scales and min terms `(n_groups)`.
struct PanelScratch {
    q: Vec<u8>,
    wd: Vec<f32>,
    wm: Vec<f32>,
}

impl PanelScratch {
    fn new(cols: usize, n_groups: usize) -> Self {
        PanelScratch {
            q: vec![0; cols],
            wd: vec![0.0; n_groups],
            wm: vec![0.0; n_groups],
        }
    }
}

/// Packs `rows` (at most 16) GGUF rows `data` into one zeroed panel `out`.
fn pack_panel(f: Format, data: &[u8], rows: usize, s: &mut PanelScratch, out: &mut [u8]) {
    let (nv, gbytes, half, sb) = (
        f.quant_vectors(),
        f.group_bytes(),
        f.group / 2,
        f.scale_bytes() / PANEL,
    );
    let put_scale = |at: &mut [u8], v: f32| {
        if f.f16_scales {
            at[..2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
        } else {
            at[..4].copy_from_slice(&v.to_le_bytes());
        }
    };
    let row_bytes = data.len() / rows;
    for (lane, row) in data.chunks_exact(row_bytes).enumerate() {
        (f.unpack_row)(row, &mut s.q, &mut s.wd, &mut s.wm);
        for (g, gb) in out.chunks_exact_mut(gbytes).enumerate() {
            put_scale(&mut gb[sb * lane..], s.wd[g]);
            if f.min {
                put_scale(&mut gb[f.scale_bytes() + sb * lane..], s.wm[g]);
            }
            let gq = &s.q[g * f.group..][..f.group];
            let quad = |at: usize| u32::from_le_bytes(gq[at..at + 4].try_into().unwrap());
            for j in 0..nv {
                let at = f.quant_offset() + 64 * j + 4 * lane;
                if f.bits == 8 {
                    gb[at..at + 4].copy_from_slice(&gq[4 * j..4 * j + 4]);
                    continue;
                }
                let (lo, hi) = (quad(4 * j), quad(4 * j + half));
                let nibbles = (lo & 0x0F0F_0F0F) | ((hi & 0x0F0F_0F0F) << 4);
                gb[at..at + 4].copy_from_slice(&nibbles.to_le_bytes());
                // Bit i of a mask is byte i of its vector: this lane's 4 bytes are bits 4 * lane.. of the masks.
                let shift = (4 * lane) % 8;
                for plane in 0..f.bits as usize - 4 {
                    // Bit 4 + plane of each of the 4 bytes, gathered into 4 adjacent bits.
                    let gather = |x: u32| {
                        let b = (x >> (4 + plane)) & 0x0101_0101;
                        (((b | b >> 7 | b >> 14 | b >> 21) & 0x0F) as u8) << shift
                    };
                    let m = f.mask_offset(plane, j) + (4 * lane) / 8;
                    gb[m] |= gather(lo);
                    gb[m + 8] |= gather(hi);
                }
            }
        }
    }
}

/// `n` zeroed lines, straight from the allocator's zeroed memory: for a large buffer these are fresh pages that
/// nothing has touched yet, so (on Linux) they can be asked for as 2 MiB pages before the first write. A packed
/// model is gigabytes written once at load; with 4 KiB pages, loading a mixture of experts spent most of its time
/// in page faults, and a `vec![Line; n]` would also have written every byte once more.
/// `None` when `n` lines would not fit the address space.
fn zeroed_lines(n: usize) -> Option<Vec<Line>> {
    if n == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<Line>(n).ok()?;
    // SAFETY: `layout` has a non-zero size (n > 0 lines of 64 bytes).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) } as *mut Line;
    if ptr.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let (start, len) = (ptr as usize, n * 64);
        let (from, to) = (start.div_ceil(HUGE) * HUGE, (start + len) / HUGE * HUGE);
        if from < to {
            // SAFETY: `from..to` lies inside the buffer just allocated; MADV_HUGEPAGE changes how its pages are
            // provided, never what they hold (zeros).
            unsafe { libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE) };
        }
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout of `n` lines, and all-zero bytes are a
    // valid `Line`, so the `n` lines are initialised; the Vec takes ownership with capacity `n`.
    Some(unsafe { Vec::from_raw_parts(ptr, n, n) })
}

/// Lines needed to hold `bytes` bytes.
fn lines_for(bytes: usize) -> usize {
    bytes.div_ceil(64)
}

/// A 64-byte aligned chunk (the matrix starts on a cache line; a panel need not).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A weight matrix in the packed layout (see the module docs). Built from a GGUF matrix with [`PackedMatrix::new`]
/// and used with [`matmul_packed`].
pub struct PackedMatrix {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub(crate) format: Format,
    /// The packed data, shared by the matrices [`PackedMatrix::split`] makes of one stack.
    lines: std::sync::Arc<Vec<Line>>,
    /// This matrix's first panel in `lines`.
    first_panel: usize,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedMatrix")
            .field("dtype", &self.dtype)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl PackedMatrix {
    /// Whether `dtype` has a packed form.
    pub fn supports(dtype: DType) -> bool {
        Format::for_dtype(dtype).is_some()
    }

    /// Repacks `w`; `Ok(None)` when its format has no packed form.
    pub fn new(w: &WeightMatrix) -> Result<Option<PackedMatrix>, MatmulError> {
        Self::new_releasing(w, |_| {})
    }

    /// [`PackedMatrix::new`], calling `release` with each byte range of `w.data` it is done with (a few thousand
    /// rows at a time), so that a caller can drop the file's pages while a large matrix is packed.
    pub fn new_releasing(
        w: &WeightMatrix,
        mut release: impl FnMut(std::ops::Range<usize>),
    ) -> Result<Option<PackedMatrix>, MatmulError> {
        let Some(format) = Format::for_dtype(w.dtype) else {
            return Ok(None);
        };
        let row_bytes = crate::matmul::check_weights(w)?;
        if !w.cols.is_multiple_of(format.group) {
            return Err(MatmulError::Quant(QuantError::NotWholeBlocks {
                dtype: w.dtype,
                n: w.cols,
                block: format.group,
            }));
        }
        let ng = w.cols / format.group;
        let panel_bytes = ng * format.group_bytes();
        let n_panels = w.rows.div_ceil(PANEL);
        // A group is not always a whole number of lines (Q4_0: 288 bytes, Q8_0: 544), so the total is rounded up:
        // rounding down left the last panel up to 32 bytes short of its end.
        let too_large = MatmulError::WeightBytes {
            dtype: w.dtype,
            rows: w.rows,
            cols: w.cols,
            expected: usize::MAX,
            got: w.data.len(),
        };
        let total = n_panels.checked_mul(panel_bytes).ok_or(too_large.clone())?;
        let mut lines = zeroed_lines(lines_for(total)).ok_or(too_large)?;
        // SAFETY: `lines` is plain bytes, `lines_for(total) * 64 >= total` long, and `Line` has no padding.
        let bytes = unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr() as *mut u8, total) };
        // Panels in batches of RELEASE_ROWS rows, each batch split over the CPU's threads.
        static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let threads = *THREADS
            .get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)));
        let batch = RELEASE_ROWS / PANEL;
        for (b, out) in bytes.chunks_mut(batch * panel_bytes).enumerate() {
            let p0 = b * batch;
            let per = (out.len() / panel_bytes).div_ceil(threads);
            let pack = |p: usize, out: &mut [u8]| {
                let mut scratch = PanelScratch::new(w.cols, ng);
                for (i, panel) in out.chunks_mut(panel_bytes).enumerate() {
                    let r0 = (p + i) * PANEL;
                    let rows = PANEL.min(w.rows - r0);
                    pack_panel(
                        format,
                        &w.data[r0 * row_bytes..][..rows * row_bytes],
                        rows,
                        &mut scratch,
                        panel,
                    );
                }
            };
            // A thread is worth its start (tens of microseconds) for a few dozen panels.
            if threads == 1 || per < 32 {
                pack(p0, out);
            } else {
                std::thread::scope(|s| {
                    for (i, part) in out.chunks_mut(per * panel_bytes).enumerate() {
                        s.spawn(move || pack(p0 + i * per, part));
                    }
                });
            }
            let rows_done = ((p0 + batch) * PANEL).min(w.rows);
            release(p0 * PANEL * row_bytes..rows_done * row_bytes);
        }
        Ok(Some(PackedMatrix {
            dtype: w.dtype,
            rows: w.rows,
            cols: w.cols,
            format,
            lines: std::sync::Arc::new(lines),
            first_panel: 0,
        }))
    }

    /// The `n` matrices of a packed stack (`n` matrices of `rows / n` rows one after another, as a mixture's
    /// experts are stored), sharing its memory: packing a stack at once lets its pages be large and its packing
    /// use every thread. `None` when a matrix's rows are not whole panels (it would share one with the next).
    pub fn split(self, n: usize) -> Option<Vec<PackedMatrix>> {
        if n == 0 || !self.rows.is_multiple_of(n) || !(self.rows / n).is_multiple_of(PANEL) {
            return None;
        }
        let rows = self.rows / n;
        Some(
            (0..n)
                .map(|i| PackedMatrix {
                    rows,
                    lines: self.lines.clone(),
                    first_panel: self.first_panel + i * rows / PANEL,
                    ..self
                })
                .collect(),
        )
    }

    /// Memory held by this matrix's packed data (its share, for a matrix split from a stack).
    pub fn bytes(&self) -> usize {
        self.rows.div_ceil(PANEL) * self.panel_bytes()
    }

    pub(crate) fn data(&self) -> &[u8] {
        let all = self.lines.len() * 64;
        // SAFETY: `Line` is 64 initialised bytes with no padding (align 64), so the `lines.len()` lines are exactly
        // `all` readable bytes at `lines.as_ptr()`, and u8 needs no alignment; the slice borrows `self`.
        let all = unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const u8, all) };
        &all[self.first_panel * self.panel_bytes()..]
    }

    pub(crate) fn n_groups(&self) -> usize {
        self.cols / self.format.group
    }

    pub(crate) fn panel_bytes(&self) -> usize {
        self.n_groups() * self.format.group_bytes()
    }
}

/// Activations of `n` tokens prepared for the packed kernels: quants `(n, cols)` as bytes, and per `(n, groups)`
/// the scale `d`, the scaled sum `s` and `offset * sum(qa)`.
#[derive(Default)]
pub(crate) struct ActRows {
    pub q: Vec<u8>,
    pub d: Vec<f32>,
    pub s: Vec<f32>,
    pub o: Vec<i32>,
}

/// Fills one token's groups from its quantized row (in the weight format's activation partner `act`).
fn act_row(
    act: DType,
    f: Format,
    row: &[u8],
    q: &mut [u8],
    d: &mut [f32],
    s: &mut [f32],
    o: &mut [i32],
) {
    let sum = |qs: &[u8]| qs.iter().map(|&x| x as i8 as i32).sum::<i32>();
    match act {
        DType::Q8_0 | DType::Q8_1 => {
            let (bb, qs) = if act == DType::Q8_0 { (34, 2) } else { (36, 4) };
            for (b, blk) in row.chunks_exact(bb).enumerate() {
                q[32 * b..32 * b + 32].copy_from_slice(&blk[qs..qs + 32]);
                d[b] = f16_at(blk, 0);
                s[b] = if act == DType::Q8_1 {
                    f16_at(blk, 2)
                } else {
                    0.0
                };
                o[b] = f.offset * sum(&blk[qs..qs + 32]);
            }
        }
        _ => {
            // Q8_K: groups of 16 or 32 from its stored sums of 16.
            let per = f.group / 16;
            for (b, blk) in row.chunks_exact(q8_k::BLOCK_BYTES).enumerate() {
                q[256 * b..256 * b + 256].copy_from_slice(&blk[q8_k::QS..q8_k::QS + 256]);
                let da = f32_at(blk, 0);
                for g in 0..256 / f.group {
                    let gs: i32 = (0..per).map(|k| q8_k::bsum(blk, per * g + k)).sum();
                    let gi = 256 / f.group * b + g;
                    d[gi] = da;
                    s[gi] = da * gs as f32;
                    o[gi] = f.offset * gs;
                }
            }
        }
    }
}

/// The bytes of group `g` of the panel holding row `r`.
fn group_of(m: &PackedMatrix, r: usize, g: usize) -> &[u8] {
    let f = m.format;
    &m.data()[(r / PANEL) * m.panel_bytes() + g * f.group_bytes()..][..f.group_bytes()]
}

/// Quant `e` (unsigned, `0..2^bits`) of `lane` in one packed `group`, read on its own (for `dot_reference`).
#[cfg(test)]
fn group_quant(f: Format, group: &[u8], lane: usize, e: usize) -> i32 {
    if f.bits == 8 {
        return group[f.quant_offset() + 64 * (e / 4) + 4 * lane + e % 4] as i32;
    }
    let half = f.group / 2;
    let (hi, e) = (e >= half, e % half);
    let x = group[f.quant_offset() + 64 * (e / 4) + 4 * lane + e % 4];
    let mut q = if hi { x >> 4 } else { x & 0x0F } as i32;
    let bit = 4 * lane + e % 4;
    for plane in 0..f.bits as usize - 4 {
        let mask = &group[f.mask_offset(plane, e / 4) + 8 * hi as usize..][..8];
        q |= (((mask[bit / 8] >> (bit % 8)) & 1) as i32) << (4 + plane);
    }
    q
}

/// The scale (`k = 0`) or min term (`k = 1`) of `lane` in one packed `group`.
fn group_scale(f: Format, group: &[u8], lane: usize, k: usize) -> f32 {
    let at = f.scale_bytes() * k;
    if f.f16_scales {
        f16_at(group, at + 2 * lane)
    } else {
        f32_at(group, at + 4 * lane)
    }
}

/// The chain of the module docs for row `r` and token `t`, in scalar code, one element at a time: the
/// specification that the kernels ([`run_scalar`] and `packed_x86`) meet bit for bit.
#[cfg(test)]
fn dot_reference(m: &PackedMatrix, r: usize, a: &ActRows, t: usize) -> f32 {
    let (f, ng, cols) = (m.format, m.n_groups(), m.cols);
    let lane = r % PANEL;
    let mut acc = 0f32;
    for g in 0..ng {
        let group = group_of(m, r, g);
        let mut isum = 0i32;
        for e in 0..f.group {
            isum += group_quant(f, group, lane, e) * a.q[t * cols + g * f.group + e] as i8 as i32;
        }
        let x = (isum - a.o[t * ng + g]) as f32 * a.d[t * ng + g];
        acc = x.mul_add(group_scale(f, group, lane, 0), acc);
        if f.min {
            acc = group_scale(f, group, lane, 1).mul_add(a.s[t * ng + g], acc);
        }
    }
    acc
}

/// One packed group's quants minus the format's offset, as `(lane, element)`: vector by vector, each quant byte
/// read once with its mask bits.
fn unpack_group(f: Format, group: &[u8], w: &mut [[i32; 32]; PANEL]) {
    let q = &group[f.quant_offset()..];
    for j in 0..f.quant_vectors() {
        let v = &q[64 * j..][..64];
        if f.bits == 8 {
            for (lane, wl) in w.iter_mut().enumerate() {
                for b in 0..4 {
                    wl[4 * j + b] = v[4 * lane + b] as i32 - f.offset;
                }
            }
            continue;
        }
        // Bit i of a mask (low-nibble half, high-nibble half) is byte i of the vector.
        let mut masks = [(0u64, 0u64); 2];
        for (plane, m) in masks.iter_mut().enumerate().take(f.bits as usize - 4) {
            let at = f.mask_offset(plane, j);
            let word = |o: usize| u64::from_le_bytes(group[o..o + 8].try_into().unwrap());
            *m = (word(at), word(at + 8));
        }
        let half = f.group / 2;
        for (lane, wl) in w.iter_mut().enumerate() {
            for b in 0..4 {
                let i = 4 * lane + b;
                let (mut lo, mut hi) = ((v[i] & 0x0F) as i32, (v[i] >> 4) as i32);
                for (plane, &(ml, mh)) in masks.iter().enumerate().take(f.bits as usize - 4) {
                    lo |= (((ml >> i) & 1) as i32) << (4 + plane);
                    hi |= (((mh >> i) & 1) as i32) << (4 + plane);
                }
                wl[4 * j + b] = lo - f.offset;
                wl[half + 4 * j + b] = hi - f.offset;
            }
        }
    }
}

/// The packed product in portable code, for panels `p0..p0 + np`: each group of 16 rows is unpacked once (quants
/// minus their offset, which leaves the i32 sum exact and equal) and reused for every token. The same chain as
/// `dot_reference`, so the same bits as the SIMD kernels; what `HEARTH_ISA=scalar` runs.
///
/// # Safety
/// `y` holds `(n_tokens, m.rows)` and no other thread writes rows of these panels.
unsafe fn run_scalar(
    m: &PackedMatrix,
    a: &ActRows,
    p0: usize,
    np: usize,
    n_tokens: usize,
    y: *mut f32,
) {
    let (f, ng, cols) = (m.format, m.n_groups(), m.cols);
    let mut w = [[0i32; 32]; PANEL]; // (lane, element) of one group
    let (mut wd, mut wm) = ([0f32; PANEL], [0f32; PANEL]);
    let mut acc = vec![0f32; n_tokens * PANEL]; // (token, lane)
    for p in p0..p0 + np {
        acc.fill(0.0);
        for g in 0..ng {
            let group = group_of(m, p * PANEL, g);
            unpack_group(f, group, &mut w);
            for lane in 0..PANEL {
                wd[lane] = group_scale(f, group, lane, 0);
                wm[lane] = if f.min {
                    group_scale(f, group, lane, 1)
                } else {
                    0.0
                };
            }
            for (t, acc) in acc.chunks_exact_mut(PANEL).enumerate() {
                let qa = &a.q[t * cols + g * f.group..][..f.group];
                let (d, s) = (a.d[t * ng + g], a.s[t * ng + g]);
                for lane in 0..PANEL {
                    let isum: i32 = w[lane]
                        .iter()
                        .zip(qa)
                        .map(|(&q, &x)| q * x as i8 as i32)
                        .sum();
                    acc[lane] = (isum as f32 * d).mul_add(wd[lane], acc[lane]);
                    if f.min {
                        acc[lane] = wm[lane].mul_add(s, acc[lane]);
                    }
                }
            }
        }
        for (t, acc) in acc.chunks_exact(PANEL).enumerate() {
            for (lane, &v) in acc
                .iter()
                .enumerate()
                .take(m.rows.saturating_sub(p * PANEL))
            {
                // SAFETY: (t, p * PANEL + lane) is inside y (the caller's contract).
                unsafe { *y.add(t * m.rows + p * PANEL + lane) = v };
            }
        }
    }
}

/// `y[t][r] = sum_c W[r][c] * x[t][c]` for a packed matrix, x: (n_tokens, cols), y: (n_tokens, rows). The result
/// for a token does not depend on `n_tokens` or on the other tokens.
pub fn matmul_packed(
    pool: &ThreadPool,
    m: &PackedMatrix,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
) -> Result<(), MatmulError> {
    matmul_packed_with_isa(pool, m, x, n_tokens, y, crate::selected_isa()?)
}

/// [`matmul_packed`] on `isa`: the AVX-512 VNNI kernel, the AVX2 one (for `Avx2` and `Avx512`), or the portable
/// scalar one (`Scalar`, and `Neon`, which has no packed kernel). All give the same bits.
pub fn matmul_packed_with_isa(
    pool: &ThreadPool,
    m: &PackedMatrix,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    isa: Isa,
) -> Result<(), MatmulError> {
    let mut job = [PackedJob {
        w: m,
        x,
        n_tokens,
        y,
    }];
    matmul_packed_many_with_isa(pool, &mut job, isa)
}

/// One product of [`matmul_packed_many`]: `y (n_tokens, w.rows) = x (n_tokens, w.cols) W^T`.
pub struct PackedJob<'a> {
    pub w: &'a PackedMatrix,
    pub x: &'a [f32],
    pub n_tokens: usize,
    pub y: &'a mut [f32],
}

/// Independent packed products (a mixture of experts' experts) in one pass over the pool: each distinct input is
/// prepared once (jobs with the same `x`, token count and activation form share it), then every job's panels go
/// into one list of work items, so the pool is woken once for all of them. Each output is bit for bit what
/// [`matmul_packed`] gives for its job alone.
pub fn matmul_packed_many(
    pool: &ThreadPool,
    jobs: &mut [PackedJob<'_>],
) -> Result<(), MatmulError> {
    matmul_packed_many_with_isa(pool, jobs, crate::selected_isa()?)
}

/// A distinct input of a [`matmul_packed_many`] call: what its activations are prepared for.
struct Input<'a> {
    x: &'a [f32],
    n_tokens: usize,
    cols: usize,
    k: crate::matmul::Kernel,
    f: Format,
}

impl Input<'_> {
    fn serves(&self, other: &Input) -> bool {
        std::ptr::eq(self.x.as_ptr(), other.x.as_ptr())
            && (self.n_tokens, self.cols, self.k.act) == (other.n_tokens, other.cols, other.k.act)
            && (self.f.group, self.f.offset) == (other.f.group, other.f.offset)
    }

    fn act_row_bytes(&self) -> usize {
        self.cols / self.k.act.block_size() * self.k.act.type_size()
    }
}

thread_local! {
    /// Each distinct input's quantized rows and prepared activations, kept between calls for their capacity.
    static ACTS: RefCell<Vec<(Vec<u8>, ActRows)>> = const { RefCell::new(Vec::new()) };
}

/// [`matmul_packed_many`] on `isa` (see [`matmul_packed_with_isa`]).
pub fn matmul_packed_many_with_isa(
    pool: &ThreadPool,
    jobs: &mut [PackedJob<'_>],
    isa: Isa,
) -> Result<(), MatmulError> {
    crate::matmul::require(isa)?;
    // Each job's input (index into `inputs`) and its first work item.
    let mut inputs: Vec<Input> = Vec::new();
    let mut placed: Vec<(usize, usize)> = Vec::with_capacity(jobs.len());
    let mut total_panels = 0;
    for job in jobs.iter() {
        let m = job.w;
        crate::matmul::check_io(m.rows, m.cols, job.x, job.n_tokens, job.y)?;
        let k =
            kernel(m.dtype, isa, m.cols).ok_or(MatmulError::Quant(QuantError::Unsupported {
                dtype: m.dtype,
                op: "matmul",
            }))?;
        let input = Input {
            x: job.x,
            n_tokens: job.n_tokens,
            cols: m.cols,
            k,
            f: m.format,
        };
        let at = match inputs.iter().position(|i| i.serves(&input)) {
            Some(at) => at,
            None => {
                inputs.push(input);
                inputs.len() - 1
            }
        };
        placed.push((at, 0));
        if job.n_tokens > 0 {
            total_panels += m.rows.div_ceil(PANEL);
        }
    }
    // Panels per work item: about four items per thread over all jobs, at most 16 panels.
    let per_item = (total_panels / (pool.n_threads() * 4)).clamp(1, 16);
    let mut n_items = 0;
    for (job, p) in jobs.iter().zip(&mut placed) {
        p.1 = n_items;
        if job.n_tokens > 0 {
            n_items += job.w.rows.div_ceil(PANEL).div_ceil(per_item);
        }
    }
    if n_items == 0 {
        return Ok(());
    }

    ACTS.with(|cell| {
        let mut cache = cell.borrow_mut();
        if cache.len() < inputs.len() {
            cache.resize_with(inputs.len(), Default::default);
        }
        // Every input's tokens, prepared: token `t` of input `i` is item `starts[i] + t`.
        let mut starts = Vec::with_capacity(inputs.len() + 1);
        starts.push(0);
        let mut ptrs = Vec::with_capacity(inputs.len());
        for (input, (raw, acts)) in inputs.iter().zip(cache.iter_mut()) {
            let (n, cols, ng) = (input.n_tokens, input.cols, input.cols / input.f.group);
            raw.resize(n * input.act_row_bytes(), 0);
            acts.q.resize(n * cols, 0);
            acts.d.resize(n * ng, 0.0);
            acts.s.resize(n * ng, 0.0);
            acts.o.resize(n * ng, 0);
            ptrs.push((
                SharedOut(raw.as_mut_ptr()),
                SharedOut(acts.q.as_mut_ptr()),
                SharedOut(acts.d.as_mut_ptr()),
                SharedOut(acts.s.as_mut_ptr()),
                SharedOut(acts.o.as_mut_ptr()),
            ));
            starts.push(starts[starts.len() - 1] + n);
        }
        let prepare = |item: usize| {
            let i = starts.partition_point(|&s| s <= item) - 1;
            let (input, p, t) = (&inputs[i], &ptrs[i], item - starts[i]);
            let (cols, ng, rb) = (
                input.cols,
                input.cols / input.f.group,
                input.act_row_bytes(),
            );
            // SAFETY: token t of input i owns these disjoint parts of its buffers, sized above; `x` holds
            // `n_tokens x cols` elements (checked per job); the quantizer's ISA was required above.
            unsafe {
                let x = &input.x[t * cols..][..cols];
                let raw = std::slice::from_raw_parts_mut(p.0.get().add(t * rb), rb);
                (input.k.quantize)(x, raw);
                act_row(
                    input.k.act,
                    input.f,
                    raw,
                    std::slice::from_raw_parts_mut(p.1.get().add(t * cols), cols),
                    std::slice::from_raw_parts_mut(p.2.get().add(t * ng), ng),
                    std::slice::from_raw_parts_mut(p.3.get().add(t * ng), ng),
                    std::slice::from_raw_parts_mut(p.4.get().add(t * ng), ng),
                );
            }
        };
        let n_prepare = starts[inputs.len()];
        if n_prepare > 1 {
            pool.parallel_for(n_prepare, prepare);
        } else {
            (0..n_prepare).for_each(prepare);
        }

        let outs: Vec<SharedOut<f32>> = jobs
            .iter_mut()
            .map(|j| SharedOut(j.y.as_mut_ptr()))
            .collect();
        let (jobs, cache) = (&*jobs, &*cache);
        pool.parallel_for(n_items, |item| {
            let j = placed.partition_point(|p| p.1 <= item) - 1;
            let (m, n_tokens) = (jobs[j].w, jobs[j].n_tokens);
            let acts = &cache[placed[j].0].1;
            let n_panels = m.rows.div_ceil(PANEL);
            let p0 = (item - placed[j].1) * per_item;
            let np = per_item.min(n_panels - p0);
            let out = outs[j].get();
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the ISA was required above; `acts` holds this job's `n_tokens` prepared tokens; `out` holds
                // `n_tokens x rows` (checked) and this item alone writes these panels' rows.
                Isa::Avx512Vnni | Isa::Avx512 | Isa::Avx2 => unsafe {
                    let vnni = isa == Isa::Avx512Vnni;
                    crate::packed_x86::run(m, acts, p0, np, n_tokens, out, vnni)
                },
                // SAFETY: as above (the portable kernel needs no ISA).
                _ => unsafe { run_scalar(m, acts, p0, np, n_tokens, out) },
            }
        });
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The formats with a packed form.
    const PACKED: [DType; 8] = [
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
    ];

    #[test]
    fn the_registry_gives_these_formats_a_packed_form() {
        let packed: Vec<DType> = DType::ALL
            .into_iter()
            .filter(|&t| PackedMatrix::supports(t))
            .collect();
        assert_eq!(packed, PACKED);
    }

    /// The buffer holds every panel, whatever the shape: a group of Q4_0 (288 bytes), Q5_0 (352) or Q8_0 (544)
    /// is not a whole number of lines, and an odd panels x groups count once left the last panel short.
    #[test]
    fn every_shape_fits_its_buffer() {
        for dtype in PACKED {
            let block = dtype.block_size();
            for rows in [1, 15, 16, 17, 33, 47, 4097] {
                for blocks in 1..=3 {
                    let cols = blocks * block;
                    let data = vec![0u8; rows * dtype.row_bytes(cols as u64).unwrap() as usize];
                    let w = WeightMatrix {
                        dtype,
                        data: &data,
                        rows,
                        cols,
                    };
                    let m = PackedMatrix::new(&w).unwrap().unwrap();
                    assert!(
                        m.lines.len() * 64 >= rows.div_ceil(PANEL) * m.panel_bytes(),
                        "{dtype} {rows}x{cols}: {} bytes for {} panels of {}",
                        m.lines.len() * 64,
                        rows.div_ceil(PANEL),
                        m.panel_bytes()
                    );
                }
            }
        }
    }

    /// A packed matrix of random quants and scales, and random prepared activations: the fast scalar kernel
    /// equals the element-wise specification bit for bit (the SIMD kernels are held to the fast one in
    /// `tests/packed.rs`).
    #[test]
    fn kernels_equal_the_specification() {
        let mut seed = 7u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        // Random quants and activations, then the extremes: every quant at its largest and every activation at
        // +-127 (the quantizers' range), where the AVX2 kernel's i16 partial sums come closest to overflowing.
        for (dtype, extreme) in PACKED.into_iter().flat_map(|t| [(t, false), (t, true)]) {
            let f = Format::for_dtype(dtype).unwrap();
            let (rows, cols, n_tokens): (usize, usize, usize) = (37, 4 * f.group, 5);
            let ng = cols / f.group;
            let n_panels = rows.div_ceil(PANEL);
            let mut lines = vec![Line([0; 64]); lines_for(n_panels * ng * f.group_bytes())];
            for line in &mut lines {
                line.0
                    .iter_mut()
                    .for_each(|b| *b = if extreme { 0xFF } else { next() as u8 });
            }
            let mut m = PackedMatrix {
                dtype,
                rows,
                cols,
                format: f,
                lines: std::sync::Arc::new(lines),
                first_panel: 0,
            };
            // Finite scales: random values in (-1, 1) in the format's width.
            let gb = f.group_bytes();
            let lines = std::sync::Arc::get_mut(&mut m.lines).unwrap();
            // SAFETY: `Line` is 64 plain bytes (align 64), so the lines are `len * 64` initialised bytes, borrowed
            // mutably through `lines` for as long as `data` lives.
            let data = unsafe {
                std::slice::from_raw_parts_mut(lines.as_mut_ptr() as *mut u8, lines.len() * 64)
            };
            for group in data.chunks_exact_mut(gb) {
                for lane in 0..PANEL * (1 + f.min as usize) {
                    let v = (next() % 2001) as f32 / 1000.0 - 1.0;
                    if f.f16_scales {
                        group[2 * lane..2 * lane + 2]
                            .copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
                    } else {
                        group[4 * lane..4 * lane + 4].copy_from_slice(&v.to_le_bytes());
                    }
                }
            }
            // Activations in -127..=127, as the quantizers make them (the AVX2 Q8_0 product relies on it).
            let q: Vec<u8> = (0..n_tokens * cols)
                .map(|i| match extreme {
                    true if (i / cols) % 2 == 0 => 0x81,
                    true => 0x7F,
                    false => match next() as u8 {
                        0x80 => 0x81,
                        b => b,
                    },
                })
                .collect();
            // `o` is what the preparation stores: offset * sum(qa) per token and group.
            let o = q
                .chunks_exact(f.group)
                .map(|g| f.offset * g.iter().map(|&x| x as i8 as i32).sum::<i32>())
                .collect();
            let a = ActRows {
                q,
                d: (0..n_tokens * ng)
                    .map(|_| (next() % 1000) as f32 / 7e4)
                    .collect(),
                s: (0..n_tokens * ng)
                    .map(|_| (next() % 1000) as f32 / 3e3 - 0.2)
                    .collect(),
                o,
            };
            let mut y = vec![f32::NAN; n_tokens * rows];
            // SAFETY: `y` holds n_tokens × rows outputs, and panels 0..n_panels cover exactly `rows` rows of `m`;
            // `a` holds n_tokens activation rows of `cols`.
            unsafe { run_scalar(&m, &a, 0, n_panels, n_tokens, y.as_mut_ptr()) };
            for t in 0..n_tokens {
                for r in 0..rows {
                    let want = dot_reference(&m, r, &a, t);
                    assert_eq!(
                        y[t * rows + r].to_bits(),
                        want.to_bits(),
                        "{dtype} row {r} token {t}"
                    );
                }
            }
            #[cfg(target_arch = "x86_64")]
            for (isa, vnni) in [(Isa::Avx2, false), (Isa::Avx512Vnni, true)] {
                if !isa.is_available() {
                    eprintln!("NOTE: no {isa} on this CPU: its packed kernel is not under test");
                    continue;
                }
                let mut ys = vec![f32::NAN; n_tokens * rows];
                // SAFETY: the ISA is available; sizes as for `run_scalar` above.
                unsafe {
                    crate::packed_x86::run(&m, &a, 0, n_panels, n_tokens, ys.as_mut_ptr(), vnni)
                };
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&ys), bits(&y), "{dtype} on {isa} (extreme: {extreme})");
            }
        }
    }
}
