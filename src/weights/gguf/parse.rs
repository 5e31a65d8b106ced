//! Parsing a GGUF file's header, metadata and tensor infos through a
//! bounds-checked cursor that checks every count before allocating for it.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use super::metadata::MetaValue;
use super::{TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};
use crate::budget;
use crate::error::{Error, Result};

/// A cursor over the file that reports truncation with the part being read.
pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
    /// What is being read, for error messages ("metadata value of `general.name`").
    pub(super) what: String,
    /// Whether a read ran past the end of `bytes`: with more of the file it might not.
    pub(super) ran_out: std::cell::Cell<bool>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            what: "the header".into(),
            ran_out: std::cell::Cell::new(false),
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn truncated(&self, n: u64) -> Error {
        self.ran_out.set(true);
        if n > self.bytes.len() as u64 {
            return self.corrupt(format_args!(
                "it declares {n} bytes, more than the whole file ({} bytes)",
                self.bytes.len()
            ));
        }
        Error::weights(format!(
            "GGUF file is truncated: {} needs bytes {}..{} but the file has {}",
            self.what,
            self.pos,
            self.pos as u128 + n as u128,
            self.bytes.len()
        ))
    }

    fn corrupt(&self, problem: impl fmt::Display) -> Error {
        Error::weights(format!(
            "GGUF file is corrupt at byte {} ({}): {problem}",
            self.pos, self.what
        ))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n));
        match end.and_then(|end| self.bytes.get(self.pos..end)) {
            Some(slice) => {
                self.pos += slice.len();
                Ok(slice)
            }
            None => Err(self.truncated(n)),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        match self
            .bytes
            .get(self.pos..)
            .and_then(|rest| rest.first_chunk::<N>())
        {
            Some(chunk) => {
                self.pos += N;
                Ok(*chunk)
            }
            None => Err(self.truncated(N as u64)),
        }
    }

    fn u8(&mut self) -> Result<u8> {
        self.array::<1>().map(|[b]| b)
    }
    fn u16(&mut self) -> Result<u16> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_le_bytes)
    }
    pub(super) fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// Invalid UTF-8 is replaced rather than rejected: one odd token string
    /// should not make a whole model unloadable.
    fn string(&mut self) -> Result<String> {
        let len = self.u64()?;
        let raw = self.take(len)?;
        Ok(String::from_utf8_lossy(raw).into_owned())
    }

    /// Rejects `count` items of at least `min_size` bytes each when the rest of
    /// the file cannot hold them, before anything is allocated for them.
    fn check_count(&self, count: u64, min_size: usize, items: &str) -> Result<usize> {
        let fits = (self.remaining() / min_size.max(1)) as u64;
        if count > fits {
            self.ran_out.set(true);
            return Err(Error::weights(format!(
                "GGUF file is truncated or corrupt: {} declares {count} {items}, but only {} bytes remain at byte {}",
                self.what,
                self.remaining(),
                self.pos
            )));
        }
        Ok(count as usize)
    }

    /// An empty vector with room for `count` items, charged against the memory
    /// budget first: [`Self::check_count`] bounds a count by the file's bytes,
    /// but an item can take many times its encoded size in memory (a 1-byte
    /// `u8` array element is a 32-byte [`MetaValue`] natively, 16 in wasm).
    fn vec_for<T>(&self, count: usize, items: &str) -> Result<Vec<T>> {
        budget::vec_with_capacity(|| format!("{} ({count} {items})", self.what), count)
    }

    /// A map with room for `count` entries, charged against the budget as
    /// [`Self::vec_for`] does. Its table has a power of two of buckets, at most
    /// 7/8 of them full, each an entry and a control byte.
    fn map_for<K: Eq + Hash, V>(&self, count: usize, items: &str) -> Result<HashMap<K, V>> {
        let buckets = (count as u64).saturating_mul(8) / 7;
        let bytes = buckets
            .checked_next_power_of_two()
            .and_then(|b| b.checked_mul(size_of::<(K, V)>() as u64 + 1));
        let mut map = HashMap::new();
        let what = || format!("{} ({count} {items})", self.what);
        budget::reserve(what, bytes, || map.try_reserve(count))?;
        Ok(map)
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<MetaValue> {
        Ok(match ty {
            0 => MetaValue::U8(self.u8()?),
            1 => MetaValue::I8(self.u8()? as i8),
            2 => MetaValue::U16(self.u16()?),
            3 => MetaValue::I16(self.u16()? as i16),
            4 => MetaValue::U32(self.u32()?),
            5 => MetaValue::I32(self.u32()? as i32),
            6 => MetaValue::F32(f32::from_bits(self.u32()?)),
            7 => MetaValue::Bool(self.u8()? != 0),
            8 => MetaValue::Str(self.string()?),
            9 => self.array_value(depth)?,
            10 => MetaValue::U64(self.u64()?),
            11 => MetaValue::I64(self.u64()? as i64),
            12 => MetaValue::F64(f64::from_bits(self.u64()?)),
            other => return Err(self.corrupt(format_args!("unknown metadata value type {other}"))),
        })
    }

    fn array_value(&mut self, depth: usize) -> Result<MetaValue> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.corrupt(format_args!(
                "arrays are nested more than {MAX_ARRAY_DEPTH} deep"
            )));
        }
        let elem_ty = self.u32()?;
        let count = self.u64()?;
        let min_size = min_value_size(elem_ty)
            .ok_or_else(|| self.corrupt(format_args!("unknown array element type {elem_ty}")))?;
        let count = self.check_count(count, min_size, "array elements")?;
        let mut items = self.vec_for(count, "array elements")?;
        for _ in 0..count {
            items.push(self.value(elem_ty, depth + 1)?);
        }
        Ok(MetaValue::Array(items))
    }
}

