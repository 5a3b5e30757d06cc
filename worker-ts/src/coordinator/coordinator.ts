// The round coordinator, hosted by the aggregator process: membership, the round barrier and
// stage deadlines, secure aggregation (secure-agg's AggregatorRound), the optimizer over the
// decoded noisy sum, the privacy ledger and accountant, evaluation and checkpoints.
//
// Lifecycle: 'STARTING' → 'RUNNING' → 'DONE' | 'FAILED'. Within RUNNING each round goes through
// secure-agg's stages (masking) or HeRound's (HE mode: encrypted inputs summed here, the sum
// decrypted by the separate key holder); the one step that releases information (closing
// MASKED_INPUT, after which survivors reveal unmask shares; in HE mode, asking the key holder to
// decrypt) is preceded by the fsynced ledger append.
import * as grpc from '@grpc/grpc-js';
import {
  AggregatorRound,
  compileRound,
  decode,
  HE_MAX_SUM_BOUND,
  HeRound,
  newSessionId,
  planEncoding,
  SecAggError,
  type AdvertiseKeys,
  type EncodingOptions,
  type MaskedInput,
  type RingVector,
  type RoundParams,
  type ShareKeys,
  type SurvivorAttestation,
  type UnmaskShares,
} from '@tensorguard/secure-agg';
import {
  distributedDiscreteGaussianEvent,
  nonPrivateEvent,
  poissonSampledEvent,
  realizedNoiseMultiplier,
  type DpEvent,
} from '@tensorguard/dp';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { CheckpointError } from '../checkpoint/errors.js';
import { tensor, type NamedTensor } from '../checkpoint/safetensors.js';
import { loadLatestCheckpoint, saveCheckpoint } from '../checkpoint/store.js';
import { mkdirPrivate, writeFileAtomic } from '../checkpoint/atomic.js';
import { ConfigError, type RunConfig } from '../config.js';
import type { Logger } from '../logger.js';
import { PhaseTimer, rounded } from '../metrics.js';
import { flatten, sizeOf, trainableSpecs, type ModelDef } from '../models/model.js';
import { roundEncoding, roundPrivacy } from '../announcement.js';
import { MAX_SHARE_STD } from '../noise.js';
import { createOptimizer, type Optimizer } from '../optimizer.js';
import type {
  EncryptedInput,
  JoinRequest,
  JoinResponse,
  NextRoundRequest,
  NextRoundResponse,
  RoundOpen,
  StageRequest,
} from '../protocol.js';
import type { KeyHolderLink } from '@tensorguard/secure-agg/service';
import { jobFingerprint, PrivacyLedger, type LedgerEntry } from './ledger.js';
import { integerMechanismEpsilon, JobAccountant } from './privacy.js';
import { encodedSize, RpcError, type Handler, type Method } from './rpc.js';
import { METRICS_FILE, RoundMetricsLog, type RoundMetrics } from '../report/metrics-log.js';

export type CoordinatorState = 'STARTING' | 'RUNNING' | 'DONE' | 'FAILED';

/** A held-out evaluation: accuracy in [0, 1], loss the mean cross-entropy (nats per example). */
export interface Evaluation {
  accuracy: number;
  loss: number;
}

export interface CoordinatorOptions {
  config: RunConfig;
  def: ModelDef;
  /** Initial values of every parameter (used when there is no checkpoint to resume). */
  initial: Record<string, Float32Array>;
  fingerprint: string;
  /**
   * Evaluates the current trainable vector on the held-out set: its accuracy, or its accuracy and
   * mean cross-entropy (then also reported, as `eval_loss`).
   */
  evaluate: (trainable: Float32Array) => number | Evaluation;
  log: Logger;
  emit: (line: Record<string, unknown>) => void;
  /** Wait at most this long for all workers before the first round (default 120 s). */
  startupTimeoutMs?: number;
  /** After the first waiting worker, wait this long for the rest before opening with ≥ t (default 3 s). */
  joinGraceMs?: number;
  /** Deadlines of the key stages and of unmask (default 15 s each). */
  stageTimeoutMs?: number;
  /** Required with secureAggregation.mode 'he': the key holder that decrypts the round sums. */
  keyHolder?: HeKeyHolderLink;
}

/**
 * The coordinator's view of the HE key holder: secure-agg's KeyHolderClient.link() (the key holder
 * process and its rules live in secure-agg; this coordinator only sums and asks).
 */
export type HeKeyHolderLink = KeyHolderLink;

export interface CoordinatorResult {
  status: 'succeeded' | 'failed';
  epsilon: number;
  delta: number;
  testAccuracy: number | null;
  rounds: number;
  checkpoint: string | null;
  privacyReport: string;
  stopReason: string;
  error?: string;
}

interface Waiter {
  req: NextRoundRequest;
  resolve: (r: NextRoundResponse) => void;
}

