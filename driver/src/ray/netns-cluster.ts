// For tests and benchmarks: a real two-node Ray cluster on one machine. The head runs in this
// (root) network namespace on one end of a veth pair, a worker node in its own network namespace
// on the other end. The two nodes reach each other only through the veth addresses, so every link
// between them (Ray's and TensorGuard's) crosses that link, which a test can take down. Needs root
// (`ip netns`), as CI runs.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { headEnv, LocalHead } from './local-head.js';
import type { RayJobsClient } from './jobs-client.js';

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export class NetnsCluster {
  private node2: ChildProcess | undefined;
  private closed = false;

  private constructor(
    private readonly root: string,
    readonly head: LocalHead,
    /** The second node's network namespace. */
    readonly ns: string,
    /** The veth end in the root namespace (the head's side). */
    readonly hostIf: string,
    readonly headIp: string,
    readonly node2Ip: string,
    private readonly node2TempDir: string,
  ) {}

  /**
   * Creates the namespace and the veth pair, starts the head (node IP = its veth address) and a
   * worker node inside the namespace, and waits until Ray lists both nodes alive.
   */
  static async start(o: {
    /** Repository root with the .venv (as LocalHead's). */
    root: string;
    headCpus: number;
    node2Cpus: number;
    /**
     * Folders the second node must not see (each covered by an empty folder in its mount
     * namespace): data present on the head's machine only, as on a real cluster without shared
     * storage.
     */
    node2Hides?: string[];
  }): Promise<NetnsCluster> {
    if (process.getuid?.() !== 0)
      throw new Error('the multi-node tests need root for `ip netns` (CI runs as root)');
    const id = crypto.randomBytes(3).toString('hex');
    const ns = `tg-ns-${id}`;
    const hostIf = `tgh${id}`;
    const nsIf = `tgn${id}`;
    // A /30 in 10.231.0.0/16 picked from the id, so that parallel runs do not collide.
    const n = (parseInt(id, 16) % 16000) * 4;
    const base = `10.231.${Math.floor(n / 256)}`;
    const headIp = `${base}.${(n % 256) + 1}`;
    const node2Ip = `${base}.${(n % 256) + 2}`;
    ip('netns', 'add', ns);
    try {
      ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf);
      ip('link', 'set', nsIf, 'netns', ns);
      ip('addr', 'add', `${headIp}/30`, 'dev', hostIf);
      ip('link', 'set', hostIf, 'up');
      ip('-n', ns, 'addr', 'add', `${node2Ip}/30`, 'dev', nsIf);
      ip('-n', ns, 'link', 'set', nsIf, 'up');
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    } catch (err) {
      NetnsCluster.removeNetwork(ns, hostIf);
      throw err;
    }
    let head: LocalHead;
    try {
      head = await LocalHead.start({ root: o.root, numCpus: o.headCpus, nodeIp: headIp });
    } catch (err) {
      NetnsCluster.removeNetwork(ns, hostIf);
      throw err;
    }
    const tempDir = fs.mkdtempSync(path.join('/tmp', 'tg-ray2-'));
    const c = new NetnsCluster(o.root, head, ns, hostIf, headIp, node2Ip, tempDir);
    try {
      await c.startNode2(o.node2Cpus, o.node2Hides ?? []);
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  private async startNode2(cpus: number, hides: string[]): Promise<void> {
    const empty = path.join(this.node2TempDir, 'empty');
    fs.mkdirSync(empty);
    const covers = hides.map((_, i) => `mount --bind "$empty" "$h${i}"`).join(' && ');
    const hideEnv = Object.fromEntries(hides.map((h, i) => [`h${i}`, h]));
    const ray = path.join(this.root, '.venv', 'bin', 'ray');
    const log = fs.openSync(path.join(this.node2TempDir, 'node.log'), 'a');
    // The bind mount hides the log file's folder from node 2 only; the log stays writable.
    const env: NodeJS.ProcessEnv = { ...process.env, ...headEnv(this.head.info.token), empty, ...hideEnv };
    delete env.RAY_ADDRESS;
    this.node2 = spawn(
      'ip',
      [
        'netns',
        'exec',
        this.ns,
        // Ray puts a worker node's sockets and session files under the head's temp dir (a worker
        // node cannot choose its own): on one machine that is the head's own folder. In a private
        // mount namespace the second node sees its own folder at that path instead.
        'unshare',
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        `src=$1; dst=$2; shift 2; mount --bind "$src" "$dst"${covers ? ` && ${covers}` : ''} && exec "$@"`,
        'sh',
        this.node2TempDir,
        this.head.info.tempDir,
        ray,
        'start',
        '--block',
        '--address',
        this.head.info.gcsAddress,
        '--node-ip-address',
        this.node2Ip,
        '--num-cpus',
        String(cpus),
        '--num-gpus',
        '0',
        '--object-store-memory',
        String(200 * 1024 * 1024),
        '--disable-usage-stats',
      ],
      { detached: true, stdio: ['ignore', log, log], env },
    );
    fs.closeSync(log);
    const client = this.client();
    const deadline = Date.now() + 120_000;
    while ((await client.aliveNodes().catch(() => 0)) < 2) {
      if (this.node2.exitCode !== null || Date.now() > deadline)
        throw new Error(`the second Ray node did not join:\n${this.node2Log()}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  client(): RayJobsClient {
    return this.head.client();
  }

  node2Log(): string {
    try {
      return fs.readFileSync(path.join(this.node2TempDir, 'node.log'), 'utf8').slice(-3000);
    } catch {
      return '(no log)';
    }
  }

  /** Pids of every process in the second node's namespace. */
  node2Pids(): number[] {
    return ip('netns', 'pids', this.ns)
      .split('\n')
      .filter((l) => /^\d+$/.test(l.trim()))
      .map(Number);
  }

  /** SIGKILL to every process of the second node: Ray's, the actors', their Node children. */
  killNode2(): number {
    const pids = this.node2Pids();
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
    return pids.length;
  }

  /** Takes the veth link down (both ends) or up again. */
  setLink(up: boolean): void {
    ip('link', 'set', this.hostIf, up ? 'up' : 'down');
  }

  /** Runs a command inside the second node's namespace. */
  spawnInNode2(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
    return spawn('ip', ['netns', 'exec', this.ns, cmd, ...args], {
      cwd: this.root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }

  private static removeNetwork(ns: string, hostIf: string): void {
    try {
      ip('link', 'del', hostIf);
    } catch {
      // gone with the namespace, or never made
    }
    try {
      ip('netns', 'del', ns);
    } catch {
      // never made
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.killNode2();
    if (this.node2?.pid !== undefined) {
      try {
        process.kill(-this.node2.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await this.head.close();
    NetnsCluster.removeNetwork(this.ns, this.hostIf);
    fs.rmSync(this.node2TempDir, { recursive: true, force: true });
  }
}
