// The worker's side of training, on secure-agg's SecureAggClient (the proto service): join the
// aggregator with the shard's record count, then for each round it is invited to: check the
// announcement against the job config (announcement.ts) → fetch the model when its version is not
// the one held (GetModel) → key setup (masking) → Poisson-sample the shard → clipped sum →
// fixed-point encoding with randomized rounding plus the integer noise share → mask (or encrypt,
// HE) → upload → unmask shares. The protocol itself (stages, signatures, HE encryption) is the
// client's. Everything that leaves the worker is a masked vector, ciphertexts or a public
// protocol message.
import {
  DeadlineError,
  encode,
  JobFinishedError,
  planEncoding,
  RoundAbortedError,
  SecAggError,
  StageError,
  UnavailableError,
  type Encoding,
  type RingVector,
} from '@tensorguard/secure-agg';
import {
  SecureAggClient,
  type ModelVersionRef,
  type RoundOpen,
  type RoundTraining,
} from '@tensorguard/secure-agg/service';
import { jobMessageBytes, parametersFingerprint } from './aggregation.js';
import { checkAnnouncement } from './announcement.js';
import type { ClippingEngine } from './clipping.js';
import type { RunConfig } from './config.js';
import type { Dataset } from './data/dataset.js';
import { recordLength } from './data/dataset.js';
import { x509Identity } from './identity.js';
import type { Logger } from './logger.js';
import { PhaseTimer, rounded } from './metrics.js';
import type { Tf } from './models/model.js';
import { NoiseShares } from './noise.js';
import { roundLimit, RoundLimitError, type RoundLimit } from './round-limit.js';
import { poissonSample, systemRandom, seededRandom, type RandomSource } from './sampling.js';
import { clientTls, type TlsIdentity } from './tls.js';

export interface RoundClientOptions {
  tf: Tf;
  address: string;
  workerIndex: number;
  /**
   * The worker's own copy of the resolved job config and its model's trainable parameter count:
   * every round announcement is checked against them (announcement.ts) before the worker takes part.
   */
  config: RunConfig;
  dimension: number;
  /** Mutual TLS with the job's identity (`--tls-dir`); insecure (loopback only) without. */
  tls?: TlsIdentity;
  /**
   * The job identity that signs this worker's protocol messages (advertised keys, survivor
   * attestations) and checks the HE key holder's; default `tls`'s. Given without `tls`, the protocol is that of a TLS run over a
   * plaintext channel (`--identity-dir`: how the benchmark isolates the transport's cost).
   */
  identity?: TlsIdentity;
  shard: Dataset;
  engine: ClippingEngine;
  log: Logger;
  emit: (line: Record<string, unknown>) => void;
  /** Tests only: deterministic sampling. */
  samplingSeed?: string;
  /** Give up when the aggregator is unreachable for this long (default 120 s). */
  unreachableMs?: number;
}

/** How long one AwaitRound call waits before it is renewed. */
const LONG_POLL_MS = 600_000;

export class RoundClient {
  private readonly client: SecureAggClient;
  private readonly workerId: string;
  /** The model version the engine holds (none until the first round's GetModel). */
  private version: ModelVersionRef | undefined;
  private readonly random: RandomSource;
  /** HE mode: the key id of the first announcement; the key holder's key stays for the job. */
  private heKeyId: string | undefined;
  /** This worker's noise shares; the next round's is drawn while this round uploads and waits. */
  private readonly noise = new NoiseShares();
  /** The phase timer of the round in flight (SecureAggClient's `phase` hook reports into it). */
  private timer: PhaseTimer | undefined;
  /** The most rounds this worker's shard may take part in (round-limit.ts). */
  readonly limit: RoundLimit;
  /**
   * Rounds whose update (computed from the shard) this worker handed to the client for upload:
   * each may be released, whatever the round's outcome here says, so each counts.
   */
  private contributed = 0;

