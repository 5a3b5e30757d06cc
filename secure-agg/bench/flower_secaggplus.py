"""One SecAgg+ round built from Flower's own primitives, for side-by-side timing.

Runs the client stages of flwr's secaggplus_mod (key pairs, Shamir shares of the self-mask seed
and the masking key, Fernet-encrypted share bundles, quantization, NumPy-PRG masks) and the
server's unmasking (share combination, mask regeneration) in one process, like TensorGuard's
runRoundInProcess, and prints one JSON line per configuration:
    {"n":..., "d":..., "dropout":..., "round_ms":..., "worker_ms":...}
Usage: python flower_secaggplus.py N D DROPOUT [N D DROPOUT ...]
Only Flower's public primitives are called; the orchestration mirrors its workflow.
Tested with flwr==1.42.0 (flwr.supercore.primitives needs a recent release).

The clients' float vectors are drawn before the clock starts: generating inputs is not part of
any protocol (TensorGuard's benchmark builds its inputs outside the round too). Quantization is
inside the round, as TensorGuard's encoding is inside its.
"""

import json
import os
import sys
import time

import numpy as np
from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
from flwr.common.secure_aggregation.crypto.symmetric_encryption import (
    decrypt,
    encrypt,
    generate_shared_key,
)
from flwr.common.secure_aggregation.ndarrays_arithmetic import (
    parameters_addition,
    parameters_mod,
    parameters_subtraction,
)
from flwr.common.secure_aggregation.quantization import quantize
from flwr.common.secure_aggregation.secaggplus_utils import (
    pseudo_rand_gen,
    share_keys_plaintext_concat,
    share_keys_plaintext_separate,
)
from flwr.supercore.primitives.asymmetric import (
    bytes_to_private_key,
    generate_key_pairs,
    private_key_to_bytes,
)

MOD_RANGE = 1 << 32
TARGET_RANGE = 1 << 22
CLIP = 8.0


def run_round(n: int, d: int, dropout: float) -> dict:
    rng = np.random.default_rng(0)
    t = n // 2 + 1
    dropped = set(range(n - int(round(dropout * n)), n))  # drop before sending masked vectors
    params = [rng.standard_normal(d).astype(np.float32) for _ in range(n)]
    cpu = [0.0] * n
    t_round = time.perf_counter()

    def timed(i, f):
        t0 = time.perf_counter()
        r = f()
        cpu[i] += time.perf_counter() - t0
        return r

    # Stage 1: setup (two key pairs per client).
    keys = [timed(i, lambda: (generate_key_pairs(), generate_key_pairs())) for i in range(n)]
    pk1 = [k[0][1] for k in keys]
    pk2 = [k[1][1] for k in keys]
    # Stage 2: share keys.
    inbox = [dict() for _ in range(n)]
    seeds = [None] * n

    def share(i):
        seeds[i] = os.urandom(32)
        b_sh = create_shares(seeds[i], t, n)
        sk_sh = create_shares(private_key_to_bytes(keys[i][0][0]), t, n)
        for j in range(n):
            if j == i:
                inbox[i][i] = (b_sh[j], sk_sh[j])
                continue
            key = generate_shared_key(keys[i][1][0], pk2[j])
            inbox[j][i] = encrypt(key, share_keys_plaintext_concat(i, j, b_sh[j], sk_sh[j]))

    for i in range(n):
        timed(i, lambda: share(i))
    # Stage 3: collect masked vectors.
    total = None

    def mask(i):
        held = {}
        for j, ct in inbox[i].items():
            if j == i:
                held[j] = ct
                continue
            _, _, b_s, sk_s = share_keys_plaintext_separate(decrypt(generate_shared_key(keys[i][1][0], pk2[j]), ct))
            held[j] = (b_s, sk_s)
        inbox[i] = held
        q = quantize([params[i]], CLIP, TARGET_RANGE)
        q = parameters_addition(q, pseudo_rand_gen(seeds[i], MOD_RANGE, [(d,)]))
        for j in range(n):
            if j == i:
                continue
            m = pseudo_rand_gen(generate_shared_key(keys[i][0][0], pk1[j]), MOD_RANGE, [(d,)])
            q = parameters_addition(q, m) if i > j else parameters_subtraction(q, m)
        return parameters_mod(q, MOD_RANGE)

    for i in range(n):
        if i in dropped:
            continue
        y = timed(i, lambda: mask(i))
        total = y if total is None else parameters_mod(parameters_addition(total, y), MOD_RANGE)
    survivors = [i for i in range(n) if i not in dropped]
    # Stage 4: unmask (clients reveal shares; the server combines and removes masks).
    for j in survivors:
        b = combine_shares([inbox[i][j][0] for i in survivors[:t]])
        total = parameters_subtraction(total, pseudo_rand_gen(b, MOD_RANGE, [(d,)]))
    for j in dropped:
        sk = bytes_to_private_key(combine_shares([inbox[i][j][1] for i in survivors[:t]]))
        for i in survivors:
            m = pseudo_rand_gen(generate_shared_key(sk, pk1[i]), MOD_RANGE, [(d,)])
            total = parameters_subtraction(total, m) if i > j else parameters_addition(total, m)
    total = parameters_mod(total, MOD_RANGE)
    round_ms = (time.perf_counter() - t_round) * 1000
    return {
        "n": n,
        "d": d,
        "dropout": dropout,
        "round_ms": round_ms,
        "worker_ms": 1000 * sum(cpu[i] for i in survivors) / len(survivors),
    }


if __name__ == "__main__":
    a = sys.argv[1:]
    for k in range(0, len(a), 3):
        print(json.dumps(run_round(int(a[k]), int(float(a[k + 1])), float(a[k + 2]))), flush=True)
