//! GGUF metadata values, typed as the file declares them.

/// One metadata value, typed as the file declares it.
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
    /// Each element a whole `MetaValue` (16 bytes in wasm, 32 natively), however
    /// few bytes the file stores it in: the reader charges that against the
    /// memory budget before allocating.
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// Human-readable type for error messages, e.g. `array of string`.
    pub fn type_name(&self) -> String {
        match self {
            MetaValue::U8(_) => "u8".into(),
            MetaValue::I8(_) => "i8".into(),
            MetaValue::U16(_) => "u16".into(),
            MetaValue::I16(_) => "i16".into(),
            MetaValue::U32(_) => "u32".into(),
            MetaValue::I32(_) => "i32".into(),
            MetaValue::F32(_) => "f32".into(),
            MetaValue::Bool(_) => "bool".into(),
            MetaValue::Str(_) => "string".into(),
            MetaValue::U64(_) => "u64".into(),
            MetaValue::I64(_) => "i64".into(),
            MetaValue::F64(_) => "f64".into(),
            MetaValue::Array(items) => match items.first() {
                Some(first) => format!("array of {}", first.type_name()),
                None => "empty array".into(),
            },
        }
    }

    /// Type plus value for scalars; just the type for strings and arrays, which may be huge.
    pub(super) fn describe(&self) -> String {
        match self {
            MetaValue::Str(_) | MetaValue::Array(_) => self.type_name(),
            MetaValue::U8(v) => format!("u8 {v}"),
            MetaValue::I8(v) => format!("i8 {v}"),
            MetaValue::U16(v) => format!("u16 {v}"),
            MetaValue::I16(v) => format!("i16 {v}"),
            MetaValue::U32(v) => format!("u32 {v}"),
            MetaValue::I32(v) => format!("i32 {v}"),
            MetaValue::F32(v) => format!("f32 {v}"),
            MetaValue::Bool(v) => format!("bool {v}"),
            MetaValue::U64(v) => format!("u64 {v}"),
            MetaValue::I64(v) => format!("i64 {v}"),
            MetaValue::F64(v) => format!("f64 {v}"),
        }
    }

    /// Any integer variant widened losslessly, so getters can accept whatever width a converter chose.
    pub(super) fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v.into(),
            MetaValue::I8(v) => v.into(),
            MetaValue::U16(v) => v.into(),
            MetaValue::I16(v) => v.into(),
            MetaValue::U32(v) => v.into(),
            MetaValue::I32(v) => v.into(),
            MetaValue::U64(v) => v.into(),
            MetaValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    pub(super) fn as_float(&self) -> Option<f32> {
        match *self {
            MetaValue::F32(v) => Some(v),
            MetaValue::F64(v) => Some(v as f32),
            _ => None,
        }
    }
}
