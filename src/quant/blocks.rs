//! llama.cpp's quantized block layouts, field by field as `ggml-common.h`
//! declares them, read from a file's bytes; each turns into the engine's
//! groups and into `f32`.
//!
//! Dequantizing does what ggml's reference `dequantize_row_*` functions do
//! (same operations in the same order), so results are bit-identical to an
//! FMA-free build of ggml.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::dequant;

// Blocks are read as ggml writes them, little-endian.
#[cfg(target_endian = "big")]
compile_error!("GGUF blocks are little-endian; this reader assumes a little-endian target");

/// One quantized block as it lies in a GGUF tensor.
pub trait Block: Pod {
    /// Weights per block.
    const LEN: usize;
    /// The block's `LEN` weights as `f32`.
    fn dequantize(&self, out: &mut [f32]);
}

/// A block made of groups of `WIDTH` weights `scale · q + offset` with small
/// integers `q` (see [`super::QuantMatrix`]).
pub trait GroupBlock: Block {
    /// Weights per group: 32, or 16 for the K-quants whose sub-blocks are 16 wide.
    const WIDTH: usize;
    /// False for the symmetric formats, whose offsets are all zero.
    const OFFSETS: bool;
    /// `Some(zero)` when every `q + zero` is in `0..16`, so that the weights
    /// can be held two to a byte (4-bit formats with groups of 32).
    const NIBBLES: Option<i8> = None;
    /// The block's `LEN` weights as `q`, and per group its scale and (when
    /// `OFFSETS`; `offsets` is empty otherwise) offset.
    fn unpack(&self, q: &mut [i8], scales: &mut [f32], offsets: &mut [f32]);
}

/// The blocks of `raw`, whose length is a multiple of the block's size.
pub fn read<B: Block>(raw: &[u8]) -> impl Iterator<Item = B> + '_ {
    raw.chunks_exact(size_of::<B>())
        .map(bytemuck::pod_read_unaligned)
}

/// `src` holds whole blocks of `B`, `dst` room for their weights.
pub fn dequantize<B: Block>(src: &[u8], dst: &mut [f32]) {
    for (block, out) in read::<B>(src).zip(dst.chunks_exact_mut(B::LEN)) {
        block.dequantize(out);
    }
}

/// Dequantizes through the groups, with [`dequant`]: the one formula the matmul also uses.
fn dequantize_groups<B: GroupBlock>(block: &B, out: &mut [f32]) {
    let (mut q, mut scales, mut offsets) = ([0i8; 256], [0f32; 16], [0f32; 16]);
    let n = B::LEN / B::WIDTH;
    let offsets = &mut offsets[..if B::OFFSETS { n } else { 0 }];
    block.unpack(&mut q[..B::LEN], &mut scales[..n], offsets);
    for (g, (out, q)) in out
        .chunks_exact_mut(B::WIDTH)
        .zip(q.chunks_exact(B::WIDTH))
        .enumerate()
    {
        let offset = offsets.get(g).copied();
        for (v, &q) in out.iter_mut().zip(q) {
            *v = dequant(q, scales[g], offset);
        }
    }
}

/// Declares a block's weight count and group width, checks its size in bytes
/// as `ggml-common.h` does, and dequantizes it through its groups.
macro_rules! block {
    ($ty:ident: $len:literal weights in $bytes:literal bytes) => {
        const _: () = assert!(size_of::<$ty>() == $bytes, "wrong block size or padding");
        impl Block for $ty {
            const LEN: usize = $len;
            fn dequantize(&self, out: &mut [f32]) {
                dequantize_groups(self, out);
            }
        }
    };
}

// ---------------------------------------------------------------------------
// 32-element blocks

/// Q4_0: `(q − 8) · d`; low nibbles are elements 0..16, high nibbles 16..32.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; 16],
}
block!(BlockQ4_0: 32 weights in 18 bytes);

