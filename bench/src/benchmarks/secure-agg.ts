// Secure aggregation: round latency and per-worker CPU of TensorGuard's masking protocol (in one
// process, all parties on one core, like the Flower script it is compared with), mask expansion
// throughput, bytes on the wire per worker, Flower's SecAgg+ primitives at the same n and d, and
// HE (node-seal BFV) vs masking.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { secureAggregation as pb } from '@tensorguard/proto';
import {
  addMaskInto,
  encodeIntegers,
  HeAccumulator,
  HeEncryptor,
  HeKeyHolder,
  loadSeal,
  newSessionId,
  runRoundInProcess,
  SHARE_CIPHERTEXT_BYTES,
  type ActiveStage,
  type RingVector,
} from '@tensorguard/secure-agg';
import type { Benchmark, Row } from '../types.js';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function inputs(n: number, d: number): RingVector[] {
  const one = encodeIntegers(
    32,
    Array.from({ length: Math.min(d, 4096) }, (_, i) => (i % 200) - 100),
  );
  return Array.from({ length: n }, () => {
    const v = new Uint32Array(d);
    for (let off = 0; off < d; off += one.length)
      v.set((one as Uint32Array).subarray(0, Math.min(one.length, d - off)), off);
    return v;
  });
}

/** Exact protobuf bytes a worker sends in one round of the complete graph with n workers. */
function wireBytesPerWorker(n: number, d: number): number {
  const id = 'worker-00';
  const key = Buffer.alloc(32);
  const enc = <T>(t: { encode(m: T): { finish(): Uint8Array } }, m: T) => t.encode(m).finish().length + 5; // + gRPC frame
  return (
    enc(pb.AdvertiseKeysRequest, {
      workerId: id,
      round: 1,
      keys: { index: 3, encryptionKey: key, maskingKey: key },
    }) +
    enc(pb.ShareKeysRequest, {
      workerId: id,
      round: 1,
      shares: Array.from({ length: n - 1 }, (_, j) => ({
        fromIndex: 3,
        toIndex: j,
        ciphertext: Buffer.alloc(SHARE_CIPHERTEXT_BYTES),
      })),
    }) +
    enc(pb.SubmitMaskedInputRequest, { workerId: id, round: 1, maskedVector: Buffer.alloc(4 * d) }) +
    enc(pb.UnmaskRequest, {
      workerId: id,
      round: 1,
      selfMaskShares: Array.from({ length: n }, (_, j) => ({ owner: j, share: key })),
      maskingKeyShares: [],
    })
  );
}

function maskThroughput(log: (l: string) => void): number {
  const v = new Uint32Array(1 << 20); // 4 MiB, a typical model update; expansion streams 256 KiB chunks
  const ctx = { sessionId: newSessionId(), round: 0 };
  const seed = new Uint8Array(32).fill(1);
  addMaskInto(v, seed, ctx); // warm-up
  const times: number[] = [];
  for (let i = 0; i < 40; i++) {
    const t0 = performance.now();
    addMaskInto(v, seed, ctx, i % 2 === 0 ? 1 : -1);
    times.push(performance.now() - t0);
  }
  const gbps = v.byteLength / 1e9 / (median(times) / 1000);
  log(`mask expansion + add: ${gbps.toFixed(2)} GB/s on one core`);
  return gbps;
}

function flower(
  root: string,
  configs: [number, number, number][],
  log: (l: string) => void,
): Map<string, { round_ms: number; worker_ms: number }> {
  const out = new Map<string, { round_ms: number; worker_ms: number }>();
  const py = path.join(root, '.venv-bench', 'bin', 'python');
  if (!fs.existsSync(py)) {
    log(
      'Flower skipped: .venv-bench is missing (python3 -m venv .venv-bench && .venv-bench/bin/pip install flwr)',
    );
    return out;
  }
  const script = path.join(root, 'secure-agg', 'bench', 'flower_secaggplus.py');
  for (const [n, d, drop] of configs) {
    log(`flower n=${n} d=${d} dropout=${drop}`);
    const r = spawnSync(py, [script, String(n), String(d), String(drop)], {
      encoding: 'utf8',
      timeout: 300_000,
    });
    const line = r.stdout.trim().split('\n').pop();
    if (r.status !== 0 || !line) {
      log(`flower failed: ${r.stderr.slice(-500)}`);
      continue;
    }
    const j = JSON.parse(line) as { round_ms: number; worker_ms: number };
    out.set(`${n}/${d}/${drop}`, j);
  }
  return out;
}

