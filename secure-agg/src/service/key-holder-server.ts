// The HE key holder's gRPC service (proto/tensorguard/v1/he_key_holder.proto). It owns the only
// BFV secret key (in HeKeyService, which enforces the decryption rules) and answers aggregators:
// PublicKey, OpenRound (a signed nonce) and DecryptSum of one round's aggregate. It runs with its
// own job identity (CN tensorguard-key-holder) and always under mutual TLS with the job's CA;
// OpenRound and DecryptSum are answered only for the aggregator's certificate. Requests are decoded
// in the handler and every refusal is a status with a reason (grpc-edge.ts), as in the aggregator.
import { Server } from '@grpc/grpc-js';
import { heKeyHolder as pb, HeKeyHolderService } from '@tensorguard/proto';
import { pino, type Logger } from 'pino';
import {
  ConfigError,
  HeKeyService,
  MalformedMessageError,
  PermissionError,
  type JobIdentity,
} from '../index.js';
import {
  decryptRequestFromProto,
  decryptResponseToProto,
  publicKeyInfoToProto,
  roundVoucherToProto,
} from './convert.js';
import {
  AGGREGATOR_NAME,
  peerCommonName,
  rawDefinition,
  serverCredentials,
  shutdownGracefully,
  unaryHandler,
} from './grpc-edge.js';

const WORKER_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export interface KeyHolderServerOptions {
  /** host:port to bind; default '127.0.0.1:0' (an ephemeral port, see `port`). */
  address?: string;
  /**
   * The key holder's job identity (PEM: the job's CA, its certificate naming
   * tensorguard-key-holder, its P-256 key): it serves mutual TLS with it, signs round nonces with
   * it and derives workers' pads with it. Required.
   */
  identity: JobIdentity;
  /**
   * The certificate common name OpenRound and DecryptSum are answered for (the job's CA also
   * issues the workers' certificates, and no worker may ask for a decryption). Default
   * 'tensorguard-aggregator'.
   */
  aggregatorName?: string;
  /** Fewest distinct contributors a decrypted sum may hold; an integer ≥ 2. Default 2. */
  minInputs?: number;
  /** Largest request accepted, bytes; default 64 MiB (about 250 ciphertexts, d ≈ 10^6). */
  maxMessageBytes?: number;
  logger?: Logger;
}

export class KeyHolderServer {
  readonly #service: HeKeyService;
  readonly #opts: KeyHolderServerOptions;
  readonly #log: Logger;
  readonly #server: Server;
  #port = 0;

  private constructor(service: HeKeyService, options: KeyHolderServerOptions) {
    this.#service = service;
    this.#opts = options;
    this.#log = options.logger ?? pino({ level: 'silent' });
    const max = options.maxMessageBytes ?? 64 << 20;
    this.#server = new Server({
      'grpc.max_receive_message_length': max,
      'grpc.max_send_message_length': max,
    });
    this.#server.addService(rawDefinition(HeKeyHolderService), {
      publicKey: unaryHandler(this.#log, 'publicKey', pb.PublicKeyRequest, pb.PublicKeyResponse, () =>
        Promise.resolve(publicKeyInfoToProto(this.#service.publicKey())),
      ),
      openRound: unaryHandler(this.#log, 'openRound', pb.OpenRoundRequest, pb.OpenRoundResponse, (r, call) =>
        Promise.resolve().then(() => {
          this.#onlyAggregator(call, 'OpenRound', r.round);
          const v = this.#service.openRound(r.round);
          this.#log.info({ round: r.round }, 'issued a round nonce');
          return roundVoucherToProto(v);
        }),
      ),
      decryptSum: unaryHandler(
        this.#log,
        'decryptSum',
        pb.DecryptSumRequest,
        pb.DecryptSumResponse,
        (r, call) =>
          Promise.resolve().then(() => {
            this.#onlyAggregator(call, 'DecryptSum', r.round);
            return this.#decrypt(r);
          }),
      ),
    });
  }

  #onlyAggregator(call: Parameters<typeof peerCommonName>[0], method: string, round: number): void {
    const want = this.#opts.aggregatorName ?? AGGREGATOR_NAME;
    const name = peerCommonName(call);
    if (name === want) return;
    this.#log.warn(
      { peer: call.getPeer(), certificateName: name ?? null, round },
      `refused ${method} from a caller that is not the aggregator`,
    );
    throw new PermissionError(
      `only the aggregator (${want}) may call ${method}; the caller at ${call.getPeer()} is ${name === undefined ? 'unnamed' : JSON.stringify(name)}`,
    );
  }

  /**
   * Generates a fresh key pair (about 50 ms). Throws ConfigError for minInputs below 2 or a bad
   * maxMessageBytes, UnavailableError when node-seal cannot load.
   */
  static async create(options: KeyHolderServerOptions): Promise<KeyHolderServer> {
    const max = options.maxMessageBytes;
    if (max !== undefined && (!Number.isSafeInteger(max) || max < 1 << 20))
      throw new ConfigError('maxMessageBytes', `must be an integer ≥ 1048576 bytes, got ${max}`);
    if (!options.identity)
      throw new ConfigError(
        'identity',
        'the key holder needs its job identity (ca.pem, cert.pem, key.pem naming tensorguard-key-holder; pki.py writes it): pass --tls-dir',
      );
    return new KeyHolderServer(await HeKeyService.create(options.minInputs ?? 2, options.identity), options);
  }

  get keyId(): string {
    return this.#service.keyId;
  }

  get minInputs(): number {
    return this.#service.minInputs;
  }

  /** The bound port (after start). */
  get port(): number {
    return this.#port;
  }

  /** Binds and starts serving; resolves with the bound port. */
  async start(): Promise<number> {
    this.#port = await new Promise<number>((resolve, reject) =>
      this.#server.bindAsync(
        this.#opts.address ?? '127.0.0.1:0',
        serverCredentials({
          certChain: Buffer.from(this.#opts.identity.cert),
          privateKey: Buffer.from(this.#opts.identity.key),
          clientCa: Buffer.from(this.#opts.identity.ca),
        }),
        (err, port) => (err ? reject(err) : resolve(port)),
      ),
    );
    this.#log.info(
      { port: this.#port, keyId: this.keyId, minInputs: this.minInputs },
      'key holder listening',
    );
    return this.#port;
  }

  #decrypt(r: pb.DecryptSumRequest): pb.DecryptSumResponse {
    const bad = r.contributors.find((c) => !WORKER_ID.test(c));
    if (bad !== undefined)
      throw new MalformedMessageError(
        `round ${r.round}: contributor ${JSON.stringify(bad.slice(0, 140))} is not a worker id (1..128 characters of [A-Za-z0-9._:-])`,
      );
    const req = decryptRequestFromProto(r);
    const sum = this.#service.decryptSum(req);
    this.#log.info({ round: req.round, contributors: req.contributors.length }, 'decrypted a sum');
    return decryptResponseToProto(sum, req.contributors.length);
  }

  /** Stops accepting calls and waits (up to graceMs) for calls in flight. */
  async close(graceMs = 2000): Promise<void> {
    await shutdownGracefully(this.#server, graceMs);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