interface LiveRound {
  r: number;
  /** Masking mode. */
  agg?: AggregatorRound;
  /** HE mode. */
  he?: HeRound;
  members: string[];
  encoding: EncodingOptions;
  /** Resolved whenever a stage may be complete. */
  poke: () => void;
  stageWaiters: Map<string, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>;
  /**
   * Masking mode with identities, once the survivor set is announced: the survivors' signatures
   * over it, relayed to every survivor (secure-agg's consistency check; this process only relays).
   */
  attest?: {
    survivors: readonly number[];
    signatures: Map<number, SurvivorAttestation>;
    /** Resolves the waiting Attest calls with every signature relayed so far. */
    release: () => void;
    waiting: ((all: SurvivorAttestation[]) => void)[];
  };
}

export class Coordinator {
  state: CoordinatorState = 'STARTING';
  readonly config: RunConfig;
  private readonly o: CoordinatorOptions;
  private readonly specs;
  params: Float32Array;
  private optimizer: Optimizer;
  private readonly ledger: PrivacyLedger;
  /** metrics.jsonl beside the checkpoints: one line per released round. */
  private readonly metricsLog: RoundMetricsLog;
  /** Payload bytes received from and sent to workers so far; each round's line takes the difference. */
  private readonly traffic = { received: 0, sent: 0 };
  private readonly accountant: JobAccountant;
  private ledgerEntries: LedgerEntry[] = [];
  /** Round number of the last update applied to `params`. */
  modelVersion = 0;
  private nextRound = 1;
  private readonly shardSizes = new Map<number, number>();
  private waiting = new Map<string, Waiter>();
  private live: LiveRound | undefined;
  private lastCheckpoint: string | null = null;
  private lastAccuracy: number | null = null;
  private doneReason = '';
  /** Set when a round was refused at its release point because it would pass the budget. */
  private budgetStop = false;
  private wake: () => void = () => {};

  constructor(o: CoordinatorOptions) {
    this.o = o;
    this.config = o.config;
    this.specs = trainableSpecs(o.def);
    this.params = flatten(this.specs, o.initial);
    this.optimizer = createOptimizer(this.params.length, o.config.optimizer);
    if (o.config.secureAggregation.mode === 'he' && !o.keyHolder) {
      throw new ConfigError(
        'secureAggregation.mode',
        "'he' needs a key holder; pass CoordinatorOptions.keyHolder",
      );
    }
    mkdirPrivate(o.config.checkpoint.dir);
    // A torn ledger line is charged as the worst case the config allows: every shard, the least
    // noise a release can carry (quorum survivors).
    const cfg0 = o.config;
    this.ledger = new PrivacyLedger(
      path.join(cfg0.checkpoint.dir, 'privacy-ledger.jsonl'),
      (round) => ({
        round,
        samplingRate: cfg0.privacy.samplingRate,
        noiseMultiplier: realizedNoiseMultiplier(
          cfg0.privacy.noiseMultiplier,
          cfg0.secureAggregation.threshold - cfg0.privacy.colluders,
          cfg0.secureAggregation.threshold - cfg0.privacy.colluders,
        ),
        survivors: cfg0.secureAggregation.threshold,
        shards: Array.from({ length: cfg0.workers.count }, (_, i) => i),
        quorum: cfg0.secureAggregation.threshold,
        colluders: cfg0.privacy.colluders,
        configuredNoiseMultiplier: cfg0.privacy.noiseMultiplier,
        time: new Date().toISOString(),
      }),
      0,
      jobFingerprint(cfg0 as unknown as Parameters<typeof jobFingerprint>[0]),
    );
    this.metricsLog = new RoundMetricsLog(path.join(cfg0.checkpoint.dir, METRICS_FILE));
    this.accountant = new JobAccountant({
      kind: o.config.privacy.accountant,
      delta: o.config.privacy.delta,
      shardCount: o.config.workers.count,
    });
    const { shareStd } = this.encodingOptions(o.config.workers.count);
    if (!(shareStd < MAX_SHARE_STD)) {
      throw new ConfigError(
        'secureAggregation.scale',
        `each worker's noise share would have std ${shareStd.toExponential(3)} integer units (σ·Δ·scale/√t), above the exact discrete Gaussian sampler's limit 2^20; lower secureAggregation.scale (e.g. to ${2 ** Math.floor(Math.log2((o.config.secureAggregation.scale ?? 2 ** 16) * (MAX_SHARE_STD / shareStd)))})`,
      );
    }
  }

  get delta(): number {
    return this.config.privacy.delta;
  }
  get epsilon(): number {
    return this.accountant.epsilon();
  }
  get releasedRounds(): number {
    return this.accountant.roundCount;
  }

