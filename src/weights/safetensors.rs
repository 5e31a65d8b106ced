//! Reading Hugging Face `.safetensors` files into [`HostTensor`]s.
//!
//! The layout is an 8-byte little-endian header length, a JSON header mapping
//! tensor names to `{dtype, shape, data_offsets}`, then the raw tensor bytes.
//! We use the `safetensors` crate's own `Dtype`/`TensorInfo` types for the JSON,
//! but validate the header ourselves: the crate's `read_metadata` adds
//! header-controlled offsets without overflow checks (a crafted file can make
//! it panic), and its errors do not say which tensor is wrong or by how much.
//! Everything is checked once in [`SafetensorsFile::from_file`], so a later
//! [`SafetensorsFile::tensor`] can only fail for reasons the caller can act on
//! (missing name, unsupported dtype).

use std::collections::HashMap;
use std::ops::Range;

use half::{bf16, f16};
use safetensors::tensor::TensorInfo;
use safetensors::Dtype;

use super::bytes::{pieces, FileBytes, PIECE};
use super::{tensor_as_f32, HostTensor};
use crate::budget;
use crate::error::{Error, Result};

/// Size of the little-endian `u64` header length that starts every file.
const LEN_PREFIX: usize = 8;
/// Same cap as the `safetensors` crate: a larger header means a wrong or corrupt file.
const MAX_HEADER: usize = 100_000_000;
/// Key of the optional free-form string map that is not a tensor.
const METADATA_KEY: &str = "__metadata__";
const SUPPORTED: &str = "F32, F16 and BF16";

/// A safetensors file with its header validated; a tensor's bytes are read
/// from its [`FileBytes`] (in the browser, a JS buffer outside the wasm
/// memory) a piece at a time as the tensor is decoded.
#[derive(Debug)]
pub struct SafetensorsFile {
    bytes: Box<dyn FileBytes>,
    /// Offset of the first data byte; `data_offsets` in the header count from here.
    data_start: usize,
    /// Tensor names in the order their data appears in the file.
    order: Vec<String>,
    infos: HashMap<String, TensorInfo>,
}

