// The worker's client of the aggregator service. It takes an already-encoded integer vector; the
// protocol state lives in a RoundParticipant per round, so key setup for round r+1 (prepare) can
// run while the worker still computes round r's update, and submit needs only the vector.
// The round's announcement names its scheme, and prepare/submit/contribute follow it: under HE,
// prepare checks that the key holder vouches for the announced key and nonce (its job certificate
// and signature) and derives this worker's pad key with it; submit pads the vector and its check
// slots (he-pad.ts), encrypts them and sends them in the one SubmitEncryptedInput stage. Callers
// use the same interface for both.
import type { Client } from '@grpc/grpc-js';
import { type secureAggregation as pb, SecureAggregationService } from '@tensorguard/proto';
import {
  compileRound,
  ConfigError,
  HE_CHECK_SLOTS,
  HeEncryptor,
  heKeyDigest,
  hePads,
  heRoundStatement,
  JobPki,
  KEY_HOLDER_NAME,
  keyIdOf,
  MalformedMessageError,
  padContribution,
  PermissionError,
  RoundAbortedError,
  RoundParticipant,
  type ActiveStage,
  type JobIdentity,
  type RingVector,
  type RoundIdentity,
  type SurvivorAttestation,
} from '../index.js';
import {
  advertisedKeysFromProto,
  advertisedKeysToProto,
  encryptedShareFromProto,
  encryptedInputToProto,
  encryptedShareToProto,
  maskedVectorToProto,
  modelParametersFromProto,
  modelVersionToProto,
  roundOpenFromProto,
  survivorAttestationFromProto,
  survivorAttestationToProto,
  unmaskSharesToProto,
  type ModelParameters,
  type ModelVersionRef,
  type RoundOpen,
} from './convert.js';
import { callUnary, makeClient, type ClientTlsOptions } from './grpc-edge.js';

export type { ClientTlsOptions };

/** A stage a worker sends a message in: the four masking stages, or HE's one. */
export type WorkerStage = ActiveStage | 'ENCRYPTED_INPUT';

export interface SecureAggClientOptions {
  /** host:port of the aggregator. */
  address: string;
  /** This worker's stable id, 1..128 characters of [A-Za-z0-9._:-]. */
  workerId: string;
  /** TLS; default insecure (loopback only). */
  tls?: ClientTlsOptions;
  /** Deadline of calls that do not wait for a stage (Join), ms. Default 10000. */
  callTimeoutMs?: number;
  /** Added to a stage's deadline to form the call deadline of that stage's RPC, ms. Default 5000. */
  stageMarginMs?: number;
  /** Largest message sent or received, bytes. Default 256 MiB. */
  maxMessageBytes?: number;
  /**
   * This worker's job identity: advertised keys are signed, the roster's signatures checked, and
   * unmask shares revealed only for a survivor set enough members attested (the Attest stage).
   */
  identity?: RoundIdentity;
  /**
   * This worker's job identity as PEM (its `--tls-dir`): needed for HE rounds, whose announced
   * key and nonce must be signed by the key holder's job certificate, and whose pads are derived
   * from this worker's key and the key holder's.
   */
  jobIdentity?: JobIdentity;
  /** Called before each stage's message is sent (progress reporting, fault injection in tests). */
  beforeStage?: (stage: WorkerStage, round: number) => void | Promise<void>;
  /**
   * Wraps submit's two phases, 'mask' (masking or encryption of the input) and 'upload' (sending
   * it and waiting for the stage to close), e.g. to time them; default runs them as they are.
   */
  phase?: <T>(name: 'mask' | 'upload', run: () => Promise<T>) => Promise<T>;
}

/**
 * A round whose key setup is done: only the masked input and the unmasking remain (masking), or
 * the encryption and the one input stage (HE).
 */
export type PreparedRound =
  | { open: RoundOpen; participant: RoundParticipant; encryptor?: undefined }
  | { open: RoundOpen; participant?: undefined; encryptor: HeEncryptor; padKey: Uint8Array };

export interface RoundOutcome {
  round: number;
  /** Roster indices whose inputs are in the sum. */
  survivors: number[];
  /** Whether the aggregator recovered the sum. */
  completed: boolean;
  /** Why it did not, when it did not. */
  reason: string;
}