  /**
   * Restores from the latest checkpoint and the ledger. The accountant gets every round in the
   * ledger and in the checkpoint's accountant state (deduplicated by round number), so a round
   * released after the last checkpoint is counted and none is counted twice. Throws
   * CheckpointError (naming the file) for a corrupt checkpoint or another base model.
   */
  resume(): void {
    const ck = loadLatestCheckpoint(
      this.config.checkpoint.dir,
      { baseModelFingerprint: this.o.fingerprint },
      (msg, detail) => this.o.log.warn(detail, msg),
    );
    this.ledger.checkFingerprint();
    this.ledger.afterRound = ck?.manifest.round ?? 0;
    this.ledger.repair();
    this.ledgerEntries = this.ledger.read();
    const events: LedgerEntry[] = [...this.ledgerEntries];
    if (ck) {
      const named: Record<string, Float32Array> = {};
      for (const s of this.specs) named[s.name] = ck.model[s.name]!.data as Float32Array;
      this.params = flatten(this.specs, named);
      const slots: Record<string, Float32Array> = {};
      for (const [k, t] of Object.entries(ck.optimizer)) if (k !== 'step') slots[k] = t.data as Float32Array;
      const step = ck.optimizer.step ? Number((ck.optimizer.step.data as Float64Array)[0]) : 0;
      this.optimizer.load({ step, slots });
      this.modelVersion = ck.manifest.round;
      this.lastCheckpoint = ck.dir;
      const st = ck.manifest.accountant as { events?: LedgerEntry[] } | undefined;
      for (const e of st?.events ?? []) if (!events.some((x) => x.round === e.round)) events.push(e);
      this.o.log.info({ checkpoint: ck.dir, round: ck.manifest.round }, 'resumed from checkpoint');
    }
    events.sort((a, b) => a.round - b.round);
    for (const e of events) this.accountant.record(e);
    const last = Math.max(this.modelVersion, ...events.map((e) => e.round));
    this.nextRound = last + 1;
    if (events.length > 0) {
      this.o.log.info(
        { releasedRounds: this.accountant.roundCount, epsilon: this.epsilon },
        'privacy ledger replayed',
      );
    }
  }

  handlers(): Record<Method, Handler> {
    // Bytes as the round service encodes the messages (before gRPC framing and TLS), for the
    // per-round `bytes_received` / `bytes_sent`.
    const counted =
      (h: Handler): Handler =>
      async (req) => {
        this.traffic.received += encodedSize(req);
        const res = await h(req);
        this.traffic.sent += encodedSize(res);
        return res;
      };
    const all: Record<Method, Handler> = {
      Join: async (req) => this.join(req as JoinRequest),
      NextRound: (req) => this.nextRoundFor(req as NextRoundRequest),
      AdvertiseKeys: (req) => this.stage(req as StageRequest<AdvertiseKeys>, 'ADVERTISE_KEYS'),
      ShareKeys: (req) => this.stage(req as StageRequest<ShareKeys>, 'SHARE_KEYS'),
      MaskedInput: (req) => this.stage(req as StageRequest<MaskedInput>, 'MASKED_INPUT'),
      Attest: (req) => this.attestation(req as StageRequest<SurvivorAttestation>),
      Unmask: (req) => this.stage(req as StageRequest<UnmaskShares>, 'UNMASK'),
      EncryptedInput: (req) => this.stage(req as StageRequest<EncryptedInput>, 'ENCRYPTED_INPUT'),
    };
    return Object.fromEntries(Object.entries(all).map(([m, h]) => [m, counted(h)])) as Record<
      Method,
      Handler
    >;
  }

  private join(req: JoinRequest): JoinResponse {
    const n = this.config.workers.count;
    if (!Number.isInteger(req.workerIndex) || req.workerIndex < 0 || req.workerIndex >= n) {
      throw new RpcError(
        grpc.status.INVALID_ARGUMENT,
        `worker index ${req.workerIndex} is outside [0, ${n})`,
      );
    }
    if (!Number.isInteger(req.shardSize) || req.shardSize < 0) {
      throw new RpcError(grpc.status.INVALID_ARGUMENT, `shardSize must be a non-negative integer`);
    }
    this.shardSizes.set(req.workerIndex, req.shardSize);
    this.o.log.info({ workerId: req.workerId, index: req.workerIndex }, 'worker joined');
    return { jobName: this.config.name, modelVersion: this.modelVersion };
  }

  private nextRoundFor(req: NextRoundRequest): Promise<NextRoundResponse> {
    if (this.state === 'DONE' || this.state === 'FAILED')
      return Promise.resolve({ kind: 'done', reason: this.doneReason });
    if (!this.shardSizes.has(req.workerIndex)) {
      return Promise.reject(new RpcError(grpc.status.FAILED_PRECONDITION, 'call Join first'));
    }
    return new Promise((resolve) => {
      this.waiting.get(req.workerId)?.resolve({ kind: 'wait' });
      this.waiting.set(req.workerId, { req, resolve });
      this.wake();
    });
  }

