// What a second Ray node and TLS cost a round: the same small job (tanh CNN, 3 workers, secure
// aggregation, no evaluation) run
//  (a) through `tensorguard train --address` on a one-node Ray cluster (LocalHead, 4 CPUs);
//  (b) the same on a two-node cluster (NetnsCluster: the head in this network namespace, a worker
//      node in its own, joined by a veth pair; 2 + 2 CPUs), workers SPREAD over both nodes and
//      the aggregator pinned to the head (`coordinator.resources: {"node:<headIp>": 0.01}`), so
//      the links of the workers on the second node cross the veth link (both Ray paths use the
//      job's mutual-TLS identities, as `train` always does);
//  (c) the coordinator and workers started directly, over loopback, once with `--tls-dir`
//      identities made by the project's own PKI (tensorguard_ray._internal.pki.JobPki) and once
//      without, same config.
// Per run: the coordinator's `round_seconds` (mean and median, the first WARMUP rounds left out:
// they compile the model's kernels and warm V8's JIT), the per-round wall time from the arrival rate of round lines
// (as ray-overhead measures it), and bytes per worker per round (the workers' `bytes_sent`;
// the Ray paths' worker lines are read back from the job's logs). The ratios compare medians,
// which a shared machine's scheduling stalls move less than means.
// Load drift: both clusters stay up for the whole benchmark (their idle cost is on every variant),
// and the variants run in mirrored order (single, multi, tls, plain, bare, then bare, plain, tls,
// multi, single, ...), so that a load that rises or falls linearly over the run biases no side; each
// ratio is that of the variants' median over repetitions of each run's median. Six repetitions by
// default: on 2 cores one repetition's tls/plaintext ratio ranges over about ±10 % (0.93–1.19 seen on
// a quiet machine), so two cannot tell a 5 % difference; the summary gives that per-repetition range.
// `--cpu-prof=DIR` writes V8 CPU profiles of the direct runs' programs under DIR/<mode>/ (they
// showed the workers' CPU going mostly to noise sampling, then bigint-bound; `perf` put TLS's own
// cipher and record code under 1 % of the job's CPU).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Benchmark, Row } from '../types.js';
import { until, watch, type Watched } from '../watch.js';

const WORKERS = 3;
const REPEATS = 6;
/** Rounds left out of each run's medians: kernel compilation and JIT warm-up. */
const WARMUP = 5;

/** What this benchmark uses of @tensorguard/driver, loaded from driver/dist at run time. */
interface ClusterInfo {
  dashboardUrl: string;
  token: string;
}
interface JobsClient {
  logs(id: string): Promise<string>;
}
interface Head {
  info: ClusterInfo;
  client(): JobsClient;
  close(): Promise<void>;
}
interface Netns {
  head: Head;
  headIp: string;
  node2Ip: string;
  client(): JobsClient;
  close(): Promise<void>;
}
interface Driver {
  LocalHead: { start(o: { root: string; numCpus: number }): Promise<Head> };
  NetnsCluster: {
    start(o: { root: string; headCpus: number; node2Cpus: number }): Promise<Netns>;
  };
  loadJobSpec(file: string): unknown;
  resolveRunConfig(spec: unknown, o: { jobId: string; dataDir: string }): Promise<unknown>;
}

/** The job. `extra` pins the coordinator to a node on the two-node cluster. */
function jobSpec(
  name: string,
  rounds: number,
  ckpt: string,
  extra: { spread?: boolean; coordinatorResources?: Record<string, number> } = {},
): Record<string, unknown> {
  return {
    name,
    model: { kind: 'cnn-tanh' },
    dataset: { format: 'idx', preset: 'fashion-mnist', trainExamples: 1500, testExamples: 200 },
    workers: {
      count: WORKERS,
      cpusPerWorker: 0.5,
      ...(extra.spread ? { placementStrategy: 'SPREAD' } : {}),
    },
    coordinator: {
      cpus: 0.5,
      ...(extra.coordinatorResources ? { resources: extra.coordinatorResources } : {}),
    },
    privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, epsilonBudget: null, samplingRate: 32 / 500 },
    secureAggregation: { mode: 'masking', threshold: WORKERS },
    optimizer: { kind: 'sgd', learningRate: 0.5, momentum: 0.9 },
    rounds,
    evaluation: { everyRounds: 100_000 },
    checkpoint: { dir: ckpt, everyRounds: 100_000 },
    roundTimeoutMs: 600_000,
  };
}

