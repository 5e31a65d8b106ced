//! How the cache stores one key or value row of `dim` numbers: the user's
//! [`KvDtype`], and [`Buffer`], rows in that form.
//!
//! - `f32`: the numbers as the model computed them, 4 bytes each.
//! - `f16`: IEEE half precision, 2 bytes each (rounded to nearest).
//! - `int8`: as llama.cpp's `q8_0`: each row is cut into blocks of 32 numbers
//!   (the last block of a row shorter when `dim` is not a multiple of 32), and
//!   a block keeps one `f16` scale `d = max|x| / 127` and 32 signed bytes
//!   `q = round(x / d)`; the number read back is `q × d`. A row costs
//!   `dim + 2 × ⌈dim / 32⌉` bytes.
//!
//! Attention reads rows in place ([`Encoded`]): `f32` rows directly, the
//! others decoded one row at a time into a scratch row.

use half::f16;
use serde::Serialize;

use crate::error::{Error, Result};

/// Numbers per `int8` block, each block with its own scale.
pub const BLOCK: usize = 32;

/// How the cache stores keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(rename_all = "lowercase")]
pub enum KvDtype {
    #[default]
    F32,
    F16,
    Int8,
}

impl KvDtype {
    pub const ALL: [KvDtype; 3] = [KvDtype::F32, KvDtype::F16, KvDtype::Int8];

    /// The name the CLI and JS options use.
    pub fn name(&self) -> &'static str {
        match self {
            KvDtype::F32 => "f32",
            KvDtype::F16 => "f16",
            KvDtype::Int8 => "int8",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        KvDtype::ALL
            .into_iter()
            .find(|dtype| dtype.name() == name)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown kvDtype `{name}` (expected f32, f16 or int8)"
                ))
            })
    }

    /// Bytes one row of `dim` numbers takes, scales included; saturating, as
    /// `dim` may come from a snapshot's bytes (a size past `usize` then fails
    /// every length check instead of wrapping around).
    pub fn row_bytes(&self, dim: usize) -> usize {
        match self {
            KvDtype::F32 => dim.saturating_mul(size_of::<f32>()),
            KvDtype::F16 => dim.saturating_mul(size_of::<f16>()),
            KvDtype::Int8 => dim.saturating_add(blocks(dim) * size_of::<f16>()),
        }
    }
}

impl std::fmt::Display for KvDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `int8` blocks (so scales) in a row of `dim` numbers.
pub fn blocks(dim: usize) -> usize {
    dim.div_ceil(BLOCK)
}

/// Rows of `dim` numbers, one after the other, in one [`KvDtype`]'s form.
#[derive(Debug, Clone, PartialEq)]
pub enum Buffer {
    F32(Vec<f32>),
    F16(Vec<f16>),
    /// `dim` bytes per row, and one scale per block of each row.
    Int8 {
        values: Vec<i8>,
        scales: Vec<f16>,
    },
}

impl Buffer {
    /// `rows` zeroed rows, allocated fallibly: `None` when the memory is not there.
    pub fn zeroed(dtype: KvDtype, rows: usize, dim: usize) -> Option<Buffer> {
        fn zeros<T: Clone>(count: usize, zero: T) -> Option<Vec<T>> {
            let mut buffer = Vec::new();
            buffer.try_reserve_exact(count).ok()?;
            buffer.resize(count, zero);
            Some(buffer)
        }
        let count = rows.checked_mul(dim)?;
        Some(match dtype {
            KvDtype::F32 => Buffer::F32(zeros(count, 0.0)?),
            KvDtype::F16 => Buffer::F16(zeros(count, f16::ZERO)?),
            KvDtype::Int8 => Buffer::Int8 {
                values: zeros(count, 0)?,
                scales: zeros(rows.checked_mul(blocks(dim))?, f16::ZERO)?,
            },
        })
    }

    /// An empty buffer with room for `rows` rows.
    pub fn with_capacity(dtype: KvDtype, rows: usize, dim: usize) -> Buffer {
        match dtype {
            KvDtype::F32 => Buffer::F32(Vec::with_capacity(rows * dim)),
            KvDtype::F16 => Buffer::F16(Vec::with_capacity(rows * dim)),
            KvDtype::Int8 => Buffer::Int8 {
                values: Vec::with_capacity(rows * dim),
                scales: Vec::with_capacity(rows * blocks(dim)),
            },
        }
    }