  private async stage(
    req: StageRequest<unknown>,
    stage: 'ADVERTISE_KEYS' | 'SHARE_KEYS' | 'MASKED_INPUT' | 'UNMASK' | 'ENCRYPTED_INPUT',
  ): Promise<unknown> {
    const live = this.live;
    if (!live || live.r !== req.round) {
      throw new RpcError(
        grpc.status.ABORTED,
        `round ${req.round} is not open (current: ${live?.r ?? 'none'})`,
      );
    }
    const index = live.members.indexOf(req.workerId);
    const msg = req.message as { index?: unknown };
    if (index < 0 || msg?.index !== index) {
      throw new RpcError(
        grpc.status.PERMISSION_DENIED,
        `${req.workerId} is not member ${String(msg?.index)} of round ${req.round}`,
      );
    }
    const mode = this.config.secureAggregation.mode;
    if ((stage === 'ENCRYPTED_INPUT') !== (mode === 'he')) {
      throw new RpcError(
        grpc.status.FAILED_PRECONDITION,
        `round ${req.round} uses secureAggregation.mode '${mode}'; ${stage} does not belong to it`,
      );
    }
    try {
      switch (stage) {
        case 'ADVERTISE_KEYS':
          live.agg!.submitAdvertiseKeys(req.message as AdvertiseKeys);
          break;
        case 'SHARE_KEYS':
          live.agg!.submitShareKeys(req.message as ShareKeys);
          break;
        case 'MASKED_INPUT':
          live.agg!.submitMaskedInput(req.message as MaskedInput);
          break;
        case 'UNMASK':
          live.agg!.submitUnmask(req.message as UnmaskShares);
          break;
        case 'ENCRYPTED_INPUT':
          live.he!.submit(req.message as EncryptedInput);
          break;
      }
    } catch (err) {
      if (err instanceof SecAggError) throw new RpcError(grpc.status.FAILED_PRECONDITION, err.message);
      throw err;
    }
    const p = new Promise((resolve, reject) =>
      live.stageWaiters.set(`${stage}:${req.workerId}`, { resolve, reject }),
    );
    live.poke();
    return p;
  }

  /**
   * Relays a survivor's signature over the announced survivor set; answers, once every survivor
   * signed (or the stage deadline passed), with all signatures relayed. Each worker checks them
   * itself: nothing here is trusted by the workers.
   */
  private attestation(req: StageRequest<SurvivorAttestation>): Promise<SurvivorAttestation[]> {
    const live = this.live;
    const a = live?.attest;
    if (!live || live.r !== req.round || !a) {
      throw new RpcError(grpc.status.ABORTED, `round ${req.round} is not collecting survivor signatures`);
    }
    const index = live.members.indexOf(req.workerId);
    const msg = req.message;
    if (
      index < 0 ||
      msg?.index !== index ||
      !a.survivors.includes(index) ||
      !(msg.signature instanceof Uint8Array)
    ) {
      throw new RpcError(
        grpc.status.PERMISSION_DENIED,
        `${req.workerId} is not a survivor of round ${req.round}`,
      );
    }
    if (!a.signatures.has(index)) a.signatures.set(index, { index, signature: msg.signature });
    const p = new Promise<SurvivorAttestation[]>((resolve) => a.waiting.push(resolve));
    if (a.signatures.size === a.survivors.length) a.release();
    return p;
  }

  /** Runs rounds until `rounds` are released, the budget stops training, or a fatal error. */
  async run(): Promise<CoordinatorResult> {
    this.state = 'RUNNING';
    const cfg = this.config;
    let error: string | undefined;
    try {
      let first = true;
      while (this.releasedRounds < cfg.rounds) {
        // Before the round opens: the worst case it may release, t survivors from every shard
        // (the realised multiplier is then σ). The release point checks the actual round again.
        const next = this.accountant.epsilonAfter({
          samplingRate: cfg.privacy.samplingRate,
          noiseMultiplier: cfg.privacy.noiseMultiplier,
          survivors: cfg.secureAggregation.threshold,
        });
        if (cfg.privacy.epsilonBudget !== null && next > cfg.privacy.epsilonBudget) {
          this.doneReason = `privacy budget: another round would reach ε = ${next.toFixed(3)} > epsilonBudget ${cfg.privacy.epsilonBudget}`;
          this.o.log.warn(
            { epsilon: this.epsilon, next },
            'stopping before the privacy budget would be exceeded',
          );
          break;
        }
        const members = await this.gatherMembers(first);
        first = false;
        await this.runRound(members);
        if (this.budgetStop) break;
      }
      if (!this.doneReason) this.doneReason = `completed ${this.releasedRounds} rounds`;
      this.lastAccuracy = evaluation(this.o.evaluate(this.params)).accuracy;
      this.checkpoint();
      this.state = 'DONE';
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
      this.doneReason = `failed: ${error}`;
      this.o.log.error({ err }, 'coordinator failed');
      this.state = 'FAILED';
    }
    for (const w of this.waiting.values()) w.resolve({ kind: 'done', reason: this.doneReason });
    this.waiting.clear();
    const report = this.writePrivacyReport();
    return {
      status: this.state === 'DONE' ? 'succeeded' : 'failed',
      epsilon: this.epsilon,
      delta: this.delta,
      testAccuracy: this.lastAccuracy,
      rounds: this.releasedRounds,
      checkpoint: this.lastCheckpoint,
      privacyReport: report,
      stopReason: this.doneReason,
      ...(error !== undefined ? { error } : {}),
    };
  }

