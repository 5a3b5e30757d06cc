// The worker's client of the aggregator service. It takes an already-encoded integer vector; the
// protocol state lives in a RoundParticipant per round, so key setup for round r+1 (prepare) can
// run while the worker still computes round r's update, and submit needs only the vector.
import { Client, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { type secureAggregation as pb, SecureAggregationService } from '@tensorguard/proto';
import {
  compileRound,
  RoundAbortedError,
  RoundParticipant,
  type ActiveStage,
  type RingVector,
} from '../index.js';
import {
  advertisedKeysFromProto,
  advertisedKeysToProto,
  encryptedShareFromProto,
  encryptedShareToProto,
  maskedVectorToProto,
  roundOpenFromProto,
  unmaskSharesToProto,
  type RoundOpen,
} from './convert.js';
import { fromStatus } from './status.js';

/** PEM material; with certChain and privateKey the client authenticates itself (mTLS). */
export interface ClientTlsOptions {
  rootCa: Buffer;
  certChain?: Buffer;
  privateKey?: Buffer;
  /** Expected server name when it differs from the address's host (e.g. 'localhost'). */
  serverNameOverride?: string;
}

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
  /** Called before each stage's message is sent (progress reporting, fault injection in tests). */
  beforeStage?: (stage: ActiveStage, round: number) => void | Promise<void>;
}

/** A round whose key setup is done: only the masked input and the unmasking remain. */
export interface PreparedRound {
  open: RoundOpen;
  participant: RoundParticipant;
}

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

  constructor(options: SecureAggClientOptions) {
    this.#opts = options;
    this.workerId = options.workerId;
    const tls = options.tls;
    const creds = tls
      ? credentials.createSsl(tls.rootCa, tls.privateKey ?? null, tls.certChain ?? null)
      : credentials.createInsecure();
    const max = options.maxMessageBytes ?? 256 << 20;
    this.#client = new Client(options.address, creds, {
      'grpc.max_receive_message_length': max,
      'grpc.max_send_message_length': max,
      ...(tls?.serverNameOverride ? { 'grpc.ssl_target_name_override': tls.serverNameOverride } : {}),
    });
  }

  #unary<Req, Res>(method: Method, req: Req, timeoutMs: number, round?: number): Promise<Res> {
    const def = SecureAggregationService[method] as unknown as {
      path: string;
      requestSerialize: (r: Req) => Buffer;
      responseDeserialize: (b: Buffer) => Res;
    };
    return new Promise<Res>((resolve, reject) => {
      this.#client.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        req,
        new Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err: ServiceError | null, res?: Res) => {
          if (err || res === undefined) reject(fromStatus(err!, `${method} failed`, round));
          else resolve(res);
        },
      );
    });
  }

  /** Registers with the aggregator; resolves with the session id and the next round number. */
  async join(): Promise<{ sessionId: Uint8Array; nextRound: number }> {
    const r = await this.#unary<pb.JoinRequest, pb.JoinResponse>(
      'join',
      { workerId: this.workerId },
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

  #stageTimeout(open: RoundOpen, stage: ActiveStage): number {
    return open.deadlinesMs[stage] + (this.#opts.stageMarginMs ?? 5000);
  }

  /**
   * Key setup: advertises fresh keys, shares them, and receives the shares addressed to this
   * worker. Needs no input vector, so it can overlap the computation of the update.
   */
  async prepare(open: RoundOpen): Promise<PreparedRound> {
    const round = compileRound(open.params);
    const index = round.members.indexOf(this.workerId);
    const participant = new RoundParticipant(round, index);
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

  /** Masks and submits the encoded input, then answers the unmask request. */
  async submit(prepared: PreparedRound, input: RingVector): Promise<RoundOutcome> {
    const { open, participant } = prepared;
    const r = open.params.round;
    try {
      await this.#opts.beforeStage?.('MASKED_INPUT', r);
      const masked = participant.maskInput(input);
      const sub = await this.#unary<pb.SubmitMaskedInputRequest, pb.SubmitMaskedInputResponse>(
        'submitMaskedInput',
        { workerId: this.workerId, round: r, maskedVector: maskedVectorToProto(masked.vector) },
        this.#stageTimeout(open, 'MASKED_INPUT'),
        r,
      );
      await this.#opts.beforeStage?.('UNMASK', r);
      const shares = participant.unmask(sub.survivors);
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