/// Smallest encoding of a value of type `ty`: used to bound counts before allocating.
fn min_value_size(ty: u32) -> Option<usize> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        8 | 10..=12 => Some(8),
        9 => Some(12),
        _ => None,
    }
}

/// Checks the magic and version, with hints for the usual wrong files.
pub(super) fn read_preamble(r: &mut Reader) -> Result<u32> {
    let magic = r.bytes.first_chunk::<4>();
    if magic != Some(MAGIC) {
        return Err(bad_magic(r.bytes));
    }
    r.pos = 4;
    match r.u32()? {
        v @ (2 | 3) => Ok(v),
        1 => Err(Error::weights(
            "GGUF version 1 is not supported; re-convert the model with a current llama.cpp",
        )),
        v if matches!(v.swap_bytes(), 2 | 3) => Err(Error::weights(
            "this GGUF file is big-endian; only little-endian GGUF files are supported",
        )),
        v => Err(Error::weights(format!(
            "GGUF version {v} is not supported (this reader knows versions 2 and 3)"
        ))),
    }
}

fn bad_magic(bytes: &[u8]) -> Error {
    let start: String = bytes
        .iter()
        .take(4)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    let hint = if bytes.get(8) == Some(&b'{') {
        " (it looks like a safetensors file)"
    } else if matches!(bytes.get(..4), Some(b"lmgg" | b"fmgg" | b"tjgg" | b"algg")) {
        " (it is a pre-GGUF ggml file; re-convert it with a current llama.cpp)"
    } else {
        ""
    };
    Error::weights(format!(
        "not a GGUF file: it starts with \"{start}\" instead of \"GGUF\"{hint}"
    ))
}

pub(super) fn read_metadata(r: &mut Reader, n_kv: u64) -> Result<HashMap<String, MetaValue>> {
    // Smallest entry: 8-byte key length, empty key, 4-byte type, 1-byte value.
    let n_kv = r.check_count(n_kv, 13, "metadata entries")?;
    let mut metadata = r.map_for(n_kv, "metadata entries")?;
    for i in 0..n_kv {
        r.what = format!("metadata entry #{i}");
        let key = printable(r.string()?);
        r.what = format!("metadata value of `{key}`");
        let ty = r.u32()?;
        let value = r.value(ty, 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(r.corrupt(format_args!("metadata key `{key}` appears twice")));
        }
    }
    Ok(metadata)
}

/// A key or tensor name as it may appear in messages: real ones are plain
/// text, so control characters (corrupt bytes) are escaped rather than
/// printed raw.
fn printable(name: String) -> String {
    if name.chars().any(char::is_control) {
        name.chars().flat_map(char::escape_debug).collect()
    } else {
        name
    }
}

/// `general.alignment` if present; ggml requires a power of two.
pub(super) fn alignment(metadata: &HashMap<String, MetaValue>) -> Result<u64> {
    let Some(value) = metadata.get(ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match value.as_integer().and_then(|n| u32::try_from(n).ok()) {
        Some(a) if a.is_power_of_two() => Ok(a.into()),
        _ => Err(Error::weights(format!(
            "GGUF metadata `{ALIGNMENT_KEY}` is {}; it must be a power of two that fits in u32",
            value.describe()
        ))),
    }
}

pub(super) fn read_tensor_infos(
    r: &mut Reader,
    n_tensors: u64,
) -> Result<(Vec<String>, HashMap<String, TensorInfo>)> {
    r.what = "the tensor count".into();
    // Smallest record: 8-byte name length, empty name, n_dims, type, offset.
    let n_tensors = r.check_count(n_tensors, 24, "tensors")?;
    let mut order = r.vec_for(n_tensors, "tensors")?;
    let mut tensors = r.map_for(n_tensors, "tensors")?;
    for i in 0..n_tensors {
        r.what = format!("tensor info #{i}");
        let name = printable(r.string()?);
        r.what = format!("tensor info #{i} (`{name}`)");
        let info = read_tensor_info(r, &name)?;
        if tensors.insert(name.clone(), info).is_some() {
            return Err(r.corrupt(format_args!("tensor name `{name}` appears twice")));
        }
        order.push(name);
    }
    Ok((order, tensors))
}

fn read_tensor_info(r: &mut Reader, name: &str) -> Result<TensorInfo> {
    let n_dims = r.u32()?;
    if n_dims > MAX_DIMS {
        return Err(r.corrupt(format_args!(
            "tensor `{name}` has {n_dims} dimensions; GGUF allows at most {MAX_DIMS}"
        )));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        let d = r.u64()?;
        // ggml stores dims as int64; a value past i64::MAX is a negative dimension.
        let d = usize::try_from(d).ok().filter(|_| d <= i64::MAX as u64).ok_or_else(|| {
            r.corrupt(format_args!("tensor `{name}` has dimension {d}, which is negative or too large for this platform"))
        })?;
        dims.push(d);
    }
    let n_elements = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            r.corrupt(format_args!(
                "tensor `{name}` has dimensions {dims:?}, whose element count overflows"
            ))
        })?;
    let type_id = r.u32()?;
    let offset = r.u64()?;
    Ok(TensorInfo {
        dims,
        n_elements,
        type_id,
        offset,
    })
}