  constructor(private readonly o: RoundClientOptions) {
    this.workerId = `worker-${o.workerIndex}`;
    const identity = o.identity ?? o.tls;
    this.client = new SecureAggClient({
      address: o.address,
      workerId: this.workerId,
      ...(o.tls ? { tls: clientTls(o.tls) } : {}),
      // The job identity also checks the HE key holder's signature and derives this worker's pads.
      ...(identity ? { identity: x509Identity(identity), jobIdentity: identity } : {}),
      maxMessageBytes: jobMessageBytes(o.dimension, o.config.secureAggregation.mode),
      phase: (name, run) => this.phase(name, run),
    });
    this.random =
      o.samplingSeed !== undefined ? seededRandom(`${o.samplingSeed}/${o.workerIndex}`) : systemRandom;
    this.limit = roundLimit(o.config, o.dimension);
  }

  /** Rounds this worker has contributed its update to so far. */
  get contributedRounds(): number {
    return this.contributed;
  }

  /**
   * SecureAggClient's phases, timed into the round's timer. The upload's answer (the survivors)
   * is the moment every worker of the round shares: the window 'local' that clipping opened ends
   * there.
   */
  private async phase<T>(name: 'mask' | 'upload', run: () => Promise<T>): Promise<T> {
    const timer = this.timer;
    if (!timer) return run();
    const out = await timer.time(name, run);
    if (name === 'upload' && timer.inWindow) timer.closeWindow();
    return out;
  }

