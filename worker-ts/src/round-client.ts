// The worker's side of training: join the coordinator, then for each round it is invited to:
// key setup (secure-agg RoundParticipant) → Poisson-sample the shard → clipped sum → fixed-point
// encoding with randomized rounding plus the integer noise share → mask → upload → unmask shares.
// In HE mode the key setup and unmask stages go away and "mask" is encryption of the same encoded
// vector (plus its count slot) under the key holder's public key.
// Everything that leaves the worker is a masked vector, ciphertexts or a public protocol message.
import * as grpc from '@grpc/grpc-js';
import {
  compileRound,
  encode,
  HeEncryptor,
  withCountSlot,
  planEncoding,
  RoundParticipant,
  type EncryptedShare,
  type Encoding,
  type KeyRoster,
  type RingVector,
  type RoundIdentity,
  type SurvivorAttestation,
} from '@tensorguard/secure-agg';
import { checkAnnouncement } from './announcement.js';
import type { ClippingEngine } from './clipping.js';
import type { RunConfig } from './config.js';
import type { Dataset } from './data/dataset.js';
import { x509Identity } from './identity.js';
import { recordLength } from './data/dataset.js';
import type { Logger } from './logger.js';
import { PhaseTimer, rounded } from './metrics.js';
import type { Tf } from './models/model.js';
import { NoiseShares } from './noise.js';
import type { EncryptedInput, JoinResponse, NextRoundResponse, RoundOpen } from './protocol.js';
import { RoundServiceClient, type TlsIdentity } from './coordinator/rpc.js';
import { poissonSample, systemRandom, seededRandom, type RandomSource } from './sampling.js';

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
  /** Mutual TLS with the job's identity (`--tls-dir`); insecure without. */
  tls?: TlsIdentity;
  shard: Dataset;
  engine: ClippingEngine;
  log: Logger;
  emit: (line: Record<string, unknown>) => void;
  /** Tests only: deterministic sampling. */
  samplingSeed?: string;
  /** Give up when the coordinator is unreachable for this long (default 120 s). */
  unreachableMs?: number;
}

const LONG_POLL_MS = 600_000;

function isCode(err: unknown, ...codes: grpc.status[]): boolean {
  return typeof err === 'object' && err !== null && codes.includes((err as grpc.ServiceError).code);
}

export class RoundClient {
  private readonly client: RoundServiceClient;
  private readonly workerId: string;
  private version = -1;
  private readonly random: RandomSource;
  /** HE mode: the key id of the first announcement; the key holder's key stays for the job. */
  private heKeyId: string | undefined;
  /** HE mode: the encryptor for the key holder's current public key. */
  private encryptor: { keyId: string; enc: HeEncryptor } | undefined;
  /** This worker's noise shares; the next round's is drawn while this round uploads and waits. */
  private readonly noise = new NoiseShares();
  /** With TLS: the job identity that signs this worker's keys and survivor sets (secure-agg). */
  private readonly identity: RoundIdentity | undefined;

  constructor(private readonly o: RoundClientOptions) {
    this.client = new RoundServiceClient(o.address, o.tls);
    this.identity = o.tls ? x509Identity(o.tls) : undefined;
    this.workerId = `worker-${o.workerIndex}`;
    this.random =
      o.samplingSeed !== undefined ? seededRandom(`${o.samplingSeed}/${o.workerIndex}`) : systemRandom;
  }