    pub fn dtype(&self) -> KvDtype {
        match self {
            Buffer::F32(_) => KvDtype::F32,
            Buffer::F16(_) => KvDtype::F16,
            Buffer::Int8 { .. } => KvDtype::Int8,
        }
    }

    /// Bytes held: every number, and every scale.
    pub fn bytes(&self) -> usize {
        match self {
            Buffer::F32(v) => v.len() * size_of::<f32>(),
            Buffer::F16(v) => v.len() * size_of::<f16>(),
            Buffer::Int8 { values, scales } => values.len() + scales.len() * size_of::<f16>(),
        }
    }

    /// Rows of `dim` numbers held.
    pub fn rows(&self, dim: usize) -> usize {
        match self {
            Buffer::F32(v) => v.len() / dim,
            Buffer::F16(v) => v.len() / dim,
            Buffer::Int8 { values, .. } => values.len() / dim,
        }
    }

    /// Appends `f32` rows (`src.len()` a multiple of `dim`), encoded.
    pub fn push_encoded(&mut self, src: &[f32], dim: usize) {
        match self {
            Buffer::F32(v) => v.extend_from_slice(src),
            Buffer::F16(v) => v.extend(src.iter().map(|&x| f16::from_f32(x))),
            Buffer::Int8 { values, scales } => {
                for row in src.chunks_exact(dim) {
                    for block in row.chunks(BLOCK) {
                        let (scale, at) = (quantize_scale(block), values.len());
                        values.resize(at + block.len(), 0);
                        quantize_block(block, scale, &mut values[at..]);
                        scales.push(scale);
                    }
                }
            }
        }
    }

    /// Appends rows `rows` of `from` (of the same dtype) as they are stored.
    pub fn push_stored(&mut self, from: &Buffer, rows: std::ops::Range<usize>, dim: usize) {
        let span = rows.start * dim..rows.end * dim;
        match (self, from) {
            (Buffer::F32(to), Buffer::F32(from)) => to.extend_from_slice(&from[span]),
            (Buffer::F16(to), Buffer::F16(from)) => to.extend_from_slice(&from[span]),
            (
                Buffer::Int8 { values, scales },
                Buffer::Int8 {
                    values: from_values,
                    scales: from_scales,
                },
            ) => {
                values.extend_from_slice(&from_values[span]);
                let b = blocks(dim);
                scales.extend_from_slice(&from_scales[rows.start * b..rows.end * b]);
            }
            _ => unreachable!("rows are copied between buffers of one dtype"),
        }
    }

    /// Overwrites rows from `row` on with rows `rows` of `from` (of the same dtype), as stored.
    pub fn copy_rows(
        &mut self,
        row: usize,
        from: &Buffer,
        rows: std::ops::Range<usize>,
        dim: usize,
    ) {
        let (to, span) = (
            row * dim..(row + rows.len()) * dim,
            rows.start * dim..rows.end * dim,
        );
        match (self, from) {
            (Buffer::F32(v), Buffer::F32(from)) => v[to].copy_from_slice(&from[span]),
            (Buffer::F16(v), Buffer::F16(from)) => v[to].copy_from_slice(&from[span]),
            (
                Buffer::Int8 { values, scales },
                Buffer::Int8 {
                    values: from_values,
                    scales: from_scales,
                },
            ) => {
                values[to].copy_from_slice(&from_values[span]);
                let b = blocks(dim);
                scales[row * b..(row + rows.len()) * b]
                    .copy_from_slice(&from_scales[rows.start * b..rows.end * b]);
            }
            _ => unreachable!("rows are copied between buffers of one dtype"),
        }
    }

    /// Overwrites rows from `row` on with the `f32` rows of `src`, encoded.
    pub fn write(&mut self, row: usize, src: &[f32], dim: usize) {
        let span = row * dim..row * dim + src.len();
        match self {
            Buffer::F32(v) => v[span].copy_from_slice(src),
            Buffer::F16(v) => {
                for (to, &x) in v[span].iter_mut().zip(src) {
                    *to = f16::from_f32(x);
                }
            }
            Buffer::Int8 { values, scales } => {
                let b = blocks(dim);
                let rows = values[span]
                    .chunks_exact_mut(dim)
                    .zip(src.chunks_exact(dim));
                for (r, (to, from)) in rows.enumerate() {
                    let row_scales = &mut scales[(row + r) * b..][..b];
                    let blocks = to.chunks_mut(BLOCK).zip(from.chunks(BLOCK));
                    for ((to, from), scale) in blocks.zip(row_scales) {
                        *scale = quantize_scale(from);
                        quantize_block(from, *scale, to);
                    }
                }
            }
        }
    }