impl GroupBlock for BlockQ4_0 {
    const WIDTH: usize = 32;
    const OFFSETS: bool = false;
    const NIBBLES: Option<i8> = Some(8);
    fn unpack(&self, q: &mut [i8], scales: &mut [f32], _: &mut [f32]) {
        scales[0] = self.d.to_f32();
        nibbles(&self.qs, q, 8);
    }
}

/// The 32 weights of a 16-byte `qs`: low nibbles are elements 0..16, high nibbles 16..32; less `bias`.
fn nibbles(qs: &[u8; 16], q: &mut [i8], bias: i8) {
    for (j, &b) in qs.iter().enumerate() {
        q[j] = (b & 0x0F) as i8 - bias;
        q[j + 16] = (b >> 4) as i8 - bias;
    }
}

/// Q4_1: unsigned nibbles, `q · d + m`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; 16],
}
block!(BlockQ4_1: 32 weights in 20 bytes);

impl GroupBlock for BlockQ4_1 {
    const WIDTH: usize = 32;
    const OFFSETS: bool = true;
    const NIBBLES: Option<i8> = Some(0);
    fn unpack(&self, q: &mut [i8], scales: &mut [f32], offsets: &mut [f32]) {
        (scales[0], offsets[0]) = (self.d.to_f32(), self.m.to_f32());
        nibbles(&self.qs, q, 0);
    }
}

/// Q5_0: Q4_0 plus a fifth bit per element in `qh`, `(q − 16) · d`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}
block!(BlockQ5_0: 32 weights in 22 bytes);

impl GroupBlock for BlockQ5_0 {
    const WIDTH: usize = 32;
    const OFFSETS: bool = false;
    fn unpack(&self, q: &mut [i8], scales: &mut [f32], _: &mut [f32]) {
        scales[0] = self.d.to_f32();
        five_bit(self.qh, &self.qs, q, 16);
    }
}

/// Q5_1: Q4_1 plus a fifth bit per element in `qh`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}
block!(BlockQ5_1: 32 weights in 24 bytes);

impl GroupBlock for BlockQ5_1 {
    const WIDTH: usize = 32;
    const OFFSETS: bool = true;
    fn unpack(&self, q: &mut [i8], scales: &mut [f32], offsets: &mut [f32]) {
        (scales[0], offsets[0]) = (self.d.to_f32(), self.m.to_f32());
        five_bit(self.qh, &self.qs, q, 0);
    }
}

/// Nibbles `qs` plus fifth bits from the little-endian word `qh` (bit `j`
/// for element `j`), less `bias`.
fn five_bit(qh: [u8; 4], qs: &[u8; 16], q: &mut [i8], bias: i8) {
    let qh = u32::from_le_bytes(qh);
    for (j, &b) in qs.iter().enumerate() {
        let h0 = ((qh >> j) as u8 & 1) << 4;
        let h1 = ((qh >> (j + 16)) as u8 & 1) << 4;
        q[j] = ((b & 0x0F) | h0) as i8 - bias;
        q[j + 16] = ((b >> 4) | h1) as i8 - bias;
    }
}

/// Q8_0: `q · d`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; 32],
}
block!(BlockQ8_0: 32 weights in 34 bytes);

impl GroupBlock for BlockQ8_0 {
    const WIDTH: usize = 32;
    const OFFSETS: bool = false;
    fn unpack(&self, q: &mut [i8], scales: &mut [f32], _: &mut [f32]) {
        scales[0] = self.d.to_f32();
        q.copy_from_slice(&self.qs);
    }
}

// ---------------------------------------------------------------------------
// K-quants: super-blocks of 256

/// K-quant super-blocks hold 16 groups of 16 (Q2_K, Q3_K, Q6_K) or 8 groups
/// of 32 (Q4_K, Q5_K). For the 16-groups types, group `g` reads its 2-bit
/// fields from the 32-byte chunk `g / 8`, half `g % 2`, at bit shift
/// `2 * ((g / 2) % 4)`.
fn k_group(g: usize) -> (usize, u32) {
    (32 * (g / 8) + 16 * (g % 2), 2 * ((g / 2) % 4) as u32)
}