  /** Round barrier: all workers waiting, or ≥ max(t, 2) after the grace period. */
  private async gatherMembers(first: boolean): Promise<Waiter[]> {
    const n = this.config.workers.count;
    const need = Math.max(this.config.secureAggregation.threshold, 2);
    const startedAt = Date.now();
    let firstSeen: number | undefined;
    for (;;) {
      const k = this.waiting.size;
      if (k > 0 && firstSeen === undefined) firstSeen = Date.now();
      const grace = first ? (this.o.startupTimeoutMs ?? 120_000) : (this.o.joinGraceMs ?? 3000);
      const since = first ? startedAt : (firstSeen ?? Date.now());
      if (k >= n || (k >= need && Date.now() - since >= grace)) {
        const ws = [...this.waiting.values()].sort((a, b) => a.req.workerIndex - b.req.workerIndex);
        this.waiting = new Map();
        return ws;
      }
      if (first && Date.now() - startedAt > 4 * (this.o.startupTimeoutMs ?? 120_000)) {
        throw new Error(
          `only ${k} of ${n} workers joined; at least ${need} are needed (secureAggregation.threshold)`,
        );
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 250);
      });
    }
  }

  /** What a round with `members` contributors announces: the same derivation every worker checks. */
  private encodingOptions(members: number): { enc: EncodingOptions; shareStd: number; sensitivity: number } {
    const d = this.params.length;
    const { shareStd, sensitivity } = roundPrivacy(this.config, d, members);
    const maxShard = Math.max(1, ...this.shardSizes.values());
    return { enc: roundEncoding(this.config, d, members, maxShard), shareStd, sensitivity };
  }

  private async runRound(waiters: Waiter[]): Promise<void> {
    const cfg = this.config;
    const r = this.nextRound++;
    const roundStart = performance.now();
    const bytesAtStart = { ...this.traffic };
    const timer = new PhaseTimer({ round: r });
    /** Phases only metrics.jsonl has (the stdout line keeps its three). */
    const more = new PhaseTimer({ round: r });
    const members = waiters.map((w) => w.req.workerId);
    const t = cfg.secureAggregation.threshold;
    const holders = members.length;
    const { enc, shareStd } = this.encodingOptions(members.length);
    const plan = planEncoding(enc);
    const privacy = roundPrivacy(cfg, this.params.length, holders);
    const params: RoundParams = {
      sessionId: newSessionId(),
      round: r,
      members,
      vectorLength: this.params.length,
      bits: plan.bits,
      threshold: privacy.shamirThreshold,
      degree: privacy.degree,
      graphSeed: randomBytes(16),
      minInputs: Math.min(t, holders),
    };
    const keyHolder = this.o.keyHolder;
    let he: HeRound | undefined;
    let agg: AggregatorRound | undefined;
    if (cfg.secureAggregation.mode === 'he') {
      try {
        if (!keyHolder)
          throw new Error("secureAggregation.mode 'he' needs a key holder (CoordinatorOptions.keyHolder)");
        if (plan.bits === 64 && plan.sumBound >= HE_MAX_SUM_BOUND) {
          throw new ConfigError(
            'secureAggregation.scale',
            `in HE mode the sum must stay below 2^58 in integer units, but it can reach ${plan.sumBound.toExponential(3)}; lower secureAggregation.scale or privacy.clipNorm`,
          );
        }
        he = await HeRound.create({
          round: r,
          members,
          minInputs: params.minInputs,
          length: this.params.length + 1,
          bits: plan.bits,
          keyId: keyHolder.keyId,
          deadlineMs: cfg.roundTimeoutMs,
        });
      } catch (err) {
        // Fatal for the job: hand the members back so that run() tells them it is over.
        for (const w of waiters) this.waiting.set(w.req.workerId, w);
        throw err;
      }
    } else {
      const stageMs = this.o.stageTimeoutMs ?? 15_000;
      agg = new AggregatorRound(compileRound(params), {
        deadlinesMs: {
          ADVERTISE_KEYS: stageMs,
          SHARE_KEYS: stageMs,
          MASKED_INPUT: cfg.roundTimeoutMs,
          UNMASK: stageMs,
        },
      });
    }
    let poke: () => void = () => {};
    const live: LiveRound = {
      r,
      ...(agg ? { agg } : {}),
      ...(he ? { he } : {}),
      members,
      encoding: enc,
      poke: () => poke(),
      stageWaiters: new Map(),
    };
    this.live = live;
    waiters.forEach((w, index) => {
      const open: RoundOpen = {
        kind: 'round',
        params,
        index,
        encoding: enc,
        noiseShareStd: shareStd,
        samplingRate: cfg.privacy.samplingRate,
        clipNorm: cfg.privacy.clipNorm,
        modelVersion: this.modelVersion,
        ...(w.req.haveVersion !== this.modelVersion ? { model: this.params } : {}),
        ...(he && keyHolder ? { he: { publicKey: keyHolder.publicKey, keyId: keyHolder.keyId } } : {}),
      };
      w.resolve(open);
    });
    this.o.log.info({ round: r, members, mode: cfg.secureAggregation.mode }, 'round opened');
    const answer = (stage: string, f: (id: string) => unknown) => {
      for (const [key, w] of live.stageWaiters) {
        if (!key.startsWith(stage + ':')) continue;
        const id = key.slice(stage.length + 1);
        try {
          w.resolve(f(id));
        } catch (e) {
          w.reject(e);
        }
        live.stageWaiters.delete(key);
      }
    };
    const waitUntil = async (s: { stageComplete: boolean; deadline: number }) => {
      while (!s.stageComplete && Date.now() < s.deadline) {
        await new Promise<void>((resolve) => {
          poke = resolve;
          setTimeout(resolve, Math.max(1, Math.min(200, s.deadline - Date.now())));
        });
      }
    };
    const failAll = (err: unknown) => {
      for (const w of live.stageWaiters.values())
        w.reject(new RpcError(grpc.status.ABORTED, err instanceof Error ? err.message : String(err)));
      live.stageWaiters.clear();
    };
    try {
      let released: { sum: RingVector; survivors: number } | undefined;
      if (he) {
        // HE: one input stage. The sum builds up as ciphertexts arrive; dropouts do not contribute.
        await timer.time('aggregate', () => waitUntil(he));
        const received = he.close(); // ThresholdError below minInputs: nothing is decrypted
        // Release point: record the round with the survivors' noise, durably, before the key
        // holder decrypts the sum.
        if (!this.recordRelease(r, received, waiters, shareStd, enc.scale)) return;
        const contributors = received.map((i) => members[i]!);
        answer('ENCRYPTED_INPUT', () => contributors);
        const sum = await timer.time('unmask', async () => {
          try {
            return await keyHolder!.decryptSum({ round: r, contributors, aggregate: he.aggregate() });
          } catch (err) {
            // Not a round abort: without the key holder no later round can be released either.
            throw new Error(
              `the key holder at ${keyHolder!.address} did not decrypt round ${r}: ${err instanceof Error ? err.message : String(err)}`,
              { cause: err },
            );
          }
        });
        he.done();
        released = { sum, survivors: received.length };
      } else {
        const a = agg!;
        await more.time('keys', async () => {
          await waitUntil(a);
          a.closeStage();
          const roster = a.keyRoster();
          answer('ADVERTISE_KEYS', () => roster);
          await waitUntil(a);
          a.closeStage();
          answer('SHARE_KEYS', (id) => a.sharesFor(members.indexOf(id)));
        });
        await timer.time('aggregate', () => waitUntil(a));
        // Release point. The survivors' noise shares are what the sum will carry: record the round
        // with that realised noise, durably, before anyone can learn the sum.
        const received = [...a.received()].sort((x, y) => x - y);
        if (received.length >= params.minInputs) {
          if (!this.recordRelease(r, received, waiters, shareStd, enc.scale)) return;
        }
        a.closeStage();
        const surv = a.survivors();
        const attest: NonNullable<LiveRound['attest']> = {
          survivors: surv,
          signatures: new Map(),
          waiting: [],
          release: () => {
            const all = [...attest.signatures.values()];
            for (const w of attest.waiting.splice(0)) w(all);
          },
        };
        live.attest = attest;
        // Workers without identities never attest; with them, answer after the stage deadline.
        const attestTimer = setTimeout(attest.release, this.o.stageTimeoutMs ?? 15_000);
        answer('MASKED_INPUT', () => surv);
        await timer.time('unmask', async () => {
          await waitUntil(a);
          a.closeStage();
        });
        clearTimeout(attestTimer);
        attest.release();
        const result = a.result();
        answer('UNMASK', () => ({ ok: true }));
        released = { sum: result.sum, survivors: result.survivors.length };
      }
      await timer.time('apply', () => {
        const sum = decode(plan, released.sum);
        const total = [...this.shardSizes.values()].reduce((x, y) => x + y, 0);
        const norm = 1 / (cfg.privacy.samplingRate * total);
        const grad = new Float32Array(sum.length);
        for (let i = 0; i < sum.length; i++) grad[i] = sum[i]! * norm;
        // A non-finite update (an empty shard's 0/0, a diverged model) would poison every later
        // round and the checkpoint: stop the job with the old parameters kept.
        const before = Float32Array.from(this.params);
        this.optimizer.step(this.params, grad);
        if (!this.params.every(Number.isFinite) || !Number.isFinite(norm)) {
          this.params.set(before);
          throw new Error(
            `round ${r}: the update made the model parameters non-finite (NaN or Infinity); the job stops and nothing non-finite is checkpointed (check the dataset for empty shards or extreme values, or lower the learning rate)`,
          );
        }
        this.modelVersion = r;
      });
      if (process.env.TENSORGUARD_TEST_CRASH_AFTER_RELEASE === String(this.releasedRounds)) {
        // Fault injection for the crash-consistency test: die after the sum was released and
        // applied, before the checkpoint that would have recorded it.
        process.kill(process.pid, 'SIGKILL');
      }
      let ev: Evaluation | null = null;
      const count = this.releasedRounds;
      if (count % cfg.evaluation.everyRounds === 0 || count >= cfg.rounds) {
        ev = await more.time('evaluate', () => evaluation(this.o.evaluate(this.params)));
        this.lastAccuracy = ev.accuracy;
      }
      if (count % cfg.checkpoint.everyRounds === 0 && count < cfg.rounds)
        await more.time('checkpoint', () => this.checkpoint());
      const roundSeconds = Number(((performance.now() - roundStart) / 1000).toFixed(4));
      const evalLoss = ev && Number.isFinite(ev.loss) ? ev.loss : null;
      this.o.emit({
        type: 'metrics',
        round: count,
        rounds_total: cfg.rounds,
        epsilon: this.epsilon,
        delta: this.delta,
        eval_accuracy: ev?.accuracy ?? null,
        eval_loss: evalLoss,
        workers_alive: released.survivors,
        round_seconds: roundSeconds,
        phase_seconds: rounded(timer.seconds),
      });
      this.appendMetrics({
        round: count,
        rounds_total: cfg.rounds,
        epsilon: Number.isFinite(this.epsilon) ? this.epsilon : 'Infinity',
        epsilon_budget: cfg.privacy.epsilonBudget,
        delta: this.delta,
        round_seconds: roundSeconds,
        phase_seconds: rounded({ ...timer.seconds, ...more.seconds }),
        bytes_received: this.traffic.received - bytesAtStart.received,
        bytes_sent: this.traffic.sent - bytesAtStart.sent,
        workers_total: cfg.workers.count,
        workers_members: members.length,
        workers_alive: released.survivors,
        dropouts: members.length - released.survivors,
        eval_accuracy: ev?.accuracy ?? null,
        eval_loss: evalLoss,
        time: new Date().toISOString(),
      });
      this.o.log.info(
        { round: r, survivors: released.survivors, epsilon: this.epsilon },
        'round released and applied',
      );
    } catch (err) {
      failAll(err);
      if (err instanceof SecAggError) {
        this.o.log.warn({ round: r, err: err.message }, 'round aborted; opening the next one');
        return;
      }
      throw err;
    } finally {
      failAll(new Error(`round ${r} is over`));
      he?.dispose();
      this.live = undefined;
    }
  }

  /** metrics.jsonl is for people: a failed write is logged, never a reason to stop the job. */
  private appendMetrics(m: RoundMetrics): void {
    try {
      this.metricsLog.append(m);
    } catch (err) {
      this.o.log.warn({ err, file: this.metricsLog.file }, 'could not append to metrics.jsonl');
    }
  }

  /**
   * The release point's bookkeeping: checks the round as it will be released (member indices
   * `received`) against the budget, then appends it to the ledger (fsync) and the accountant.
   * Returns false, and sets the budget stop, when releasing it would pass privacy.epsilonBudget;
   * nothing has been released then (masked inputs without unmask shares, or ciphertexts the key
   * holder was never asked to decrypt, are useless).
   */
  private recordRelease(
    r: number,
    received: number[],
    waiters: Waiter[],
    shareStd: number,
    scale: number,
  ): boolean {
    const cfg = this.config;
    const t = cfg.secureAggregation.threshold;
    const survivors = received.length;
    // Per-shard accounting needs shards that do not depend on other records (data/shard.ts):
    // under 'contiguous' a removed record shifts others across range boundaries, so every round
    // is charged to every shard there.
    const shards =
      cfg.dataset.sharding === 'contiguous'
        ? Array.from({ length: cfg.workers.count }, (_, i) => i)
        : received.map((i) => waiters[i]!.req.workerIndex);
    // Only honest noise counts: up to `colluders` survivors may subtract their own shares, so the
    // release holds survivors − c shares, each sized for t − c (announcement.ts).
    const c = cfg.privacy.colluders;
    const realised = realizedNoiseMultiplier(cfg.privacy.noiseMultiplier, survivors - c, t - c);
    const d = this.params.length;
    const integerEvent: DpEvent =
      shareStd >= 0.5
        ? poissonSampledEvent(
            cfg.privacy.samplingRate,
            distributedDiscreteGaussianEvent({
              l2ClipNorm: cfg.privacy.clipNorm,
              granularity: 1 / scale,
              dimension: d,
              localStddev: shareStd,
              contributors: survivors - c,
            }),
          )
        : nonPrivateEvent();
    const budget = cfg.privacy.epsilonBudget;
    if (budget !== null) {
      // The release is checked on the integer mechanism it would actually be (a proof).
      const after = this.accountant.epsilonAfter({
        samplingRate: cfg.privacy.samplingRate,
        noiseMultiplier: realised,
        survivors,
        shards,
        integerEvent,
      });
      if (after > budget) {
        this.doneReason = `privacy budget: releasing round ${r} would reach ε = ${after.toFixed(3)} > epsilonBudget ${budget}`;
        this.budgetStop = true;
        this.o.log.warn({ round: r, epsilon: this.epsilon, next: after }, 'round refused before release');
        return false;
      }
    }
    const entry: LedgerEntry = {
      round: r,
      samplingRate: cfg.privacy.samplingRate,
      noiseMultiplier: realised,
      survivors,
      shards,
      quorum: t,
      colluders: c,
      configuredNoiseMultiplier: cfg.privacy.noiseMultiplier,
      integerEvent,
      time: new Date().toISOString(),
    };
    this.ledger.append(entry);
    this.ledgerEntries.push(entry);
    this.accountant.record(entry);
    return true;
  }

  private checkpoint(): void {
    const cfg = this.config;
    const model: Record<string, NamedTensor> = {};
    const named: Record<string, Float32Array> = { ...this.o.initial };
    let o = 0;
    for (const s of this.specs) {
      const n = sizeOf(s.shape);
      named[s.name] = this.params.subarray(o, o + n);
      o += n;
    }
    for (const p of this.o.def.params) model[p.name] = tensor(Float32Array.from(named[p.name]!), p.shape);
    const st = this.optimizer.state();
    const optimizer: Record<string, NamedTensor> = { step: tensor(Float64Array.from([st.step])) };
    for (const [k, v] of Object.entries(st.slots)) optimizer[k] = tensor(v);
    this.lastCheckpoint = saveCheckpoint(cfg.checkpoint.dir, {
      manifest: {
        round: this.modelVersion,
        baseModelFingerprint: this.o.fingerprint,
        model: {
          kind: this.o.def.kind,
          trainable: this.specs.map((s) => s.name),
          parameters: this.params.length,
        },
        tensors: this.o.def.params.map((p) => ({ name: p.name, shape: p.shape, dtype: 'F32' })),
        optimizer: { kind: this.optimizer.kind, step: st.step },
        dp: {
          clipNorm: cfg.privacy.clipNorm,
          noiseMultiplier: cfg.privacy.noiseMultiplier,
          delta: cfg.privacy.delta,
          samplingRate: cfg.privacy.samplingRate,
          epsilonBudget: cfg.privacy.epsilonBudget,
          accountant: cfg.privacy.accountant,
        },
        accountant: { kind: `dp-${cfg.privacy.accountant}-per-shard`, events: this.ledgerEntries },
        epsilon: Number.isFinite(this.epsilon) ? this.epsilon : null,
      },
      model,
      optimizer,
    });
  }

  private writePrivacyReport(): string {
    const file = path.join(this.config.checkpoint.dir, 'privacy-report.json');
    const cfg = this.config;
    writeFileAtomic(
      file,
      JSON.stringify(
        {
          job: cfg.name,
          // JSON has no Infinity: a job without noise says so, never null or 0.
          epsilon: Number.isFinite(this.epsilon) ? this.epsilon : 'Infinity',
          nonPrivate: !Number.isFinite(this.epsilon),
          delta: this.delta,
          epsilonBudget: cfg.privacy.epsilonBudget,
          accountant: this.accountant.describe(),
          epsilonRdp: this.accountant.rdpEpsilon(),
          epsilonIntegerMechanism: integerMechanismEpsilon(this.ledgerEntries, this.delta, cfg.workers.count),
          integerMechanism:
            "each worker adds exact discrete Gaussian noise N_Z(0, (σΔs)²/(t − c)) (dp's CSPRNG sampler); epsilonIntegerMechanism is dp's RDP bound for the Poisson-subsampled distributed discrete Gaussian over the survivors − c honest shares (Kairouz, Liu, Steinke 2021 per order; tight subsampling for symmetric shift pairs, docs/privacy.md): a proof for the integers, and the job's epsilon with the rdp accountant",
          privacyUnit: 'one training record',
          samplingRate: cfg.privacy.samplingRate,
          clipNorm: cfg.privacy.clipNorm,
          noiseMultiplier: cfg.privacy.noiseMultiplier,
          quorum: cfg.secureAggregation.threshold,
          colluders: cfg.privacy.colluders,
          noiseRule:
            'each worker adds variance σ²Δ²/(t − c); a round with s survivors is accounted at σ·√((s − c)/(t − c)), the noise of its honest survivors alone',
          threatModel: `the aggregator may be curious; up to ${cfg.privacy.colluders} worker(s) may collude with it and remove their own noise shares (privacy.colluders); ε counts only the honest workers' noise`,
          releasedRounds: this.ledgerEntries,
          stopReason: this.doneReason,
        },
        null,
        2,
      ) + '\n',
    );
    return file;
  }
}

/** An `evaluate` answer as an Evaluation (a bare accuracy has no loss: NaN, reported as null). */
function evaluation(v: number | Evaluation): Evaluation {
  return typeof v === 'number' ? { accuracy: v, loss: NaN } : v;
}

export { CheckpointError };
