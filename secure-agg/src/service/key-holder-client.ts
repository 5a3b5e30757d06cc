// The aggregator's client of the HE key holder (he_key_holder.proto): fetches the public key once,
// asks for each round's signed nonce and for round aggregates to be decrypted. worker-ts's
// coordinator uses it too. The key holder serves mutual TLS only: `tls` is the aggregator's job
// identity, and the key holder is verified as tensorguard-key-holder.
import type { Client } from '@grpc/grpc-js';
import { type heKeyHolder as pb, HeKeyHolderService } from '@tensorguard/proto';
import {
  HE_CHECK_SLOTS,
  KEY_HOLDER_NAME,
  keyIdOf,
  MalformedMessageError,
  UnavailableError,
  type HeDecryptRequest,
  type HePublicKeyInfo,
  type HeRoundVoucher,
  type RingVector,
} from '../index.js';
import {
  decryptRequestToProto,
  decryptResponseFromProto,
  publicKeyInfoFromProto,
  roundVoucherFromProto,
} from './convert.js';
import { callUnary, makeClient, type ClientTlsOptions } from './grpc-edge.js';
import type { KeyHolderLink } from './server.js';

export interface KeyHolderClientOptions {
  /** host:port of the key holder. */
  address: string;
  /**
   * Mutual TLS: the job's CA, the aggregator's certificate and key; serverNameOverride defaults to
   * 'tensorguard-key-holder' (the name on the key holder's certificate, whatever its address).
   */
  tls: ClientTlsOptions;
  /** Largest message sent or received, bytes. Default 64 MiB. */
  maxMessageBytes?: number;
}

type Method = keyof typeof HeKeyHolderService;

export class KeyHolderClient {
  readonly address: string;
  readonly #client: Client;

  constructor(options: KeyHolderClientOptions) {
    this.address = options.address;
    this.#client = makeClient(
      options.address,
      { serverNameOverride: KEY_HOLDER_NAME, ...options.tls },
      options.maxMessageBytes ?? 64 << 20,
    );
  }

  #call<Req, Res>(method: Method, req: Req, timeoutMs: number, round?: number): Promise<Res> {
    const def = HeKeyHolderService[method] as unknown as {
      path: string;
      requestSerialize: (r: Req) => Buffer;
      responseDeserialize: (b: Buffer) => Res;
    };
    return callUnary(this.#client, def, req, timeoutMs, `${method} at the key holder ${this.address}`, round);
  }

  /**
   * The key holder's public key, retrying while it is unreachable (still starting) for up to
   * waitMs. Throws UnavailableError after that, MalformedMessageError for a key whose id does not
   * match it.
   */
  async publicKey(waitMs = 30_000): Promise<HePublicKeyInfo> {
    const giveUp = Date.now() + waitMs;
    for (let delay = 100; ; delay = Math.min(2000, delay * 2)) {
      try {
        const info = publicKeyInfoFromProto(
          await this.#call<pb.PublicKeyRequest, pb.PublicKeyResponse>('publicKey', {}, 10_000),
        );
        if (keyIdOf(info.publicKey) !== info.keyId)
          throw new MalformedMessageError(
            `the key holder at ${this.address} sent a key that does not match its id`,
          );
        return info;
      } catch (err) {
        if (!(err instanceof UnavailableError) || Date.now() > giveUp) throw err;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** A fresh nonce for `round`, signed by the key holder (relayed to the round's workers). */
  async openRound(round: number, deadlineMs = 10_000): Promise<HeRoundVoucher> {
    return roundVoucherFromProto(
      await this.#call<pb.OpenRoundRequest, pb.OpenRoundResponse>('openRound', { round }, deadlineMs, round),
    );
  }

  /**
   * Has the key holder decrypt one round's aggregate (encrypted under `keyId`); resolves with the
   * ring sum without its check slots. Rejects with the SecAggError of the refusal (DecryptionPolicyError's status arrives as a
   * StageError whose message carries the key holder's reason).
   */
  async decryptSum(req: HeDecryptRequest & { keyId: string }, deadlineMs = 120_000): Promise<RingVector> {
    const res = await this.#call<pb.DecryptSumRequest, pb.DecryptSumResponse>(
      'decryptSum',
      decryptRequestToProto(req),
      deadlineMs,
      req.round,
    );
    const { sum, contributions } = decryptResponseFromProto(
      res,
      req.aggregate.bits,
      req.aggregate.length - HE_CHECK_SLOTS,
    );
    if (contributions !== req.contributors.length)
      throw new MalformedMessageError(
        `the key holder reported ${contributions} contributions for round ${req.round}, not ${req.contributors.length}`,
      );
    return sum;
  }

  /** Fetches the public key (waiting up to waitMs) and returns the link an AggregatorServer takes. */
  async link(waitMs = 30_000): Promise<KeyHolderLink> {
    const info = await this.publicKey(waitMs);
    return {
      address: this.address,
      publicKey: info.publicKey,
      keyId: info.keyId,
      minInputs: info.minInputs,
      openRound: (round) => this.openRound(round),
      decryptSum: (req) => this.decryptSum({ ...req, keyId: req.keyId ?? info.keyId }),
    };
  }

  close(): void {
    this.#client.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
