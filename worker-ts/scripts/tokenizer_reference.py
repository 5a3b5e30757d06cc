#!/usr/bin/env python3
"""Reference token ids from Python `tokenizers` (the Rust library) for the JS tokenizer's parity test.

usage: tokenizer_reference.py TOKENIZER_JSON TEXTS_JSON MAX_TOKENS > out.json

TEXTS_JSON is a JSON list of strings. Prints {"ids": [[...]], "attention_mask": [[...]]}: each
text encoded as one sequence with the post-processor's special tokens, truncated to MAX_TOKENS
(longest-first, no stride) and padded on the right to MAX_TOKENS with the padding token.
"""
import json
import sys

from tokenizers import Tokenizer


def main() -> None:
    tok_file, texts_file, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tok = Tokenizer.from_file(tok_file)
    pad = tok.padding or {}
    tok.enable_truncation(max_length=max_tokens)
    tok.enable_padding(
        length=max_tokens,
        pad_id=pad.get("pad_id", tok.token_to_id("[PAD]")),
        pad_token=pad.get("pad_token", "[PAD]"),
    )
    with open(texts_file, encoding="utf-8") as f:
        texts = json.load(f)
    enc = tok.encode_batch(texts)
    json.dump({"ids": [e.ids for e in enc], "attention_mask": [e.attention_mask for e in enc]}, sys.stdout)


if __name__ == "__main__":
    main()
