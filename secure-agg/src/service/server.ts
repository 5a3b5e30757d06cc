// The aggregator gRPC service. It owns membership and the live rounds; a coordinator (the training
// loop in the same process) opens rounds with openRound and receives only unmasked sums, through
// the returned promise and the onSum hook. Each RPC is one stage message; the handler submits it to
// the round's state machine and answers when the stage closes (all expected workers answered, or the
// stage deadline fired). Requests are decoded inside the handler so that undecodable bytes get
// INVALID_ARGUMENT with a reason rather than a generic error, and every domain error is mapped to a
// status in status.ts (grpc-edge.ts). Nothing a client sends can throw out of a handler.
//
// The scheme is fixed per server (per job): 'masking' runs secure-agg's AggregatorRound (four
// stages); 'he' runs an HeRound (one SubmitEncryptedInput stage whose ciphertexts are summed here,
// under a key this process does not hold) and asks the separate key holder to decrypt the sum.
import { Server, type ServerUnaryCall, type UntypedHandleCall } from '@grpc/grpc-js';
import { secureAggregation as pb, SecureAggregationService } from '@tensorguard/proto';
import { pino, type Logger } from 'pino';
import { randomBytes } from 'node:crypto';
import {
  AggregatorRound,
  chooseSecAggPlusParams,
  compileRound,
  ConfigError,
  DEFAULT_DEADLINES_MS,
  DuplicateMessageError,
  JobFinishedError,
  HE_CHECK_SLOTS,
  HeRound,
  MalformedMessageError,
  NotFoundError,
  PermissionError,
  RoundAbortedError,
  SecAggError,
  StageError,
  toSigned,
  type ActiveStage,
  type HeDecryptRequest,
  type HeRoundVoucher,
  type RingBits,
  type RingVector,
  type RoundParams,
  type SecAggPlusOptions,
  type SignedVector,
  type Stage,
  type StageDeadlinesMs,
  type SurvivorAttestation,
} from '../index.js';
import {
  advertisedKeysFromProto,
  advertisedKeysToProto,
  encryptedShareFromProto,
  encryptedInputFromProto,
  encryptedShareToProto,
  maskedVectorFromProto,
  modelParametersToProto,
  modelVersionFromProto,
  roundOpenToProto,
  survivorAttestationFromProto,
  survivorAttestationToProto,
  unmaskSharesFromProto,
  type AggregationScheme,
  type ModelParameters,
  type ModelVersionRef,
  type RoundOpen,
  type RoundTraining,
} from './convert.js';
import {
  peerCommonName,
  rawDefinition,
  serverCredentials,
  shutdownGracefully,
  unaryHandler,
  type ServerTlsOptions,
} from './grpc-edge.js';

export type { ServerTlsOptions };

/** What the coordinator receives for a completed round: the sum and nothing finer. */
export interface RoundSum {
  round: number;
  /** The sum as centred integers: Int32Array for k = 32, BigInt64Array for k = 64. */
  sum: SignedVector;
  /** The same sum as ring residues. */
  ring: RingVector;
  /** Worker ids whose inputs are in the sum. */
  survivors: string[];
  modelVersion: ModelVersionRef | undefined;
}

/** What the release gate is asked to approve: a round whose inputs are in, before it is revealed. */
export interface PendingRelease {
  round: number;
  scheme: AggregationScheme;
  /** Worker ids whose inputs the sum will hold. */
  survivors: string[];
  modelVersion: ModelVersionRef | undefined;
}

/**
 * The aggregator's connection to the HE key holder (KeyHolderClient.link()): its public key, and
 * decryption of one round's aggregate. It never carries a secret key.
 */
export interface KeyHolderLink {
  /** host:port, for log lines and error messages. */
  readonly address: string;
  readonly publicKey: Uint8Array;
  readonly keyId: string;
  /** The key holder's floor on contributors; every HE round's min_inputs is at least this. */
  readonly minInputs: number;
  /** A fresh nonce for `round`, signed by the key holder; the announcement relays it. */
  openRound(round: number): Promise<HeRoundVoucher>;
  /** The decrypted ring sum without its check slots; rejects (a SecAggError) when refused. */
  decryptSum(req: HeDecryptRequest): Promise<RingVector>;
}

/** BFV ciphertexts hold 4096 slots; one zstd-compressed ciphertext is below 256 KiB. */
const HE_SLOTS = 4096;
const HE_CIPHERTEXT_BYTES = 256 << 10;

