"""A tiny random DistilBERT and its reference pooled outputs from Python `transformers`, for the
forward-parity and PEFT round-trip tests of worker-ts's hf-bert model on model_type "distilbert"
(src/models/hf-bert.test.ts, src/models/peft.test.ts).

Writes src/models/testdata/tiny-distilbert/:
  config.json, model.safetensors   DistilBertModel.save_pretrained of a seeded random model (dim 32,
                                   2 layers, 4 heads, FFN 64, vocabulary 100, 16 positions); every
                                   tensor, biases and LayerNorm gains included, is drawn at a scale
                                   that moves the outputs (HF's initialisation leaves biases at 0 and
                                   gains at 1, which a wrong bias or LayerNorm mapping would not show)
  reference.json                   for a few token-id sequences of different lengths: the ids
                                   (unpadded) and the masked-mean and first-token pooled last hidden
                                   states of the whole set run as one padded batch with its attention
                                   mask, float32 on the CPU, eval mode

Nothing is downloaded. Run from the repository root where .venv-bench holds transformers and torch:
    .venv-bench/bin/python worker-ts/scripts/distilbert_reference.py
"""

import json
import pathlib

import torch
from transformers import DistilBertConfig, DistilBertModel

LENGTHS = [12, 7, 3, 1, 9]
PAD = 0


def main() -> None:
    out = pathlib.Path(__file__).resolve().parent.parent / "src/models/testdata/tiny-distilbert"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = DistilBertConfig(
        vocab_size=100,
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=64,
        max_position_embeddings=16,
        activation="gelu",
        sinusoidal_pos_embds=False,
        pad_token_id=PAD,
    )
    model = DistilBertModel(config).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "LayerNorm" in name or "layer_norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.15 * noise)
    model.save_pretrained(out)

    ids = [torch.randint(1, config.vocab_size, (n,), generator=gen).tolist() for n in LENGTHS]
    T = max(LENGTHS)
    x = torch.tensor([s + [PAD] * (T - len(s)) for s in ids])
    mask = (x != PAD).long()
    with torch.no_grad():
        hidden = model(input_ids=x, attention_mask=mask).last_hidden_state  # [B, T, dim]
    m = mask.unsqueeze(-1).float()
    mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    records = [
        {
            "ids": s,
            "mean": [float(f"{v:.7g}") for v in mean[i].tolist()],
            "cls": [float(f"{v:.7g}") for v in hidden[i, 0].tolist()],
        }
        for i, s in enumerate(ids)
    ]
    doc = {
        "model": "random DistilBertModel (torch seed 0, values from generator seed 1)",
        "generator": "worker-ts/scripts/distilbert_reference.py",
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "records": records,
    }
    (out / "reference.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {out} ({len(records)} sequences)")


if __name__ == "__main__":
    main()
