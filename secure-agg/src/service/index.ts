// @tensorguard/secure-agg/service: the aggregator gRPC service and the worker's client.
export {
  AggregatorServer,
  type AggregatorServerOptions,
  type ServerTlsOptions,
  type RoundSum,
} from './server.js';
export {
  SecureAggClient,
  type SecureAggClientOptions,
  type ClientTlsOptions,
  type PreparedRound,
  type RoundOutcome,
} from './client.js';
export { type RoundOpen, type ModelVersionRef } from './convert.js';
export { loadAggregatorConfig, type AggregatorConfig } from './config.js';