export interface AggregatorServerOptions {
  /** host:port to bind; default '127.0.0.1:0' (an ephemeral port, see `port`). */
  address?: string;
  /** TLS (and mTLS with clientCa); default insecure, for loopback only. */
  tls?: ServerTlsOptions;
  /** Length d of the vectors summed. */
  vectorLength: number;
  /** Ring width k (from planEncoding). */
  bits: RingBits;
  /** 'masking' (four stages) or 'he' (one encrypted-input stage, needs keyHolder). Default 'masking'. */
  scheme?: AggregationScheme;
  /** Scheme 'he': the key holder that decrypts the round sums. */
  keyHolder?: KeyHolderLink;
  /** Masking: 'complete' (Bonawitz et al.) or 'secagg+' (sparse graph). Default 'complete'. */
  mode?: 'complete' | 'secagg+';
  /** SecAgg+ parameter targets (mode 'secagg+'); workers is the roster size of each round. */
  secAggPlus?: Omit<SecAggPlusOptions, 'workers'>;
  /** Threshold for a roster of n in complete mode; default ⌊n/2⌋ + 1 (must exceed n/2). */
  threshold?: (n: number) => number;
  /**
   * Fewest inputs a released sum may contain; default ⌊n/2⌋ + 1. Under HE at least the key
   * holder's minInputs.
   */
  minInputs?: (n: number) => number;
  /**
   * Number of the first round opened; default 0. A coordinator that resumes from its ledger
   * continues its numbering, so a round number names one release for the whole job.
   */
  firstRound?: number;
  /** Stage deadlines in ms; default DEFAULT_DEADLINES_MS. */
  deadlinesMs?: Partial<StageDeadlinesMs>;
  /** Scheme 'he': deadline of the SubmitEncryptedInput stage, ms; default deadlinesMs.MASKED_INPUT. */
  encryptedInputMs?: number;
  /**
   * Largest message accepted or sent, bytes; default the masked vector size plus 1 MiB (masking),
   * 256 KiB per ciphertext plus 1 MiB (HE).
   */
  maxMessageBytes?: number;
  /**
   * The release gate, awaited once per round after its inputs are in (masking: MASKED_INPUT
   * closed; HE: the input stage closed) and before anything that reveals the sum (survivors are
   * asked to unmask; the key holder is asked to decrypt). The coordinator appends the round to its
   * ledger and checks the budget here. A rejection aborts the round with its message, and nothing
   * is unmasked or decrypted. The UNMASK deadline counts from when the gate resolves.
   */
  releaseGate?: (release: PendingRelease) => Promise<void>;
  /**
   * GetModel: the trainable parameters of a version, or undefined when that version is not held
   * (answered NOT_FOUND). Without it GetModel is answered NOT_FOUND.
   */
  model?: (version: ModelVersionRef) => ModelParameters | undefined | Promise<ModelParameters | undefined>;
  /** Called with every completed round's sum (after the openRound promise resolves). */
  onSum?: (sum: RoundSum) => void | Promise<void>;
  /** Called when a round aborts. */
  onAbort?: (round: number, error: SecAggError) => void;
  /** Called when a masking round enters `stage` (progress and phase timing; never blocks it). */
  onStage?: (round: number, stage: Stage) => void;
  logger?: Logger;
}

/** openRound's options; the per-round overrides replace what the server's options derive from n. */
export interface OpenRoundOptions {
  modelVersion?: ModelVersionRef;
  /** The roster, in index order; default every joined member, in join order. */
  members?: string[];
  /** Training rounds: the encoding and noise each worker is told (and checks). */
  training?: RoundTraining;
  /** Shamir threshold of this round (masking); default from the server's options. */
  threshold?: number;
  /** Neighbours per worker of this round (masking); default from the server's options. */
  degree?: number;
  /** Fewest inputs this round's sum may contain; default from the server's options. */
  minInputs?: number;
  /** Ring width of this round, at most the server's `bits` (which sizes the messages). */
  bits?: RingBits;
}

interface LiveRound {
  agg: AggregatorRound;
  open: RoundOpen;
  index: Map<string, number>;
  lastSeen: Map<number, ActiveStage>;
  abortedIn: ActiveStage | undefined;
  timer: NodeJS.Timeout | undefined;
  settle: { resolve: (s: RoundSum) => void; reject: (e: SecAggError) => void };
  /** The release gate's run, set when MASKED_INPUT closes (resolves either way). */
  gate: Promise<void> | undefined;
  /** The consistency check's relay, open from the UNMASK stage's start. */
  attest: AttestRelay | undefined;
}

/** Survivors' signatures over U3, relayed to every survivor once all signed or the time is up. */
interface AttestRelay {
  signatures: Map<number, SurvivorAttestation>;
  released: boolean;
  waiting: (() => void)[];
  timer: NodeJS.Timeout | undefined;
  release: () => void;
}

/** An HE round and the calls waiting for its end. */
interface LiveHeRound {
  he: HeRound;
  open: RoundOpen;
  index: Map<string, number>;
  timer: NodeJS.Timeout | undefined;
  finished: boolean;
  /** Resolved when the round is DONE or ABORTED. */
  ended: Promise<void>;
  end: () => void;
  settle: { resolve: (s: RoundSum) => void; reject: (e: SecAggError) => void };
}

const WORKER_ID = /^[A-Za-z0-9._:-]{1,128}$/;

type Method = keyof typeof SecureAggregationService;

