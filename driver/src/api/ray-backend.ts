// RayJobBackend: jobs run as Ray jobs, submitted and followed through the driver's Ray Jobs
// client (driver/src/ray). Pending: that client has not landed yet; `tensorguard serve` with the
// default backend says so instead of pretending.
import type { JobBackend } from './backend.js';

export interface RayBackendOptions {
  /** Ray dashboard URL; null = start a private local Ray head. */
  address: string | null;
  env: NodeJS.ProcessEnv;
  signal: AbortSignal;
}

export async function createRayJobBackend(_o: RayBackendOptions): Promise<JobBackend> {
  throw new Error(
    'the Ray backend needs the driver Ray Jobs client (driver/src/ray), which this build does not have yet; ' +
      'use --backend local-process for a local trial',
  );
}
