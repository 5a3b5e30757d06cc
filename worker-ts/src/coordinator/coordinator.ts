// The training coordinator, hosted by the aggregator process: policy around secure-agg's
// AggregatorServer (the proto-defined service every worker talks to). It owns the membership view
// and the round barrier (who is awaiting a round), the per-round parameters it announces, the
// release gate (budget check and the fsynced ledger append before anything is unmasked or
// decrypted), the accountant, the model state and optimizer, evaluation and checkpoints. The
// stages, signatures, HE rounds and the key holder's rules are secure-agg's.
//
// Lifecycle (CoordinatorState): 'CREATED' → 'RESUMED' → 'SERVING' → 'RUNNING' → 'DONE' | 'FAILED'
// → 'CLOSED'; any other transition throws with the current state in the message.
import path from 'node:path';
import {
  decode,
  HE_MAX_SUM_BOUND,
  planEncoding,
  SecAggError,
  type EncodingOptions,
  type Stage,
} from '@tensorguard/secure-agg';
import {
  AggregatorServer,
  type KeyHolderLink,
  type ModelParameters,
  type ModelVersionRef,
  type PendingRelease,
  type RoundSum,
  type ServerTlsOptions,
} from '@tensorguard/secure-agg/service';
import {
  distributedDiscreteGaussianEvent,
  nonPrivateEvent,
  poissonSampledEvent,
  realizedNoiseMultiplier,
  type DpEvent,
} from '@tensorguard/dp';
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
import { jobMessageBytes, parametersFingerprint } from '../aggregation.js';
import { jobFingerprint, PrivacyLedger, type LedgerEntry } from './ledger.js';
import { checkDeltaAgainstRecords, integerMechanismEpsilon, JobAccountant } from './privacy.js';
import { METRICS_FILE, RoundMetricsLog, type RoundMetrics } from '../report/metrics-log.js';

export type CoordinatorState = 'CREATED' | 'RESUMED' | 'SERVING' | 'RUNNING' | 'DONE' | 'FAILED' | 'CLOSED';

const TRANSITIONS: Record<CoordinatorState, readonly CoordinatorState[]> = {
  CREATED: ['RESUMED', 'FAILED'],
  RESUMED: ['SERVING', 'FAILED'],
  SERVING: ['RUNNING', 'FAILED', 'CLOSED'],
  RUNNING: ['DONE', 'FAILED'],
  DONE: ['CLOSED'],
  FAILED: ['CLOSED'],
  CLOSED: [],
};

/** Test hooks, injected by a harness that runs the coordinator in its own program. */
export interface CoordinatorHooks {
  /**
   * Called after a round's sum was released and applied, before its evaluation and checkpoint,
   * with the number of rounds released so far (the crash-consistency test kills the process here).
   */
  afterApply?: (releasedRounds: number) => void;
}

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
  hooks?: CoordinatorHooks;
}

/**
 * The coordinator's view of the HE key holder: secure-agg's KeyHolderClient.link() (the key holder
 * process and its rules live in secure-agg; the aggregator only sums and asks).
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

/** The round being aggregated: what its release gate needs to record it. */
interface LiveRound {
  r: number;
  shareStd: number;
  scale: number;
  /** Set by the release gate once the round is in the ledger. */
  recorded: boolean;
  /** Resolves when the key stages are over (masking: MASKED_INPUT opened). */
  keysDone: () => void;
  /** Resolves when the release gate is asked (the inputs are in). */
  gateAsked: () => void;
}

const WORKER_ID = /^worker-(\d+)$/;

export class Coordinator {
  #state: CoordinatorState = 'CREATED';
  readonly config: RunConfig;
  private readonly o: CoordinatorOptions;
  private readonly specs;
  params: Float32Array;
  private optimizer: Optimizer;
  private readonly ledger: PrivacyLedger;
  /** metrics.jsonl beside the checkpoints: one line per released round. */
  private readonly metricsLog: RoundMetricsLog;
  private readonly accountant: JobAccountant;
  private ledgerEntries: LedgerEntry[] = [];
  /** Round number of the last update applied to `params`. */
  modelVersion = 0;
  /** The published model version (GetModel): a copy, so that a round in flight cannot change it. */
  private published: ModelParameters | undefined;
  private nextRound = 1;
  /** Records per shard (worker index), as each worker declared at Join; kept after dropouts. */
  private readonly shardSizes = new Map<number, number>();
  /** δ has been checked against the job's records (every shard's size known). */
  private deltaChecked = false;
  private server: AggregatorServer | undefined;
  private live: LiveRound | undefined;
  private lastCheckpoint: string | null = null;
  private lastAccuracy: number | null = null;
  private doneReason = '';
  /** Set when a round was refused at its release point because it would pass the budget. */
  private budgetStop = false;

