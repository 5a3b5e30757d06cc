// @tensorguard/secure-agg/service: the aggregator gRPC service and the worker's client, and the HE
// key holder's service and its client.
export {
  AggregatorServer,
  type AggregatorServerOptions,
  type KeyHolderLink,
  type OpenRoundOptions,
  type PendingRelease,
  type RoundSum,
} from './server.js';
export {
  SecureAggClient,
  type SecureAggClientOptions,
  type PreparedRound,
  type RoundOutcome,
  type WorkerStage,
} from './client.js';
export { type ServerTlsOptions, type ClientTlsOptions } from './grpc-edge.js';
export { KeyHolderServer, type KeyHolderServerOptions } from './key-holder-server.js';
export { KeyHolderClient, type KeyHolderClientOptions } from './key-holder-client.js';
export { spawnKeyHolder, type SpawnedKeyHolder } from './spawn.js';
export {
  roundOpenFromProto,
  roundOpenToProto,
  type RoundOpen,
  type RoundTraining,
  type ModelParameters,
  type ModelVersionRef,
  type AggregationScheme,
  type HeRoundKey,
} from './convert.js';
export {
  loadAggregatorConfig,
  loadKeyHolderConfig,
  type AggregatorConfig,
  type KeyHolderConfig,
} from './config.js';
