//! The reader against gguf-py's files and dequantizers, and against broken files.

use std::fmt;

use super::test_writer::{array_bytes, str_bytes, Builder};
use super::*;
use crate::weights::bytes::Copied;

macro_rules! fixture {
    ($name:literal) => {
        (
            include_bytes!(concat!("../../../tests/fixtures/quants/", $name, ".bin")).as_slice(),
            include_bytes!(concat!("../../../tests/fixtures/quants/", $name, ".f32")).as_slice(),
        )
    };
}

const TINY: &[u8] = include_bytes!("../../../tests/fixtures/gguf/tiny.gguf");

fn fixtures() -> Vec<(GgmlType, &'static [u8], &'static [u8])> {
    let all = [
        (GgmlType::F16, fixture!("f16")),
        (GgmlType::BF16, fixture!("bf16")),
        (GgmlType::Q4_0, fixture!("q4_0")),
        (GgmlType::Q4_1, fixture!("q4_1")),
        (GgmlType::Q5_0, fixture!("q5_0")),
        (GgmlType::Q5_1, fixture!("q5_1")),
        (GgmlType::Q8_0, fixture!("q8_0")),
        (GgmlType::Q2_K, fixture!("q2_k")),
        (GgmlType::Q3_K, fixture!("q3_k")),
        (GgmlType::Q4_K, fixture!("q4_k")),
        (GgmlType::Q5_K, fixture!("q5_k")),
        (GgmlType::Q6_K, fixture!("q6_k")),
    ];
    all.into_iter()
        .map(|(ty, (raw, want))| (ty, raw, want))
        .collect()
}

fn le_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .as_chunks::<4>()
        .0
        .iter()
        .map(|b| f32::from_le_bytes(*b))
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Exact comparison, bit for bit (so -0.0 vs 0.0 counts), with a useful failure message.
fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{what}: element {i} is {g:e}, gguf-py says {w:e}"
        );
    }
}

fn weights_err<T: fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(Error::Weights(m)) => m,
        other => panic!("expected Error::Weights, got {other:?}"),
    }
}

fn config_err<T: fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(Error::Config(m)) => m,
        other => panic!("expected Error::Config, got {other:?}"),
    }
}

/// A valid file exercising every metadata value type and a few tensor types.
fn sample_file() -> Vec<u8> {
    let (q8, _) = fixture!("q8_0");
    let (q4k, _) = fixture!("q4_k");
    let tokens: Vec<u8> = ["<s>", "hi", ""]
        .iter()
        .flat_map(|s| str_bytes(s))
        .collect();
    let inner = array_bytes(5, 2, &[1, 0, 0, 0, 2, 0, 0, 0]);
    Builder::new()
        .kv_str("general.architecture", "llama")
        .kv_u32("llama.block_count", 2)
        .kv("u8", 0, &[7])
        .kv("i8", 1, &[0xfb])
        .kv("u16", 2, &[1, 2])
        .kv("i16", 3, &[0xff, 0xff])
        .kv("i32", 5, &(-3i32).to_le_bytes())
        .kv("f32", 6, &1.5f32.to_le_bytes())
        .kv("bool", 7, &[1])
        .kv("u64", 10, &(1u64 << 40).to_le_bytes())
        .kv("i64", 11, &(-1i64).to_le_bytes())
        .kv("f64", 12, &0.25f64.to_le_bytes())
        .kv("tokens", 9, &array_bytes(8, 3, &tokens))
        .kv("nested", 9, &array_bytes(9, 1, &inner))
        .tensor(
            "f32",
            &[3, 2],
            GgmlType::F32,
            &f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        )
        .tensor("q8_0", &[64, 4], GgmlType::Q8_0, q8)
        .tensor("q4_k", &[256], GgmlType::Q4_K, &q4k[..144])
        .build()
}

#[test]
fn dequantizers_match_gguf_py_bit_for_bit() {
    for (ty, raw, want) in fixtures() {
        let want = le_f32(want);
        let mut got = vec![f32::NAN; want.len()];
        (ty.dequantizer().unwrap())(raw, &mut got);
        assert_bits_eq(ty.name(), &got, &want);
    }
}