interface RunResult {
  /** Arrival times (ms) of the round lines that arrived (the CLI's progress lines may miss one). */
  roundArrivals: number[];
  /** The round each arrival is of (default: 1, 2, ... in order). */
  arrivalRounds?: number[];
  /** The coordinator's round_seconds, per round. */
  roundSeconds: number[];
  /** The coordinator's phase_seconds (aggregate, unmask, apply), per round. */
  phases: Record<string, number>[];
  /** bytes_sent of every worker metrics line (one per worker and round). */
  workerBytes: number[];
  /**
   * Direct paths: CPU seconds (user + system) per round of the coordinator and the workers
   * together, from /proc between two round lines: what the machine's load moves far less than
   * wall time, since a process that waits for the CPU does not use it.
   */
  cpuSecondsPerRound?: number;
  /** The coordinator's share of cpuSecondsPerRound. */
  coordinatorCpuSecondsPerRound?: number;
  /** Ray paths: how many nodes the worker actors ran on (Ray's state API). */
  workerNodes?: number;
}

type Line = Record<string, unknown>;

/** The metric lines in a text (the Ray job log prefixes each actor's line with its name). */
function metricLines(text: string): Line[] {
  const out: Line[] = [];
  for (const l of text.split('\n')) {
    const i = l.indexOf('{"type":"metrics"');
    if (i < 0) continue;
    try {
      out.push(JSON.parse(l.slice(i)) as Line);
    } catch {
      // a line cut by Ray's log relay
    }
  }
  return out;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function viaRay(
  root: string,
  address: { dashboardUrl: string; token: string },
  client: JobsClient,
  spec: Record<string, unknown>,
  dir: string,
): Promise<RunResult> {
  const file = path.join(dir, `${String(spec.name)}.json`);
  fs.writeFileSync(file, JSON.stringify(spec));
  const t0 = performance.now();
  const cli = watch(
    process.execPath,
    [
      path.join(root, 'driver', 'dist', 'bin', 'tensorguard.js'),
      'train',
      file,
      '--json',
      '--address',
      address.dashboardUrl,
    ],
    {
      RAY_AUTH_TOKEN: address.token,
      RAY_ADDRESS: address.dashboardUrl,
      TENSORGUARD_RAY_PYTHON: path.join(root, '.venv', 'bin', 'python'),
      TENSORGUARD_STATE_DIR: path.join(dir, 'state'),
    },
    t0,
    root,
  );
  const code = await cli.exited;
  const err = cli.lines.filter((l) => l.stream === 'err');
  const result = cli.lines.filter((l) => l.stream === 'out').at(-1)?.text ?? '';
  if (code !== 0)
    throw new Error(`tensorguard train exited ${code}: ${result}\n${err.map((l) => l.text).join('\n')}`);
  const id = err.map((l) => /^submitted job (\S+)/.exec(l.text)?.[1]).find((x) => x !== undefined);
  if (id === undefined) throw new Error('tensorguard train printed no job id');
  const lines = metricLines(await client.logs(id));
  // The CLI's progress lines ("round N/M ..."); the job log's metric lines are the count of record.
  const progress = err.flatMap((l) => {
    const m = /^round (\d+)\//.exec(l.text);
    return m ? [{ t: l.t, round: Number(m[1]) }] : [];
  });
  const coordinator = lines.filter((l) => typeof l.round_seconds === 'number');
  // Where the worker actors ran (dead actors keep their node in the state API).
  const get = async <T>(p: string): Promise<T> => {
    const res = await fetch(`${address.dashboardUrl}${p}`, {
      headers: { Authorization: `Bearer ${address.token}` },
    });
    if (!res.ok) throw new Error(`GET ${p}: ${res.status} ${await res.text()}`);
    return ((await res.json()) as { data: { result: { result: T } } }).data.result.result;
  };
  const actors = await get<{ name: string; node_id: string }[]>('/api/v0/actors?limit=10000&detail=true');
  const workerNodes = new Set(
    actors.filter((a) => new RegExp(`^tg-${id}-worker-\\d+$`).test(a.name)).map((a) => a.node_id),
  );
  return {
    workerNodes: workerNodes.size,
    roundArrivals: progress.map((p) => p.t),
    arrivalRounds: progress.map((p) => p.round),
    roundSeconds: coordinator.map((l) => Number(l.round_seconds)),
    phases: coordinator.map((l) => (l.phase_seconds ?? {}) as Record<string, number>),
    workerBytes: lines.filter((l) => typeof l.bytes_sent === 'number').map((l) => Number(l.bytes_sent)),
  };
}

let clockTicks: number | undefined;

/** CPU seconds (user + system) that the processes `pids` used so far (Linux /proc). */
function cpuSeconds(pids: number[]): number {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  let ticks = 0;
  for (const pid of pids) {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name in parentheses; utime and stime are fields 14 and 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / clockTicks;
}

/** Identity directories of one job from the project's PKI (as test/worker/tls.test.ts makes them). */
function identities(root: string, jobId: string, parent: string): { aggregator: string; workers: string[] } {
  const script = [
    'import json, sys',
    'from tensorguard_ray._internal.pki import JobPki',
    'pki = JobPki(sys.argv[1])',
    'n, parent = int(sys.argv[2]), sys.argv[3]',
    'print(json.dumps({"aggregator": pki.aggregator().write(parent), "workers": [pki.worker(i).write(parent) for i in range(n)]}))',
  ].join('\n');
  const out = execFileSync(
    path.join(root, '.venv', 'bin', 'python'),
    ['-c', script, jobId, String(WORKERS), parent],
    {
      encoding: 'utf8',
    },
  );
  return JSON.parse(out) as { aggregator: string; workers: string[] };
}

/**
 * How a direct run's programs talk: `tls` (mutual TLS and the protocol's identity signatures, what
 * `train` runs), `identity` (the same signatures over a plaintext channel: TLS's protocol with
 * only the transport changed) or `bare` (plaintext and no signatures: no Attest stage either).
 */
type DirectMode = 'tls' | 'identity' | 'bare';

async function direct(
  root: string,
  configFile: string,
  ids: { aggregator: string; workers: string[] },
  mode: DirectMode,
  rounds: number,
  cpuProfDir?: string,
): Promise<RunResult> {
  const tls = mode === 'tls';
  const prof = (who: string) =>
    cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${path.join(cpuProfDir, mode, who)}`] : [];
  const env = { TF_NUM_INTRAOP_THREADS: '1', TF_NUM_INTEROP_THREADS: '1', TF_CPP_MIN_LOG_LEVEL: '2' };
  const bin = (b: string) => path.join(root, 'worker-ts', 'dist', 'bin', b);
  const t0 = performance.now();
  const coord = watch(
    process.execPath,
    [
      ...prof('coordinator'),
      bin('coordinator.js'),
      '--config',
      configFile,
      ...(tls ? ['--tls-dir', ids.aggregator] : []),
    ],
    env,
    t0,
    root,
  );
  const procs = [coord];
  try {
    const parsed = (w: Watched) =>
      w.lines
        .filter((l) => l.stream === 'out' && l.text.startsWith('{'))
        .map((l) => ({ t: l.t, o: JSON.parse(l.text) as Line }));
    const listening = await until(
      'the coordinator to listen',
      () => parsed(coord).find((x) => x.o.type === 'listening')?.o,
      120_000,
      procs,
    );
    if (listening.tls !== tls) throw new Error(`coordinator listens with tls=${String(listening.tls)}`);
    const workers: Watched[] = [];
    for (let i = 0; i < WORKERS; i++) {
      const w = watch(
        process.execPath,
        [
          ...prof('workers'),
          bin('worker.js'),
          '--config',
          configFile,
          '--worker-index',
          String(i),
          '--aggregator',
          String(listening.address),
          ...(mode === 'bare' ? [] : [mode === 'tls' ? '--tls-dir' : '--identity-dir', ids.workers[i]!]),
        ],
        { ...env, TENSORGUARD_WORKER_INDEX: String(i) },
        t0,
        root,
      );
      workers.push(w);
      procs.push(w);
    }
    // CPU of the four processes between the first round line and the (rounds-1)th: the rounds'
    // work without start-up, taken while every process still runs.
    const pids = procs.map((p) => p.child.pid!);
    const cpu: { round: number; seconds: number; coordinator: number }[] = [];
    let scanned = 0;
    let roundLines = 0;
    const sampler = setInterval(() => {
      for (; scanned < coord.lines.length; scanned++)
        if (coord.lines[scanned]!.text.startsWith('{"type":"metrics"')) roundLines++;
      if ((cpu.length === 0 && roundLines >= 1) || (cpu.length === 1 && roundLines >= rounds - 1))
        cpu.push({ round: roundLines, seconds: cpuSeconds(pids), coordinator: cpuSeconds(pids.slice(0, 1)) });
    }, 5);
    let done: Line;
    try {
      done = await until(
        'the job to finish',
        () => parsed(coord).find((x) => x.o.type === 'done')?.o,
        600_000,
        [coord],
      );
    } finally {
      clearInterval(sampler);
    }
    if (done.status !== 'succeeded') throw new Error(`direct job failed: ${String(done.error)}`);
    if (cpu.length !== 2) throw new Error(`direct run: CPU sampled at ${cpu.length} of 2 round lines`);
    await Promise.all(workers.map((w) => w.exited));
    const m = parsed(coord).filter((x) => x.o.type === 'metrics');
    return {
      roundArrivals: m.map((x) => x.t),
      roundSeconds: m.map((x) => Number(x.o.round_seconds)),
      phases: m.map((x) => (x.o.phase_seconds ?? {}) as Record<string, number>),
      cpuSecondsPerRound: (cpu[1]!.seconds - cpu[0]!.seconds) / (cpu[1]!.round - cpu[0]!.round),
      coordinatorCpuSecondsPerRound:
        (cpu[1]!.coordinator - cpu[0]!.coordinator) / (cpu[1]!.round - cpu[0]!.round),
      workerBytes: workers.flatMap((w) =>
        parsed(w)
          .filter((x) => x.o.type === 'metrics' && typeof x.o.bytes_sent === 'number')
          .map((x) => Number(x.o.bytes_sent)),
      ),
    };
  } finally {
    // A profile is written at exit: give the coordinator its few seconds to finish.
    if (cpuProfDir) await Promise.race([coord.exited, new Promise((r) => setTimeout(r, 10_000))]);
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  }
}

function row(name: string, rep: number, r: RunResult, rounds: number): Row {
  if (r.roundSeconds.length !== rounds || r.roundArrivals.length < 2)
    throw new Error(
      `${name}: ${r.roundArrivals.length} round lines and ${r.roundSeconds.length} coordinator metric lines of ${rounds} rounds`,
    );
  const arrivalRounds = r.arrivalRounds ?? r.roundArrivals.map((_, i) => i + 1);
  const [first] = r.roundArrivals;
  const last = r.roundArrivals.at(-1)!;
  const span = arrivalRounds.at(-1)! - arrivalRounds[0]!;
  const steady = r.roundSeconds.slice(WARMUP);
  // The coordinator's phases: 'aggregate' runs from the round's opening to the release gate
  // (key setup, the workers' local step, the masked uploads), 'unmask' from there to the sum.
  const phase = (k: string) =>
    Number(median(r.phases.slice(WARMUP).map((p) => Number(p[k] ?? 0))).toFixed(4));
  return {
    path: name,
    rep,
    rounds,
    round_mean_s: Number(mean(steady).toFixed(4)),
    round_median_s: Number(median(steady).toFixed(4)),
    round_wall_s: Number(((last - first!) / 1000 / span).toFixed(4)),
    cpu_ms_per_round:
      r.cpuSecondsPerRound === undefined ? null : Number((r.cpuSecondsPerRound * 1000).toFixed(1)),
    coordinator_cpu_ms_per_round:
      r.coordinatorCpuSecondsPerRound === undefined
        ? null
        : Number((r.coordinatorCpuSecondsPerRound * 1000).toFixed(1)),
    aggregate_median_s: phase('aggregate'),
    unmask_median_s: phase('unmask'),
    bytes_per_worker_round: r.workerBytes.length ? Math.round(mean(r.workerBytes)) : null,
    worker_lines: r.workerBytes.length,
    worker_nodes: r.workerNodes ?? null,
  };
}

type Variant = 'single-node' | 'two-node' | 'direct tls' | 'direct plaintext' | 'direct bare';
const DIRECT_MODE: Partial<Record<Variant, DirectMode>> = {
  'direct tls': 'tls',
  'direct plaintext': 'identity',
  'direct bare': 'bare',
};

/**
 * `--reps=N` (default 6), `--direct-only` (the three direct variants, no Ray clusters) and
 * `--cpu-prof=DIR` (V8 CPU profiles of the direct runs' programs).
 */
function parseOptions(args: string[]): { reps: number; directOnly: boolean; cpuProfDir?: string } {
  let reps = REPEATS;
  let directOnly = false;
  let cpuProfDir: string | undefined;
  for (const a of args) {
    if (a === '--quick') continue;
    if (a === '--direct-only') directOnly = true;
    else if (a.startsWith('--cpu-prof=')) cpuProfDir = path.resolve(a.slice('--cpu-prof='.length));
    else if (a.startsWith('--reps=')) {
      reps = Number(a.slice('--reps='.length));
      if (!Number.isSafeInteger(reps) || reps < 1)
        throw new Error(`--reps must be a positive integer, got ${a.slice('--reps='.length)}`);
    } else
      throw new Error(
        `multinode: unknown argument ${a} (expected --quick, --reps=N, --direct-only, --cpu-prof=DIR)`,
      );
  }
  return { reps, directOnly, ...(cpuProfDir ? { cpuProfDir } : {}) };
}

export const benchmark: Benchmark = {
  description:
    'one Ray node vs two network-namespace nodes (tensorguard train), and TLS vs plaintext with the same protocol, and vs plaintext without identities (direct programs): tanh CNN, 3 workers, secure aggregation',
  async run({ quick, root, args, log }) {
    const rounds = quick ? 40 : 150;
    const { reps, directOnly, cpuProfDir } = parseOptions(args);
    const driver = (await import(
      pathToFileURL(path.join(root, 'driver', 'dist', 'index.js')).href
    )) as Driver;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-bench-multinode-'));
    let single: Head | undefined;
    let multi: Netns | undefined;
    try {
      if (!directOnly) {
        log('starting a one-node Ray cluster (4 CPUs) and a two-node one (network namespaces, 2 + 2 CPUs)');
        single = await driver.LocalHead.start({ root, numCpus: 4 });
        multi = await driver.NetnsCluster.start({ root, headCpus: 2, node2Cpus: 2 });
      }
      const headIp = multi?.headIp;

      // The direct runs' config: what `train` would hand the programs (resolveRunConfig).
      const directJob = 'multinode-direct';
      const specFile = path.join(dir, 'direct-spec.json');
      fs.writeFileSync(specFile, JSON.stringify(jobSpec('direct', rounds, path.join(dir, 'ckpt-direct'))));
      const configFile = path.join(dir, 'direct.json');
      fs.writeFileSync(
        configFile,
        JSON.stringify(
          await driver.resolveRunConfig(driver.loadJobSpec(specFile), { jobId: directJob, dataDir: dir }),
        ),
      );
      const ids = identities(root, directJob, dir);

      const once = async (v: Variant, rep: number): Promise<RunResult> => {
        const ckpt = path.join(dir, `ckpt-${v.replace(/ /g, '-')}-${rep}`);
        if (v === 'single-node') {
          return viaRay(root, single!.info, single!.client(), jobSpec(`single${rep}`, rounds, ckpt), dir);
        }
        if (v === 'two-node') {
          const r = await viaRay(
            root,
            multi!.head.info,
            multi!.client(),
            jobSpec(`multi${rep}`, rounds, ckpt, {
              spread: true,
              coordinatorResources: { [`node:${headIp!}`]: 0.01 },
            }),
            dir,
          );
          if (r.workerNodes !== 2)
            throw new Error(
              `two-node: the workers ran on ${r.workerNodes} node(s), not on both: SPREAD did not spread`,
            );
          return r;
        }
        fs.rmSync(path.join(dir, 'ckpt-direct'), { recursive: true, force: true });
        return direct(root, configFile, ids, DIRECT_MODE[v]!, rounds, cpuProfDir);
      };

      const directs: Variant[] = ['direct tls', 'direct plaintext', 'direct bare'];
      const order: Variant[] = directOnly ? directs : ['single-node', 'two-node', ...directs];
      const rows: Row[] = [];
      for (let rep = 0; rep < reps; rep++) {
        for (const v of rep % 2 === 0 ? order : [...order].reverse()) {
          log(`${v} (run ${rep + 1} of ${reps}): ${rounds} rounds`);
          rows.push(row(v, rep + 1, await once(v, rep), rounds));
        }
      }
      // Each variant's median over its runs' medians.
      const med = (v: Variant) =>
        median(rows.filter((r) => r.path === v).map((r) => Number(r.round_median_s)));
      const ratio = (a: Variant, b: Variant) => Number((med(a) / med(b)).toFixed(3));
      // The per-repetition ratios' range: how far the machine's noise moves one ratio.
      const repRatios = (a: Variant, b: Variant) => {
        const at = (v: Variant, rep: number) =>
          Number(rows.find((r) => r.path === v && r.rep === rep)!.round_median_s);
        const rs = Array.from({ length: reps }, (_, i) => at(a, i + 1) / at(b, i + 1));
        return { min: Number(Math.min(...rs).toFixed(3)), max: Number(Math.max(...rs).toFixed(3)) };
      };
      const tlsReps = repRatios('direct tls', 'direct plaintext');
      const cpu = (v: Variant) =>
        median(rows.filter((r) => r.path === v).map((r) => Number(r.cpu_ms_per_round)));
      const cpuRatio = (a: Variant, b: Variant) => Number((cpu(a) / cpu(b)).toFixed(3));
      const bytes = rows
        .filter((r) => r.path !== 'direct bare') // the protocol `train` runs (signatures, Attest)
        .map((r) => r.bytes_per_worker_round)
        .filter((b): b is number => typeof b === 'number');
      return {
        rows,
        summary: {
          ...(directOnly ? {} : { multinode_over_single_node_round_time: ratio('two-node', 'single-node') }),
          bytes_per_worker_per_round: Math.round(mean(bytes)),
          tls_over_plaintext_round_time: ratio('direct tls', 'direct plaintext'),
          tls_over_plaintext_round_time_rep_min: tlsReps.min,
          tls_over_plaintext_round_time_rep_max: tlsReps.max,
          identity_over_bare_round_time: ratio('direct plaintext', 'direct bare'),
          tls_over_bare_plaintext_round_time: ratio('direct tls', 'direct bare'),
          tls_over_plaintext_cpu_time: cpuRatio('direct tls', 'direct plaintext'),
          identity_over_bare_cpu_time: cpuRatio('direct plaintext', 'direct bare'),
        },
      };
    } finally {
      await multi?.close();
      await single?.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
};
