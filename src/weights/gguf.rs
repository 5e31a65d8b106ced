// TEMPORARY STUB (lead) — replaced by the real reader.
use super::HostTensor;
use crate::error::{Error, Result};
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array(Vec<MetaValue>),
}
pub struct GgufFile;
impl GgufFile {
    pub fn from_bytes(_bytes: Vec<u8>) -> Result<Self> {
        Err(Error::weights("stub"))
    }
    pub fn metadata(&self, _key: &str) -> Option<&MetaValue> {
        None
    }
    pub fn get_u32(&self, _key: &str) -> Result<u32> {
        Err(Error::weights("stub"))
    }
    pub fn get_f32(&self, _key: &str) -> Result<f32> {
        Err(Error::weights("stub"))
    }
    pub fn get_str(&self, _key: &str) -> Result<&str> {
        Err(Error::weights("stub"))
    }
    pub fn get_str_array(&self, _key: &str) -> Result<Vec<&str>> {
        Err(Error::weights("stub"))
    }
    pub fn get_i32_array(&self, _key: &str) -> Result<Vec<i32>> {
        Err(Error::weights("stub"))
    }
    pub fn contains(&self, _name: &str) -> bool {
        false
    }
    pub fn tensor(&self, _name: &str) -> Result<HostTensor> {
        Err(Error::weights("stub"))
    }
}
