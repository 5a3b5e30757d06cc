// A private Ray head started as a child of the driver: the project's .venv, its own temp dir,
// free ports, token auth. Never `ray stop` (it stops every Ray cluster on the machine): the head
// runs `ray start --block` in its own process group, and close() signals that group.
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { RayHeadError } from './errors.js';
import { RayJobsClient } from './jobs-client.js';

export interface LocalHeadOptions {
  /** Repository root with the .venv. */
  root: string;
  /** Logical CPUs the head offers. Default 4 (fractional actor CPUs make that plenty). */
  numCpus?: number;
  /**
   * The IP the head's node registers under and other Ray nodes dial (GCS, raylet, object
   * manager). Default 127.0.0.1: a one-machine cluster. The dashboard stays on loopback.
   */
  nodeIp?: string;
  /** Readiness deadline. Default 120000 ms. */
  readyTimeoutMs?: number;
  /**
   * Leave the head running when the driver exits (`train --detach`). Default false: a watchdog
   * process stops it if the driver dies without cleaning up (SIGKILL, crash).
   */
  detach?: boolean;
  signal?: AbortSignal;
}

/** What a client needs to reach the head; also the content of the cluster file. */
export interface ClusterInfo {
  dashboardUrl: string;
  token: string;
  gcsAddress: string;
  metricsPort: number;
  /** Process group of the head (`kill -TERM -<pgid>` stops it). */
  pgid: number;
  tempDir: string;
  startedAt: string;
}

/** The environment the head and every Ray process on it run with. */
export function headEnv(token: string): Record<string, string> {
  return {
    RAY_AUTH_MODE: 'token',
    RAY_AUTH_TOKEN: token,
    // Ray 2.52.1's OpenTelemetry metrics exporter reports to the node's metrics agent without
    // the token, which refuses it, so no application metric would reach Prometheus; the
    // OpenCensus path authenticates. 2 s reports make metrics visible within seconds.
    RAY_enable_open_telemetry: '0',
    RAY_metrics_report_interval_ms: '2000',
    RAY_USAGE_STATS_ENABLED: '0',
    RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO: '0',
  };
}

/** Binds `port` on loopback and releases it: whether it is free now. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * n distinct free ports *below* Linux's ephemeral range (32768–60999). A port the OS handed out for
 * `listen(0)` could be handed out again the moment it is released, to any process binding port 0
 * (Ray's own components do), before Ray binds it: seen as the runtime-env agent's port answered by
 * a Prometheus exporter. Ports drawn at random from 10000–32767 never collide that way.
 */
async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  for (let tries = 0; ports.length < n; tries++) {
    if (tries > 1000) throw new RayHeadError('no free ports in 10000-32767 on 127.0.0.1');
    const port = 10000 + crypto.randomInt(32768 - 10000);
    if (!ports.includes(port) && (await portFree(port))) ports.push(port);
  }
  return ports;
}

export class LocalHead {
  private closed = false;
  private readonly onExit = () => this.killSync();

  private constructor(
    readonly info: ClusterInfo,
    private readonly child: ChildProcess,
    readonly logFile: string,
    private readonly watchdog: ChildProcess | undefined,
  ) {
    // A driver that crashes (uncaught exception) or exits still runs 'exit' listeners.
    if (watchdog !== undefined) process.on('exit', this.onExit);
  }

  /** A Jobs API client for this head. */
  client(): RayJobsClient {
    return new RayJobsClient({ address: this.info.dashboardUrl, token: this.info.token });
  }

  /**
   * Starts the head and waits until the dashboard answers and a node is alive. Throws
   * RayHeadError (with the head's last output) when it exits early or is not ready in time.
   */
  static async start(opts: LocalHeadOptions): Promise<LocalHead> {
    const ray = path.join(opts.root, '.venv', 'bin', 'ray');
    if (!fs.existsSync(ray)) {
      throw new RayHeadError(
        `${ray} does not exist: run \`node scripts/setup.mjs\` to create the .venv with Ray`,
      );
    }
    // Short path: Ray's unix socket paths must stay under 108 bytes.
    const tempDir = fs.mkdtempSync(path.join('/tmp', 'tg-ray-'));
    const token = crypto.randomBytes(32).toString('hex');
    const [gcs, dash, client, nm, om, metrics, agentHttp, agentGrpc, rtEnv] = await freePorts(9);
    const args = [
      'start',
      '--head',
      '--block',
      '--temp-dir',
      tempDir,
      '--node-ip-address',
      opts.nodeIp ?? '127.0.0.1',
      '--port',
      String(gcs),
      '--dashboard-host',
      '127.0.0.1',
      '--dashboard-port',
      String(dash),
      '--ray-client-server-port',
      String(client),
      '--node-manager-port',
      String(nm),
      '--object-manager-port',
      String(om),
      '--metrics-export-port',
      String(metrics),
      '--dashboard-agent-listen-port',
      String(agentHttp),
      '--dashboard-agent-grpc-port',
      String(agentGrpc),
      '--runtime-env-agent-port',
      String(rtEnv),
      '--min-worker-port',
      '0',
      '--max-worker-port',
      '0',
      '--num-cpus',
      String(opts.numCpus ?? 4),
      '--num-gpus',
      '0',
      '--object-store-memory',
      String(200 * 1024 * 1024),
      '--disable-usage-stats',
    ];
    const logFile = path.join(tempDir, 'head.log');
    const out = fs.openSync(logFile, 'a');
    const env: NodeJS.ProcessEnv = { ...process.env, ...headEnv(token) };
    delete env.RAY_ADDRESS;
    const child = spawn(ray, args, { detached: true, stdio: ['ignore', out, out], env });
    fs.closeSync(out);
    child.unref();
    const info: ClusterInfo = {
      dashboardUrl: `http://127.0.0.1:${dash}`,
      token,
      gcsAddress: `${opts.nodeIp ?? '127.0.0.1'}:${gcs}`,
      metricsPort: metrics!,
      pgid: child.pid!,
      tempDir,
      startedAt: new Date().toISOString(),
    };
    const watchdog = opts.detach ? undefined : startWatchdog(process.pid, child.pid!, tempDir);
    const head = new LocalHead(info, child, logFile, watchdog);
    try {
      await head.waitReady(opts.readyTimeoutMs ?? 120_000, opts.signal);
    } catch (err) {
      await head.close();
      throw err;
    }
    return head;
  }

