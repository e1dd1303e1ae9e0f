//! Weight matrices repacked once at load time so that one kernel serves any number of tokens: 16 rows are
//! interleaved, and one AVX-512 VNNI `vpdpbusd` multiplies 4 elements of 16 rows with the same 4 elements of a token.
//!
//! Why one kernel: a token's output must not depend on how many tokens share its batch (the server promises that a
//! request's greedy text does not depend on what else is being served), and prompt processing wants the weights
//! reused across many tokens. Here every (row, token) output runs the same chain of operations, block by block,
//! whatever the tile shape or the number of tokens. For the formats whose every group of 32 has its own f16 scale
//! (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: a block is one group):
//!
//! ```text
//! isum = sum(q_e * qa_e) - offset * sum(qa_e)      exact, i32
//! acc  = fma(f32(isum) * da, wd, acc)
//! acc  = fma(wm, sa, acc)                           only formats with a min term
//! ```
//!
//! For the K-quants (a block is a super-block of 256: groups of 16 or 32 with 6- or 8-bit integer scales `sc_g`
//! and mins `mn_g`, one f16 `wd` and `wm` per block; the activations are Q8_K, one `da` per block):
//!
//! ```text
//! p_g  = sum(q_e * qa_e) over group g                               exact, i32
//! isum = sum_g sc_g * p_g - offset * sum_g sc_g * gs_g              exact, i32
//! acc  = fma(f32(isum) * da, wd, acc)
//! acc  = fma(f32(sum_g mn_g * gs_g) * da, wm, acc)                  only formats with a min term
//! ```
//!
//! `q` are the weight quants as unsigned bytes (`value = wd * sc * (q - offset) + wm * mn`, `sc = mn = 1` outside
//! the K-quants), `qa` the token's signed activation quants, `da` their scale, `gs_g` the sum of group `g`'s `qa`
//! and `sa` the activation group's scaled sum. The integer sums are bounded far below 2^31 (largest: Q6_K, 16 groups
//! of 16 x 63 x 127 times scales of 128, plus the offset term: under 2^29). `dot_reference` (in the tests) is the
//! chain in scalar code, one element at a time; the portable kernel and the SIMD ones (`packed_x86`) equal it bit
//! for bit.
//!
//! Layout: panels of 16 rows (the last one padded with zeros); in a panel, block after block: the f16 scales `wd`
//! of the 16 rows and their min terms `wm` (min formats only), exactly the file's values; for the K-quants the
//! integer scales, then the integer mins (min formats), as i8 pairs of groups `(2k, 2k + 1)` row after row (so one
//! sign extension gives the i16 pairs `vpmaddwd` takes); then each group's quants as vectors of 16 rows x 4 bytes.
//! Quants of 4 to 6 bits keep their low 4 bits as nibbles (vector `j` holds quad `j` in its low and quad
//! `j + group / 8` in its high nibbles) and each higher bit as a 64-bit mask per nibble half, so Q4_0, Q4_1, Q5_0,
//! Q5_1, Q8_0 and Q6_K take exactly their size in the file, and Q4_K and Q5_K 1/36 and 1/44 more (their 6-bit
//! scales and mins as bytes).

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

/// One GGUF row's scales as the packed layout stores them.
#[derive(Default)]
pub(crate) struct RowScales {
    /// Per block: the scale `wd` and the min term `wm` (min formats), values an f16 holds exactly.
    pub wd: Vec<f32>,
    pub wm: Vec<f32>,
    /// Per group, K-quants only: the integer scale `sc` and min `mn`.
    pub sc: Vec<i8>,
    pub mn: Vec<i8>,
}

/// Unpacks one GGUF row into quants `(cols)` as unsigned bytes and its scales.
pub(crate) type UnpackRow = fn(row: &[u8], q: &mut [u8], s: &mut RowScales);

/// How a weight format maps onto the packed form.
#[derive(Clone, Copy)]
pub(crate) struct Format {
    /// Elements per group (one integer scale for the K-quants, one `wd` otherwise).
    pub group: usize,
    /// Groups per block (one `wd`, `wm`): 1, or the groups of a K-quant super-block (then with integer scales).
    pub block_groups: usize,
    /// Bits per quant: 4, 5 or 6 (nibbles and bit masks) or 8 (bytes).
    pub bits: u32,
    /// `value = wd * sc * (q - offset) [+ wm * mn]`.
    pub offset: i32,
    /// The format has a min term `wm`.
    pub min: bool,
    /// Unpacks one GGUF row (the format's own code).
    pub unpack_row: UnpackRow,
}