    /// The rows, borrowed for attention.
    pub fn encoded(&self) -> Encoded<'_> {
        match self {
            Buffer::F32(v) => Encoded::F32(v),
            Buffer::F16(v) => Encoded::F16(v),
            Buffer::Int8 { values, scales } => Encoded::Int8 { values, scales },
        }
    }

    /// The stored form as little-endian bytes: the numbers, then (int8) the scales.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes());
        match self {
            Buffer::F32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            Buffer::F16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            Buffer::Int8 { values, scales } => {
                out.extend(values.iter().map(|&q| q as u8));
                scales.iter().for_each(|x| out.extend(x.to_le_bytes()));
            }
        }
        out
    }

    /// `rows` rows of `dim` numbers from the bytes [`Self::to_bytes`] wrote;
    /// an error unless `bytes` is exactly that long.
    pub fn from_bytes(dtype: KvDtype, rows: usize, dim: usize, bytes: &[u8]) -> Result<Buffer> {
        let expected = rows
            .checked_mul(dtype.row_bytes(dim))
            .filter(|&n| n == bytes.len())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{} bytes do not hold {rows} {dtype} rows of {dim} numbers",
                    bytes.len()
                ))
            })?;
        let mut buffer = Buffer::zeroed(dtype, rows, dim).ok_or_else(|| {
            Error::invalid(format!("could not allocate {expected} bytes of cache rows"))
        })?;
        match &mut buffer {
            Buffer::F32(v) => {
                for (x, b) in v.iter_mut().zip(bytes.chunks_exact(4)) {
                    *x = f32::from_le_bytes(b.try_into().expect("4 bytes"));
                }
            }
            Buffer::F16(v) => {
                for (x, b) in v.iter_mut().zip(bytes.chunks_exact(2)) {
                    *x = f16::from_le_bytes(b.try_into().expect("2 bytes"));
                }
            }
            Buffer::Int8 { values, scales } => {
                let (qs, ds) = bytes.split_at(values.len());
                for (q, &b) in values.iter_mut().zip(qs) {
                    *q = b as i8;
                }
                for (d, b) in scales.iter_mut().zip(ds.chunks_exact(2)) {
                    *d = f16::from_le_bytes(b.try_into().expect("2 bytes"));
                }
            }
        }
        Ok(buffer)
    }
}

/// The scale of an `int8` block: its largest magnitude over 127, as an `f16`
/// (0 for a block of zeros, and never past the largest finite `f16`).
fn quantize_scale(block: &[f32]) -> f16 {
    let max = block.iter().fold(0f32, |m, x| m.max(x.abs()));
    f16::from_f32((max / 127.0).min(f16::MAX.to_f32()))
}

/// `q = round(x / d)` with the scale as stored, so that `q × d` is the nearest
/// multiple of the stored `d`; every `|q| ≤ 127`.
fn quantize_block(block: &[f32], scale: f16, to: &mut [i8]) {
    let d = scale.to_f32();
    let inverse = if d > 0.0 { 1.0 / d } else { 0.0 };
    for (q, &x) in to.iter_mut().zip(block) {
        *q = (x * inverse).round().clamp(-127.0, 127.0) as i8;
    }
}

/// Rows of `dim` numbers as a [`Buffer`] holds them, borrowed: what attention reads.
#[derive(Debug, Clone, Copy)]
pub enum Encoded<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    Int8 { values: &'a [i8], scales: &'a [f16] },
}