impl SafetensorsFile {
    /// A file held in memory: see [`Self::from_file`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::from_file(Box::new(bytes))
    }

    /// Parses the header and checks every tensor's byte range, so a truncated
    /// or corrupt file is rejected here rather than halfway through loading a model.
    pub fn from_file(bytes: Box<dyn FileBytes>) -> Result<Self> {
        let header_len = header_len(bytes.as_ref())?;
        let header = bytes.read(LEN_PREFIX..LEN_PREFIX + header_len)?;
        let header = std::str::from_utf8(&header).map_err(|e| {
            Error::weights(format!("safetensors header is not UTF-8 text ({e}); this is not a safetensors file or it is corrupt"))
        })?;
        let data_start = LEN_PREFIX + header_len;
        let data_len = bytes.len() - data_start;
        let mut entries = parse_header(header)?;
        // File order, so a truncated file reports the first tensor it cuts into.
        entries
            .sort_by(|(a, x), (b, y)| x.data_offsets.cmp(&y.data_offsets).then_with(|| a.cmp(b)));
        for (name, info) in &entries {
            check_tensor(name, info, data_start, data_len)?;
        }
        let order = entries.iter().map(|(name, _)| name.clone()).collect();
        Ok(Self {
            bytes,
            data_start,
            order,
            infos: entries.into_iter().collect(),
        })
    }

    /// Tensor names in file order.
    pub fn names(&self) -> Vec<String> {
        self.order.clone()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.infos.contains_key(name)
    }

    /// Decodes one tensor to `f32`; the shape is the header's (already PyTorch order).
    pub fn tensor(&self, name: &str) -> Result<HostTensor> {
        let info = self.infos.get(name).ok_or_else(|| self.missing(name))?;
        let (start, end) = info.data_offsets;
        let range = self.data_start + start..self.data_start + end;
        // Ranges were validated in `from_file`; checked again to stay panic-free regardless.
        if range.end > self.bytes.len() {
            return Err(Error::weights(format!(
                "tensor `{name}` lies outside the safetensors file"
            )));
        }
        let data = match info.dtype {
            Dtype::F32 => self.decode(name, range, f32::from_le_bytes)?,
            Dtype::F16 => self.decode(name, range, |b| f16::from_le_bytes(b).to_f32())?,
            Dtype::BF16 => self.decode(name, range, |b| bf16::from_le_bytes(b).to_f32())?,
            other => {
                return Err(Error::weights(format!(
                    "tensor `{name}` has dtype {other}, which cannot be loaded as weights; \
                     supported dtypes are {SUPPORTED} (re-save the checkpoint in one of them)"
                )))
            }
        };
        Ok(HostTensor::new(info.shape.clone(), data))
    }

    /// The file's little-endian `N`-byte elements in `range` as `f32`, read
    /// [`PIECE`] bytes at a time, within the memory budget.
    fn decode<const N: usize>(
        &self,
        name: &str,
        range: Range<usize>,
        convert: impl Fn([u8; N]) -> f32,
    ) -> Result<Vec<f32>> {
        let mut out = budget::vec_with_capacity(|| tensor_as_f32(name), range.len() / N)?;
        for piece in pieces(range, N, PIECE) {
            let raw = self.bytes.read(piece)?;
            let (elements, _) = raw.as_chunks::<N>();
            out.extend(elements.iter().map(|&b| convert(b)));
        }
        Ok(out)
    }

    /// The [fingerprint](crate::fingerprint) hasher's part for the whole file,
    /// read [`PIECE`] bytes at a time.
    pub fn hash_into(&self, hasher: &mut crate::fingerprint::Hasher) -> Result<()> {
        hasher.part_len(self.bytes.len());
        for piece in pieces(0..self.bytes.len(), 1, PIECE) {
            hasher.update(&self.bytes.read(piece)?);
        }
        Ok(())
    }

    /// A few real names help the user tell a typo from a different model family.
    fn missing(&self, name: &str) -> Error {
        super::missing_tensor(name, "safetensors", &self.order)
    }
}

/// The JSON header's length, after checking the length prefix against the file.
fn header_len(bytes: &dyn FileBytes) -> Result<usize> {
    if bytes.len() < LEN_PREFIX {
        return Err(Error::weights(format!(
            "safetensors file is only {} bytes; it must start with an 8-byte header length",
            bytes.len()
        )));
    }
    let prefix = bytes.read(0..LEN_PREFIX)?;
    let declared = u64::from_le_bytes(prefix[..].try_into().expect("8 bytes read"));
    let available = bytes.len() - LEN_PREFIX;
    if prefix.starts_with(b"GGUF") {
        return Err(Error::weights(
            "this is a GGUF file, not safetensors; load it as GGUF",
        ));
    }
    if declared > MAX_HEADER as u64 {
        return Err(Error::weights(format!(
            "safetensors header length is {declared} bytes, over the {MAX_HEADER}-byte limit; \
             this is not a safetensors file or it is corrupt"
        )));
    }
    let len = declared as usize;
    if len > available {
        return Err(Error::weights(format!(
            "safetensors file is truncated: its header needs {len} bytes but only {available} follow the length prefix"
        )));
    }
    Ok(len)
}

/// Parses the JSON header into (name, info) pairs, skipping `__metadata__`.
fn parse_header(header: &str) -> Result<Vec<(String, TensorInfo)>> {
    let map: HashMap<String, serde_json::Value> = serde_json::from_str(header).map_err(|e| {
        Error::weights(format!(
            "safetensors header is not a JSON object of tensor entries ({e}); the file is corrupt or not safetensors"
        ))
    })?;
    map.into_iter()
        .filter(|(name, _)| name != METADATA_KEY)
        .map(
            |(name, value)| match serde_json::from_value::<TensorInfo>(value) {
                Ok(info) => Ok((name, info)),
                Err(e) => Err(Error::weights(format!(
                    "safetensors header entry for tensor `{name}` is invalid ({e}); \
                 it needs `dtype`, `shape` and `data_offsets`, with a dtype this reader knows"
                ))),
            },
        )
        .collect()
}