impl Format {
    /// A format with `value = wd * (q - offset)`: `group` elements of `bits`-bit quants per scale.
    pub(crate) const fn with_offset(
        group: usize,
        bits: u32,
        offset: i32,
        unpack_row: UnpackRow,
    ) -> Format {
        Format {
            group,
            block_groups: 1,
            bits,
            offset,
            min: false,
            unpack_row,
        }
    }

    /// A format with `value = wd * q + wm`: `group` elements of `bits`-bit quants per scale and min term.
    pub(crate) const fn with_min(group: usize, bits: u32, unpack_row: UnpackRow) -> Format {
        Format {
            min: true,
            ..Format::with_offset(group, bits, 0, unpack_row)
        }
    }

    /// The same quants in K-quant super-blocks of `groups` (an even number) groups with integer scales (and mins).
    pub(crate) const fn in_super_blocks(self, groups: usize) -> Format {
        assert!(groups >= 2 && groups.is_multiple_of(2));
        Format {
            block_groups: groups,
            ..self
        }
    }

    /// The packed form of `dtype`, from its row of the format registry.
    pub(crate) fn for_dtype(dtype: DType) -> Option<Format> {
        crate::formats::spec(dtype)?.packed
    }

    /// The format has integer scales per group (the K-quants).
    pub(crate) fn int_scales(&self) -> bool {
        self.block_groups > 1
    }

    /// Elements per block.
    pub(crate) fn block(&self) -> usize {
        self.group * self.block_groups
    }

    /// Bytes of a block's f16 scales and min terms (16 rows each).
    pub(crate) fn header_bytes(&self) -> usize {
        2 * PANEL * (1 + self.min as usize)
    }

    /// Offset in a block of its integer scales (`k = 0`) or mins (`k = 1`): pairs of groups, row after row.
    pub(crate) fn int_offset(&self, k: usize) -> usize {
        self.header_bytes() + k * PANEL * self.block_groups
    }

    /// Offset in a block of its first group's quants.
    pub(crate) fn quant_offset(&self) -> usize {
        let ints = if self.int_scales() {
            PANEL * self.block_groups * (1 + self.min as usize)
        } else {
            0
        };
        self.header_bytes() + ints
    }

    /// Quant vectors (16 rows x 4 bytes) per group: byte vectors, or nibble vectors of two quads each.
    pub(crate) fn quant_vectors(&self) -> usize {
        self.group / if self.bits == 8 { 4 } else { 8 }
    }

    /// Offset from a group's quants of the mask pair (low half, high half) of nibble vector `j` for bit
    /// `4 + plane`.
    pub(crate) fn mask_offset(&self, plane: usize, j: usize) -> usize {
        64 * self.quant_vectors() + 16 * (plane * self.quant_vectors() + j)
    }

    /// Bytes of one group's quants in a panel: nibble or byte vectors, then bit masks.
    pub(crate) fn group_bytes(&self) -> usize {
        let planes = if self.bits == 8 {
            0
        } else {
            self.bits as usize - 4
        };
        (64 + 16 * planes) * self.quant_vectors()
    }