impl Encoded<'_> {
    /// Row `row`, decoded into `out` (`dim` numbers).
    #[inline]
    pub fn decode_row(&self, row: usize, out: &mut [f32]) {
        let dim = out.len();
        match self {
            Encoded::F32(v) => out.copy_from_slice(&v[row * dim..][..dim]),
            Encoded::F16(v) => {
                for (x, h) in out.iter_mut().zip(&v[row * dim..][..dim]) {
                    *x = h.to_f32();
                }
            }
            Encoded::Int8 { values, scales } => {
                let b = blocks(dim);
                let blocks = out
                    .chunks_mut(BLOCK)
                    .zip(values[row * dim..][..dim].chunks(BLOCK));
                for ((x, q), d) in blocks.zip(&scales[row * b..][..b]) {
                    let d = d.to_f32();
                    for (x, &q) in x.iter_mut().zip(q) {
                        *x = q as f32 * d;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(buffer: &Buffer, dim: usize) -> Vec<f32> {
        let rows = buffer.rows(dim);
        let mut out = vec![0.0; rows * dim];
        for (r, row) in out.chunks_exact_mut(dim).enumerate() {
            buffer.encoded().decode_row(r, row);
        }
        out
    }

    /// Two rows of 40 numbers (a block of 32 and one of 8), of varied magnitude.
    fn sample() -> Vec<f32> {
        (0..80)
            .map(|i| (i as f32 * 0.61).sin() * (1.0 + (i % 7) as f32))
            .collect()
    }

    #[test]
    fn names_parse_back_and_others_are_refused() {
        for dtype in KvDtype::ALL {
            assert_eq!(KvDtype::parse(dtype.name()).unwrap(), dtype);
        }
        let err = KvDtype::parse("q4").unwrap_err().to_string();
        assert!(err.contains("unknown kvDtype `q4`"), "{err}");
    }

    #[test]
    fn row_bytes_count_numbers_and_scales() {
        assert_eq!(KvDtype::F32.row_bytes(64), 256);
        assert_eq!(KvDtype::F16.row_bytes(64), 128);
        assert_eq!(KvDtype::Int8.row_bytes(64), 64 + 2 * 2);
        // A partial last block still has its scale.
        assert_eq!(KvDtype::Int8.row_bytes(40), 40 + 2 * 2);
        assert_eq!(KvDtype::Int8.row_bytes(16), 16 + 2);
    }

    #[test]
    fn every_dtype_holds_the_bytes_it_reports_and_reads_back_close() {
        let (src, dim) = (sample(), 40);
        for (dtype, bound) in [
            (KvDtype::F32, 0.0),
            // Half the spacing of f16 numbers below 8: 2^-9 · 2^-1 · 8.
            (KvDtype::F16, 2f32.powi(-8)),
            // Half a step of the largest block's scale (max |x| = 7 here), plus its f16 rounding.
            (KvDtype::Int8, 0.5 * 7.0 / 127.0 * 1.001),
        ] {
            let mut pushed = Buffer::with_capacity(dtype, 2, dim);
            pushed.push_encoded(&src, dim);
            assert_eq!(pushed.bytes(), 2 * dtype.row_bytes(dim), "{dtype}");
            let mut written = Buffer::zeroed(dtype, 2, dim).unwrap();
            assert_eq!(written.bytes(), pushed.bytes());
            written.write(1, &src[dim..], dim);
            written.write(0, &src[..dim], dim);
            assert_eq!(written, pushed, "{dtype}: write and push encode alike");
            let back = decoded(&pushed, dim);
            let worst = back
                .iter()
                .zip(&src)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst <= bound, "{dtype}: {worst} > {bound}");
            let bytes = pushed.to_bytes();
            assert_eq!(bytes.len(), pushed.bytes());
            assert_eq!(Buffer::from_bytes(dtype, 2, dim, &bytes).unwrap(), pushed);
            assert!(Buffer::from_bytes(dtype, 2, dim, &bytes[1..]).is_err());
        }
    }

    #[test]
    fn int8_blocks_keep_their_largest_number_and_zeros() {
        let mut row = vec![0.0f32; 40];
        row[3] = -2.5;
        row[35] = 0.25;
        let mut buffer = Buffer::with_capacity(KvDtype::Int8, 1, 40);
        buffer.push_encoded(&row, 40);
        let Buffer::Int8 { values, scales } = &buffer else {
            unreachable!()
        };
        assert_eq!((values[3], values[35], values[0]), (-127, 127, 0));
        assert_eq!(scales.len(), 2);
        let back = decoded(&buffer, 40);
        assert!((back[3] + 2.5).abs() < 2e-3 && (back[35] - 0.25).abs() < 2e-4);
        assert!(back
            .iter()
            .enumerate()
            .all(|(i, &x)| x == 0.0 || i == 3 || i == 35));
        // A block of zeros has scale 0 and reads back as zeros.
        let mut zeros = Buffer::with_capacity(KvDtype::Int8, 1, 8);
        zeros.push_encoded(&[0.0; 8], 8);
        assert_eq!(decoded(&zeros, 8), [0.0; 8]);
    }
}
