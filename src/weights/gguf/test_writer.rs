//! Writes GGUF files by hand for tests, so they can also write broken ones.

use super::{GgmlType, ALIGNMENT_KEY};

/// A GGUF file under construction: metadata, tensor infos and data, as raw bytes.
pub(crate) struct Builder {
    pub(crate) version: u32,
    pub(crate) alignment: usize,
    pub(crate) n_kv: u64,
    pub(crate) kv: Vec<u8>,
    pub(crate) n_tensors: u64,
    pub(crate) infos: Vec<u8>,
    pub(crate) data: Vec<u8>,
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

pub(crate) fn str_bytes(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    put_str(&mut out, s);
    out
}

/// Encoded array value (element type, count, elements), as it follows a type-9 tag.
pub(crate) fn array_bytes(elem_ty: u32, count: u64, elems: &[u8]) -> Vec<u8> {
    let mut out = elem_ty.to_le_bytes().to_vec();
    out.extend(count.to_le_bytes());
    out.extend(elems);
    out
}

impl Builder {
    pub(crate) fn new() -> Self {
        Self {
            version: 3,
            alignment: 32,
            n_kv: 0,
            kv: vec![],
            n_tensors: 0,
            infos: vec![],
            data: vec![],
        }
    }

    pub(crate) fn kv(mut self, key: &str, ty: u32, value: &[u8]) -> Self {
        put_str(&mut self.kv, key);
        self.kv.extend(ty.to_le_bytes());
        self.kv.extend(value);
        self.n_kv += 1;
        self
    }

    pub(crate) fn kv_u32(self, key: &str, v: u32) -> Self {
        self.kv(key, 4, &v.to_le_bytes())
    }

    pub(crate) fn kv_str(self, key: &str, v: &str) -> Self {
        self.kv(key, 8, &str_bytes(v))
    }

    pub(crate) fn align(mut self, alignment: u32) -> Self {
        self.alignment = alignment as usize;
        self.kv_u32(ALIGNMENT_KEY, alignment)
    }

    /// Adds an info record only, pointing wherever the test says.
    pub(crate) fn tensor_info(mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        put_str(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend(offset.to_le_bytes());
        self.n_tensors += 1;
        self
    }

    /// Adds a tensor and its data, correctly aligned.
    pub(crate) fn tensor(mut self, name: &str, dims: &[u64], ty: GgmlType, data: &[u8]) -> Self {
        let offset = self.data.len().next_multiple_of(self.alignment);
        self.data.resize(offset, 0);
        self.data.extend(data);
        self.tensor_info(name, dims, ty.id(), offset as u64)
    }

    pub(crate) fn build(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(&self.kv);
        out.extend(&self.infos);
        out.resize(out.len().next_multiple_of(self.alignment), 0);
        out.extend(&self.data);
        out
    }
}
