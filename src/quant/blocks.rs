//! llama.cpp's quantized block layouts, field by field as `ggml-common.h`
//! declares them, read from a file's bytes; each turns into the engine's
//! groups and into `f32`.
//!
//! Dequantizing does what ggml's reference `dequantize_row_*` functions do
//! (same operations in the same order), so results are bit-identical to an
//! FMA-free build of ggml.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::{dequant, Group, GROUP};

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

/// A block made of `scale · q + offset` groups of 32 (see [`super::QuantMatrix`]).
pub trait GroupBlock: Block {
    /// False for the symmetric formats, whose offsets are all zero.
    const OFFSETS: bool;
    /// Fills `LEN / 32` groups.
    fn groups(&self, out: &mut [Group]);
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
    let mut groups = [Group::default(); 8];
    let groups = &mut groups[..B::LEN / GROUP];
    block.groups(groups);
    for (g, out) in groups.iter().zip(out.chunks_exact_mut(GROUP)) {
        let offset = B::OFFSETS.then_some(g.offset);
        for (v, &q) in out.iter_mut().zip(&g.q) {
            *v = dequant(q, g.scale, offset);
        }
    }
}

/// Checks a block's size in bytes as `ggml-common.h` does; for group blocks,
/// also declares its weight count and dequantizes it through its groups.
macro_rules! block {
    ($ty:ident, $bytes:expr) => {
        const _: () = assert!(size_of::<$ty>() == $bytes, "wrong block size or padding");
    };
    ($ty:ident, $bytes:expr, $len:expr, groups) => {
        block!($ty, $bytes);
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
block!(BlockQ4_0, 18, 32, groups);

impl GroupBlock for BlockQ4_0 {
    const OFFSETS: bool = false;
    fn groups(&self, out: &mut [Group]) {
        let g = &mut out[0];
        g.scale = self.d.to_f32();
        for (j, &q) in self.qs.iter().enumerate() {
            g.q[j] = (q & 0x0F) as i8 - 8;
            g.q[j + 16] = (q >> 4) as i8 - 8;
        }
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
block!(BlockQ4_1, 20, 32, groups);

impl GroupBlock for BlockQ4_1 {
    const OFFSETS: bool = true;
    fn groups(&self, out: &mut [Group]) {
        let g = &mut out[0];
        (g.scale, g.offset) = (self.d.to_f32(), self.m.to_f32());
        for (j, &q) in self.qs.iter().enumerate() {
            g.q[j] = (q & 0x0F) as i8;
            g.q[j + 16] = (q >> 4) as i8;
        }
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
block!(BlockQ5_0, 22, 32, groups);

impl GroupBlock for BlockQ5_0 {
    const OFFSETS: bool = false;
    fn groups(&self, out: &mut [Group]) {
        out[0].scale = self.d.to_f32();
        five_bit(&mut out[0], self.qh, &self.qs, 16);
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
block!(BlockQ5_1, 24, 32, groups);

impl GroupBlock for BlockQ5_1 {
    const OFFSETS: bool = true;
    fn groups(&self, out: &mut [Group]) {
        (out[0].scale, out[0].offset) = (self.d.to_f32(), self.m.to_f32());
        five_bit(&mut out[0], self.qh, &self.qs, 0);
    }
}

/// Nibbles `qs` plus fifth bits from the little-endian word `qh` (bit `j`
/// for element `j`), less `bias`.
fn five_bit(g: &mut Group, qh: [u8; 4], qs: &[u8; 16], bias: i8) {
    let qh = u32::from_le_bytes(qh);
    for (j, &q) in qs.iter().enumerate() {
        let h0 = ((qh >> j) as u8 & 1) << 4;
        let h1 = ((qh >> (j + 16)) as u8 & 1) << 4;
        g.q[j] = ((q & 0x0F) | h0) as i8 - bias;
        g.q[j + 16] = ((q >> 4) | h1) as i8 - bias;
    }
}

/// Q8_0: `q · d`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; 32],
}
block!(BlockQ8_0, 34, 32, groups);

impl GroupBlock for BlockQ8_0 {
    const OFFSETS: bool = false;
    fn groups(&self, out: &mut [Group]) {
        out[0].scale = self.d.to_f32();
        out[0].q = self.qs;
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
block!(BlockQ2K, 84);

impl Block for BlockQ2K {
    const LEN: usize = 256;
    fn dequantize(&self, out: &mut [f32]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        for (g, out) in out.chunks_exact_mut(16).enumerate() {
            let (at, shift) = k_group(g);
            let dl = d * (self.scales[g] & 0x0F) as f32;
            let ml = dmin * (self.scales[g] >> 4) as f32;
            for (v, &q) in out.iter_mut().zip(&self.qs[at..at + 16]) {
                *v = dl * ((q >> shift) & 3) as f32 - ml;
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
block!(BlockQ3K, 110);

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

impl Block for BlockQ3K {
    const LEN: usize = 256;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (g, out) in out.chunks_exact_mut(16).enumerate() {
            let (at, shift) = k_group(g);
            let dl = d * self.scale(g) as f32;
            let bit = 1u8 << (g / 2);
            let hm = &self.hmask[16 * (g % 2)..16 * (g % 2) + 16];
            for ((v, &q), &h) in out.iter_mut().zip(&self.qs[at..at + 16]).zip(hm) {
                let sub = if h & bit != 0 { 0 } else { 4 };
                *v = dl * (((q >> shift) & 3) as i32 - sub) as f32;
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
fn k4_groups(
    (d, dmin): (f16, f16),
    scales: &[u8; 12],
    qs: &[u8; 128],
    out: &mut [Group],
    fifth: impl Fn(usize, usize) -> (u8, u8),
) {
    let (d, dmin) = (d.to_f32(), dmin.to_f32());
    for (p, (pair, q)) in out.chunks_exact_mut(2).zip(qs.chunks_exact(32)).enumerate() {
        let [lo, hi] = pair else { continue };
        for (g, j) in [(&mut *lo, 2 * p), (&mut *hi, 2 * p + 1)] {
            let (sc, m) = scale_min_k4(j, scales);
            (g.scale, g.offset) = (d * sc as f32, -(dmin * m as f32));
        }
        for (j, &q) in q.iter().enumerate() {
            let (h1, h2) = fifth(p, j);
            lo.q[j] = ((q & 0x0F) + h1) as i8;
            hi.q[j] = ((q >> 4) + h2) as i8;
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
block!(BlockQ4K, 144, 256, groups);

impl GroupBlock for BlockQ4K {
    const OFFSETS: bool = true;
    fn groups(&self, out: &mut [Group]) {
        k4_groups((self.d, self.dmin), &self.scales, &self.qs, out, |_, _| {
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
block!(BlockQ5K, 176, 256, groups);

impl GroupBlock for BlockQ5K {
    const OFFSETS: bool = true;
    fn groups(&self, out: &mut [Group]) {
        let bit = |j: usize, mask: u8| if self.qh[j] & mask != 0 { 16 } else { 0 };
        k4_groups((self.d, self.dmin), &self.scales, &self.qs, out, |p, j| {
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
block!(BlockQ6K, 210);

impl Block for BlockQ6K {
    const LEN: usize = 256;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        // ggml computes `d * sc[is] * q` left to right, so folding `d * sc` first is bit-identical.
        let scales: [f32; 16] = std::array::from_fn(|i| d * self.scales[i] as f32);
        for (n, half) in out.chunks_exact_mut(128).enumerate() {
            let (ql, qh) = (&self.ql[64 * n..64 * n + 64], &self.qh[32 * n..32 * n + 32]);
            for (k, quarter) in half.chunks_exact_mut(32).enumerate() {
                let ql = &ql[32 * (k % 2)..32 * (k % 2) + 32];
                let (lshift, hshift) = (4 * (k / 2), 2 * k);
                for (l, ((v, &lo), &hi)) in quarter.iter_mut().zip(ql).zip(qh).enumerate() {
                    let q = (((lo >> lshift) & 0x0F) | (((hi >> hshift) & 3) << 4)) as i32 - 32;
                    *v = scales[8 * n + l / 16 + 2 * k] * q as f32;
                }
            }
        }
    }
}