type Method = keyof typeof SecureAggregationService;

export class SecureAggClient {
  readonly workerId: string;
  readonly #opts: SecureAggClientOptions;
  readonly #client: Client;
  /** The last HE key's encryptor: a job keeps one key, so it is loaded once. */
  #encryptor: { keyId: string; enc: HeEncryptor } | undefined;
  readonly #pki: JobPki | undefined;
  /** Pad keys by the key holder's certificate. */
  readonly #padKeys = new Map<string, Uint8Array>();
  /** The last round this worker padded an HE input for: it never pads one round's update twice. */
  #lastHeRound = -1;
  #bytesSent = 0;

  constructor(options: SecureAggClientOptions) {
    this.#opts = options;
    this.workerId = options.workerId;
    this.#pki = options.jobIdentity ? new JobPki(options.jobIdentity) : undefined;
    this.#client = makeClient(options.address, options.tls, options.maxMessageBytes ?? 256 << 20);
  }

  /** Bytes of every request message serialized so far (payloads, not TLS or HTTP/2 framing). */
  get bytesSent(): number {
    return this.#bytesSent;
  }

  #phase<T>(name: 'mask' | 'upload', run: () => Promise<T>): Promise<T> {
    return this.#opts.phase ? this.#opts.phase(name, run) : run();
  }

  #unary<Req, Res>(method: Method, req: Req, timeoutMs: number, round?: number): Promise<Res> {
    const def = SecureAggregationService[method] as unknown as {
      path: string;
      requestSerialize: (r: Req) => Buffer;
      responseDeserialize: (b: Buffer) => Res;
    };
    const counted = {
      ...def,
      requestSerialize: (r: Req) => {
        const b = def.requestSerialize(r);
        this.#bytesSent += b.length;
        return b;
      },
    };
    return callUnary(this.#client, counted, req, timeoutMs, `${method} failed`, round);
  }

  /**
   * Registers with the aggregator (training workers declare their shard's record count, default
   * 0); resolves with the session id and the next round number.
   */
  async join(shardSize = 0): Promise<{ sessionId: Uint8Array; nextRound: number }> {
    const r = await this.#unary<pb.JoinRequest, pb.JoinResponse>(
      'join',
      { workerId: this.workerId, shardSize },
      this.#opts.callTimeoutMs ?? 10_000,
    );
    return { sessionId: Uint8Array.from(r.sessionId), nextRound: r.nextRound };
  }

  /** Waits (up to timeoutMs) for a round numbered ≥ minRound that includes this worker. */
  async awaitRound(minRound = 0, timeoutMs = 60_000): Promise<RoundOpen> {
    const r = await this.#unary<pb.AwaitRoundRequest, pb.RoundAnnouncement>(
      'awaitRound',
      { workerId: this.workerId, minRound },
      timeoutMs,
    );
    return roundOpenFromProto(r);
  }

  /**
   * The trainable parameters of `version` (GetModel); `expectedLength` checks their count. Throws
   * NotFoundError when the aggregator no longer holds that version.
   */
  async getModel(version: ModelVersionRef, expectedLength?: number): Promise<ModelParameters> {
    const r = await this.#unary<pb.GetModelRequest, pb.GetModelResponse>(
      'getModel',
      { workerId: this.workerId, version: modelVersionToProto(version) },
      this.#opts.callTimeoutMs ?? 10_000,
    );
    return modelParametersFromProto(r, expectedLength);
  }

  #stageTimeout(open: RoundOpen, stage: WorkerStage): number {
    const ms = stage === 'ENCRYPTED_INPUT' ? open.he!.encryptedInputMs : open.deadlinesMs[stage];
    // Under HE the call also waits for the key holder's decryption after the stage closes.
    return ms + (this.#opts.stageMarginMs ?? 5000) + (stage === 'ENCRYPTED_INPUT' ? 120_000 : 0);
  }

  /**
   * HE: checks that the key holder's job certificate signed this round's key and nonce, and
   * returns this worker's pad key with it. Throws ConfigError without a job identity,
   * PermissionError for a certificate that is not the job's key holder's or a signature that does
   * not verify, StageError for a round this worker already padded an input for.
   */
  #heVouched(open: RoundOpen): Uint8Array {
    const r = open.params.round;
    const { publicKey, voucher } = open.he!;
    if (!this.#pki)
      throw new ConfigError(
        'jobIdentity',
        `round ${r} is an HE round: this worker needs its job identity (--tls-dir) to check that the key holder vouches for the announced key; refusing to encrypt`,
      );
    let cert;
    try {
      cert = this.#pki.member(voucher.certificate, KEY_HOLDER_NAME);
    } catch (err) {
      throw new PermissionError(
        `round ${r}: the announced key holder certificate is refused (${err instanceof Error ? err.message : String(err)}); refusing to encrypt under a key the job's key holder does not vouch for`,
        { round: r },
      );
    }
    if (!JobPki.verify(cert, heRoundStatement(publicKey, r, voucher.nonce), voucher.signature))
      throw new PermissionError(
        `round ${r}: the key holder's signature does not cover the announced HE key and nonce; refusing to encrypt under a key the job's key holder does not vouch for`,
        { round: r },
      );
    if (r <= this.#lastHeRound)
      throw new MalformedMessageError(
        `round ${r}: this worker already encrypted an input for round ${this.#lastHeRound}; an aggregator may not announce a round twice`,
        { round: r },
      );
    const k = Buffer.from(voucher.certificate).toString('latin1');
    let key = this.#padKeys.get(k);
    if (!key) this.#padKeys.set(k, (key = new Uint8Array(this.#pki.padKey(cert))));
    return key;
  }

  /**
   * Key setup: advertises fresh keys, shares them, and receives the shares addressed to this
   * worker (masking); checks the key holder's voucher for the announced key and nonce and loads
   * the key after checking it against its id (HE). Needs no input vector, so it can overlap the
   * computation of the update. Throws MalformedMessageError for an HE key that does not match its
   * id, and #heVouched's errors.
   */
  async prepare(open: RoundOpen): Promise<PreparedRound> {
    if (open.scheme === 'he') {
      const { publicKey, keyId } = open.he!;
      const padKey = this.#heVouched(open);
      if (this.#encryptor?.keyId !== keyId) {
        if (keyIdOf(publicKey) !== keyId)
          throw new MalformedMessageError(
            `round ${open.params.round}: the announced HE public key does not match its id ${keyId}`,
            { round: open.params.round },
          );
        this.#encryptor = { keyId, enc: await HeEncryptor.create(publicKey) };
      }
      return { open, encryptor: this.#encryptor.enc, padKey };
    }
    const round = compileRound(open.params);
    const index = round.members.indexOf(this.workerId);
    const participant = new RoundParticipant(
      round,
      index,
      this.#opts.identity ? { identity: this.#opts.identity } : {},
    );
    const r = round.round;
    try {
      await this.#opts.beforeStage?.('ADVERTISE_KEYS', r);
      const adv = await this.#unary<pb.AdvertiseKeysRequest, pb.AdvertiseKeysResponse>(
        'advertiseKeys',
        { workerId: this.workerId, round: r, keys: advertisedKeysToProto(participant.advertiseKeys()) },
        this.#stageTimeout(open, 'ADVERTISE_KEYS'),
        r,
      );
      await this.#opts.beforeStage?.('SHARE_KEYS', r);
      const shares = participant.shareKeys(adv.roster.map(advertisedKeysFromProto));
      const inbox = await this.#unary<pb.ShareKeysRequest, pb.ShareKeysResponse>(
        'shareKeys',
        { workerId: this.workerId, round: r, shares: shares.shares.map(encryptedShareToProto) },
        this.#stageTimeout(open, 'SHARE_KEYS'),
        r,
      );
      participant.receiveShares(inbox.shares.map(encryptedShareFromProto));
      return { open, participant };
    } catch (err) {
      participant.abort();
      throw err;
    }
  }

  /**
   * Masks and submits the encoded input, then answers the unmask request (masking); pads it and
   * its check slots under the round's nonce, encrypts them and submits the ciphertexts (HE). Resolves when the round finished or
   * aborted (then `completed` is false and `reason` says why); throws the SecAggError of a refusal.
   */
  async submit(prepared: PreparedRound, input: RingVector): Promise<RoundOutcome> {
    if (prepared.encryptor)
      return this.#submitEncrypted(prepared.open, prepared.encryptor, prepared.padKey, input);
    const { open, participant } = prepared;
    const r = open.params.round;
    try {
      await this.#opts.beforeStage?.('MASKED_INPUT', r);
      const masked = await this.#phase('mask', async () => participant.maskInput(input));
      const sub = await this.#phase('upload', () =>
        this.#unary<pb.SubmitMaskedInputRequest, pb.SubmitMaskedInputResponse>(
          'submitMaskedInput',
          { workerId: this.workerId, round: r, maskedVector: maskedVectorToProto(masked.vector) },
          this.#stageTimeout(open, 'MASKED_INPUT'),
          r,
        ),
      );
      let attestations: SurvivorAttestation[] = [];
      if (this.#opts.identity) {
        const att = await this.#unary<pb.AttestRequest, pb.AttestResponse>(
          'attest',
          {
            workerId: this.workerId,
            round: r,
            attestation: survivorAttestationToProto(participant.attestSurvivors(sub.survivors)),
          },
          this.#stageTimeout(open, 'UNMASK'),
          r,
        );
        attestations = att.attestations.map(survivorAttestationFromProto);
      }
      await this.#opts.beforeStage?.('UNMASK', r);
      const shares = participant.unmask(sub.survivors, attestations);
      const res = await this.#unary<pb.UnmaskRequest, pb.UnmaskResponse>(
        'unmask',
        { workerId: this.workerId, round: r, ...unmaskSharesToProto(shares) },
        this.#stageTimeout(open, 'UNMASK'),
        r,
      );
      return { round: r, survivors: sub.survivors, completed: res.completed, reason: res.reason };
    } catch (err) {
      participant.abort();
      if (err instanceof RoundAbortedError)
        return { round: r, survivors: [], completed: false, reason: err.message };
      throw err;
    }
  }

  async #submitEncrypted(
    open: RoundOpen,
    enc: HeEncryptor,
    padKey: Uint8Array,
    input: RingVector,
  ): Promise<RoundOutcome> {
    const r = open.params.round;
    const bits = input instanceof Uint32Array ? 32 : 64;
    if (input.length !== open.params.vectorLength || bits !== open.params.bits)
      throw new MalformedMessageError(
        `round ${r} sums ${open.params.vectorLength} values of ${open.params.bits} bits, got ${input.length} of ${bits}`,
        { round: r },
      );
    try {
      await this.#opts.beforeStage?.('ENCRYPTED_INPUT', r);
      if (r <= this.#lastHeRound)
        throw new MalformedMessageError(`round ${r}: this worker already encrypted an input for it`, {
          round: r,
        });
      this.#lastHeRound = r;
      const { publicKey, voucher, keyId } = open.he!;
      const chunks = await this.#phase('mask', async () => {
        const pads = hePads(padKey, heKeyDigest(publicKey), voucher.nonce, input.length + HE_CHECK_SLOTS);
        return enc.encryptResidues(padContribution(input, pads));
      });
      const res = await this.#phase('upload', () =>
        this.#unary<pb.SubmitEncryptedInputRequest, pb.SubmitEncryptedInputResponse>(
          'submitEncryptedInput',
          encryptedInputToProto(this.workerId, r, { keyId, chunks, certificate: this.#pki!.certPem }),
          this.#stageTimeout(open, 'ENCRYPTED_INPUT'),
          r,
        ),
      );
      return { round: r, survivors: res.contributors, completed: res.completed, reason: res.reason };
    } catch (err) {
      if (err instanceof RoundAbortedError)
        return { round: r, survivors: [], completed: false, reason: err.message };
      throw err;
    }
  }

  /** prepare then submit. */
  async contribute(open: RoundOpen, input: RingVector): Promise<RoundOutcome> {
    return this.submit(await this.prepare(open), input);
  }

  close(): void {
    this.#client.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
