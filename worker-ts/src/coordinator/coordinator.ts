// The training coordinator, hosted by the aggregator process: policy around secure-agg's
// AggregatorServer (the proto-defined service every worker talks to). It wires four parts, each
// owning one piece of state:
//
//   membership.ts    who belongs to the job (one id per index), shard sizes, the round barrier
//   release-gate.ts  the budget check and the fsynced ledger append before anything is unmasked
//                    or decrypted, the accountant, the privacy report
//   model-state.ts   the parameters, the optimizer, the published model version (GetModel)
//   checkpoints.ts   checkpoints of the model state and metrics.jsonl in checkpoint.dir
//
// and itself holds only the lifecycle and the round in flight (the per-round parameters it
// announces, the stage timings). The stages, signatures, HE rounds and the key holder's rules are
// secure-agg's.
//
// Lifecycle (CoordinatorState): 'CREATED' → 'RESUMED' → 'SERVING' → 'RUNNING' → 'DONE' | 'FAILED'
// → 'CLOSED'; any other transition throws with the current state in the message. close() during
// 'RUNNING' aborts the run (its AbortSignal), which then ends 'FAILED', and closes after it.
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
  type PendingRelease,
  type RoundSum,
  type ServerTlsOptions,
} from '@tensorguard/secure-agg/service';
import { CheckpointError } from '../checkpoint/errors.js';
import { ConfigError, type RunConfig } from '../config.js';
import type { Logger } from '../logger.js';
import { PhaseTimer, rounded } from '../metrics.js';
import { trainableSpecs, type ModelDef } from '../models/model.js';
import { roundEncoding, roundPrivacy } from '../announcement.js';
import { MAX_SHARE_STD } from '../noise.js';
import { jobMessageBytes } from '../aggregation.js';
import { Checkpoints } from './checkpoints.js';
import { Membership } from './membership.js';
import { ModelState } from './model-state.js';
import { ReleaseGate } from './release-gate.js';

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