  private async waitReady(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const client = new RayJobsClient({
      address: this.info.dashboardUrl,
      token: this.info.token,
      attempts: 1,
      timeoutMs: 3000,
    });
    const deadline = Date.now() + timeoutMs;
    let exited: number | null = null;
    this.child.once('exit', (code) => (exited = code ?? -1));
    for (;;) {
      if (signal?.aborted) throw new RayHeadError('interrupted while the local Ray head was starting');
      if (exited !== null) {
        throw new RayHeadError(`the local Ray head exited with ${exited} while starting:\n${this.tail()}`);
      }
      try {
        await client.version();
        if ((await client.aliveNodes()) > 0) return;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) {
        throw new RayHeadError(`the local Ray head was not ready within ${timeoutMs} ms:\n${this.tail()}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  private tail(): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8').split('\n').slice(-30).join('\n');
    } catch {
      return '(no output)';
    }
  }

  private killSync(): void {
    if (this.closed) return;
    this.closed = true;
    for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
      try {
        process.kill(-this.info.pgid, sig);
      } catch {
        // gone
      }
    }
    fs.rmSync(this.info.tempDir, { recursive: true, force: true });
  }

  /** Stops the head: SIGTERM to its process group, SIGKILL after 15 s; removes its temp dir. */
  async close(): Promise<void> {
    if (this.closed) return;
    process.off('exit', this.onExit);
    const alive = () => {
      try {
        process.kill(-this.info.pgid, 0);
        return true;
      } catch {
        return false;
      }
    };
    try {
      process.kill(-this.info.pgid, 'SIGTERM');
    } catch {
      // already gone
    }
    const deadline = Date.now() + 15_000;
    while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    this.killSync();
    if (this.watchdog?.pid) {
      try {
        process.kill(this.watchdog.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * A detached shell that stops the head's process group once the driver process is gone, for the
 * exits no handler sees (SIGKILL, OOM). It polls once a second and costs nothing else.
 */
function startWatchdog(driverPid: number, pgid: number, tempDir: string): ChildProcess {
  const script =
    'while kill -0 "$1" 2>/dev/null && kill -0 -"$2" 2>/dev/null; do sleep 1; done; ' +
    'kill -TERM -"$2" 2>/dev/null; sleep 10; kill -KILL -"$2" 2>/dev/null; rm -rf "$3"';
  const w = spawn('/bin/sh', ['-c', script, 'tg-head-watchdog', String(driverPid), String(pgid), tempDir], {
    detached: true,
    stdio: 'ignore',
  });
  w.unref();
  return w;
}

/** Default parent folder for the cluster file and job data: `<root>/.tensorguard`. */
export function stateDir(root: string): string {
  return path.join(root, '.tensorguard');
}

export function clusterFile(root: string): string {
  return path.join(stateDir(root), 'cluster.json');
}

/** Records a detached head so later commands find it (mode 0600: it holds the token). */
export function writeClusterFile(root: string, info: ClusterInfo): void {
  fs.mkdirSync(stateDir(root), { recursive: true });
  const file = clusterFile(root);
  const tmp = `${file}.${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(info, null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/** The recorded head if its process group is still alive, else undefined. */
export function readClusterFile(root: string): ClusterInfo | undefined {
  let info: ClusterInfo;
  try {
    info = JSON.parse(fs.readFileSync(clusterFile(root), 'utf8')) as ClusterInfo;
  } catch {
    return undefined;
  }
  try {
    process.kill(-info.pgid, 0);
  } catch {
    return undefined;
  }
  return info;
}
