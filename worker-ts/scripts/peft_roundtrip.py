"""Loads a TensorGuard hf-bert adapter with PEFT and compares its logits with TensorGuard's.

    .venv-bench/bin/python worker-ts/scripts/peft_roundtrip.py <base model folder> <adapter folder> <check.json>

check.json (written by worker-ts/scripts/peft-roundtrip.ts): {"ids": [[...], ...], "logits": [[...], ...]}
with unpadded token ids. The adapter loads through `PeftModel.from_pretrained(AutoModel(base), dir)`;
the classifier comes from head.safetensors (torch Linear layout) after the pooling its metadata
names. Prints one JSON line: {"peft_roundtrip_max_abs_diff": ...}.
"""

import json
import pathlib
import sys

import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModel


def main() -> None:
    base_dir, adapter_dir, check_file = (pathlib.Path(a) for a in sys.argv[1:4])
    base = AutoModel.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    with safe_open(adapter_dir / "head.safetensors", "pt") as f:
        weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
        pooling = f.metadata()["pooling"]
    check = json.loads(check_file.read_text())
    worst = 0.0
    with torch.no_grad():
        for ids, want in zip(check["ids"], check["logits"]):
            x = torch.tensor([ids])
            hidden = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[0]
            pooled = hidden.mean(0) if pooling == "mean" else hidden[0]
            logits = pooled @ weight.T + bias
            worst = max(worst, (logits - torch.tensor(want)).abs().max().item())
    print(json.dumps({"peft_roundtrip_max_abs_diff": worst, "sentences": len(check["ids"])}))


if __name__ == "__main__":
    main()