  /** Retries UnavailableError (aggregator not up yet, or restarting) until `unreachableMs`. */
  private async retrying<T>(call: () => Promise<T>): Promise<T> {
    const giveUp = Date.now() + (this.o.unreachableMs ?? 120_000);
    for (let delay = 100; ; delay = Math.min(2000, delay * 2)) {
      try {
        return await call();
      } catch (err) {
        if (!(err instanceof UnavailableError) || Date.now() > giveUp) throw err;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private async join(): Promise<void> {
    const joined = await this.retrying(() => this.client.join(this.o.shard.size));
    this.o.log.info({ nextRound: joined.nextRound }, 'joined');
  }

  /** Runs until the aggregator says the job is finished. Returns its reason. */
  async run(): Promise<string> {
    this.o.log.info({ roundLimit: this.limit.rounds, source: this.limit.source }, 'round limit');
    await this.join();
    let minRound = 0;
    for (;;) {
      let open: RoundOpen;
      try {
        open = await this.retrying(() => this.client.awaitRound(minRound, LONG_POLL_MS));
      } catch (err) {
        if (err instanceof JobFinishedError) return err.message;
        if (err instanceof DeadlineError) continue;
        if (err instanceof StageError) {
          // Not a member (any more): a restarted aggregator, or this worker missed a stage and was
          // dropped from the membership. Join again; the next round takes it back.
          await this.join();
          continue;
        }
        throw err;
      }
      const r = open.params.round;
      minRound = r + 1;
      // A refused announcement ends the worker (AnnouncementError propagates): a coordinator that
      // asks for other privacy parameters once would ask again, and it must not get an update.
      checkAnnouncement(open, {
        cfg: this.o.config,
        workerId: this.workerId,
        dimension: this.o.dimension,
        shardSize: this.o.shard.size,
        ...(this.heKeyId !== undefined ? { heKeyId: this.heKeyId } : {}),
      });
      if (open.he) this.heKeyId = open.he.keyId;
      // Past its limit a worker ends (RoundLimitError propagates): a coordinator that asks for one
      // more round would ask again, and the shard's records must not be in another sum.
      if (this.contributed >= this.limit.rounds) {
        const err = new RoundLimitError(r, this.contributed, this.limit);
        this.o.log.error({ round: r, contributed: this.contributed, limit: this.limit.rounds }, err.message);
        throw err;
      }
      try {
        await this.round(open);
      } catch (err) {
        if (err instanceof SecAggError && !(err instanceof JobFinishedError)) {
          this.o.log.warn({ round: r, err: err.message }, 'round abandoned; waiting for the next');
          continue;
        }
        throw err;
      }
    }
  }

  /** Loads the announced model version unless the engine holds it; checks its fingerprint. */
  private async syncModel(open: RoundOpen): Promise<void> {
    const v = open.modelVersion;
    if (!v) throw new RoundAbortedError(`round ${open.params.round} names no model version`);
    if (this.version?.round === v.round && this.version.fingerprint === v.fingerprint) return;
    const m = await this.client.getModel(v, this.o.dimension);
    if (m.version.round !== v.round || parametersFingerprint(m.parameters) !== v.fingerprint) {
      throw new RoundAbortedError(
        `round ${open.params.round}: GetModel answered parameters that do not match the announced version ${v.round} (${v.fingerprint.slice(0, 16)})`,
      );
    }
    this.o.engine.setTrainable(m.parameters);
    this.version = v;
  }

  private async round(open: RoundOpen): Promise<void> {
    const r = open.params.round;
    const training = open.training!; // checkAnnouncement refused a round without it
    // Clipping time and the upload's wait for the others depend on this worker's private batch
    // size: they run in the window 'local' (clip → upload's end) and are never exported alone.
    const timer = new PhaseTimer({ round: r, worker: this.o.workerIndex }, ['clip', 'upload']);
    const bytesBefore = this.client.bytesSent;
    await this.syncModel(open);
    const plan = planEncoding(training.encoding);
    // Key setup first (it needs no input), then the update; the client masks (or encrypts) and
    // uploads it inside the `phase` hook, timed as 'mask' and 'upload'.
    const prepared = await this.client.prepare(open);
    let outcome;
    try {
      const encoded = await this.encodedUpdate(training, plan, timer, open.params.vectorLength);
      this.contributed += 1;
      this.timer = timer;
      outcome = await this.client.submit(prepared, encoded);
    } finally {
      this.timer = undefined;
      if (timer.inWindow) timer.closeWindow();
    }
    if (!outcome.completed) this.o.log.warn({ round: r, reason: outcome.reason }, 'round did not complete');
    this.o.emit({
      type: 'metrics',
      round: r,
      phase_seconds: rounded(timer.exported()),
      bytes_sent: this.client.bytesSent - bytesBefore,
    });
  }

  /** Poisson sample → clipped sum → fixed-point encoding plus the integer noise share. */
  private async encodedUpdate(
    training: RoundTraining,
    plan: Encoding,
    timer: PhaseTimer,
    vectorLength: number,
  ): Promise<RingVector> {
    const { tf, engine, shard } = this.o;
    const indices = await timer.time('sample', () =>
      poissonSample(shard.size, training.samplingRate, this.random),
    );
    timer.openWindow('local');
    const clipped = await timer.time('clip', async () => {
      const len = recordLength(shard);
      const B = indices.length;
      if (B === 0) return new Float32Array(vectorLength);
      const feats = shard.dtype === 'float32' ? new Float32Array(B * len) : new Int32Array(B * len);
      const labels = new Int32Array(B);
      for (let i = 0; i < B; i++) {
        const j = indices[i]!;
        feats.set(shard.features.subarray(j * len, (j + 1) * len), i * len);
        labels[i] = shard.labels[j]!;
      }
      const x = tf.tensor(feats, [B, ...shard.featureShape], shard.dtype);
      const y = tf.tensor1d(labels, 'int32');
      try {
        return (await engine.clippedSum(x, y, training.clipNorm)).sum;
      } finally {
        tf.dispose([x, y]);
      }
    });
    const noise = await timer.time('noise', () => this.noise.take(clipped.length, training.noiseShareStd));
    this.noise.prefetch(clipped.length, training.noiseShareStd);
    return timer.time('encode', () => encode(plan, clipped, noise));
  }

  close(): void {
    this.noise.dispose();
    this.client.close();
  }
}
