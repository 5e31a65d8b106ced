#!/usr/bin/env python3
"""Writes the Q8_0 variant of a GGUF (`make-q8_0.py IN.gguf OUT.gguf`) with gguf-py: every
quantized tensor dequantized and requantized to Q8_0, f32/f16 tensors and all metadata copied
(`general.file_type` set to Q8_0). The bench's second file for native llama.cpp and for us: the
same weights as IN, so it needs no checksum of its own.
"""

import sys

from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType, quants

KEEP = {Q.F32, Q.F16, Q.BF16, Q.Q8_0}


def main(src, dst):
    reader = GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = GGUFWriter(dst, arch)
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        if field.name == "general.file_type":
            writer.add_file_type(LlamaFileType.MOSTLY_Q8_0)
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for t in reader.tensors:
        if t.tensor_type in KEEP:
            writer.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
        else:
            weights = quants.dequantize(t.data, t.tensor_type)
            writer.add_tensor(t.name, quants.quantize(weights, Q.Q8_0), raw_dtype=Q.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])
