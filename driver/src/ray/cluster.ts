// Which Ray cluster a command talks to: --address, else RAY_ADDRESS, else the address file of a
// local head started with `train --detach` that is still alive.
import { NoClusterError, RayError } from './errors.js';
import { RayJobsClient } from './jobs-client.js';
import { readClusterFile } from './local-head.js';

export interface ClusterTarget {
  client: RayJobsClient;
  /** Where the address came from, for messages. */
  source: '--address' | 'RAY_ADDRESS' | 'cluster file';
}

/** The dashboard URL of an address (http(s) only: the Jobs API is on the dashboard). */
export function dashboardUrl(address: string): string {
  if (/^https?:\/\//.test(address)) return address.replace(/\/+$/, '');
  throw new RayError(
    `'${address}' is not a Ray dashboard URL: the Jobs API needs http://HOST:PORT (default port 8265), ` +
      'not a GCS (HOST:6379) or ray:// address',
  );
}

/** Finds the cluster; undefined when none is configured (callers decide: start one or fail). */
export function findCluster(
  flags: { address?: string | undefined },
  env: NodeJS.ProcessEnv,
  root: string,
): ClusterTarget | undefined {
  const token = env.RAY_AUTH_TOKEN;
  if (flags.address) {
    return {
      client: new RayJobsClient({ address: dashboardUrl(flags.address), token }),
      source: '--address',
    };
  }
  if (env.RAY_ADDRESS) {
    return {
      client: new RayJobsClient({ address: dashboardUrl(env.RAY_ADDRESS), token }),
      source: 'RAY_ADDRESS',
    };
  }
  const info = readClusterFile(root);
  if (info) {
    return {
      client: new RayJobsClient({ address: info.dashboardUrl, token: info.token }),
      source: 'cluster file',
    };
  }
  return undefined;
}

/** Like findCluster, but throws NoClusterError naming the three ways to give one. */
export function requireCluster(
  flags: { address?: string | undefined },
  env: NodeJS.ProcessEnv,
  root: string,
): ClusterTarget {
  const t = findCluster(flags, env, root);
  if (!t) throw new NoClusterError();
  return t;
}