  get state(): CoordinatorState {
    return this.#state;
  }

  private transition(to: CoordinatorState): void {
    if (!TRANSITIONS[this.#state].includes(to))
      throw new Error(`coordinator: illegal transition ${this.#state} → ${to}`);
    this.#state = to;
  }

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
    this.transition('RESUMED');
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
    this.publish();
    if (events.length > 0) {
      this.o.log.info(
        { releasedRounds: this.accountant.roundCount, epsilon: this.epsilon },
        'privacy ledger replayed',
      );
    }
  }

  /** Publishes `params` as model version `modelVersion` for GetModel. */
  private publish(): void {
    const parameters = Float32Array.from(this.params);
    this.published = {
      version: { round: this.modelVersion, fingerprint: parametersFingerprint(parameters) },
      parameters,
    };
  }

  /**
   * Starts secure-agg's aggregator service on `address` (host:port; port 0 for any) with mutual
   * TLS when `tls` is given (then a worker's id is its certificate's common name). Its first round
   * continues the resumed numbering. Resolves with the bound port.
   */
  async listen(address: string, tls?: ServerTlsOptions): Promise<number> {
    this.transition('SERVING');
    const cfg = this.config;
    const stageMs = this.o.stageTimeoutMs ?? 15_000;
    const mode = cfg.secureAggregation.mode;
    this.server = new AggregatorServer({
      address,
      ...(tls ? { tls } : {}),
      vectorLength: this.params.length,
      bits: cfg.secureAggregation.bits === 32 ? 32 : 64,
      scheme: mode,
      ...(mode === 'he' ? { keyHolder: this.o.keyHolder! } : {}),
      firstRound: this.nextRound,
      deadlinesMs: {
        ADVERTISE_KEYS: stageMs,
        SHARE_KEYS: stageMs,
        MASKED_INPUT: cfg.roundTimeoutMs,
        UNMASK: stageMs,
      },
      encryptedInputMs: cfg.roundTimeoutMs,
      maxMessageBytes: jobMessageBytes(this.params.length, mode),
      releaseGate: (p) => this.releaseGate(p),
      onStage: (round, stage) => this.onStage(round, stage),
      model: (v) => this.modelFor(v),
      logger: this.o.log,
    });
    return this.server.start();
  }

  /**
   * Stops the service. After run, first waits (up to `drainMs`) until every member was told that
   * the job is over, so that none finds the server gone and retries until it gives up.
   */
  async close(drainMs = 5000): Promise<void> {
    if (this.#state === 'CLOSED') return;
    if (this.#state === 'DONE' || this.#state === 'FAILED') await this.server?.drained(drainMs);
    if (this.#state !== 'CREATED' && this.#state !== 'RESUMED') this.transition('CLOSED');
    await this.server?.close(2000);
  }

  private modelFor(v: ModelVersionRef): ModelParameters | undefined {
    const p = this.published;
    return p && p.version.round === v.round && p.version.fingerprint === v.fingerprint ? p : undefined;
  }

  /**
   * The release gate (secure-agg calls it once a round's inputs are in and before anything that
   * reveals the sum): checks the budget and appends the round to the ledger. Throwing refuses the
   * release; nothing is unmasked or decrypted then.
   */
  private releaseGate(p: PendingRelease): Promise<void> {
    const live = this.live;
    if (!live || live.r !== p.round)
      return Promise.reject(new Error(`round ${p.round} is not the coordinator's round in flight`));
    live.gateAsked();
    const shards = p.survivors.map((id) => Number(WORKER_ID.exec(id)![1]));
    if (!this.recordRelease(p.round, shards, live.shareStd, live.scale))
      return Promise.reject(new Error(this.doneReason));
    live.recorded = true;
    return Promise.resolve();
  }

  private onStage(round: number, stage: Stage): void {
    if (this.live?.r === round && stage === 'MASKED_INPUT') this.live.keysDone();
  }

  /** Runs rounds until `rounds` are released, the budget stops training, or a fatal error. */
  async run(): Promise<CoordinatorResult> {
    this.transition('RUNNING');
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
        // δ ≤ 1/N, with N the workers' shard sizes: checked once every worker has reported its own
        // (normally before round 1); the driver could only check it where it knew N in advance.
        if (this.shardSizes.size === cfg.workers.count && !this.deltaChecked) {
          this.deltaChecked = true;
          const records = [...this.shardSizes.values()].reduce((x, y) => x + y, 0);
          checkDeltaAgainstRecords(this.delta, records, cfg.privacy.allowDeltaAboveInverseN);
        }
        await this.runRound(members);
        if (this.budgetStop) break;
      }
      if (!this.doneReason) this.doneReason = `completed ${this.releasedRounds} rounds`;
      this.lastAccuracy = evaluation(this.o.evaluate(this.params)).accuracy;
      this.checkpoint();
      this.transition('DONE');
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
      this.doneReason = `failed: ${error}`;
      this.o.log.error({ err }, 'coordinator failed');
      this.transition('FAILED');
    }
    // Every AwaitRound, now and later, is answered with the reason: workers exit.
    this.server?.finish(this.doneReason);
    const report = this.writePrivacyReport();
    return {
      status: this.#state === 'DONE' ? 'succeeded' : 'failed',
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

  /** The joined workers of this job now awaiting a round, by index (others are never members). */
  private awaitingWorkers(): { id: string; index: number }[] {
    const n = this.config.workers.count;
    const sizes = this.server!.shardSizes();
    const out: { id: string; index: number }[] = [];
    for (const id of this.server!.awaiting()) {
      const m = WORKER_ID.exec(id);
      const index = m ? Number(m[1]) : -1;
      if (!(index >= 0 && index < n)) continue;
      this.shardSizes.set(index, sizes.get(id) ?? 0);
      out.push({ id, index });
    }
    return out.sort((a, b) => a.index - b.index);
  }

  /** Round barrier: all workers awaiting, or ≥ max(t, 2) after the grace period. */
  private async gatherMembers(first: boolean): Promise<string[]> {
    const n = this.config.workers.count;
    const need = Math.max(this.config.secureAggregation.threshold, 2);
    const startedAt = Date.now();
    let firstSeen: number | undefined;
    for (;;) {
      const ws = this.awaitingWorkers();
      const k = ws.length;
      if (k > 0 && firstSeen === undefined) firstSeen = Date.now();
      const grace = first ? (this.o.startupTimeoutMs ?? 120_000) : (this.o.joinGraceMs ?? 3000);
      const since = first ? startedAt : (firstSeen ?? Date.now());
      if (k >= n || (k >= need && Date.now() - since >= grace)) return ws.map((w) => w.id);
      if (first && Date.now() - startedAt > 4 * (this.o.startupTimeoutMs ?? 120_000)) {
        throw new Error(
          `only ${k} of ${n} workers joined; at least ${need} are needed (secureAggregation.threshold)`,
        );
      }
      await this.server!.awaitingChange(250);
    }
  }

  /** What a round with `members` contributors announces: the same derivation every worker checks. */
  private encodingOptions(members: number): { enc: EncodingOptions; shareStd: number; sensitivity: number } {
    const d = this.params.length;
    const { shareStd, sensitivity } = roundPrivacy(this.config, d, members);
    const maxShard = Math.max(1, ...this.shardSizes.values());
    return { enc: roundEncoding(this.config, d, members, maxShard), shareStd, sensitivity };
  }

  private async runRound(members: string[]): Promise<void> {
    const cfg = this.config;
    const server = this.server!;
    const r = this.nextRound++;
    const roundStart = performance.now();
    const bytesAtStart = server.traffic();
    const timer = new PhaseTimer({ round: r });
    /** Phases only metrics.jsonl has (the stdout line keeps its three). */
    const more = new PhaseTimer({ round: r });
    const n = members.length;
    const { enc, shareStd } = this.encodingOptions(n);
    const plan = planEncoding(enc);
    const privacy = roundPrivacy(cfg, this.params.length, n);
    if (cfg.secureAggregation.mode === 'he' && plan.bits === 64 && plan.sumBound >= HE_MAX_SUM_BOUND) {
      throw new ConfigError(
        'secureAggregation.scale',
        `in HE mode the sum must stay below 2^58 in integer units, but it can reach ${plan.sumBound.toExponential(3)}; lower secureAggregation.scale or privacy.clipNorm`,
      );
    }
    let gateAsked!: () => void;
    const asked = new Promise<void>((resolve) => (gateAsked = resolve));
    let keysDone!: () => void;
    const keys = new Promise<void>((resolve) => (keysDone = resolve));
    const live: LiveRound = { r, shareStd, scale: enc.scale, recorded: false, gateAsked, keysDone };
    this.live = live;
    const summed = server.openRound({
      members,
      modelVersion: this.published!.version,
      training: {
        encoding: enc,
        noiseShareStd: shareStd,
        samplingRate: cfg.privacy.samplingRate,
        clipNorm: cfg.privacy.clipNorm,
      },
      threshold: privacy.shamirThreshold,
      degree: privacy.degree,
      minInputs: Math.min(cfg.secureAggregation.threshold, n),
      bits: plan.bits,
    });
    // Observed either way below; this keeps an early rejection from being reported as unhandled.
    summed.catch(() => {});
    this.o.log.info({ round: r, members, mode: cfg.secureAggregation.mode }, 'round opened');
    let released: RoundSum;
    try {
      if (cfg.secureAggregation.mode !== 'he')
        await more.time('keys', () => Promise.race([keys, summed.then(() => {})]));
      await timer.time('aggregate', () => Promise.race([asked, summed.then(() => {})]));
      released = await timer.time('unmask', () => summed);
    } catch (err) {
      if (!(err instanceof SecAggError)) throw err;
      if (this.budgetStop) return;
      if (cfg.secureAggregation.mode === 'he' && live.recorded) {
        // Not a round abort: without the key holder no later round can be released either.
        throw new Error(`round ${r}: ${err.message}`, { cause: err });
      }
      this.o.log.warn({ round: r, err: err.message }, 'round aborted; opening the next one');
      return;
    } finally {
      this.live = undefined;
    }
    if (released.round !== r)
      throw new Error(`the aggregator released round ${released.round} while the coordinator ran round ${r}`);
    await timer.time('apply', () => {
      const sum = decode(plan, released.ring);
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
      this.publish();
    });
    this.o.hooks?.afterApply?.(this.releasedRounds);
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
    const survivors = released.survivors.length;
    this.o.emit({
      type: 'metrics',
      round: count,
      rounds_total: cfg.rounds,
      epsilon: this.epsilon,
      delta: this.delta,
      eval_accuracy: ev?.accuracy ?? null,
      eval_loss: evalLoss,
      workers_alive: survivors,
      round_seconds: roundSeconds,
      phase_seconds: rounded(timer.seconds),
    });
    const bytes = server.traffic();
    this.appendMetrics({
      round: count,
      rounds_total: cfg.rounds,
      epsilon: Number.isFinite(this.epsilon) ? this.epsilon : 'Infinity',
      epsilon_budget: cfg.privacy.epsilonBudget,
      delta: this.delta,
      round_seconds: roundSeconds,
      phase_seconds: rounded({ ...timer.seconds, ...more.seconds }),
      bytes_received: bytes.received - bytesAtStart.received,
      bytes_sent: bytes.sent - bytesAtStart.sent,
      workers_total: cfg.workers.count,
      workers_members: members.length,
      workers_alive: survivors,
      dropouts: members.length - survivors,
      eval_accuracy: ev?.accuracy ?? null,
      eval_loss: evalLoss,
      time: new Date().toISOString(),
    });
    this.o.log.info(
      { round: r, survivors: released.survivors.length, epsilon: this.epsilon },
      'round released and applied',
    );
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
   * The release point's bookkeeping: checks the round as it will be released (the shards of its
   * survivors, `received`) against the budget, then appends it to the ledger (fsync) and the accountant.
   * Returns false, and sets the budget stop, when releasing it would pass privacy.epsilonBudget;
   * nothing has been released then (masked inputs without unmask shares, or ciphertexts the key
   * holder was never asked to decrypt, are useless).
   */
  private recordRelease(r: number, received: number[], shareStd: number, scale: number): boolean {
    const cfg = this.config;
    const t = cfg.secureAggregation.threshold;
    const survivors = received.length;
    // Per-shard accounting needs shards that do not depend on other records (data/shard.ts):
    // under 'contiguous' a removed record shifts others across range boundaries, so every round
    // is charged to every shard there.
    const shards =
      cfg.dataset.sharding === 'contiguous'
        ? Array.from({ length: cfg.workers.count }, (_, i) => i)
        : received;
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
    const jsonEpsilon = (e: number | null) => (e === null || Number.isFinite(e) ? e : 'Infinity');
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
            "each worker adds exact discrete Gaussian noise N_Z(0, (σΔs)²/(t − c)) (dp's CSPRNG sampler); epsilonIntegerMechanism is dp's RDP bound for the Poisson-subsampled distributed discrete Gaussian over the survivors − c honest shares (Kairouz, Liu, Steinke 2021 per order; tight subsampling for symmetric shift pairs, docs/privacy.md): a proof for the integers, and the job's epsilon with either accountant",
          // pld only: the continuous Gaussian's PLD, labelled as the non-rigorous reference it is.
          ...(this.accountant.kind === 'pld'
            ? { epsilonContinuousReference: jsonEpsilon(this.accountant.continuousReferenceEpsilon()) }
            : {}),
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