async function heVsMasking(d: number, n: number, log: (l: string) => void): Promise<Row> {
  const vs = inputs(n, d);
  const t0 = performance.now();
  const rep = runRoundInProcess({
    params: {
      sessionId: newSessionId(),
      round: 0,
      members: vs.map((_, i) => `w${i}`),
      vectorLength: d,
      bits: 32,
      threshold: Math.floor(n / 2) + 1,
      degree: n - 1,
      graphSeed: newSessionId(),
      minInputs: 2,
    },
    inputs: vs,
  });
  const maskMs = performance.now() - t0;
  const maskBytes = wireBytesPerWorker(n, d);
  try {
    await loadSeal();
  } catch (err) {
    log(`HE skipped: ${(err as Error).message}`);
    return {
      scheme: 'he-vs-masking',
      n,
      d,
      masking_ms: maskMs,
      he_ms: null,
      masking_bytes_per_worker: maskBytes,
      he_bytes_per_worker: null,
      note: 'node-seal 7 needs Node >= 22',
    };
  }
  const t1 = performance.now();
  const holder = await HeKeyHolder.create(2);
  const acc = await HeAccumulator.create(d, 32);
  let heBytes = 0;
  for (const v of vs) {
    const chunks = (await HeEncryptor.create(holder.publicKey)).encrypt(v);
    heBytes = chunks.reduce((s, c) => s + c.length, 0);
    acc.add(chunks);
  }
  holder.decryptSum(acc.result());
  const heMs = performance.now() - t1;
  void rep;
  return {
    scheme: 'he-vs-masking',
    n,
    d,
    masking_ms: maskMs,
    he_ms: heMs,
    masking_bytes_per_worker: maskBytes,
    he_bytes_per_worker: heBytes,
    note: '',
  };
}

export const benchmark: Benchmark = {
  description:
    'secure aggregation: round latency and worker CPU (in-process, one core), mask GB/s, bytes/worker, vs Flower SecAgg+ and HE',
  async run({ quick, root, log }) {
    const rows: Row[] = [];
    const gbps = maskThroughput(log);
    rows.push({
      scheme: 'mask-expansion',
      n: null,
      d: 1 << 20,
      dropout: null,
      round_ms: null,
      worker_ms: null,
      flower_round_ms: null,
      speedup_vs_flower: null,
      bytes_vs_plain: null,
      note: `${gbps.toFixed(2)} GB/s per core`,
    });
    const ns = quick ? [2, 8] : [2, 4, 8, 16, 32];
    const ds = quick ? [1e4, 1e6] : [1e4, 1e5, 1e6, 1e7];
    const drops = [0, 0.2];
    const MAX_ND = 1e8; // skip n·d above this (memory and time on 2 cores)
    const configs: [number, number, number][] = [];
    for (const n of ns) for (const d of ds) for (const drop of drops) configs.push([n, d, drop]);
    const flowerConfigs = configs.filter(([n, d]) => (quick ? n === 8 && d === 1e6 : n * n * d <= 2.6e8));
    const fl = flower(root, flowerConfigs, log);
    let latencyRatio = NaN;
    let expansion = NaN;
    for (const [n, d, drop] of configs) {
      if (n * d > MAX_ND) {
        rows.push({
          scheme: 'masking',
          n,
          d,
          dropout: drop,
          round_ms: null,
          worker_ms: null,
          flower_round_ms: null,
          speedup_vs_flower: null,
          bytes_vs_plain: null,
          note: `skipped: n·d > ${MAX_ND}`,
        });
        continue;
      }
      log(`masking n=${n} d=${d} dropout=${drop}`);
      const vs = inputs(n, d);
      const dropped = Math.round(drop * n);
      const dropBefore = new Map<number, ActiveStage>();
      for (let i = n - dropped; i < n; i++) dropBefore.set(i, 'MASKED_INPUT');
      const t = Math.floor(n / 2) + 1;
      const t0 = performance.now();
      const rep = runRoundInProcess({
        params: {
          sessionId: newSessionId(),
          round: 0,
          members: vs.map((_, i) => `w${i}`),
          vectorLength: d,
          bits: 32,
          threshold: t,
          degree: n - 1,
          graphSeed: newSessionId(),
          minInputs: Math.min(t, n - dropped),
        },
        inputs: vs,
        dropBefore,
      });
      const roundMs = performance.now() - t0;
      if (rep.error) throw rep.error;
      const surv = rep.result!.survivors;
      const workerMs = surv.reduce((s, i) => s + rep.workerMs[i]!, 0) / surv.length;
      const bytes = wireBytesPerWorker(n, d) / (4 * d);
      const f = fl.get(`${n}/${d}/${drop}`);
      const speedup = f ? f.round_ms / roundMs : null;
      if (n === 8 && d === 1e6 && drop === 0) {
        latencyRatio = speedup ?? NaN;
        expansion = bytes;
      }
      rows.push({
        scheme: 'masking',
        n,
        d,
        dropout: drop,
        round_ms: roundMs,
        worker_ms: workerMs,
        flower_round_ms: f?.round_ms ?? null,
        speedup_vs_flower: speedup,
        bytes_vs_plain: bytes,
        note: f ? `flower worker_ms ${f.worker_ms.toFixed(1)}` : '',
      });
    }
    const heRows: Row[] = [];
    for (const d of quick ? [1e5] : [1e5, 1e6]) heRows.push(await heVsMasking(d, 8, log));
    rows.push(...heRows);
    const he = heRows.find((r) => r.he_ms !== null);
    return {
      rows,
      summary: {
        round_latency_vs_flower: latencyRatio,
        bytes_expansion: expansion,
        mask_gbps_per_core: gbps,
        he_over_masking_time: he ? (he.he_ms as number) / (he.masking_ms as number) : NaN,
      },
    };
  },
};