/// Q2_K: 2-bit values, a 4-bit scale and min per group of 16: `d·sc·q − dmin·m`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ2K {
    pub scales: [u8; 16],
    pub qs: [u8; 64],
    pub d: f16,
    pub dmin: f16,
}
block!(BlockQ2K: 256 weights in 84 bytes);

impl GroupBlock for BlockQ2K {
    const WIDTH: usize = 16;
    const OFFSETS: bool = true;
    /// ggml's `dl · q − ml` is `q · dl + (−ml)` to the bit.
    fn unpack(&self, q: &mut [i8], scales: &mut [f32], offsets: &mut [f32]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        for (g, q) in q.chunks_exact_mut(16).enumerate() {
            let (at, shift) = k_group(g);
            scales[g] = d * (self.scales[g] & 0x0F) as f32;
            offsets[g] = -(dmin * (self.scales[g] >> 4) as f32);
            for (v, &b) in q.iter_mut().zip(&self.qs[at..at + 16]) {
                *v = ((b >> shift) & 3) as i8;
            }
        }
    }
}

/// Q3_K: 2 low bits in `qs` plus a high bit in `hmask` that, when clear,
/// subtracts 4; a signed 6-bit scale per group of 16.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ3K {
    pub hmask: [u8; 32],
    pub qs: [u8; 64],
    pub scales: [u8; 12],
    pub d: f16,
}
block!(BlockQ3K: 256 weights in 110 bytes);

impl BlockQ3K {
    /// The 16 signed 6-bit group scales, packed into 12 bytes: low nibbles in
    /// bytes 0..8 (low half then high half), top two bits in bytes 8..12.
    fn scale(&self, g: usize) -> i32 {
        let s = &self.scales;
        let low = if g < 8 { s[g] & 0x0F } else { s[g - 8] >> 4 };
        let high = (s[8 + g % 4] >> (2 * (g / 4))) & 3;
        (low | (high << 4)) as i32 - 32
    }
}

impl GroupBlock for BlockQ3K {
    const WIDTH: usize = 16;
    const OFFSETS: bool = false;
    fn unpack(&self, q: &mut [i8], scales: &mut [f32], _: &mut [f32]) {
        let d = self.d.to_f32();
        for (g, q) in q.chunks_exact_mut(16).enumerate() {
            let (at, shift) = k_group(g);
            scales[g] = d * self.scale(g) as f32;
            let bit = 1u8 << (g / 2);
            let hm = &self.hmask[16 * (g % 2)..16 * (g % 2) + 16];
            for ((v, &b), &h) in q.iter_mut().zip(&self.qs[at..at + 16]).zip(hm) {
                let sub = if h & bit != 0 { 0 } else { 4 };
                *v = ((b >> shift) & 3) as i8 - sub;
            }
        }
    }
}

/// ggml's `get_scale_min_k4`: the 8 (scale, min) 6-bit pairs of Q4_K/Q5_K packed in 12 bytes.
fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q4_K and Q5_K share their scales and nibble layout: 32-byte chunk `p` of
/// `qs` holds group `2p` in its low nibbles and `2p + 1` in its high ones;
/// `fifth(p, j)` gives Q5_K's fifth bits of element `j` of both groups.
/// Group `j`'s `d·sc·q − dmin·m` becomes `scale · q + offset` with the same
/// float operations, so the same bits.
fn k4_unpack(
    (d, dmin): (f16, f16),
    packed_scales: &[u8; 12],
    qs: &[u8; 128],
    (q, scales, offsets): (&mut [i8], &mut [f32], &mut [f32]),
    fifth: impl Fn(usize, usize) -> (u8, u8),
) {
    let (d, dmin) = (d.to_f32(), dmin.to_f32());
    for g in 0..8 {
        let (sc, m) = scale_min_k4(g, packed_scales);
        (scales[g], offsets[g]) = (d * sc as f32, -(dmin * m as f32));
    }
    for (p, (pair, chunk)) in q.chunks_exact_mut(64).zip(qs.chunks_exact(32)).enumerate() {
        let (lo, hi) = pair.split_at_mut(32);
        for (j, &b) in chunk.iter().enumerate() {
            let (h1, h2) = fifth(p, j);
            lo[j] = ((b & 0x0F) + h1) as i8;
            hi[j] = ((b >> 4) + h2) as i8;
        }
    }
}

