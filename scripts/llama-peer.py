#!/usr/bin/env python3
"""Native llama.cpp (llama-cpp-python, one thread) on a GGUF, timed as the bench's peer.

    llama-peer.py MODEL.gguf --prompt TEXT --tokens N [--prefill-text TEXT]

Prints one JSON object: `decode` (the prompt evaluated once, then N greedy tokens, each one
`eval` of one token plus a numpy argmax over its logits: no sampling layers), and with
--prefill-text `prefill` (that text's tokens in one `eval` on a fresh context, timed after an
untimed one). Times are `time.perf_counter` around the `eval` calls.
"""

import argparse
import json
import time

import numpy as np
from llama_cpp import Llama, __version__, llama_get_logits_ith


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--prefill-text")
    ap.add_argument("--ctx", type=int, default=1024)
    args = ap.parse_args()

    llm = Llama(
        model_path=args.model,
        n_ctx=args.ctx,
        n_batch=args.ctx,
        n_ubatch=args.ctx,
        n_threads=1,
        n_threads_batch=1,
        verbose=False,
    )
    out = {"llamaCppPython": __version__, "threads": 1}

    n_vocab = llm.n_vocab()

    def last_logits():
        # The last evaluated token's logits, read in place (eval keeps no copy without logits_all).
        return np.ctypeslib.as_array(llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))

    # Decode: one untimed warm-up run of a few tokens, then the timed one.
    for warm in (True, False):
        llm.reset()
        prompt_ids = llm.tokenize(args.prompt.encode(), add_bos=True, special=False)
        started = time.perf_counter()
        llm.eval(prompt_ids)
        next_id = int(np.argmax(last_logits()))
        step_ms = [(time.perf_counter() - started) * 1000]
        ids = [next_id]
        for _ in range(4 if warm else args.tokens - 1):
            started = time.perf_counter()
            llm.eval([next_id])
            next_id = int(np.argmax(last_logits()))
            step_ms.append((time.perf_counter() - started) * 1000)
            ids.append(next_id)
    out["decode"] = {
        "promptIds": prompt_ids,
        "ids": ids,
        "text": llm.detokenize(ids).decode("utf-8", "replace"),
        "stepMs": step_ms,
    }

    if args.prefill_text:
        prefill_ids = llm.tokenize(args.prefill_text.encode(), add_bos=True, special=False)
        runs = []
        for _ in range(2):
            llm.reset()
            started = time.perf_counter()
            llm.eval(prefill_ids)
            int(np.argmax(last_logits()))
            runs.append((time.perf_counter() - started) * 1000)
        out["prefill"] = {"tokens": len(prefill_ids), "ms": runs[-1], "warmUpMs": runs[0]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
