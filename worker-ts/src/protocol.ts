// The messages between a worker and the coordinator, on top of secure-agg's round messages.
import type { EncodingOptions, HeEncryptedInput, RoundParams } from '@tensorguard/secure-agg';

export interface JoinRequest {
  workerId: string;
  workerIndex: number;
  /** Records in the worker's shard (dataset sizes are public in this threat model). */
  shardSize: number;
}
export interface JoinResponse {
  jobName: string;
  modelVersion: number;
}

export interface NextRoundRequest {
  workerId: string;
  workerIndex: number;
  /** Model version the worker holds (-1: none). */
  haveVersion: number;
}

export interface RoundOpen {
  kind: 'round';
  params: RoundParams;
  /** This worker's index in params.members. */
  index: number;
  encoding: EncodingOptions;
  /** Integer-unit std of this worker's noise share (0 when noise is off). */
  noiseShareStd: number;
  samplingRate: number;
  clipNorm: number;
  modelVersion: number;
  /** The trainable parameters when the worker's version differs. */
  model?: Float32Array;
  /**
   * Present in HE mode: encrypt the encoded vector (plus its count slot) under this key and send
   * it with EncryptedInput instead of the masking stages. `params` then only supplies the round,
   * members, vector length and ring width.
   */
  he?: { publicKey: Uint8Array; keyId: string };
}

/**
 * HE mode: one worker's contribution, one BFV ciphertext per 4096 values (its vector plus the count
 * slot, secure-agg's withCountSlot); the HeRound of secure-agg checks and sums it.
 */
export type EncryptedInput = HeEncryptedInput;

export type NextRoundResponse = RoundOpen | { kind: 'done'; reason: string } | { kind: 'wait' };

export interface StageRequest<T> {
  workerId: string;
  round: number;
  message: T;
}