/// Checks that shape × dtype matches the declared byte span and that the span is inside the file.
fn check_tensor(name: &str, info: &TensorInfo, data_start: usize, data_len: usize) -> Result<()> {
    let (start, end) = info.data_offsets;
    let needed = byte_size(name, info)?;
    if end < start || end - start != needed {
        return Err(Error::weights(format!(
            "tensor `{name}` ({}, shape {:?}) needs {needed} bytes but its data_offsets are {start}..{end}; the header is corrupt",
            info.dtype, info.shape
        )));
    }
    if end > data_len {
        return Err(Error::weights(format!(
            "safetensors file is truncated: tensor `{name}` needs bytes {}..{} but the file has {}",
            data_start as u128 + start as u128,
            data_start as u128 + end as u128,
            data_start + data_len
        )));
    }
    Ok(())
}

/// Bytes a tensor occupies according to its shape and dtype.
fn byte_size(name: &str, info: &TensorInfo) -> Result<usize> {
    let bits = info
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(info.dtype.bitsize()))
        .ok_or_else(|| {
            Error::weights(format!(
                "tensor `{name}` has shape {:?} of {}, whose size in bytes overflows; the header is corrupt",
                info.shape, info.dtype
            ))
        })?;
    if bits % 8 != 0 {
        return Err(Error::weights(format!(
            "tensor `{name}` has shape {:?} of sub-byte dtype {}, which does not fill a whole number of bytes",
            info.shape, info.dtype
        )));
    }
    Ok(bits / 8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::bytes::Copied;
    use safetensors::tensor::TensorView;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// A valid file written by the `safetensors` crate itself, so layout bugs on our side cannot hide.
    fn sample_file() -> Vec<u8> {
        let a = f32_bytes(&[1.0, -2.0, 3.5, 0.0, -0.0, 1e-40]);
        let h: Vec<u8> = [0.5f32, -1.25, 65504.0, 6e-8]
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_le_bytes())
            .collect();
        let b: Vec<u8> = [1.0f32, -3.0, 1e30]
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
            .collect();
        let i: Vec<u8> = [7i64, -1].iter().flat_map(|x| x.to_le_bytes()).collect();
        let views = vec![
            (
                "model.a",
                TensorView::new(Dtype::F32, vec![2, 3], &a).unwrap(),
            ),
            ("model.h", TensorView::new(Dtype::F16, vec![4], &h).unwrap()),
            (
                "model.b",
                TensorView::new(Dtype::BF16, vec![3, 1], &b).unwrap(),
            ),
            (
                "model.ids",
                TensorView::new(Dtype::I64, vec![2], &i).unwrap(),
            ),
        ];
        safetensors::serialize(views, None).unwrap()
    }

    /// A file with a hand-written header, for headers the crate's writer would refuse to produce.
    fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn weights_err(r: Result<SafetensorsFile>) -> String {
        match r {
            Err(Error::Weights(m)) => m,
            Err(e) => panic!("expected Error::Weights, got {e:?}"),
            Ok(_) => panic!("expected an error, got Ok"),
        }
    }

    #[test]
    fn reads_f32_f16_bf16_exactly() {
        let f = SafetensorsFile::from_bytes(sample_file()).unwrap();
        let a = f.tensor("model.a").unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        let want = [1.0f32, -2.0, 3.5, 0.0, -0.0, 1e-40];
        assert_eq!(
            a.data.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            want.map(f32::to_bits).to_vec()
        );
        let h = f.tensor("model.h").unwrap();
        assert_eq!(h.shape, vec![4]);
        assert_eq!(
            h.data,
            vec![0.5, -1.25, 65504.0, f16::from_f32(6e-8).to_f32()]
        );
        let b = f.tensor("model.b").unwrap();
        assert_eq!(b.shape, vec![3, 1]);
        assert_eq!(b.data, vec![1.0, -3.0, bf16::from_f32(1e30).to_f32()]);
    }

    #[test]
    fn a_file_read_in_pieces_decodes_as_one_held_whole() {
        // A bf16 tensor of three pieces and a bit.
        let n = 3 * PIECE / 2 + 5;
        let big: Vec<u8> = (0..n)
            .flat_map(|i| bf16::from_f32(i as f32 * 0.25 - 3.0).to_le_bytes())
            .collect();
        let view = TensorView::new(Dtype::BF16, vec![n], &big).unwrap();
        let bytes = safetensors::serialize([("model.big", view)], None).unwrap();
        let largest = std::rc::Rc::new(std::cell::Cell::new(0));
        let file = SafetensorsFile::from_file(Box::new(Copied {
            bytes: bytes.clone(),
            largest: largest.clone(),
        }))
        .unwrap();
        largest.set(0);
        let t = file.tensor("model.big").unwrap();
        assert_eq!(largest.get(), PIECE, "a tensor is read a piece at a time");
        assert_eq!(t.shape, vec![n]);
        assert_eq!(t.data[0], -3.0);
        assert_eq!(
            t.data[n - 1],
            bf16::from_f32((n - 1) as f32 * 0.25 - 3.0).to_f32()
        );
        assert_eq!(
            SafetensorsFile::from_bytes(bytes)
                .unwrap()
                .tensor("model.big")
                .unwrap(),
            t
        );
        // The sample read from copies gives what it gives held whole.
        let sample = sample_file();
        let whole = SafetensorsFile::from_bytes(sample.clone()).unwrap();
        let copied = SafetensorsFile::from_file(Box::new(Copied {
            bytes: sample.clone(),
            largest,
        }))
        .unwrap();
        for name in ["model.a", "model.h", "model.b"] {
            assert_eq!(copied.tensor(name).unwrap(), whole.tensor(name).unwrap());
        }
        let mut hasher = crate::fingerprint::Hasher::new();
        copied.hash_into(&mut hasher).unwrap();
        assert_eq!(hasher.digest(), crate::fingerprint::hash(&[&sample]));
    }

    #[test]
    fn names_are_in_file_order_and_contains_works() {
        let f = SafetensorsFile::from_bytes(sample_file()).unwrap();
        let mut names = f.names();
        assert_eq!(names.len(), 4);
        // The crate's writer orders by dtype alignment then name; we report data order.
        assert_eq!(names[0], "model.ids");
        names.sort();
        assert_eq!(names, vec!["model.a", "model.b", "model.h", "model.ids"]);
        assert!(f.contains("model.h"));
        assert!(!f.contains("model.x"));
    }

    #[test]
    fn unsupported_dtype_names_tensor_dtype_and_alternatives() {
        let f = SafetensorsFile::from_bytes(sample_file()).unwrap();
        match f.tensor("model.ids") {
            Err(Error::Weights(m)) => {
                assert!(
                    m.contains("model.ids") && m.contains("I64") && m.contains("BF16"),
                    "{m}"
                )
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn missing_tensor_is_a_tensor_error_naming_it() {
        let f = SafetensorsFile::from_bytes(sample_file()).unwrap();
        match f.tensor("lm_head.weight") {
            Err(Error::Tensor { name, problem }) => {
                assert_eq!(name, "lm_head.weight");
                assert!(problem.contains("4 tensors"), "{problem}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample_file();
        for cut in 0..bytes.len() {
            weights_err(SafetensorsFile::from_bytes(bytes[..cut].to_vec()));
        }
    }

    #[test]
    fn truncated_data_names_tensor_and_sizes() {
        let bytes = sample_file();
        let m = weights_err(SafetensorsFile::from_bytes(
            bytes[..bytes.len() - 1].to_vec(),
        ));
        assert!(
            m.contains("truncated")
                && m.contains("model.h")
                && m.contains(&format!("has {}", bytes.len() - 1)),
            "{m}"
        );
    }

    #[test]
    fn header_longer_than_file() {
        let mut bytes = sample_file();
        bytes[..8].copy_from_slice(&1000u64.to_le_bytes());
        let m = weights_err(SafetensorsFile::from_bytes(bytes));
        assert!(m.contains("truncated") && m.contains("1000"), "{m}");
        let m = weights_err(SafetensorsFile::from_bytes(u64::MAX.to_le_bytes().to_vec()));
        assert!(m.contains("limit"), "{m}");
    }

    #[test]
    fn bad_json_and_bad_entries() {
        let m = weights_err(SafetensorsFile::from_bytes(raw_file("{not json", &[])));
        assert!(m.contains("JSON"), "{m}");
        let m = weights_err(SafetensorsFile::from_bytes(raw_file(
            r#"{"w":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}}"#,
            &[0; 4],
        )));
        assert!(m.contains("`w`") && m.contains("F99"), "{m}");
        let mut not_utf8 = 2u64.to_le_bytes().to_vec();
        not_utf8.extend_from_slice(&[0xff, 0xfe]);
        let m = weights_err(SafetensorsFile::from_bytes(not_utf8));
        assert!(m.contains("UTF-8"), "{m}");
    }

    #[test]
    fn offsets_out_of_range_or_inconsistent() {
        let m = weights_err(SafetensorsFile::from_bytes(raw_file(
            r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
            &[0; 8],
        )));
        assert!(m.contains("truncated") && m.contains("`w`"), "{m}");
        let m = weights_err(SafetensorsFile::from_bytes(raw_file(
            r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#,
            &[0; 8],
        )));
        assert!(m.contains("`w`") && m.contains("needs 16 bytes"), "{m}");
        let m = weights_err(SafetensorsFile::from_bytes(raw_file(
            r#"{"w":{"dtype":"F32","shape":[8],"data_offsets":[16,8]}}"#,
            &[0; 16],
        )));
        assert!(m.contains("`w`"), "{m}");
        let huge = format!(
            r#"{{"w":{{"dtype":"F32","shape":[{0},{0}],"data_offsets":[0,8]}}}}"#,
            usize::MAX / 2
        );
        let m = weights_err(SafetensorsFile::from_bytes(raw_file(&huge, &[0; 8])));
        assert!(m.contains("overflows"), "{m}");
        let end_overflow = format!(
            r#"{{"a":{{"dtype":"U8","shape":[8],"data_offsets":[{},{}]}}}}"#,
            usize::MAX - 8,
            usize::MAX
        );
        let m = weights_err(SafetensorsFile::from_bytes(raw_file(
            &end_overflow,
            &[0; 8],
        )));
        assert!(m.contains("truncated"), "{m}");
    }

    #[test]
    fn metadata_entry_and_empty_file_are_fine() {
        let f = SafetensorsFile::from_bytes(raw_file(r#"{"__metadata__":{"format":"pt"}}"#, &[]))
            .unwrap();
        assert!(f.names().is_empty());
        match f.tensor("x") {
            Err(Error::Tensor { problem, .. }) => assert!(problem.contains("no tensors")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn gguf_bytes_get_a_hint() {
        let m = weights_err(SafetensorsFile::from_bytes(
            b"GGUF\x03\0\0\0\0\0\0\0".to_vec(),
        ));
        assert!(m.contains("GGUF"), "{m}");
    }

    /// Random byte corruption must only ever produce errors, never panics.
    #[test]
    fn corrupted_bytes_never_panic() {
        let base = sample_file();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let mut bytes = base.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() % bytes.len() as u64) as usize;
                bytes[i] = next() as u8;
            }
            if let Ok(f) = SafetensorsFile::from_bytes(bytes) {
                for name in f.names() {
                    let _ = f.tensor(&name);
                }
            }
        }
    }
}