export class AggregatorServer {
  readonly #opts: AggregatorServerOptions & {
    deadlinesMs: StageDeadlinesMs;
    maxMessageBytes: number;
    scheme: AggregationScheme;
    encryptedInputMs: number;
  };
  readonly #log: Logger;
  readonly #server: Server;
  readonly #sessionId = Uint8Array.from(randomBytes(16));
  readonly #members = new Map<string, { joinedAt: number; shardSize: number }>();
  /** Under mutual TLS a caller is the worker its certificate's common name names. */
  readonly #peerIdentity: boolean;
  readonly #rounds = new Map<number, LiveRound>();
  readonly #heRounds = new Map<number, LiveHeRound>();
  readonly #roundWaiters = new Set<() => void>();
  readonly #memberWaiters = new Set<() => void>();
  #nextRound: number;
  /** Workers in an AwaitRound call now (the coordinator's round barrier reads it). */
  readonly #awaiting = new Map<string, number>();
  /** Woken whenever a worker starts or stops awaiting a round (awaitingChange). */
  readonly #awaitingWaiters = new Set<() => void>();
  /** Set by finish(): AwaitRound answers OUT_OF_RANGE with it. */
  #finished: string | undefined;
  /** Members answered OUT_OF_RANGE since finish(), and drained()'s waiters. */
  readonly #told = new Set<string>();
  readonly #toldWaiters = new Set<() => void>();
  #port = 0;
  #closed = false;
  /** Request bytes received and response bytes sent, as protobuf messages (before gRPC framing and TLS). */
  readonly #traffic = { received: 0, sent: 0 };

  constructor(options: AggregatorServerOptions) {
    const vectorBytes = (options.vectorLength * options.bits) / 8;
    if (!Number.isSafeInteger(options.vectorLength) || options.vectorLength < 1) {
      throw new ConfigError('vectorLength', `must be an integer ≥ 1, got ${options.vectorLength}`);
    }
    if (options.bits !== 32 && options.bits !== 64)
      throw new ConfigError('bits', `must be 32 or 64, got ${String(options.bits)}`);
    const scheme = options.scheme ?? 'masking';
    if (scheme !== 'masking' && scheme !== 'he')
      throw new ConfigError('scheme', `must be "masking" or "he", got ${JSON.stringify(scheme)}`);
    if (scheme === 'he') {
      if (!options.keyHolder)
        throw new ConfigError('keyHolder', 'scheme "he" needs a key holder (KeyHolderClient.link())');
      if (options.mode === 'secagg+' || options.secAggPlus || options.threshold)
        throw new ConfigError(
          options.mode === 'secagg+' ? 'mode' : options.secAggPlus ? 'secAggPlus' : 'threshold',
          'applies to scheme "masking" only; HE rounds have no key shares',
        );
    } else if (options.keyHolder) {
      throw new ConfigError('keyHolder', 'applies to scheme "he" only; remove it or set scheme "he"');
    }
    // A request carries a masked vector (masking) or ⌈(d + 2) / 4096⌉ ciphertexts (HE) and a certificate.
    const payload =
      scheme === 'he'
        ? Math.ceil((options.vectorLength + HE_CHECK_SLOTS) / HE_SLOTS) * HE_CIPHERTEXT_BYTES + 16_384
        : vectorBytes;
    const maxMessageBytes = options.maxMessageBytes ?? payload + (1 << 20);
    if (maxMessageBytes < payload + 1024) {
      throw new ConfigError(
        'maxMessageBytes',
        `${maxMessageBytes} cannot carry ${scheme === 'he' ? 'the ciphertexts' : 'a masked vector'} of ${payload} bytes; raise it to at least ${payload + 1024}`,
      );
    }
    const deadlinesMs = { ...DEFAULT_DEADLINES_MS, ...options.deadlinesMs };
    const encryptedInputMs = options.encryptedInputMs ?? deadlinesMs.MASKED_INPUT;
    for (const [k, v] of [...Object.entries(deadlinesMs), ['encryptedInputMs', encryptedInputMs] as const]) {
      if (!Number.isSafeInteger(v) || v < 1 || v > 2 ** 31)
        throw new ConfigError(
          k === 'encryptedInputMs' ? k : `deadlinesMs.${k}`,
          `must be an integer in [1, 2^31] ms, got ${v}`,
        );
    }
    this.#opts = { ...options, deadlinesMs, maxMessageBytes, scheme, encryptedInputMs };
    this.#peerIdentity = options.tls?.clientCa !== undefined;
    const first = options.firstRound ?? 0;
    if (!Number.isSafeInteger(first) || first < 0)
      throw new ConfigError('firstRound', `must be a non-negative safe integer, got ${first}`);
    this.#nextRound = first;
    this.#log = options.logger ?? pino({ level: 'silent' });
    this.#server = new Server({
      'grpc.max_receive_message_length': maxMessageBytes,
      'grpc.max_send_message_length': maxMessageBytes,
    });
    const handlers: Record<Method, UntypedHandleCall> = {
      join: this.#unary('join', pb.JoinRequest, pb.JoinResponse, (r) => this.#join(r)),
      awaitRound: this.#unary('awaitRound', pb.AwaitRoundRequest, pb.RoundAnnouncement, (r, c) =>
        this.#awaitRound(r, c),
      ),
      advertiseKeys: this.#unary('advertiseKeys', pb.AdvertiseKeysRequest, pb.AdvertiseKeysResponse, (r) =>
        this.#advertise(r),
      ),
      shareKeys: this.#unary('shareKeys', pb.ShareKeysRequest, pb.ShareKeysResponse, (r) =>
        this.#shareKeys(r),
      ),
      submitMaskedInput: this.#unary(
        'submitMaskedInput',
        pb.SubmitMaskedInputRequest,
        pb.SubmitMaskedInputResponse,
        (r) => this.#maskedInput(r),
      ),
      unmask: this.#unary('unmask', pb.UnmaskRequest, pb.UnmaskResponse, (r) => this.#unmask(r)),
      submitEncryptedInput: this.#unary(
        'submitEncryptedInput',
        pb.SubmitEncryptedInputRequest,
        pb.SubmitEncryptedInputResponse,
        (r) => this.#encryptedInput(r),
      ),
      attest: this.#unary('attest', pb.AttestRequest, pb.AttestResponse, (r) => this.#attest(r)),
      getModel: this.#unary('getModel', pb.GetModelRequest, pb.GetModelResponse, (r) => this.#getModel(r)),
    };
    this.#server.addService(rawDefinition(SecureAggregationService), handlers);
  }

  /** The bound port (after start). */
  get port(): number {
    return this.#port;
  }

  /** Binds and starts serving; resolves with the bound port. */
  async start(): Promise<number> {
    const creds = serverCredentials(this.#opts.tls);
    this.#port = await new Promise<number>((resolve, reject) =>
      this.#server.bindAsync(this.#opts.address ?? '127.0.0.1:0', creds, (err, port) =>
        err ? reject(err) : resolve(port),
      ),
    );
    this.#log.info(
      {
        port: this.#port,
        scheme: this.#opts.scheme,
        ...(this.#opts.scheme === 'he'
          ? { keyHolder: this.#opts.keyHolder!.address, keyId: this.#opts.keyHolder!.keyId }
          : { mode: this.#opts.mode ?? 'complete' }),
      },
      'aggregator listening',
    );
    return this.#port;
  }

  /**
   * Bytes of the protobuf messages received (requests) and sent (responses) so far, before gRPC
   * framing and TLS; a caller takes differences for a round's traffic.
   */
  traffic(): { received: number; sent: number } {
    return { ...this.#traffic };
  }

  /** Worker ids currently joined, in join order. */
  members(): string[] {
    return [...this.#members.entries()].sort((a, b) => a[1].joinedAt - b[1].joinedAt).map(([id]) => id);
  }

  /** Members now waiting in AwaitRound for a round that includes them. */
  awaiting(): string[] {
    return [...this.#awaiting.keys()].filter((id) => this.#members.has(id));
  }

  /**
   * Resolves when a worker next starts or stops awaiting a round, or after `timeoutMs`, whichever
   * comes first (the coordinator's round barrier waits on it instead of polling awaiting()).
   */
  awaitingChange(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#awaitingWaiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, timeoutMs);
      this.#awaitingWaiters.add(wake);
    });
  }

  #awaitingChanged(): void {
    for (const w of [...this.#awaitingWaiters]) w();
  }

  /**
   * Ends the job: no round opens again, and every AwaitRound (now and later) is answered
   * OUT_OF_RANGE with `reason` (the client's JobFinishedError), so workers exit instead of polling.
   */
  finish(reason: string): void {
    if (this.#finished !== undefined) return;
    this.#finished = reason;
    this.#log.info({ reason }, 'job finished');
    for (const w of [...this.#roundWaiters]) w();
  }

  /**
   * After finish(): resolves once every member has been told that the job is finished (an
   * AwaitRound answered OUT_OF_RANGE), or after `timeoutMs`. Closing before that would make a
   * worker that asks late find no server and retry until it gives up.
   */
  async drained(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#finished === undefined || [...this.#members.keys()].some((id) => !this.#told.has(id))) {
      const left = deadline - Date.now();
      if (left <= 0 || this.#closed) return;
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.#toldWaiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.#toldWaiters.add(wake);
      });
    }
  }

  /** Records in each joined worker's shard, as it declared at Join (0 when not training). */
  shardSizes(): Map<string, number> {
    return new Map([...this.#members].map(([id, m]) => [id, m.shardSize]));
  }

  /** Resolves once at least `count` workers have joined (rejects on abort). */
  async waitForMembers(count: number, signal?: AbortSignal): Promise<void> {
    while (this.#members.size < count) {
      signal?.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const wake = () => {
          this.#memberWaiters.delete(wake);
          resolve();
        };
        this.#memberWaiters.add(wake);
        signal?.addEventListener(
          'abort',
          () => {
            this.#memberWaiters.delete(wake);
            reject(signal.reason as Error);
          },
          { once: true },
        );
      });
    }
  }

  /**
   * Opens the next round with the current members (or `members`) and broadcasts it with the model
   * version. Resolves with the unmasked sum, rejects with the SecAggError that aborted the round
   * (ThresholdError when too few survived). Rounds may overlap: round r+1 can be opened (its key
   * setup running) while round r is still collecting inputs.
   */
  openRound(options: OpenRoundOptions = {}): Promise<RoundSum> {
    if (this.#closed) return Promise.reject(new RoundAbortedError('the aggregator is shut down'));
    if (this.#finished !== undefined)
      return Promise.reject(new JobFinishedError(`the job is finished: ${this.#finished}`));
    if (options.bits !== undefined && options.bits !== 32 && options.bits !== 64)
      return Promise.reject(new ConfigError('bits', `must be 32 or 64, got ${String(options.bits)}`));
    if (options.bits !== undefined && options.bits > this.#opts.bits)
      return Promise.reject(
        new ConfigError(
          'bits',
          `a round of ${options.bits}-bit words does not fit the ${this.#opts.bits}-bit messages this aggregator was sized for; construct it with bits ${options.bits}`,
        ),
      );
    const members = options.members ?? this.members();
    for (const m of members) {
      if (!this.#members.has(m)) return Promise.reject(new ConfigError('members', `${m} has not joined`));
    }
    if (this.#opts.scheme === 'he') return this.#openHeRound(members, options);
    const n = members.length;
    let params: RoundParams;
    try {
      let threshold: number;
      let degree = n - 1;
      if ((this.#opts.mode ?? 'complete') === 'secagg+') {
        const p = chooseSecAggPlusParams({ ...this.#opts.secAggPlus, workers: n });
        threshold = p.threshold;
        degree = p.degree;
      } else {
        threshold = this.#opts.threshold?.(n) ?? Math.floor(n / 2) + 1;
      }
      threshold = options.threshold ?? threshold;
      degree = options.degree ?? degree;
      params = {
        sessionId: this.#sessionId,
        round: this.#nextRound,
        members,
        vectorLength: this.#opts.vectorLength,
        bits: options.bits ?? this.#opts.bits,
        threshold,
        degree,
        graphSeed: Uint8Array.from(randomBytes(32)),
        minInputs: options.minInputs ?? this.#opts.minInputs?.(n) ?? Math.floor(n / 2) + 1,
      };
      compileRound(params); // validates before anything is announced
    } catch (err) {
      return Promise.reject(err instanceof SecAggError ? err : new ConfigError('round', String(err)));
    }
    this.#nextRound++;
    const agg = new AggregatorRound(compileRound(params), { deadlinesMs: this.#opts.deadlinesMs });
    return new Promise<RoundSum>((resolve, reject) => {
      const live: LiveRound = {
        agg,
        open: {
          scheme: 'masking',
          params,
          deadlinesMs: this.#opts.deadlinesMs,
          modelVersion: options.modelVersion,
          ...(options.training ? { training: options.training } : {}),
        },
        index: new Map(members.map((m, i) => [m, i])),
        lastSeen: new Map(),
        abortedIn: undefined,
        timer: undefined,
        settle: { resolve, reject },
        gate: undefined,
        attest: undefined,
      };
      this.#rounds.set(params.round, live);
      agg.onTransition((stage) => this.#onTransition(live, stage));
      this.#arm(live);
      this.#log.info(
        { round: params.round, n, threshold: params.threshold, degree: params.degree },
        'round open',
      );
      for (const w of [...this.#roundWaiters]) w();
    });
  }

  /**
   * Opens an HE round: one stage in which members send ciphertexts, summed as they arrive; when
   * every member answered or the stage deadline passed, the key holder decrypts the sum of at
   * least minInputs contributions (or the round aborts and nothing is decrypted).
   */
  async #openHeRound(members: string[], options: OpenRoundOptions): Promise<RoundSum> {
    const { modelVersion, training } = options;
    const kh = this.#opts.keyHolder!;
    const n = members.length;
    const minInputs = Math.max(
      options.minInputs ?? this.#opts.minInputs?.(n) ?? Math.floor(n / 2) + 1,
      kh.minInputs,
    );
    if (!Number.isSafeInteger(minInputs) || minInputs > n) {
      throw new ConfigError(
        'minInputs',
        `a round of ${n} members cannot reach ${minInputs} contributions (the key holder at ${kh.address} decrypts only sums of ≥ ${kh.minInputs}); wait for more members`,
      );
    }
    const params: RoundParams = {
      sessionId: this.#sessionId,
      round: this.#nextRound++,
      members,
      vectorLength: this.#opts.vectorLength,
      bits: options.bits ?? this.#opts.bits,
      threshold: minInputs,
      degree: n - 1,
      graphSeed: new Uint8Array(32),
      minInputs,
    };
    // The key holder's signed nonce: workers pad under it and check that the key holder vouches
    // for the key; without it no worker would encrypt.
    let voucher: HeRoundVoucher;
    try {
      voucher = await kh.openRound(params.round);
    } catch (err) {
      throw new RoundAbortedError(
        `round ${params.round} aborted: the key holder at ${kh.address} issued no nonce (${err instanceof Error ? err.message : String(err)})`,
        { round: params.round, cause: err },
      );
    }
    const he = await HeRound.create({
      round: params.round,
      members,
      minInputs,
      length: this.#opts.vectorLength + HE_CHECK_SLOTS,
      bits: params.bits,
      keyId: kh.keyId,
      deadlineMs: this.#opts.encryptedInputMs,
    });
    if (this.#closed) {
      he.dispose();
      throw new RoundAbortedError('the aggregator is shut down');
    }
    let end!: () => void;
    const ended = new Promise<void>((r) => (end = r));
    return new Promise<RoundSum>((resolve, reject) => {
      const live: LiveHeRound = {
        he,
        open: {
          scheme: 'he',
          params,
          deadlinesMs: this.#opts.deadlinesMs,
          modelVersion,
          he: {
            publicKey: kh.publicKey,
            keyId: kh.keyId,
            encryptedInputMs: this.#opts.encryptedInputMs,
            voucher,
          },
          ...(training ? { training } : {}),
        },
        index: new Map(members.map((m, i) => [m, i])),
        timer: undefined,
        finished: false,
        ended,
        end,
        settle: { resolve, reject },
      };
      this.#heRounds.set(params.round, live);
      live.timer = setTimeout(() => void this.#closeHe(live), this.#opts.encryptedInputMs + 1);
      this.#log.info({ round: params.round, n, minInputs, keyId: kh.keyId }, 'HE round open');
      for (const w of [...this.#roundWaiters]) w();
    });
  }

  /** Closes an HE round's input stage and has the key holder decrypt the sum. */
  async #closeHe(live: LiveHeRound): Promise<void> {
    const { he } = live;
    if (he.stage !== 'ENCRYPTED_INPUT') return;
    clearTimeout(live.timer);
    const round = live.open.params.round;
    let contributors: number[];
    try {
      contributors = he.close();
    } catch (err) {
      this.#finishHe(live, err instanceof SecAggError ? err : new RoundAbortedError(String(err)));
      return;
    }
    const kh = this.#opts.keyHolder!;
    const ids = contributors.map((i) => live.open.params.members[i]!);
    if (this.#opts.releaseGate) {
      try {
        await this.#opts.releaseGate({
          round,
          scheme: 'he',
          survivors: ids,
          modelVersion: live.open.modelVersion,
        });
      } catch (err) {
        this.#finishHe(live, this.#refused(round, err, 'nothing was decrypted'));
        return;
      }
      if (live.finished) return; // aborted meanwhile (shutdown)
    }
    try {
      const ring = await kh.decryptSum({
        round,
        nonce: live.open.he!.voucher.nonce,
        contributors: contributors.map((i, k) => ({ id: ids[k]!, certificate: he.certificate(i)! })),
        keyId: kh.keyId,
        aggregate: he.aggregate(),
      });
      if (live.finished) return; // aborted meanwhile (shutdown)
      he.done();
      this.#finishHe(live, {
        round,
        sum: toSigned(ring),
        ring,
        survivors: ids,
        modelVersion: live.open.modelVersion,
      });
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      this.#finishHe(
        live,
        new RoundAbortedError(
          `round ${round} aborted: the key holder at ${kh.address} did not decrypt the sum (${why}); nothing was released`,
          { round, cause: err },
        ),
      );
    }
  }

  #finishHe(live: LiveHeRound, outcome: RoundSum | SecAggError): void {
    if (live.finished) return;
    live.finished = true;
    clearTimeout(live.timer);
    const { he } = live;
    const round = live.open.params.round;
    if (outcome instanceof SecAggError) he.fail(outcome);
    he.dispose();
    // Members whose input did not arrive leave the membership, as in masking rounds.
    const received = new Set(he.received());
    for (const [id, i] of live.index) {
      if (!received.has(i) && this.#members.has(id)) {
        this.#members.delete(id);
        this.#log.info({ workerId: id, round }, 'worker dropped; it must rejoin');
      }
    }
    if (outcome instanceof SecAggError) {
      this.#log.warn({ round, reason: he.error!.message }, 'round aborted');
      live.settle.reject(he.error!);
      this.#opts.onAbort?.(round, he.error!);
    } else {
      this.#log.info({ round, inputs: outcome.survivors.length }, 'round done');
      live.settle.resolve(outcome);
      void Promise.resolve()
        .then(() => this.#opts.onSum?.(outcome))
        .catch((err: unknown) => this.#log.error({ err, round }, 'onSum failed'));
    }
    live.end();
    setTimeout(() => this.#heRounds.delete(round), 60_000).unref();
  }

  #arm(live: LiveRound): void {
    clearTimeout(live.timer);
    const stage = live.agg.stage;
    if (stage === 'DONE' || stage === 'ABORTED') return;
    live.timer = setTimeout(
      () => this.#close(live, 'deadline'),
      Math.max(0, live.agg.deadline - Date.now()) + 1,
    );
  }

  #close(live: LiveRound, why: 'deadline' | 'complete'): void {
    const stage = live.agg.stage;
    if (stage === 'DONE' || stage === 'ABORTED') return;
    this.#log.debug(
      { round: live.open.params.round, stage, why, received: live.agg.received().size },
      'closing stage',
    );
    try {
      live.agg.closeStage();
    } catch (err) {
      if (!(err instanceof SecAggError)) {
        this.#log.error({ err }, 'unexpected error closing a stage');
        live.agg.abort(new RoundAbortedError(`internal error closing ${stage}`, { cause: err }));
      }
      live.abortedIn = stage as ActiveStage;
    }
  }

  #onTransition(live: LiveRound, stage: Stage): void {
    const round = live.open.params.round;
    try {
      this.#opts.onStage?.(round, stage);
    } catch (err) {
      this.#log.error({ err, round, stage }, 'onStage failed');
    }
    if (stage === 'UNMASK' && this.#opts.releaseGate) {
      // Nobody unmasks, and the UNMASK clock does not run, until the gate approved the release.
      clearTimeout(live.timer);
      live.gate = this.#runGate(live);
    } else {
      this.#arm(live);
      if (stage === 'UNMASK') this.#startAttest(live);
    }
    if (stage === 'DONE' || stage === 'ABORTED') this.#endAttest(live);
    if (stage === 'DONE') {
      const r = live.agg.result();
      const sum: RoundSum = {
        round,
        sum: toSigned(r.sum),
        ring: r.sum,
        survivors: r.survivorIds,
        modelVersion: live.open.modelVersion,
      };
      this.#log.info({ round, inputs: r.survivors.length }, 'round done');
      this.#evictSilent(live, 'UNMASK');
      live.settle.resolve(sum);
      void Promise.resolve()
        .then(() => this.#opts.onSum?.(sum))
        .catch((err: unknown) => this.#log.error({ err, round }, 'onSum failed'));
    } else if (stage === 'ABORTED') {
      const err = live.agg.error!;
      this.#log.warn({ round, reason: err.message }, 'round aborted');
      this.#evictSilent(live, live.abortedIn ?? 'ADVERTISE_KEYS');
      live.settle.reject(err);
      this.#opts.onAbort?.(round, err);
    }
    if (stage === 'DONE' || stage === 'ABORTED') {
      // Keep finished rounds briefly so late callers get a clear answer, then forget them.
      setTimeout(() => this.#rounds.delete(round), 60_000).unref();
    }
  }

  #refused(round: number, err: unknown, what: string): RoundAbortedError {
    const why = err instanceof Error ? err.message : String(err);
    return new RoundAbortedError(`round ${round} aborted: the release was refused (${why}); ${what}`, {
      round,
      cause: err,
    });
  }

  async #runGate(live: LiveRound): Promise<void> {
    const p = live.open.params;
    try {
      await this.#opts.releaseGate!({
        round: p.round,
        scheme: 'masking',
        survivors: live.agg.survivors().map((i) => p.members[i]!),
        modelVersion: live.open.modelVersion,
      });
    } catch (err) {
      if (live.agg.stage === 'UNMASK') {
        live.abortedIn = 'MASKED_INPUT';
        live.agg.abort(this.#refused(p.round, err, 'nothing was unmasked'));
      }
      return;
    }
    if (live.agg.stage !== 'UNMASK') return; // aborted meanwhile (shutdown)
    live.agg.restartClock();
    this.#arm(live);
    this.#startAttest(live);
  }

  /** Opens the consistency check's relay; it answers after all survivors attested or half the UNMASK deadline. */
  #startAttest(live: LiveRound): void {
    const relay: AttestRelay = {
      signatures: new Map(),
      released: false,
      waiting: [],
      timer: undefined,
      release: () => {
        if (relay.released) return;
        relay.released = true;
        clearTimeout(relay.timer);
        for (const w of relay.waiting.splice(0)) w();
      },
    };
    relay.timer = setTimeout(relay.release, Math.ceil(this.#opts.deadlinesMs.UNMASK / 2));
    relay.timer.unref();
    live.attest = relay;
  }

  #endAttest(live: LiveRound): void {
    live.attest?.release();
  }

  /** Workers that did not answer the last stage they were part of leave the membership. */
  #evictSilent(live: LiveRound, last: ActiveStage): void {
    for (const [id, i] of live.index) {
      if (live.lastSeen.get(i) !== last && this.#members.has(id)) {
        this.#members.delete(id);
        this.#log.info({ workerId: id, round: live.open.params.round }, 'worker dropped; it must rejoin');
      }
    }
  }

  #unary<Req, Res>(
    method: Method,
    reqType: { decode(b: Uint8Array): Req },
    resType: { encode(m: Res): { finish(): Uint8Array } },
    handle: (r: Req, call: ServerUnaryCall<Buffer, Buffer>) => Promise<Res>,
  ): UntypedHandleCall {
    const traffic = this.#traffic;
    const req = {
      decode: (b: Uint8Array) => {
        traffic.received += b.byteLength;
        return reqType.decode(b);
      },
    };
    const res = {
      encode: (m: Res) => {
        const w = resType.encode(m);
        return {
          finish: () => {
            const b = w.finish();
            traffic.sent += b.byteLength;
            return b;
          },
        };
      },
    };
    if (!this.#peerIdentity) return unaryHandler(this.#log, method, req, res, handle);
    return unaryHandler(this.#log, method, req, res, (r, call) => {
      this.#checkPeer(method, (r as { workerId?: unknown }).workerId, call);
      return handle(r, call);
    });
  }

  /**
   * Under mutual TLS the caller is the worker its certificate's subject CN names (the job's CA
   * issued it); a request that claims another worker id is refused, whatever it carries.
   */
  #checkPeer(method: Method, claimed: unknown, call: ServerUnaryCall<Buffer, Buffer>): void {
    const name = peerCommonName(call);
    if (name !== undefined && name === claimed) return;
    const peer = call.getPeer();
    this.#log.warn(
      { method, peer, certificateName: name ?? null, claimedWorkerId: String(claimed).slice(0, 140) },
      'refused a call whose certificate does not name the worker it claims to be',
    );
    throw new PermissionError(
      name === undefined
        ? `the caller at ${peer} presented no certificate naming a worker; use the job's certificate (--tls-dir)`
        : `the certificate of the caller at ${peer} names ${JSON.stringify(name)}, but the request claims worker ${JSON.stringify(String(claimed).slice(0, 140))}; a worker may act only as itself`,
      { workerId: name },
    );
  }

  #live(round: number, workerId: string): { live: LiveRound; index: number } {
    const live = this.#rounds.get(round);
    if (!live && this.#heRounds.has(round))
      throw new StageError(
        `round ${round} uses the HE scheme: send SubmitEncryptedInput, not a masking stage's message`,
        { round, workerId, stage: 'ENCRYPTED_INPUT', expected: 'a masking round' },
      );
    if (!live)
      throw new StageError(`round ${round} is not open`, {
        round,
        workerId,
        stage: 'none',
        expected: 'an open round',
      });
    const index = live.index.get(workerId);
    if (index === undefined) {
      throw new StageError(`${workerId} is not in the roster of round ${round}`, {
        round,
        workerId,
        stage: live.agg.stage,
        expected: 'a roster member',
      });
    }
    return { live, index };
  }

  async #afterStage(live: LiveRound, stage: ActiveStage, index: number): Promise<void> {
    live.lastSeen.set(index, stage);
    if (live.agg.stageComplete) this.#close(live, 'complete');
    if (live.agg.stage === stage) {
      await new Promise<void>((resolve) => {
        const off = live.agg.onTransition(() => {
          off();
          resolve();
        });
      });
    }
    if (live.agg.stage === 'ABORTED') {
      const e = live.agg.error!;
      throw new RoundAbortedError(`round ${live.open.params.round} aborted: ${e.message}`, {
        round: live.open.params.round,
        cause: e,
      });
    }
  }

  async #join(r: pb.JoinRequest): Promise<pb.JoinResponse> {
    if (!WORKER_ID.test(r.workerId))
      throw new MalformedMessageError(
        `worker_id must be 1..128 characters of [A-Za-z0-9._:-], got ${JSON.stringify(r.workerId.slice(0, 140))}`,
      );
    if (!Number.isSafeInteger(r.shardSize) || r.shardSize < 0)
      throw new MalformedMessageError(`shard_size must be a non-negative safe integer, got ${r.shardSize}`);
    const known = this.#members.get(r.workerId);
    if (known) known.shardSize = r.shardSize;
    else {
      this.#members.set(r.workerId, { joinedAt: performance.now(), shardSize: r.shardSize });
      this.#log.info({ workerId: r.workerId }, 'worker joined');
      for (const w of [...this.#memberWaiters]) w();
    }
    return { sessionId: Buffer.from(this.#sessionId), nextRound: this.#nextRound };
  }

  async #awaitRound(
    r: pb.AwaitRoundRequest,
    call: ServerUnaryCall<Buffer, Buffer>,
  ): Promise<pb.RoundAnnouncement> {
    for (;;) {
      if (!this.#members.has(r.workerId)) {
        throw new StageError(`${r.workerId} is not a member; call Join first`, {
          workerId: r.workerId,
          stage: 'none',
          expected: 'a member',
        });
      }
      const found = [
        ...[...this.#rounds.values()].filter((l) => l.agg.stage === 'ADVERTISE_KEYS'),
        ...[...this.#heRounds.values()].filter((l) => l.he.stage === 'ENCRYPTED_INPUT'),
      ]
        .filter((l) => l.open.params.round >= r.minRound && l.index.has(r.workerId))
        .sort((a, b) => a.open.params.round - b.open.params.round)[0];
      if (found) return roundOpenToProto(found.open);
      if (this.#finished !== undefined) {
        this.#told.add(r.workerId);
        for (const w of [...this.#toldWaiters]) w();
        throw new JobFinishedError(this.#finished);
      }
      if (this.#closed) throw new RoundAbortedError('the aggregator is shutting down');
      this.#awaiting.set(r.workerId, (this.#awaiting.get(r.workerId) ?? 0) + 1);
      this.#awaitingChanged();
      await new Promise<void>((resolve, reject) => {
        const wake = () => {
          this.#roundWaiters.delete(wake);
          resolve();
        };
        this.#roundWaiters.add(wake);
        call.once('cancelled', () => {
          this.#roundWaiters.delete(wake);
          reject(new RoundAbortedError('call cancelled'));
        });
      }).finally(() => {
        const k = (this.#awaiting.get(r.workerId) ?? 1) - 1;
        if (k > 0) this.#awaiting.set(r.workerId, k);
        else this.#awaiting.delete(r.workerId);
        this.#awaitingChanged();
      });
    }
  }

  async #advertise(r: pb.AdvertiseKeysRequest): Promise<pb.AdvertiseKeysResponse> {
    const { live, index } = this.#live(r.round, r.workerId);
    const keys = advertisedKeysFromProto(r.keys);
    if (keys.index !== index)
      throw new MalformedMessageError(`keys.index is ${keys.index} but ${r.workerId} has index ${index}`);
    live.agg.submitAdvertiseKeys(keys);
    await this.#afterStage(live, 'ADVERTISE_KEYS', index);
    return { roster: live.agg.keyRoster().map(advertisedKeysToProto) };
  }

  async #shareKeys(r: pb.ShareKeysRequest): Promise<pb.ShareKeysResponse> {
    const { live, index } = this.#live(r.round, r.workerId);
    live.agg.submitShareKeys({ index, shares: r.shares.map(encryptedShareFromProto) });
    await this.#afterStage(live, 'SHARE_KEYS', index);
    return { shares: live.agg.sharesFor(index).map(encryptedShareToProto) };
  }

  async #maskedInput(r: pb.SubmitMaskedInputRequest): Promise<pb.SubmitMaskedInputResponse> {
    const { live, index } = this.#live(r.round, r.workerId);
    const p = live.open.params;
    live.agg.submitMaskedInput({
      index,
      vector: maskedVectorFromProto(r.maskedVector, p.bits, p.vectorLength),
    });
    await this.#afterStage(live, 'MASKED_INPUT', index);
    // Survivors learn U3 (and so may unmask) only after the release gate approved the round.
    await live.gate;
    if (live.agg.stage === 'ABORTED') {
      const e = live.agg.error!;
      throw new RoundAbortedError(`round ${p.round} aborted: ${e.message}`, { round: p.round, cause: e });
    }
    return { survivors: live.agg.survivors() };
  }

  async #attest(r: pb.AttestRequest): Promise<pb.AttestResponse> {
    const { live, index } = this.#live(r.round, r.workerId);
    const relay = live.attest;
    if (live.agg.stage !== 'UNMASK' || !relay) {
      throw new StageError(
        `round ${r.round} is ${live.agg.stage}; Attest belongs between SubmitMaskedInput's answer and Unmask`,
        { round: r.round, workerId: r.workerId, stage: live.agg.stage, expected: 'UNMASK' },
      );
    }
    const a = survivorAttestationFromProto(r.attestation);
    if (a.index !== index)
      throw new MalformedMessageError(`attestation.index is ${a.index} but ${r.workerId} has index ${index}`);
    const survivors = live.agg.survivors();
    if (!survivors.includes(index))
      throw new StageError(`${r.workerId} is not a survivor of round ${r.round}; it has nothing to attest`, {
        round: r.round,
        workerId: r.workerId,
        stage: 'UNMASK',
        expected: 'a survivor',
      });
    if (relay.signatures.has(index))
      throw new DuplicateMessageError(`${r.workerId} already attested round ${r.round}`, {
        round: r.round,
        workerId: r.workerId,
      });
    relay.signatures.set(index, a);
    if (relay.signatures.size === survivors.length) relay.release();
    if (!relay.released) await new Promise<void>((resolve) => relay.waiting.push(resolve));
    if ((live.agg.stage as Stage) === 'ABORTED') {
      const e = live.agg.error!;
      throw new RoundAbortedError(`round ${r.round} aborted: ${e.message}`, { round: r.round, cause: e });
    }
    return {
      attestations: [...relay.signatures.values()]
        .sort((x, y) => x.index - y.index)
        .map(survivorAttestationToProto),
    };
  }

  async #getModel(r: pb.GetModelRequest): Promise<pb.GetModelResponse> {
    if (!this.#members.has(r.workerId))
      throw new StageError(`${r.workerId} is not a member; call Join first`, {
        workerId: r.workerId,
        stage: 'none',
        expected: 'a member',
      });
    const v = modelVersionFromProto(r.version);
    const m = await this.#opts.model?.(v);
    if (!m)
      throw new NotFoundError(
        `model version ${v.round} (${v.fingerprint.slice(0, 16)}) is not held by the aggregator; await the next round's announcement`,
        { workerId: r.workerId },
      );
    return modelParametersToProto(m);
  }

  async #unmask(r: pb.UnmaskRequest): Promise<pb.UnmaskResponse> {
    const { live, index } = this.#live(r.round, r.workerId);
    live.agg.submitUnmask(unmaskSharesFromProto(r, index));
    try {
      await this.#afterStage(live, 'UNMASK', index);
    } catch (err) {
      if (err instanceof RoundAbortedError) return { completed: false, reason: err.message, inputs: 0 };
      throw err;
    }
    return { completed: true, reason: '', inputs: live.agg.survivors().length };
  }

  async #encryptedInput(r: pb.SubmitEncryptedInputRequest): Promise<pb.SubmitEncryptedInputResponse> {
    const live = this.#heRounds.get(r.round);
    if (!live) {
      throw new StageError(
        this.#rounds.has(r.round)
          ? `round ${r.round} uses the masking scheme: SubmitEncryptedInput does not belong to it`
          : `round ${r.round} is not open`,
        { round: r.round, workerId: r.workerId, stage: 'none', expected: 'an open HE round' },
      );
    }
    const index = live.index.get(r.workerId);
    if (index === undefined) {
      throw new StageError(`${r.workerId} is not in the roster of round ${r.round}`, {
        round: r.round,
        workerId: r.workerId,
        stage: live.he.stage,
        expected: 'a roster member',
      });
    }
    live.he.submit(encryptedInputFromProto(r, index));
    if (live.he.stageComplete) void this.#closeHe(live);
    await live.ended;
    if (live.he.stage !== 'DONE') {
      return { completed: false, reason: live.he.error?.message ?? 'aborted', inputs: 0, contributors: [] };
    }
    const contributors = live.he.received();
    return { completed: true, reason: '', inputs: contributors.length, contributors };
  }

  /**
   * Aborts the live rounds with `reason` (their members' calls fail with RoundAbortedError) and
   * keeps serving: after finish(), the members' next AwaitRound tells them the job is over.
   */
  abortRounds(reason: string): void {
    for (const live of this.#rounds.values()) {
      clearTimeout(live.timer);
      live.agg.abort(new RoundAbortedError(reason));
    }
    for (const live of this.#heRounds.values()) this.#finishHe(live, new RoundAbortedError(reason));
  }

  /** Aborts live rounds, stops accepting calls and waits (up to graceMs) for calls in flight. */
  async close(graceMs = 2000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.abortRounds('the aggregator is shutting down');
    for (const w of [...this.#roundWaiters]) w();
    this.#awaitingChanged();
    await shutdownGracefully(this.#server, graceMs);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
