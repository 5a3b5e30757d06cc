export {
  RayError,
  RayUnavailableError,
  RayAuthError,
  RayJobNotFoundError,
  RayHttpError,
  RayHeadError,
  NoClusterError,
} from './errors.js';
export {
  RayJobsClient,
  lines,
  TERMINAL_STATUSES,
  type RayJobsClientOptions,
  type RayJobDetails,
  type RayJobStatus,
  type SubmitRequest,
} from './jobs-client.js';
export {
  LocalHead,
  headEnv,
  clusterFile,
  readClusterFile,
  writeClusterFile,
  stateDir,
  type ClusterInfo,
  type LocalHeadOptions,
} from './local-head.js';
export { findCluster, requireCluster, dashboardUrl, type ClusterTarget } from './cluster.js';
export {
  submitTrainingJob,
  entrypointCommand,
  followJob,
  waitTerminal,
  parseJobLine,
  scanLogs,
  newJobId,
  FORWARDED_ENV,
  type ProgressLine,
  type ResultLine,
  type SubmitOptions,
  type FollowOptions,
  type FollowResult,
} from './job.js';
export { NetnsCluster } from './netns-cluster.js';
