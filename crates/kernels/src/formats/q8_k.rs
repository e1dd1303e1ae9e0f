//! Q8_K: the activation partner of the K-quants: 256 values as i8 with an f32 scale and sums of each 16.
//!
//! Block (292 bytes): `d: f32` at 0, `qs: [i8; 256]` at 4, `bsums: [i16; 16]` at 260 (bsums[j] = sum of qs[16j..16j+16]).

use super::f32_at;

pub const QK: usize = 256;
pub const BLOCK_BYTES: usize = 292;
pub const QS: usize = 4;
pub const BSUMS: usize = 260;

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f32_at(b, 0);
        for (j, v) in y.iter_mut().enumerate() {
            *v = d * b[QS + j] as i8 as f32;
        }
    }
}

/// The sum of the 16 quants of group `j` (0..16) as stored in the block.
#[inline(always)]
pub fn bsum(b: &[u8], j: usize) -> i32 {
    i16::from_le_bytes([b[BSUMS + 2 * j], b[BSUMS + 2 * j + 1]]) as i32
}

/// ggml's reference: scale from the value of largest magnitude (`iscale = -127 / max`), round half to even,
/// clamp at 127, `d = 1 / iscale`.
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let (mut max, mut amax) = (0.0f32, 0.0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            b.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        for (j, &v) in x.iter().enumerate() {
            let q = ((iscale * v).round_ties_even() as i32).min(127);
            b[QS + j] = q as i8 as u8;
        }
        for j in 0..QK / 16 {
            let s: i32 = (0..16).map(|i| b[QS + 16 * j + i] as i8 as i32).sum();
            b[BSUMS + 2 * j..BSUMS + 2 * j + 2].copy_from_slice(&(s as i16).to_le_bytes());
        }
        b[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}