export class Coordinator {
  #state: CoordinatorState = 'CREATED';
  readonly config: RunConfig;
  private readonly o: CoordinatorOptions;
  private readonly model: ModelState;
  private readonly membership: Membership;
  private readonly gate: ReleaseGate;
  private readonly checkpoints: Checkpoints;
  private nextRound = 1;
  private server: AggregatorServer | undefined;
  private live: LiveRound | undefined;
  private lastAccuracy: number | null = null;
  private doneReason = '';
  /** Aborted by close(): ends a run that is waiting at the barrier or in a round. */
  readonly #abort = new AbortController();
  #closing: Promise<void> | undefined;
  #running: Promise<unknown> | undefined;

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
    if (o.config.secureAggregation.mode === 'he' && !o.keyHolder) {
      throw new ConfigError(
        'secureAggregation.mode',
        "'he' needs a key holder; pass CoordinatorOptions.keyHolder",
      );
    }
    this.model = new ModelState(trainableSpecs(o.def), o.initial, {
      ...o.config.optimizer,
      totalSteps: o.config.rounds,
    });
    this.checkpoints = new Checkpoints(o);
    this.gate = new ReleaseGate({ config: o.config, dimension: this.model.params.length, log: o.log });
    this.membership = new Membership({
      count: o.config.workers.count,
      quorum: o.config.secureAggregation.quorum,
      ...(o.startupTimeoutMs !== undefined ? { startupTimeoutMs: o.startupTimeoutMs } : {}),
      ...(o.joinGraceMs !== undefined ? { joinGraceMs: o.joinGraceMs } : {}),
      onRefused: (id, err) => o.log.warn({ workerId: id, index: err.index }, err.message),
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
    return this.gate.delta;
  }
  get epsilon(): number {
    return this.gate.epsilon;
  }
  get releasedRounds(): number {
    return this.gate.releasedRounds;
  }
  /** Round number of the last update applied to `params`. */
  get modelVersion(): number {
    return this.model.version;
  }
  /** The trainable parameters, flat (updated in place as rounds are applied). */
  get params(): Float32Array {
    return this.model.params;
  }
  /** The job's output parameters: the iterates' average with optimizer.ema, else `params`. */
  get output(): Float32Array {
    return this.model.output();
  }

  /**
   * Restores from the latest checkpoint and the ledger. The accountant gets every round in the
   * ledger and in the checkpoint's accountant state (deduplicated by round number), so a round
   * released after the last checkpoint is counted and none is counted twice. Throws
   * CheckpointError (naming the file) for a corrupt checkpoint or another base model.
   */
  resume(): void {
    this.transition('RESUMED');
    const ck = this.checkpoints.restore(this.model);
    const last = this.gate.replay(ck?.round ?? 0, ck?.events ?? []);
    this.nextRound = Math.max(this.model.version, last) + 1;
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
      vectorLength: this.model.params.length,
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
      maxMessageBytes: jobMessageBytes(this.model.params.length, mode),
      releaseGate: (p) => this.releaseGate(p),
      onStage: (round, stage) => this.onStage(round, stage),
      model: (v) => this.model.modelFor(v),
      logger: this.o.log,
    });
    return this.server.start();
  }

  /**
   * Stops the service. During run, first aborts it (run then resolves 'failed' with `reason` as
   * its error) and waits for it; then, as after run, drains.
   * After run, first waits (up to `drainMs`) until every member was told that the job is over, so
   * that none finds the server gone and retries until it gives up.
   */
  close(drainMs = 5000, reason = 'the coordinator was closed during the run'): Promise<void> {
    // A second call (a signal's, then the program's own) waits for the first.
    this.#closing ??= this.#close(drainMs, reason);
    return this.#closing;
  }

  async #close(drainMs: number, reason: string): Promise<void> {
    if (this.#state === 'CLOSED') return;
    if (this.#state === 'RUNNING') {
      this.#abort.abort(new Error(reason));
      // No round opens again, the one in flight is aborted, and the service stays up until every
      // member has been told that the job is over (below), so that none retries a vanished server.
      this.server?.finish(`failed: ${reason}`);
      this.server?.abortRounds(reason);
      await this.#running;
    }
    if (this.#state === 'DONE' || this.#state === 'FAILED') await this.server?.drained(drainMs);
    if (this.#state !== 'CREATED' && this.#state !== 'RESUMED') this.transition('CLOSED');
    await this.server?.close(2000);
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
    let survivors: number[];
    try {
      survivors = p.survivors.map((id) => this.membership.indexOf(id));
      if (!this.gate.admit({ round: p.round, survivors, shareStd: live.shareStd, scale: live.scale }))
        return Promise.reject(new Error(this.gate.refusal));
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    live.recorded = true;
    return Promise.resolve();
  }

  private onStage(round: number, stage: Stage): void {
    if (this.live?.r === round && stage === 'MASKED_INPUT') this.live.keysDone();
  }

  /** Runs rounds until `rounds` are released, the budget stops training, or a fatal error. */
  async run(): Promise<CoordinatorResult> {
    this.transition('RUNNING');
    const running = this.#run();
    this.#running = running.catch(() => {});
    return running;
  }

  async #run(): Promise<CoordinatorResult> {
    const cfg = this.config;
    const signal = this.#abort.signal;
    let error: string | undefined;
    try {
      let first = true;
      while (this.releasedRounds < cfg.rounds) {
        const stop = this.gate.checkNextRound();
        if (stop !== undefined) {
          this.doneReason = stop;
          break;
        }
        const members = await this.membership.gather(this.server!, first, signal);
        first = false;
        if (this.membership.shardSizes.size === cfg.workers.count)
          this.gate.checkDelta(this.membership.totalRecords());
        await this.runRound(members);
        if (this.gate.refusal !== undefined) break;
      }
      if (!this.doneReason) this.doneReason = `completed ${this.releasedRounds} rounds`;
      this.lastAccuracy = evaluation(this.o.evaluate(this.model.output())).accuracy;
      this.saveCheckpoint();
      this.transition('DONE');
    } catch (err) {
      // Aborted by close(): its reason, not whatever the interrupted round threw.
      const cause: unknown = signal.aborted ? signal.reason : err;
      error = cause instanceof Error ? cause.message : String(cause);
      this.doneReason = `failed: ${error}`;
      this.o.log.error({ err }, 'coordinator failed');
      this.transition('FAILED');
    }
    // Every AwaitRound, now and later, is answered with the reason: workers exit.
    this.server?.finish(this.doneReason);
    const report = this.gate.writeReport(this.doneReason);
    return {
      status: this.#state === 'DONE' ? 'succeeded' : 'failed',
      epsilon: this.epsilon,
      delta: this.delta,
      testAccuracy: this.lastAccuracy,
      rounds: this.releasedRounds,
      checkpoint: this.checkpoints.last,
      privacyReport: report,
      stopReason: this.doneReason,
      ...(error !== undefined ? { error } : {}),
    };
  }

  /** What a round with `members` contributors announces: the same derivation every worker checks. */
  private encodingOptions(members: number): { enc: EncodingOptions; shareStd: number; sensitivity: number } {
    const d = this.model.params.length;
    const { shareStd, sensitivity } = roundPrivacy(this.config, d, members);
    return {
      enc: roundEncoding(this.config, d, members, this.membership.maxShard()),
      shareStd,
      sensitivity,
    };
  }

  private saveCheckpoint(): void {
    this.checkpoints.save(this.model, { events: this.gate.entries, epsilon: this.epsilon });
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
    const privacy = roundPrivacy(cfg, this.model.params.length, n);
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
      modelVersion: this.model.published.version,
      training: {
        encoding: enc,
        noiseShareStd: shareStd,
        samplingRate: cfg.privacy.samplingRate,
        clipNorm: cfg.privacy.clipNorm,
      },
      threshold: privacy.shamirThreshold,
      degree: privacy.degree,
      minInputs: Math.min(cfg.secureAggregation.quorum, n),
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
      if (this.gate.refusal !== undefined) return;
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
      const norm = 1 / (cfg.privacy.samplingRate * this.membership.totalRecords());
      const grad = new Float32Array(sum.length);
      for (let i = 0; i < sum.length; i++) grad[i] = sum[i]! * norm;
      // Throws, keeping the old parameters, when the update is non-finite (an empty shard's 0/0).
      this.model.apply(r, grad);
    });
    this.o.hooks?.afterApply?.(this.releasedRounds);
    let ev: Evaluation | null = null;
    const count = this.releasedRounds;
    if (count % cfg.evaluation.everyRounds === 0 || count >= cfg.rounds) {
      ev = await more.time('evaluate', () => evaluation(this.o.evaluate(this.model.output())));
      this.lastAccuracy = ev.accuracy;
    }
    if (count % cfg.checkpoint.everyRounds === 0 && count < cfg.rounds)
      await more.time('checkpoint', () => this.saveCheckpoint());
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
    this.checkpoints.appendMetrics({
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
}

/** An `evaluate` answer as an Evaluation (a bare accuracy has no loss: NaN, reported as null). */
function evaluation(v: number | Evaluation): Evaluation {
  return typeof v === 'number' ? { accuracy: v, loss: NaN } : v;
}

export { CheckpointError };
