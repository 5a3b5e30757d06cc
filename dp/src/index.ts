// Public surface of @tensorguard/dp (pure TypeScript: no tfjs, no gRPC). The tfjs per-sample
// clipping engine is the separate entry @tensorguard/dp/tfjs.
export {
  DpError,
  InvalidArgumentError,
  UnsupportedEventError,
  BudgetExceededError,
  CalibrationError,
  InvalidStateError,
  type DpErrorCode,
} from './errors.js';
export {
  DEFAULT_RDP_ORDERS,
  INTEGER_RDP_ORDERS,
  rdpGaussian,
  rdpPoissonSubsampledGaussian,
  rdpSampledWithoutReplacementGaussian,
  rdpPoissonSubsampledGeneric,
  rdpPoissonSubsampledSymmetric,
  rdpPoissonSubsampledSymmetricCurve,
  rdpPoissonSubsampledGaussianSymmetricBound,
  epsilonFromRdp,
  deltaFromRdp,
  type RdpConversion,
  type EpsilonAtOrder,
  type DeltaAtOrder,
} from './rdp.js';
export {
  DEFAULT_PLD_DISCRETIZATION,
  DEFAULT_TAIL_MASS_TRUNCATION,
  PrivacyLossPmf,
  subsampledGaussianPld,
  composePldPairs,
  selfComposePldPair,
  pldPairEpsilon,
  pldPairDelta,
  type PldPair,
} from './pld.js';
export {
  EVENT_KINDS,
  gaussianEvent,
  poissonSampledEvent,
  sampledWithoutReplacementEvent,
  selfComposedEvent,
  composedEvent,
  distributedDiscreteGaussianEvent,
  skellamEvent,
  noOpEvent,
  nonPrivateEvent,
  roundedL2NormBound,
  discreteSensitivities,
  rdpOfDiscreteRelease,
  rdpOfDiscreteEvent,
  effectiveNoiseMultiplier,
  dpEventFromJSON,
  type DpEvent,
  type GaussianEvent,
  type PoissonSampledEvent,
  type SampledWithoutReplacementEvent,
  type SelfComposedEvent,
  type ComposedEvent,
  type DiscreteNoiseParams,
  type DistributedDiscreteGaussianEvent,
  type SkellamEvent,
  type NoOpEvent,
  type NonPrivateEvent,
} from './mechanisms.js';
export {
  RdpAccountant,
  PldAccountant,
  accountantFromJSON,
  type PrivacyAccountant,
  type NeighboringRelation,
  type AccountantState,
  type RdpAccountantState,
  type PldAccountantState,
  type RdpAccountantOptions,
  type PldAccountantOptions,
} from './accountant.js';
export {
  computeEpsilon,
  calibrateNoiseMultiplier,
  maxStepsForBudget,
  type AccountantKind,
  type TrainingPrivacySetting,
} from './calibration.js';
export {
  DistributedAccountant,
  realizedNoiseMultiplier,
  type DistributedAccountantOptions,
  type DistributedAccountantState,
  type RoundRelease,
  type ShardRelease,
  type GaussianShardRelease,
  type EventShardRelease,
} from './distributed-accountant.js';
export { SecureRandom, defaultRandom } from './random.js';
export { sampleGaussian, type GaussianSampleOptions } from './gaussian.js';
export {
  DiscreteGaussianSampler,
  sampleDiscreteGaussian,
  exactVariance,
  type ExactVariance,
} from './discrete-gaussian.js';
export { runPrivacyCommand, PRIVACY_USAGE, type PrivacyCommandResult } from './privacy-cli.js';