#[test]
fn quantized_tensors_load_through_a_file_with_reversed_shape() {
    for (ty, raw, want) in fixtures() {
        let n_blocks = raw.len() / ty.type_size();
        let row = (2 * ty.block_size()) as u64;
        let rows = (n_blocks / 2) as u64;
        let file = GgufFile::from_bytes(Builder::new().tensor("w", &[row, rows], ty, raw).build())
            .unwrap();
        assert_eq!(file.tensor_type("w").unwrap(), ty);
        let t = file.tensor("w").unwrap();
        assert_eq!(t.shape, vec![rows as usize, row as usize], "{ty}");
        assert_bits_eq(ty.name(), &t.data, &le_f32(want));
        // The grouped integer form holds exactly the same weights, for every quantized type.
        let grouped = file.quantized("w").unwrap();
        let expect_grouped = ![GgmlType::F16, GgmlType::BF16].contains(&ty);
        assert_eq!(grouped.is_some(), expect_grouped, "{ty}");
        if let Some(m) = grouped {
            assert_eq!(m.shape(), [rows as usize, row as usize], "{ty}");
            assert_bits_eq(ty.name(), &m.dequantize(), &le_f32(want));
        }
    }
}

#[test]
fn reads_file_written_by_gguf_py() {
    let f = GgufFile::from_bytes(TINY.to_vec()).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 64);
    assert_eq!(
        f.tensor_names(),
        [
            "f32.weight",
            "f32.3d",
            "f16.bias",
            "q8_0.weight",
            "q4_k.weight"
        ]
    );
    assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(f.get_str("general.name").unwrap(), "tiny test");
    assert_eq!(f.get_u32("llama.context_length").unwrap(), 2048);
    assert_eq!(
        f.get_u32("llama.block_count").unwrap(),
        2,
        "u64 value must be accepted"
    );
    assert_eq!(f.get_f32("llama.rope.freq_base").unwrap(), 10000.0);
    assert_eq!(f.get_f32("test.f64").unwrap(), 0.125);
    assert_eq!(f.metadata("test.flag"), Some(&MetaValue::Bool(true)));
    assert_eq!(f.metadata("test.negative_i8"), Some(&MetaValue::I8(-5)));
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens").unwrap(),
        ["<s>", "hello", "w\u{f6}rld"]
    );
    assert_eq!(
        f.get_f32_array("tokenizer.ggml.scores").unwrap(),
        [0.0, -1.5, -2.25]
    );
    assert_eq!(
        f.get_i32_array("tokenizer.ggml.token_type").unwrap(),
        [3, 1, 1]
    );
    let nested = MetaValue::Array(vec![
        MetaValue::Array(vec![MetaValue::I32(1), MetaValue::I32(2)]),
        MetaValue::Array(vec![MetaValue::I32(3)]),
    ]);
    assert_eq!(f.metadata("test.nested"), Some(&nested));

    let t = f.tensor("f32.weight").unwrap();
    assert_eq!(
        (t.shape, t.data),
        (vec![2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    );
    let t = f.tensor("f32.3d").unwrap();
    assert_eq!(t.shape, vec![2, 3, 4]);
    assert_eq!(t.data, (0..24).map(|i| i as f32 - 12.0).collect::<Vec<_>>());
    let t = f.tensor("f16.bias").unwrap();
    assert_eq!((t.shape, t.data), (vec![4], vec![0.5, -1.0, 2.0, 65504.0]));
    let t = f.tensor("q8_0.weight").unwrap();
    assert_eq!(t.shape, vec![2, 128]);
    assert_bits_eq("q8_0.weight", &t.data, &le_f32(fixture!("q8_0").1));
    let t = f.tensor("q4_k.weight").unwrap();
    assert_eq!(t.shape, vec![2, 512]);
    assert_bits_eq("q4_k.weight", &t.data, &le_f32(fixture!("q4_k").1));
}

#[test]
fn reads_every_metadata_type() {
    let f = GgufFile::from_bytes(sample_file()).unwrap();
    assert_eq!(f.metadata("u8"), Some(&MetaValue::U8(7)));
    assert_eq!(f.metadata("i8"), Some(&MetaValue::I8(-5)));
    assert_eq!(f.metadata("u16"), Some(&MetaValue::U16(0x0201)));
    assert_eq!(f.metadata("i16"), Some(&MetaValue::I16(-1)));
    assert_eq!(f.metadata("i32"), Some(&MetaValue::I32(-3)));
    assert_eq!(f.metadata("f32"), Some(&MetaValue::F32(1.5)));
    assert_eq!(f.metadata("bool"), Some(&MetaValue::Bool(true)));
    assert_eq!(f.metadata("u64"), Some(&MetaValue::U64(1 << 40)));
    assert_eq!(f.metadata("i64"), Some(&MetaValue::I64(-1)));
    assert_eq!(f.metadata("f64"), Some(&MetaValue::F64(0.25)));
    assert_eq!(f.get_str_array("tokens").unwrap(), ["<s>", "hi", ""]);
    assert_eq!(f.get_u32("u8").unwrap(), 7);
    assert_eq!(f.get_u32("u16").unwrap(), 0x0201);
    assert_eq!(f.metadata_keys().len(), 14);
    assert_eq!(f.tensor_shape("q8_0").unwrap(), vec![4, 64]);
    assert!(f.contains("q4_k") && !f.contains("q4_k.weight"));
    let t = f.tensor("f32").unwrap();
    assert_eq!(
        (t.shape, t.data),
        (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    );
    assert_eq!(
        f.tensor("q4_k").unwrap().data,
        le_f32(fixture!("q4_k").1)[..256]
    );
}

#[test]
fn getters_explain_missing_and_mistyped_keys() {
    let f = GgufFile::from_bytes(sample_file()).unwrap();
    assert_eq!(
        config_err(f.get_u32("llama.nope")),
        "GGUF metadata key `llama.nope` is missing"
    );
    assert_eq!(
        config_err(f.get_f32("general.architecture")),
        "GGUF metadata key `general.architecture` has type string, expected f32"
    );
    assert_eq!(
        config_err(f.get_str("u8")),
        "GGUF metadata key `u8` has type u8, expected string"
    );
    assert!(config_err(f.get_u32("i8")).contains("-5, which does not fit in u32"));
    assert!(config_err(f.get_u32("u64")).contains("does not fit"));
    assert!(config_err(f.get_u32("f32")).contains("has type f32, expected an integer"));
    assert!(config_err(f.get_str_array("u8")).contains("has type u8, expected array of string"));
    assert!(config_err(f.get_i32_array("tokens")).contains("element 0 is string"));
    assert!(config_err(f.get_str_array("nested"))
        .contains("element 0 is array of i32, expected string"));
    let wide = Builder::new().kv(
        "ids",
        9,
        &array_bytes(11, 2, &[[0; 8], (-3_000_000_000i64).to_le_bytes()].concat()),
    );
    let f = GgufFile::from_bytes(wide.build()).unwrap();
    assert_eq!(
        config_err(f.get_i32_array("ids")),
        "GGUF metadata key `ids` element 1 is i64 -3000000000, expected i32"
    );
}

#[test]
fn missing_tensor_is_a_tensor_error_naming_it() {
    let f = GgufFile::from_bytes(sample_file()).unwrap();
    for r in [
        f.tensor("output.weight").map(|_| ()),
        f.tensor_type("output.weight").map(|_| ()),
    ] {
        match r {
            Err(Error::Tensor { name, problem }) => {
                assert_eq!(name, "output.weight");
                assert!(
                    problem.contains("3 tensors") && problem.contains("`f32`"),
                    "{problem}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    for bytes in [sample_file(), TINY.to_vec()] {
        for cut in 0..bytes.len() {
            weights_err(GgufFile::from_bytes(bytes[..cut].to_vec()));
        }
    }
}

#[test]
fn truncation_messages_say_where() {
    let bytes = sample_file();
    let m = weights_err(GgufFile::from_bytes(bytes[..bytes.len() - 10].to_vec()));
    assert!(
        m.contains("truncated")
            && m.contains("`q4_k`")
            && m.contains(&format!("has {}", bytes.len() - 10)),
        "{m}"
    );
    let m = weights_err(GgufFile::from_bytes(bytes[..30].to_vec()));
    assert!(
        m.contains("truncated or corrupt") && m.contains("declares 14 metadata entries"),
        "{m}"
    );
    let small = Builder::new().kv_str("general.name", "hello world").build();
    let m = weights_err(GgufFile::from_bytes(small[..64].to_vec()));
    assert!(
        m.contains(
            "truncated: metadata value of `general.name` needs bytes 56..67 but the file has 64"
        ),
        "{m}"
    );
}

#[test]
fn bad_magic_and_versions() {
    assert!(weights_err(GgufFile::from_bytes(vec![])).contains("not a GGUF file"));
    let mut bytes = sample_file();
    bytes[..4].copy_from_slice(b"GGUX");
    let m = weights_err(GgufFile::from_bytes(bytes));
    assert!(m.contains("not a GGUF file") && m.contains("GGUX"), "{m}");
    let mut st = 2u64.to_le_bytes().to_vec();
    st.extend(b"{}");
    assert!(weights_err(GgufFile::from_bytes(st)).contains("safetensors"));

    let with_version = |v: u32| {
        let mut b = Builder::new();
        b.version = v;
        GgufFile::from_bytes(b.build())
    };
    assert!(with_version(2).is_ok());
    assert!(weights_err(with_version(1)).contains("version 1"));
    assert!(weights_err(with_version(3u32.swap_bytes())).contains("big-endian"));
    assert!(weights_err(with_version(9)).contains("version 9"));
}

#[test]
fn unknown_tensor_type_fails_only_when_read() {
    let file = Builder::new()
        .kv_u32("a", 1)
        .tensor_info("blk.0.ffn_up.weight", &[32], 99, 0)
        .build();
    let f = GgufFile::from_bytes(file).unwrap();
    for m in [
        weights_err(f.tensor_type("blk.0.ffn_up.weight")),
        weights_err(f.tensor("blk.0.ffn_up.weight")),
    ] {
        assert!(
            m.contains("`blk.0.ffn_up.weight`") && m.contains("type id 99") && m.contains("Q4_K"),
            "{m}"
        );
    }
}

#[test]
fn known_but_unsupported_type_is_named() {
    let f = GgufFile::from_bytes(
        Builder::new()
            .tensor("w", &[256], GgmlType::IQ2_XXS, &[0; 66])
            .build(),
    )
    .unwrap();
    assert_eq!(f.tensor_type("w").unwrap(), GgmlType::IQ2_XXS);
    let m = weights_err(f.tensor("w"));
    assert!(
        m.contains("`w`") && m.contains("IQ2_XXS") && m.contains("Q8_0"),
        "{m}"
    );
}

#[test]
fn bad_tensor_infos() {
    let m = weights_err(GgufFile::from_bytes(
        Builder::new().tensor_info("w", &[1; 5], 0, 0).build(),
    ));
    assert!(m.contains("`w`") && m.contains("5 dimensions"), "{m}");
    let m = weights_err(GgufFile::from_bytes(
        Builder::new()
            .tensor_info("w", &[1 << 40, 1 << 40], 0, 0)
            .build(),
    ));
    assert!(m.contains("overflows"), "{m}");
    let m = weights_err(GgufFile::from_bytes(
        Builder::new().tensor_info("w", &[u64::MAX], 0, 0).build(),
    ));
    assert!(m.contains("negative"), "{m}");
    let m = weights_err(GgufFile::from_bytes(
        Builder::new().tensor_info("w", &[100], 0, 0).build(),
    ));
    assert!(
        m.contains("truncated") && m.contains("`w`") && m.contains("needs bytes 64..464"),
        "{m}"
    );
    let m = weights_err(GgufFile::from_bytes(
        Builder::new()
            .tensor_info("w", &[1], 0, u64::MAX - 3)
            .build(),
    ));
    assert!(m.contains("alignment"), "{m}");
    let m = weights_err(GgufFile::from_bytes(
        Builder::new()
            .tensor_info("w", &[1], 0, u64::MAX - 31)
            .build(),
    ));
    assert!(m.contains("truncated"), "{m}");
    let m = weights_err(GgufFile::from_bytes(
        Builder::new()
            .tensor("a", &[1], GgmlType::F32, &[0; 4])
            .tensor_info("w", &[1], 0, 4)
            .build(),
    ));
    assert!(m.contains("`w`") && m.contains("alignment 32"), "{m}");
    let m = weights_err(GgufFile::from_bytes(
        Builder::new()
            .tensor("w", &[16, 2], GgmlType::Q8_0, &[0; 34])
            .build(),
    ));
    assert!(m.contains("`w`") && m.contains("Q8_0 block size 32"), "{m}");
    let dup = Builder::new()
        .tensor("w", &[1], GgmlType::F32, &[0; 4])
        .tensor("w", &[1], GgmlType::F32, &[0; 4]);
    assert!(weights_err(GgufFile::from_bytes(dup.build())).contains("appears twice"));
}

#[test]
fn absurd_counts_are_rejected_before_allocating() {
    let mut b = Builder::new().kv_u32("a", 1);
    b.n_kv = u64::MAX;
    assert!(weights_err(GgufFile::from_bytes(b.build())).contains("declares"));
    let mut b = Builder::new();
    b.n_tensors = u64::MAX / 2;
    assert!(weights_err(GgufFile::from_bytes(b.build())).contains("declares"));
    let mut key = (u64::MAX).to_le_bytes().to_vec();
    key.extend([0; 16]);
    let mut b = Builder::new();
    b.kv = key;
    b.n_kv = 1;
    let m = weights_err(GgufFile::from_bytes(b.build()));
    assert!(
        m.contains("metadata entry #0") && m.contains("more than the whole file"),
        "{m}"
    );
    let huge_array = array_bytes(0, u64::MAX, &[]);
    assert!(weights_err(GgufFile::from_bytes(
        Builder::new().kv("a", 9, &huge_array).build()
    ))
    .contains("declares"));
    let huge_strings = array_bytes(8, 1 << 50, &[0; 64]);
    assert!(weights_err(GgufFile::from_bytes(
        Builder::new().kv("a", 9, &huge_strings).build()
    ))
    .contains("declares"));
}

/// A u8 array fits in its file, one byte per element, but each element is a
/// whole `MetaValue` in memory: an array whose values would take memory past
/// the budget is refused before they are allocated (in wasm, memory past
/// 4 GiB aborts the engine).
#[test]
fn a_metadata_array_is_charged_its_size_in_memory() {
    let elem = size_of::<MetaValue>() as u64;
    let count = crate::budget::MEMORY_BUDGET_BYTES / elem + 1;
    let bytes = Builder::new()
        .kv("big", 9, &array_bytes(0, count, &vec![7; count as usize]))
        .build();
    assert!(
        (bytes.len() as u64) < crate::budget::MEMORY_BUDGET_BYTES / 8,
        "the file itself is small"
    );
    // Not `unwrap_err`: it would print the file's metadata, all of it.
    let Err(err) = GgufFile::from_bytes(bytes) else {
        panic!(
            "an array of {count} u8 values was read into {} bytes of memory",
            count * elem
        );
    };
    assert!(matches!(err, Error::OutOfMemory(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "out of memory: metadata value of `big` ({count} array elements) needs {} ({} bytes): \
             more than the memory budget allows (3.5 GiB)",
            crate::budget::human(count * elem),
            count * elem
        )
    );
    // Under the budget, the same array is read.
    let small = Builder::new()
        .kv("small", 9, &array_bytes(0, 3, &[1, 2, 3]))
        .build();
    let f = GgufFile::from_bytes(small).unwrap();
    assert_eq!(f.get_i32_array("small").unwrap(), [1, 2, 3]);
}

/// The metadata table is charged too: 2^25 entries of 13 bytes fit in a file
/// of 436 MB, but their hash table would take 3.6 GiB, refused before the
/// first entry is read.
#[test]
fn a_metadata_table_is_charged_its_size_in_memory() {
    let count = 1u64 << 25;
    // Zeros allocated lazily: only the header's page is written.
    let mut bytes = vec![0u8; 24 + 13 * count as usize];
    bytes[..4].copy_from_slice(b"GGUF");
    bytes[4..8].copy_from_slice(&3u32.to_le_bytes());
    bytes[16..24].copy_from_slice(&count.to_le_bytes());
    let Err(err) = GgufFile::from_bytes(bytes) else {
        panic!("{count} empty metadata entries were read");
    };
    let message = err.to_string();
    assert!(matches!(err, Error::OutOfMemory(_)), "{err:?}");
    assert!(
        message.starts_with(&format!(
            "out of memory: the header ({count} metadata entries) needs 3.6 GiB"
        )),
        "{message}"
    );
}

#[test]
fn bad_metadata() {
    let m = weights_err(GgufFile::from_bytes(
        Builder::new().kv("general.x", 13, &[0; 8]).build(),
    ));
    assert!(
        m.contains("unknown metadata value type 13") && m.contains("general.x"),
        "{m}"
    );
    let m = weights_err(GgufFile::from_bytes(
        Builder::new()
            .kv("a", 9, &array_bytes(42, 1, &[0; 8]))
            .build(),
    ));
    assert!(m.contains("unknown array element type 42"), "{m}");
    let mut deep = array_bytes(0, 0, &[]);
    for _ in 0..20 {
        deep = array_bytes(9, 1, &deep);
    }
    assert!(weights_err(GgufFile::from_bytes(
        Builder::new().kv("a", 9, &deep).build()
    ))
    .contains("nested"));
    let dup = Builder::new().kv_u32("a", 1).kv_u32("a", 2);
    assert!(weights_err(GgufFile::from_bytes(dup.build())).contains("`a` appears twice"));
    let bad_utf8 = Builder::new().kv("s", 8, &[2, 0, 0, 0, 0, 0, 0, 0, 0xff, b'x']);
    assert_eq!(
        GgufFile::from_bytes(bad_utf8.build())
            .unwrap()
            .get_str("s")
            .unwrap(),
        "\u{fffd}x"
    );
}

#[test]
fn alignment_is_respected_and_validated() {
    let f = GgufFile::from_bytes(
        Builder::new()
            .align(128)
            .tensor("a", &[1], GgmlType::F32, &f32_bytes(&[1.0]))
            .tensor("b", &[2], GgmlType::F32, &f32_bytes(&[2.0, 3.0]))
            .build(),
    )
    .unwrap();
    assert_eq!(f.alignment(), 128);
    assert_eq!(f.tensor("b").unwrap().data, vec![2.0, 3.0]);
    for bad in [0, 3, 48] {
        let m = weights_err(GgufFile::from_bytes(
            Builder::new().kv_u32(ALIGNMENT_KEY, bad).build(),
        ));
        assert!(m.contains("power of two"), "{m}");
    }
    let m = weights_err(GgufFile::from_bytes(
        Builder::new().kv_str(ALIGNMENT_KEY, "32").build(),
    ));
    assert!(m.contains("power of two"), "{m}");
}

#[test]
fn empty_and_scalar_tensors() {
    let f = GgufFile::from_bytes(
        Builder::new()
            .tensor("empty", &[0, 3], GgmlType::Q8_0, &[])
            .tensor("scalar", &[], GgmlType::F32, &f32_bytes(&[7.0]))
            .build(),
    )
    .unwrap();
    let t = f.tensor("empty").unwrap();
    assert_eq!((t.shape, t.data.len()), (vec![3, 0], 0));
    let t = f.tensor("scalar").unwrap();
    assert_eq!((t.shape, t.data), (vec![], vec![7.0]));
}

#[test]
fn type_table_is_consistent() {
    for &ty in GgmlType::ALL {
        assert_eq!(GgmlType::from_id(ty.id()), Some(ty));
        assert!(ty.block_size() > 0 && ty.type_size() > 0);
    }
    assert_eq!(GgmlType::from_id(4), None);
    assert_eq!(
        GgmlType::supported_list(),
        "F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16"
    );
}

/// Random byte corruption must only ever produce errors, never panics.
#[test]
fn corrupted_bytes_never_panic() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for base in [sample_file(), TINY.to_vec()] {
        for _ in 0..3000 {
            let mut bytes = base.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() % bytes.len() as u64) as usize;
                bytes[i] = next() as u8;
            }
            if let Ok(f) = GgufFile::from_bytes(bytes) {
                for name in f.tensor_names() {
                    let _ = f.tensor(&name);
                }
                for key in f.metadata_keys() {
                    let _ = (
                        f.get_u32(&key),
                        f.get_f32(&key),
                        f.get_str_array(&key),
                        f.get_i32_array(&key),
                    );
                }
            }
        }
    }
}

#[test]
fn a_file_read_in_pieces_loads_as_one_held_whole() {
    // A header longer than the first read, and a tensor several pieces long.
    let (rows, cols) = (320, 8192);
    let blocks = rows * cols / 32;
    let mut raw = Vec::with_capacity(blocks * 34);
    for b in 0..blocks {
        raw.extend(half::f16::from_f32(0.5 + (b % 7) as f32).to_le_bytes());
        raw.extend((0..32).map(|i| (b * 31 + i * 7) as u8));
    }
    assert!(raw.len() > 2 * PIECE);
    let long = "x".repeat(HEADER_GUESS + 1000);
    let bytes = Builder::new()
        .kv_str("general.description", &long)
        .tensor("w", &[cols as u64, rows as u64], GgmlType::Q8_0, &raw)
        .build();
    let whole = GgufFile::from_bytes(bytes.clone()).unwrap();
    let largest = std::rc::Rc::new(std::cell::Cell::new(0));
    let file = GgufFile::from_file(Box::new(Copied {
        bytes: bytes.clone(),
        largest: largest.clone(),
    }))
    .unwrap();
    assert_eq!(file.get_str("general.description").unwrap(), long);
    assert_eq!(file.tensor_names(), ["w"]);
    largest.set(0);
    assert_eq!(file.quantized("w").unwrap(), whole.quantized("w").unwrap());
    assert_eq!(
        largest.get(),
        PIECE / 34 * 34,
        "a tensor is read a piece at a time"
    );
    assert_eq!(file.hash().unwrap(), crate::fingerprint::hash(&[&bytes]));
    assert_eq!(whole.hash().unwrap(), crate::fingerprint::hash(&[&bytes]));
}

#[test]
fn a_truncated_tensor_is_reported_after_reading_the_header_only() {
    // A tensor longer than the first read, cut short as by an interrupted download.
    let (rows, cols) = (1024, 8192);
    let raw = vec![0u8; rows * cols / 32 * 34];
    assert!(raw.len() > HEADER_GUESS);
    let mut bytes = Builder::new()
        .tensor("w", &[cols as u64, rows as u64], GgmlType::Q8_0, &raw)
        .build();
    bytes.truncate(bytes.len() - 10);
    let largest = std::rc::Rc::new(std::cell::Cell::new(0));
    let file = GgufFile::from_file(Box::new(Copied {
        bytes: bytes.clone(),
        largest: largest.clone(),
    }));
    let message = weights_err(file);
    assert!(
        message.contains("GGUF file is truncated: tensor `w`"),
        "{message}"
    );
    assert_eq!(message, weights_err(GgufFile::from_bytes(bytes)));
    assert_eq!(largest.get(), HEADER_GUESS, "only the first read");
}

#[test]
fn a_large_file_that_is_no_gguf_is_refused_after_the_first_read() {
    // The wrong file (here safetensors-like bytes), larger than the first read.
    let mut bytes = vec![0u8; 3 * HEADER_GUESS];
    bytes[..8].copy_from_slice(&2u64.to_le_bytes());
    bytes[8..10].copy_from_slice(b"{}");
    let largest = std::rc::Rc::new(std::cell::Cell::new(0));
    let file = GgufFile::from_file(Box::new(Copied {
        bytes: bytes.clone(),
        largest: largest.clone(),
    }));
    let message = weights_err(file);
    assert!(message.contains("not a GGUF file"), "{message}");
    assert_eq!(message, weights_err(GgufFile::from_bytes(bytes)));
    assert_eq!(largest.get(), HEADER_GUESS, "only the first read");
}