/// Q4_K: 8 groups of 32 unsigned nibbles, 6-bit scales and mins.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; 128],
}
block!(BlockQ4K: 256 weights in 144 bytes);

impl GroupBlock for BlockQ4K {
    const WIDTH: usize = 32;
    const OFFSETS: bool = true;
    const NIBBLES: Option<i8> = Some(0);
    fn unpack(&self, q: &mut [i8], scales: &mut [f32], offsets: &mut [f32]) {
        let out = (q, scales, offsets);
        k4_unpack((self.d, self.dmin), &self.scales, &self.qs, out, |_, _| {
            (0, 0)
        });
    }
}

/// Q5_K: Q4_K plus a fifth bit per element; chunk `p` takes bits `2p` and
/// `2p + 1` of `qh`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; 32],
    pub qs: [u8; 128],
}
block!(BlockQ5K: 256 weights in 176 bytes);

impl GroupBlock for BlockQ5K {
    const WIDTH: usize = 32;
    const OFFSETS: bool = true;
    fn unpack(&self, q: &mut [i8], scales: &mut [f32], offsets: &mut [f32]) {
        let bit = |j: usize, mask: u8| if self.qh[j] & mask != 0 { 16 } else { 0 };
        let out = (q, scales, offsets);
        k4_unpack((self.d, self.dmin), &self.scales, &self.qs, out, |p, j| {
            (bit(j, 1 << (2 * p)), bit(j, 2 << (2 * p)))
        });
    }
}

/// Q6_K: 6-bit values offset by 32, a signed 8-bit scale per group of 16.
/// Each half (128 elements) has four quarters of 32: quarter `k` takes nibble
/// `k / 2` of `ql[l + 32 · (k % 2)]` and bits `2k..2k+2` of `qh[l]`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; 128],
    pub qh: [u8; 64],
    pub scales: [i8; 16],
    pub d: f16,
}
block!(BlockQ6K: 256 weights in 210 bytes);

impl GroupBlock for BlockQ6K {
    const WIDTH: usize = 16;
    const OFFSETS: bool = false;
    /// Element `e` belongs to group `e / 16`, whose scale is `scales[e / 16]`.
    /// ggml computes `d * sc * q` left to right, so folding `d * sc` first is bit-identical.
    fn unpack(&self, q: &mut [i8], scales: &mut [f32], _: &mut [f32]) {
        let d = self.d.to_f32();
        for (s, &sc) in scales.iter_mut().zip(&self.scales) {
            *s = d * sc as f32;
        }
        for (n, half) in q.chunks_exact_mut(128).enumerate() {
            let (ql, qh) = (&self.ql[64 * n..64 * n + 64], &self.qh[32 * n..32 * n + 32]);
            for (k, quarter) in half.chunks_exact_mut(32).enumerate() {
                let ql = &ql[32 * (k % 2)..32 * (k % 2) + 32];
                let (lshift, hshift) = (4 * (k / 2), 2 * k);
                for ((v, &lo), &hi) in quarter.iter_mut().zip(ql).zip(qh) {
                    *v = (((lo >> lshift) & 0x0F) | (((hi >> hshift) & 3) << 4)) as i8 - 32;
                }
            }
        }
    }
}
