// @tensorguard/secure-agg: the protocol core of secure aggregation (Bonawitz et al. 2017 with the
// SecAgg+ sparse graph of Bell et al. 2020), fixed-point encoding into Z_2^k, and the HE
// alternative. Imports neither gRPC nor tfjs; the gRPC service is @tensorguard/secure-agg/service.
export {
  SecAggError,
  ConfigError,
  StageError,
  MalformedMessageError,
  DuplicateMessageError,
  ThresholdError,
  DeadlineError,
  ShareDecryptionError,
  SharePolicyError,
  DecryptionPolicyError,
  RoundAbortedError,
  UnavailableError,
  PermissionError,
  NotFoundError,
  JobFinishedError,
  type SecAggErrorCode,
  type SecAggErrorFields,
  type DecryptionRule,
} from './errors.js';
export {
  FIELD_PRIME,
  FIELD_BYTES,
  splitSecret,
  combineShares,
  lagrangeAtZero,
  randomFieldElement,
  type Share,
} from './shamir.js';
export {
  generateKeyPair,
  publicKeyOf,
  agree,
  deriveKey,
  encryptForPeer,
  decryptFromPeer,
  KEY_BYTES,
  type KeyPair,
  type KeyPurpose,
  type RoundContext,
} from './keys.js';
export {
  allocRing,
  addInto,
  addMaskInto,
  addMasksFrom,
  addMasksInto,
  DEFAULT_RING_ADD_PATH,
  expandMask,
  RING_ADD_PATHS,
  ringBitsOf,
  ringToBytes,
  ringFromBytes,
  toSigned,
  words32,
  type RingAddPath,
  type RingBits,
  type SignedMask,
  type RingVector,
  type SignedVector,
} from './masking.js';
export { nativeKernel, NATIVE_KERNEL_FILE, type NativeKernel } from './native-kernel.js';
export {
  planEncoding,
  encode,
  encodeIntegers,
  decode,
  toIntegers,
  noiseTailBound,
  type Encoding,
  type EncodingOptions,
} from './encoding.js';
export {
  chooseSecAggPlusParams,
  neighbourGraph,
  type SecAggPlusOptions,
  type SecAggPlusParams,
} from './secagg-plus.js';
export {
  compileRound,
  STAGES,
  type Stage,
  type ActiveStage,
  type RoundParams,
  type CompiledRound,
  type AdvertiseKeys,
  type EncryptedShare,
  type ShareKeys,
  type MaskedInput,
  type RevealedShare,
  type UnmaskShares,
  type KeyRoster,
  type RoundResult,
  type RoundIdentity,
  type SurvivorAttestation,
} from './messages.js';
export {
  RoundParticipant,
  newSessionId,
  advertiseTranscript,
  survivorsTranscript,
  type ParticipantState,
  type ParticipantOptions,
} from './participant.js';
export {
  AggregatorRound,
  DEFAULT_DEADLINES_MS,
  SHARE_CIPHERTEXT_BYTES,
  type AggregatorRoundOptions,
  type StageDeadlinesMs,
} from './round.js';
export { runRoundInProcess, type InProcessRoundOptions, type InProcessRoundReport } from './in-process.js';
export {
  HeKeyHolder,
  HeEncryptor,
  HeAccumulator,
  HE_CIPHERTEXT_MAX_BYTES,
  HE_MAX_SUM_BOUND,
  HE_SLOTS,
  heCiphertextBytesBound,
  loadSeal,
  type HeAggregate,
} from './he.js';
export {
  HE_CHECK_SLOTS,
  HE_PLAIN_MODULUS,
  KEY_HOLDER_NAME,
  JobPki,
  heKeyDigest,
  hePads,
  heRoundStatement,
  padContribution,
  residuesToRing,
  type JobIdentity,
} from './he-pad.js';
export {
  HeKeyService,
  keyIdOf,
  type HeContributor,
  type HeDecryptRequest,
  type HePublicKeyInfo,
  type HeRoundVoucher,
} from './he-key-service.js';
export { HeRound, type HeRoundOptions, type HeRoundStage, type HeEncryptedInput } from './he-round.js';
