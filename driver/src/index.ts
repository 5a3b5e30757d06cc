// Public surface of @tensorguard/driver.

// Job spec: validation, loading, resolution to the run config.
export * from './spec/index.js';
// Ray: Jobs REST client, local head, cluster discovery, job submission and following.
export * from './ray/index.js';
// TrainingService clients: a finished job's artifacts, each file's SHA-256 checked.
export {
  ArtifactIntegrityError,
  downloadJobArtifact,
  type DownloadArtifactOptions,
  type DownloadedFile,
} from './api/client/artifact-client.js';
export type { ArtifactFile, ArtifactKind } from './api/jobs/domain.js';