    /// Bytes of one block of one panel: scales, min terms, quants.
    pub(crate) fn block_bytes(&self) -> usize {
        self.quant_offset() + self.block_groups * self.group_bytes()
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

/// One thread's unpacked row: quants `(cols)` and scales.
struct PanelScratch {
    q: Vec<u8>,
    s: RowScales,
}

impl PanelScratch {
    fn new(f: Format, cols: usize) -> Self {
        let (n_blocks, n_groups) = (cols / f.block(), cols / f.group);
        PanelScratch {
            q: vec![0; cols],
            s: RowScales {
                wd: vec![0.0; n_blocks],
                wm: vec![0.0; n_blocks],
                sc: vec![0; n_groups],
                mn: vec![0; n_groups],
            },
        }
    }
}

/// Packs `rows` (at most 16) GGUF rows `data` into one zeroed panel `out`.
fn pack_panel(f: Format, data: &[u8], rows: usize, scratch: &mut PanelScratch, out: &mut [u8]) {
    let (nv, bg, half) = (f.quant_vectors(), f.block_groups, f.group / 2);
    let row_bytes = data.len() / rows;
    for (lane, row) in data.chunks_exact(row_bytes).enumerate() {
        let (q, s) = (&mut scratch.q, &mut scratch.s);
        (f.unpack_row)(row, q, s);
        for (b, bb) in out.chunks_exact_mut(f.block_bytes()).enumerate() {
            let f16 = |v: f32| half::f16::from_f32(v).to_le_bytes();
            bb[2 * lane..2 * lane + 2].copy_from_slice(&f16(s.wd[b]));
            if f.min {
                bb[2 * (PANEL + lane)..2 * (PANEL + lane) + 2].copy_from_slice(&f16(s.wm[b]));
            }
            for gi in 0..bg {
                let g = b * bg + gi;
                if f.int_scales() {
                    // Group pair gi / 2, row `lane`, member gi % 2.
                    let at = 2 * PANEL * (gi / 2) + 2 * lane + gi % 2;
                    bb[f.int_offset(0) + at] = s.sc[g] as u8;
                    if f.min {
                        bb[f.int_offset(1) + at] = s.mn[g] as u8;
                    }
                }
                let gb = &mut bb[f.quant_offset() + gi * f.group_bytes()..][..f.group_bytes()];
                let gq = &q[g * f.group..][..f.group];
                let quad = |at: usize| u32::from_le_bytes(gq[at..at + 4].try_into().unwrap());
                for j in 0..nv {
                    let at = 64 * j + 4 * lane;
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
        if !w.cols.is_multiple_of(format.block()) {
            return Err(MatmulError::Quant(QuantError::NotWholeBlocks {
                dtype: w.dtype,
                n: w.cols,
                block: format.block(),
            }));
        }
        let panel_bytes = w.cols / format.block() * format.block_bytes();
        let n_panels = w.rows.div_ceil(PANEL);
        // A block is not always a whole number of lines (Q4_0: 288 bytes, Q8_0: 544), so the total is rounded up:
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
                let mut scratch = PanelScratch::new(format, w.cols);
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

    /// Row `r` as f32 into `out (cols)`: bit for bit what `dequantize_row` gives for the file's row (the same
    /// products and sums in the same order), so that a model whose token embedding is also its packed logits
    /// matrix reads its embedding rows here rather than from the file, whose pages packing released.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<(), MatmulError> {
        if r >= self.rows || out.len() != self.cols {
            return Err(MatmulError::Row {
                row: r,
                rows: self.rows,
                cols: self.cols,
                got: out.len(),
            });
        }
        let (f, lane) = (self.format, r % PANEL);
        for b in 0..self.n_blocks() {
            let block = block_of(self, r, b);
            let (wd, wm) = (block_scale(block, lane, 0), block_scale(block, lane, 1));
            for gi in 0..f.block_groups {
                let gq = group_quants(f, block, gi);
                // The K-quants' `d * sc` and `-dmin * mn` are exact products, as the file's dequantization makes.
                let (d, m) = match f.int_scales() {
                    true => (
                        wd * int_scale(f, block, lane, gi, 0) as f32,
                        wm * int_scale(f, block, lane, gi, 1) as f32,
                    ),
                    false => (wd, wm),
                };
                let e0 = (b * f.block_groups + gi) * f.group;
                for (e, v) in out[e0..e0 + f.group].iter_mut().enumerate() {
                    let q = (group_quant(f, gq, lane, e) - f.offset) as f32;
                    // (No `+ 0.0` for formats without a min: it would turn -0.0 into 0.0.)
                    *v = if f.min { q * d + m } else { q * d };
                }
            }
        }
        Ok(())
    }

    pub(crate) fn n_blocks(&self) -> usize {
        self.cols / self.format.block()
    }

    pub(crate) fn panel_bytes(&self) -> usize {
        self.n_blocks() * self.format.block_bytes()
    }
}

/// Activations of `n` tokens prepared for the packed kernels: quants `(n, cols)` as bytes, and per `(n, groups)`
/// the scale `d`, the scaled sum `s`, `offset * sum(qa)` and `sum(qa)` itself.
#[derive(Default)]
pub(crate) struct ActRows {
    pub q: Vec<u8>,
    pub d: Vec<f32>,
    pub s: Vec<f32>,
    pub o: Vec<i32>,
    pub gs: Vec<i16>,
}

/// One token's share of [`ActRows`].
struct ActRow<'a> {
    q: &'a mut [u8],
    d: &'a mut [f32],
    s: &'a mut [f32],
    o: &'a mut [i32],
    gs: &'a mut [i16],
}

/// [`ActRows`]' buffers, for tokens prepared on several threads at once.
struct ActParts {
    q: SharedOut<u8>,
    d: SharedOut<f32>,
    s: SharedOut<f32>,
    o: SharedOut<i32>,
    gs: SharedOut<i16>,
    cols: usize,
    n_groups: usize,
}

impl ActRows {
    /// Room for `n` tokens of `cols` elements in groups of `group`; the buffers' parts.
    fn parts_for(&mut self, n: usize, cols: usize, group: usize) -> ActParts {
        let ng = cols / group;
        self.q.resize(n * cols, 0);
        self.d.resize(n * ng, 0.0);
        self.s.resize(n * ng, 0.0);
        self.o.resize(n * ng, 0);
        self.gs.resize(n * ng, 0);
        ActParts {
            q: SharedOut(self.q.as_mut_ptr()),
            d: SharedOut(self.d.as_mut_ptr()),
            s: SharedOut(self.s.as_mut_ptr()),
            o: SharedOut(self.o.as_mut_ptr()),
            gs: SharedOut(self.gs.as_mut_ptr()),
            cols,
            n_groups: ng,
        }
    }
}

impl ActParts {
    /// Token `t`'s share.
    ///
    /// # Safety
    /// The buffers hold token `t` (`parts_for` was given more than `t` tokens and are still alive), and no one else
    /// uses token `t`'s share while the result lives.
    unsafe fn row(&self, t: usize) -> ActRow<'_> {
        let (c, g) = (self.cols, self.n_groups);
        // SAFETY: the caller's contract; each share is token t's disjoint part of its buffer.
        unsafe {
            ActRow {
                q: std::slice::from_raw_parts_mut(self.q.get().add(t * c), c),
                d: std::slice::from_raw_parts_mut(self.d.get().add(t * g), g),
                s: std::slice::from_raw_parts_mut(self.s.get().add(t * g), g),
                o: std::slice::from_raw_parts_mut(self.o.get().add(t * g), g),
                gs: std::slice::from_raw_parts_mut(self.gs.get().add(t * g), g),
            }
        }
    }
}

/// Fills one token's groups from its quantized row (in the weight format's activation partner `act`).
fn act_row(act: DType, f: Format, row: &[u8], a: ActRow) {
    let sum = |qs: &[u8]| qs.iter().map(|&x| x as i8 as i32).sum::<i32>();
    match act {
        DType::Q8_0 | DType::Q8_1 => {
            let (bb, qs) = if act == DType::Q8_0 { (34, 2) } else { (36, 4) };
            for (b, blk) in row.chunks_exact(bb).enumerate() {
                a.q[32 * b..32 * b + 32].copy_from_slice(&blk[qs..qs + 32]);
                a.d[b] = f16_at(blk, 0);
                a.s[b] = if act == DType::Q8_1 {
                    f16_at(blk, 2)
                } else {
                    0.0
                };
                let gs = sum(&blk[qs..qs + 32]);
                // At most 32 x 127 in magnitude.
                a.gs[b] = gs as i16;
                a.o[b] = f.offset * gs;
            }
        }
        _ => {
            // Q8_K: groups of 16 or 32 from its stored sums of 16.
            let per = f.group / 16;
            for (b, blk) in row.chunks_exact(q8_k::BLOCK_BYTES).enumerate() {
                a.q[256 * b..256 * b + 256].copy_from_slice(&blk[q8_k::QS..q8_k::QS + 256]);
                let da = f32_at(blk, 0);
                for g in 0..256 / f.group {
                    let gs: i32 = (0..per).map(|k| q8_k::bsum(blk, per * g + k)).sum();
                    let gi = 256 / f.group * b + g;
                    a.d[gi] = da;
                    a.s[gi] = da * gs as f32;
                    a.o[gi] = f.offset * gs;
                    a.gs[gi] = gs as i16;
                }
            }
        }
    }
}

/// The bytes of block `b` of the panel holding row `r`.
fn block_of(m: &PackedMatrix, r: usize, b: usize) -> &[u8] {
    let f = m.format;
    &m.data()[(r / PANEL) * m.panel_bytes() + b * f.block_bytes()..][..f.block_bytes()]
}

/// The quants of group `gi` of a packed block.
fn group_quants(f: Format, block: &[u8], gi: usize) -> &[u8] {
    &block[f.quant_offset() + gi * f.group_bytes()..][..f.group_bytes()]
}

/// The f16 scale (`k = 0`) or min term (`k = 1`) of `lane` in a packed block.
fn block_scale(block: &[u8], lane: usize, k: usize) -> f32 {
    f16_at(block, 2 * (k * PANEL + lane))
}

/// The integer scale (`k = 0`) or min (`k = 1`) of group `gi` of `lane` in a packed K-quant block; 1 and 0 in the
/// other formats.
fn int_scale(f: Format, block: &[u8], lane: usize, gi: usize, k: usize) -> i32 {
    if !f.int_scales() {
        return 1 - k as i32;
    }
    block[f.int_offset(k) + 2 * PANEL * (gi / 2) + 2 * lane + gi % 2] as i8 as i32
}

/// Quant `e` (unsigned, `0..2^bits`) of `lane` in one group's packed quants `gq`, read on its own (for
/// `dot_reference` and [`PackedMatrix::dequantize_row`]).
fn group_quant(f: Format, gq: &[u8], lane: usize, e: usize) -> i32 {
    if f.bits == 8 {
        return gq[64 * (e / 4) + 4 * lane + e % 4] as i32;
    }
    let half = f.group / 2;
    let (hi, e) = (e >= half, e % half);
    let x = gq[64 * (e / 4) + 4 * lane + e % 4];
    let mut q = if hi { x >> 4 } else { x & 0x0F } as i32;
    let bit = 4 * lane + e % 4;
    for plane in 0..f.bits as usize - 4 {
        let mask = &gq[f.mask_offset(plane, e / 4) + 8 * hi as usize..][..8];
        q |= (((mask[bit / 8] >> (bit % 8)) & 1) as i32) << (4 + plane);
    }
    q
}

/// The chains of the module docs for row `r` and token `t`, in scalar code, one element at a time: the
/// specification that the kernels ([`run_scalar`] and `packed_x86`) meet bit for bit.
#[cfg(test)]
fn dot_reference(m: &PackedMatrix, r: usize, a: &ActRows, t: usize) -> f32 {
    let (f, ng, cols) = (m.format, m.n_groups(), m.cols);
    let lane = r % PANEL;
    let mut acc = 0f32;
    for b in 0..m.n_blocks() {
        let block = block_of(m, r, b);
        let g0 = t * ng + b * f.block_groups; // the block's first group of token t
        let (mut isum, mut msum) = (0i32, 0i32);
        for gi in 0..f.block_groups {
            let gq = group_quants(f, block, gi);
            let e0 = (b * f.block_groups + gi) * f.group;
            let mut p = 0i32;
            for e in 0..f.group {
                p += group_quant(f, gq, lane, e) * a.q[t * cols + e0 + e] as i8 as i32;
            }
            if f.int_scales() {
                let (sc, gs) = (int_scale(f, block, lane, gi, 0), a.gs[g0 + gi] as i32);
                isum += sc * p - f.offset * sc * gs;
                if f.min {
                    msum += int_scale(f, block, lane, gi, 1) * gs;
                }
            } else {
                isum += p - a.o[g0];
            }
        }
        let da = a.d[g0];
        acc = (isum as f32 * da).mul_add(block_scale(block, lane, 0), acc);
        if f.min {
            let s = if f.int_scales() {
                msum as f32 * da
            } else {
                a.s[g0]
            };
            acc = block_scale(block, lane, 1).mul_add(s, acc);
        }
    }
    acc
}

/// One group's packed quants `gq` minus the format's offset, as `(lane, element)`: vector by vector, each quant
/// byte read once with its mask bits.
fn unpack_group(f: Format, gq: &[u8], w: &mut [[i32; 32]; PANEL]) {
    for j in 0..f.quant_vectors() {
        let v = &gq[64 * j..][..64];
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
            let word = |o: usize| u64::from_le_bytes(gq[o..o + 8].try_into().unwrap());
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
/// minus their offset, which leaves the i32 sums exact and equal) and reused for every token. The same chains as
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
    let (f, ng, cols, bg) = (m.format, m.n_groups(), m.cols, m.format.block_groups);
    let mut w = [[0i32; 32]; PANEL]; // (lane, element) of one group
    let mut acc = vec![0f32; n_tokens * PANEL]; // (token, lane)
    let mut isum = vec![0i32; n_tokens * PANEL]; // (token, lane), over a block
    let mut msum = vec![0i32; n_tokens * PANEL];
    for p in p0..p0 + np {
        acc.fill(0.0);
        for b in 0..m.n_blocks() {
            let block = block_of(m, p * PANEL, b);
            isum.fill(0);
            msum.fill(0);
            for gi in 0..bg {
                let g = b * bg + gi;
                unpack_group(f, group_quants(f, block, gi), &mut w);
                let sc: [i32; PANEL] = std::array::from_fn(|lane| int_scale(f, block, lane, gi, 0));
                let mn: [i32; PANEL] = std::array::from_fn(|lane| match f.min {
                    true => int_scale(f, block, lane, gi, 1),
                    false => 0,
                });
                for t in 0..n_tokens {
                    let qa = &a.q[t * cols + g * f.group..][..f.group];
                    let gs = a.gs[t * ng + g] as i32;
                    for lane in 0..PANEL {
                        let dot: i32 = w[lane]
                            .iter()
                            .zip(qa)
                            .map(|(&q, &x)| q * x as i8 as i32)
                            .sum();
                        isum[t * PANEL + lane] += sc[lane] * dot;
                        if f.min && f.int_scales() {
                            msum[t * PANEL + lane] += mn[lane] * gs;
                        }
                    }
                }
            }
            for t in 0..n_tokens {
                let g0 = t * ng + b * bg;
                let da = a.d[g0];
                for lane in 0..PANEL {
                    let i = t * PANEL + lane;
                    acc[i] = (isum[i] as f32 * da).mul_add(block_scale(block, lane, 0), acc[i]);
                    if f.min {
                        let s = if f.int_scales() {
                            msum[i] as f32 * da
                        } else {
                            a.s[g0]
                        };
                        acc[i] = block_scale(block, lane, 1).mul_add(s, acc[i]);
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
        let mut parts = Vec::with_capacity(inputs.len());
        for (input, (raw, acts)) in inputs.iter().zip(cache.iter_mut()) {
            raw.resize(input.n_tokens * input.act_row_bytes(), 0);
            parts.push((
                SharedOut(raw.as_mut_ptr()),
                acts.parts_for(input.n_tokens, input.cols, input.f.group),
            ));
            starts.push(starts[starts.len() - 1] + input.n_tokens);
        }
        let prepare = |item: usize| {
            let i = starts.partition_point(|&s| s <= item) - 1;
            let (input, (raw, acts), t) = (&inputs[i], &parts[i], item - starts[i]);
            let (cols, rb) = (input.cols, input.act_row_bytes());
            // SAFETY: token t of input i owns these disjoint parts of its buffers, sized above; `x` holds
            // `n_tokens x cols` elements (checked per job); the quantizer's ISA was required above.
            unsafe {
                let x = &input.x[t * cols..][..cols];
                let raw = std::slice::from_raw_parts_mut(raw.get().add(t * rb), rb);
                (input.k.quantize)(x, raw);
                act_row(input.k.act, input.f, raw, acts.row(t));
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
            let (rows, cols, n_tokens): (usize, usize, usize) = (37, 2 * f.block(), 5);
            let ng = cols / f.group;
            let n_panels = rows.div_ceil(PANEL);
            let panel_bytes = cols / f.block() * f.block_bytes();
            let mut lines = vec![Line([0; 64]); lines_for(n_panels * panel_bytes)];
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
            // Finite f16 scales: random values in (-1, 1). (Integer scales stay random bytes: -128..=127, wider
            // than any file's.)
            let lines = std::sync::Arc::get_mut(&mut m.lines).unwrap();
            // SAFETY: `Line` is 64 plain bytes (align 64), so the lines are `len * 64` initialised bytes, borrowed
            // mutably through `lines` for as long as `data` lives.
            let data = unsafe {
                std::slice::from_raw_parts_mut(lines.as_mut_ptr() as *mut u8, lines.len() * 64)
            };
            for block in data.chunks_exact_mut(f.block_bytes()) {
                for at in (0..f.header_bytes()).step_by(2) {
                    let v = (next() % 2001) as f32 / 1000.0 - 1.0;
                    block[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
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
            // What the preparation stores per token and group: sum(qa) and offset * sum(qa).
            let gs: Vec<i32> = q
                .chunks_exact(f.group)
                .map(|g| g.iter().map(|&x| x as i8 as i32).sum::<i32>())
                .collect();
            let a = ActRows {
                q,
                d: (0..n_tokens * ng)
                    .map(|_| (next() % 1000) as f32 / 7e4)
                    .collect(),
                s: (0..n_tokens * ng)
                    .map(|_| (next() % 1000) as f32 / 3e3 - 0.2)
                    .collect(),
                o: gs.iter().map(|&s| f.offset * s).collect(),
                gs: gs.iter().map(|&s| s as i16).collect(),
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