  /** Retries UNAVAILABLE (coordinator not up yet, or restarting) until `unreachableMs`. */
  private async call<T>(
    method: Parameters<RoundServiceClient['call']>[0],
    req: unknown,
    deadlineMs: number,
  ): Promise<T> {
    const giveUp = Date.now() + (this.o.unreachableMs ?? 120_000);
    for (let delay = 100; ; delay = Math.min(2000, delay * 2)) {
      try {
        return await this.client.call<T>(method, req, deadlineMs);
      } catch (err) {
        if (!isCode(err, grpc.status.UNAVAILABLE) || Date.now() > giveUp) throw err;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** Runs until the coordinator says the job is done. Returns its reason. */
  async run(): Promise<string> {
    const joined = await this.call<JoinResponse>(
      'Join',
      { workerId: this.workerId, workerIndex: this.o.workerIndex, shardSize: this.o.shard.size },
      30_000,
    );
    this.o.log.info({ job: joined.jobName, modelVersion: joined.modelVersion }, 'joined');
    for (;;) {
      let next: NextRoundResponse;
      try {
        next = await this.call<NextRoundResponse>(
          'NextRound',
          { workerId: this.workerId, workerIndex: this.o.workerIndex, haveVersion: this.version },
          LONG_POLL_MS,
        );
      } catch (err) {
        if (isCode(err, grpc.status.DEADLINE_EXCEEDED)) continue;
        if (isCode(err, grpc.status.FAILED_PRECONDITION)) {
          // The coordinator restarted and forgot us: join again.
          await this.call(
            'Join',
            { workerId: this.workerId, workerIndex: this.o.workerIndex, shardSize: this.o.shard.size },
            30_000,
          );
          continue;
        }
        throw err;
      }
      if (next.kind === 'done') return next.reason;
      if (next.kind === 'wait') continue;
      // A refused announcement ends the worker (AnnouncementError propagates): a coordinator that
      // asks for other privacy parameters once would ask again, and it must not get an update.
      checkAnnouncement(next, {
        cfg: this.o.config,
        dimension: this.o.dimension,
        shardSize: this.o.shard.size,
        ...(this.heKeyId !== undefined ? { heKeyId: this.heKeyId } : {}),
      });
      if (next.he) this.heKeyId = next.he.keyId;
      try {
        await this.round(next);
      } catch (err) {
        if (
          isCode(
            err,
            grpc.status.ABORTED,
            grpc.status.FAILED_PRECONDITION,
            grpc.status.PERMISSION_DENIED,
            grpc.status.DEADLINE_EXCEEDED,
          )
        ) {
          this.o.log.warn(
            { round: next.params.round, err: (err as Error).message },
            'round abandoned; waiting for the next',
          );
          continue;
        }
        throw err;
      }
    }
  }

  private async round(open: RoundOpen): Promise<void> {
    const r = open.params.round;
    // Clipping time and the upload's wait for the others depend on this worker's private batch
    // size: they run in the window 'local' (clip → upload's end) and are never exported alone.
    const timer = new PhaseTimer({ round: r, worker: this.o.workerIndex }, ['clip', 'upload']);
    try {
      await this.roundPhases(open, timer);
    } finally {
      if (timer.inWindow) timer.closeWindow();
    }
  }

  private async roundPhases(open: RoundOpen, timer: PhaseTimer): Promise<void> {
    const r = open.params.round;
    let bytes = 0;
    if (open.model) {
      this.o.engine.setTrainable(open.model);
      this.version = open.modelVersion;
    }
    const plan = planEncoding(open.encoding);
    const send = async <T>(
      method: 'AdvertiseKeys' | 'ShareKeys' | 'MaskedInput' | 'Attest' | 'Unmask' | 'EncryptedInput',
      message: unknown,
      size: number,
      deadline: number,
    ) => {
      bytes += size;
      return this.call<T>(method, { workerId: this.workerId, round: r, message }, deadline);
    };
    if (open.he) {
      const { publicKey, keyId } = open.he;
      if (this.encryptor?.keyId !== keyId)
        this.encryptor = { keyId, enc: await HeEncryptor.create(publicKey) };
      const enc = this.encryptor.enc;
      const encoded = await this.encodedUpdate(open, plan, timer);
      const chunks = await timer.time('mask', () => enc.encrypt(withCountSlot(encoded)));
      const message: EncryptedInput = { index: open.index, keyId, chunks };
      await timer.time('upload', () =>
        send<string[]>(
          'EncryptedInput',
          message,
          chunks.reduce((a, c) => a + c.byteLength, 0),
          LONG_POLL_MS,
        ),
      );
      timer.closeWindow();
    } else {
      const me = new RoundParticipant(
        compileRound(open.params),
        open.index,
        this.identity ? { identity: this.identity } : {},
      );
      const adv = me.advertiseKeys();
      const roster = await send<KeyRoster>('AdvertiseKeys', adv, 64, 120_000);
      const sk = me.shareKeys(roster);
      const incoming = await send<EncryptedShare[]>(
        'ShareKeys',
        sk,
        sk.shares.reduce((a, s) => a + s.ciphertext.length + 8, 0),
        120_000,
      );
      const encoded = await this.encodedUpdate(open, plan, timer);
      const masked = await timer.time('mask', () => me.maskInputWithShares(incoming, encoded));
      const survivors = await timer.time('upload', () =>
        send<number[]>('MaskedInput', masked, masked.vector.byteLength, LONG_POLL_MS),
      );
      timer.closeWindow();
      // Consistency check (with identities): sign the survivor set this worker was told, and
      // unmask only once enough survivors signed the same set.
      const attestations = this.identity
        ? await send<SurvivorAttestation[]>('Attest', me.attestSurvivors(survivors), 72, 120_000)
        : [];
      const un = me.unmask(survivors, attestations);
      await send('Unmask', un, (un.selfMaskShares.length + un.maskingKeyShares.length) * 36, 120_000);
    }
    this.o.emit({ type: 'metrics', round: r, phase_seconds: rounded(timer.exported()), bytes_sent: bytes });
  }

  /** Poisson sample → clipped sum → fixed-point encoding plus the integer noise share. */
  private async encodedUpdate(open: RoundOpen, plan: Encoding, timer: PhaseTimer): Promise<RingVector> {
    const { tf, engine, shard } = this.o;
    const indices = await timer.time('sample', () =>
      poissonSample(shard.size, open.samplingRate, this.random),
    );
    timer.openWindow('local');
    const clipped = await timer.time('clip', async () => {
      const len = recordLength(shard);
      const B = indices.length;
      if (B === 0) return new Float32Array(open.params.vectorLength);
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
        return (await engine.clippedSum(x, y, open.clipNorm)).sum;
      } finally {
        tf.dispose([x, y]);
      }
    });
    const noise = await timer.time('noise', () => this.noise.take(clipped.length, open.noiseShareStd));
    this.noise.prefetch(clipped.length, open.noiseShareStd);
    return timer.time('encode', () => encode(plan, clipped, noise));
  }

  close(): void {
    this.noise.dispose();
    this.client.close();
  }
}
