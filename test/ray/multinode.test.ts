// A job across two real Ray nodes: the head in the root network namespace, a worker node in its
// own namespace, joined by a veth pair (@tensorguard/driver's NetnsCluster). Workers are SPREAD over both nodes; the
// aggregator listens on its node's veth address with the job's mutual-TLS identities, so every
// training link between the nodes crosses the veth link. About 2–3 minutes on 2 cores.
import { loadJobSpec, NetnsCluster, resolveRunConfig } from '@tensorguard/driver';
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { checkpointParams, clippedSgdReference, maxDiff } from '../worker/reference.js';
import { PrivacyLedger } from '@tensorguard/worker';
import { cli, dashboardGet, jobEnv, nodeProcesses, root, until } from './harness.js';

interface ActorRow {
  name: string;
  state: string;
  node_id: string;
}

/** The result line `train --json` prints last on stdout. */
function resultLine(stdout: string): Record<string, unknown> {
  const last = stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(last) as Record<string, unknown>;
}

/** Runs the rogue client in the second node's namespace; its {code, message}. */
async function rogueJoin(
  cluster: NetnsCluster,
  address: string,
  workerId: string,
  tlsDir?: string,
): Promise<{ code: number; message: string }> {
  const child = cluster.spawnInNode2(process.execPath, [
    '--conditions=tensorguard-source',
    '--import',
    'tsx',
    path.join(root, 'test/ray/rogue-client.ts'),
    address,
    workerId,
    ...(tlsDir ? [tlsDir] : []),
  ]);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise((r) => child.on('exit', r));
  const line = out.trim().split('\n').pop();
  if (!line) throw new Error(`the rogue client printed nothing: ${err}`);
  return JSON.parse(line) as { code: number; message: string };
}

describe('ray: one job across two Ray nodes (network namespaces joined by a veth pair)', function () {
  this.timeout(600_000);
  let cluster: NetnsCluster;
  let env: NodeJS.ProcessEnv;
  const dir = fs.mkdtempSync('/tmp/tg-multinode-');
  /** Data that only the head's node has (the second node sees an empty folder here). */
  const headOnly = path.join(dir, 'head-only');

  before(async () => {
    fs.mkdirSync(headOnly);
    // The second node has one CPU: with the fault specs' 0.6-CPU workers it holds exactly one of
    // them, so the head always keeps the quorum (two workers) when that node is cut off.
    cluster = await NetnsCluster.start({ root, headCpus: 2, node2Cpus: 1, node2Hides: [headOnly] });
    env = {
      ...jobEnv(),
      RAY_AUTH_TOKEN: cluster.head.info.token,
      RAY_ADDRESS: cluster.head.info.dashboardUrl,
    };
  });
  after(async () => {
    await cluster?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('SPREAD puts workers on both nodes, the links use the veth addresses and mutual TLS, and without noise the model equals one process of clipped SGD', async () => {
    const file = path.join(dir, 'spread.json');
    fs.writeFileSync(
      file,
      JSON.stringify({
        name: 'spread',
        model: { kind: 'mlp', hidden: [16] },
        dataset: { format: 'idx', preset: 'fashion-mnist', trainExamples: 90, testExamples: 100 },
        workers: { count: 3, cpusPerWorker: 0.5, placementStrategy: 'SPREAD' },
        coordinator: { cpus: 0.5 },
        privacy: { clipNorm: 0.5, noiseMultiplier: 0, delta: 1e-5, epsilonBudget: null, samplingRate: 1 },
        secureAggregation: { mode: 'masking', threshold: 2 },
        optimizer: { kind: 'sgd', learningRate: 0.5, momentum: 0.5 },
        rounds: 5,
        evaluation: { everyRounds: 5 },
        checkpoint: { dir: path.join(dir, 'ckpt-spread'), everyRounds: 5 },
        roundTimeoutMs: 20_000,
      }),
    );
    const run = cli(['train', file, '--json'], env);
    const id = await until('the job id', () => /submitted job (\S+)/.exec(run.stderr)?.[1], 120_000);
    // While it runs: where the job's actors are, and what the aggregator listens on.
    const actors = await until(
      'the three worker actors alive',
      async () => {
        const body = await dashboardGet<{ data: { result: { result: ActorRow[] } } }>(
          cluster.head.info,
          '/api/v0/actors?limit=1000&detail=true',
        );
        const rows = body.data.result.result.filter(
          (a) => a.name.startsWith(`tg-${id}-`) && a.state === 'ALIVE',
        );
        return rows.length === 4 ? rows : undefined;
      },
      120_000,
    );
    const code = await run.done;
    expect(code, run.stderr.slice(-3000)).to.equal(0);
    const result = resultLine(run.stdout);
    expect(result.status).to.equal('succeeded');
    expect(result.rounds).to.equal(5);

    const nodes = await dashboardGet<{
      data: { result: { result: { node_id: string; node_ip: string }[] } };
    }>(cluster.head.info, '/api/v0/nodes?limit=100');
    const ipOf = new Map(nodes.data.result.result.map((n) => [n.node_id, n.node_ip]));
    const workerIps = new Set(
      actors.filter((a) => /-worker-\d+$/.test(a.name)).map((a) => ipOf.get(a.node_id)),
    );
    expect([...workerIps].sort(), 'worker actors by node IP').to.deep.equal(
      [cluster.headIp, cluster.node2Ip].sort(),
    );
    const aggregatorIp = ipOf.get(actors.find((a) => a.name.endsWith('-aggregator'))!.node_id)!;

    // The aggregator's listening line (in the job's log): its node's veth address, TLS on.
    const logs = await cluster.client().logs(id);
    const listening = /\{"type":"listening","address":"([^"]+)","tls":(true|false)\}/.exec(logs);
    expect(listening, 'the listening line in the job log').to.not.equal(null);
    expect(listening![1]!.startsWith(`${aggregatorIp}:`), listening![1]).to.equal(true);
    expect(listening![2]).to.equal('true');
    // No key material reaches the job's log.
    expect(logs).to.not.contain('PRIVATE KEY');

    // Ground truth: the same clipped SGD in one process on the union of the shards.
    const resolved = path.join(dir, 'spread.resolved.json');
    fs.writeFileSync(
      resolved,
      JSON.stringify(await resolveRunConfig(loadJobSpec(file), { jobId: id, dataDir: dir })),
    );
    const reference = clippedSgdReference(resolved, 5);
    const ck = checkpointParams(resolved);
    expect(ck.round).to.equal(5);
    const { maxErr, maxAbs } = maxDiff(ck.params, reference);
    expect(maxErr).to.be.below(2e-5);
    expect(maxAbs).to.be.above(0.01);
  });

  it("a rogue process on the second node without the job's certificate cannot join; one holding worker 1's certificate cannot act as worker 2", async () => {
    const file = path.join(dir, 'long.json');
    fs.writeFileSync(
      file,
      JSON.stringify({
        name: 'long',
        model: { kind: 'mlp', hidden: [16] },
        dataset: { format: 'idx', preset: 'fashion-mnist', trainExamples: 300, testExamples: 100 },
        workers: { count: 3, cpusPerWorker: 0.5, placementStrategy: 'SPREAD', maxRestarts: 0 },
        coordinator: { cpus: 0.5 },
        privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, epsilonBudget: null, samplingRate: 0.1 },
        secureAggregation: { mode: 'masking', threshold: 2 },
        optimizer: { kind: 'sgd', learningRate: 0.1 },
        rounds: 100_000,
        evaluation: { everyRounds: 1000 },
        checkpoint: { dir: path.join(dir, 'ckpt-long'), everyRounds: 1000 },
        roundTimeoutMs: 5000,
      }),
    );
    const run = cli(['train', file, '--json'], env);
    try {
      const id = await until('the job id', () => /submitted job (\S+)/.exec(run.stderr)?.[1], 120_000);
      await until('round 2', () => /^round ([2-9]|\d{2,})\//m.test(run.stderr), 180_000);
      const logs = await cluster.client().logs(id);
      const address = /\{"type":"listening","address":"([^"]+)"/.exec(logs)![1]!;

      const noCert = await rogueJoin(cluster, address, 'worker-0');
      expect(noCert.code, noCert.message).to.equal(14); // UNAVAILABLE: the TLS handshake is refused

      // Worker 1's own identity directory, as its Node child was given it (--tls-dir).
      const w1 = nodeProcesses(id).get('worker-1');
      expect(w1, 'worker-1 process').to.not.equal(undefined);
      const argv = fs.readFileSync(`/proc/${w1}/cmdline`, 'utf8').split('\0');
      const tlsDir = argv[argv.indexOf('--tls-dir') + 1]!;
      expect(fs.statSync(tlsDir).mode & 0o777).to.equal(0o700);
      expect(fs.statSync(path.join(tlsDir, 'key.pem')).mode & 0o777).to.equal(0o600);
      const impostor = await rogueJoin(cluster, address, 'worker-2', tlsDir);
      expect(impostor.code, impostor.message).to.equal(7); // PERMISSION_DENIED
      expect(impostor.message).to.contain('names "worker-1", but the request claims worker "worker-2"');
    } finally {
      run.child.kill('SIGINT');
      await run.done;
    }
  });

  /** A 3-worker job SPREAD over both nodes with the aggregator kept on the head. */
  function writeFaultSpec(name: string, rounds: number): string {
    const file = path.join(dir, `${name}.json`);
    fs.writeFileSync(
      file,
      JSON.stringify({
        name,
        model: { kind: 'mlp', hidden: [16] },
        dataset: { format: 'idx', preset: 'fashion-mnist', trainExamples: 300, testExamples: 100 },
        // 0.6 CPU: the second node (1 CPU) fits one worker, the head (2 CPUs, with the
        // aggregator's 0.5) the other two, so quorum survives losing that node whatever SPREAD picks.
        workers: { count: 3, cpusPerWorker: 0.6, placementStrategy: 'SPREAD', maxRestarts: 3 },
        coordinator: { cpus: 0.5, resources: { [`node:${cluster.headIp}`]: 0.01 } },
        privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, epsilonBudget: null, samplingRate: 0.2 },
        secureAggregation: { mode: 'masking', threshold: 2 },
        optimizer: { kind: 'sgd', learningRate: 0.1 },
        rounds,
        evaluation: { everyRounds: rounds },
        checkpoint: { dir: path.join(dir, `ckpt-${name}`), everyRounds: 5 },
        roundTimeoutMs: 3000,
      }),
    );
    return file;
  }

  /**
   * Every released round is in the ledger and counted: as many entries as rounds released, each
   * with at least the quorum of survivors and the realised noise of exactly those survivors
   * (t = 2: σ·√(s/2)), and the job's ε is the privacy report's.
   */
  function checkLedger(name: string, result: Record<string, unknown>): { survivors: number[] } {
    const ckpt = path.join(dir, `ckpt-${name}`);
    const ledger = new PrivacyLedger(path.join(ckpt, 'privacy-ledger.jsonl')).read();
    // Round numbers rise; a round aborted before its release (too few survivors) has no entry.
    const rounds = ledger.map((e) => e.round);
    expect(rounds).to.deep.equal([...new Set(rounds)].sort((a, b) => a - b));
    expect(ledger.length).to.equal(result.rounds);
    for (const e of ledger) {
      expect(e.survivors).to.be.at.least(2);
      expect(e.noiseMultiplier).to.be.closeTo(Math.sqrt(e.survivors / 2), 1e-12);
    }
    const report = JSON.parse(fs.readFileSync(path.join(ckpt, 'privacy-report.json'), 'utf8')) as {
      epsilon: number;
    };
    expect(result.epsilon).to.be.closeTo(report.epsilon, 1e-9);
    return { survivors: ledger.map((e) => e.survivors) };
  }

  /** Workers of `id` on the second node (their actors' node IP), by the state API. */
  async function workersOnNode2(id: string): Promise<string[]> {
    const body = await dashboardGet<{ data: { result: { result: ActorRow[] } } }>(
      cluster.head.info,
      '/api/v0/actors?limit=1000&detail=true',
    );
    const nodes = await dashboardGet<{
      data: { result: { result: { node_id: string; node_ip: string }[] } };
    }>(cluster.head.info, '/api/v0/nodes?limit=100');
    const ipOf = new Map(nodes.data.result.result.map((n) => [n.node_id, n.node_ip]));
    return body.data.result.result
      .filter((a) => a.state === 'ALIVE' && new RegExp(`^tg-${id}-worker-\\d+$`).test(a.name))
      .filter((a) => ipOf.get(a.node_id) === cluster.node2Ip)
      .map((a) => a.name);
  }

  it('a worker whose shard is missing on its node fails the job at once, naming the node and the path', async () => {
    const csv = path.join(headOnly, 'train.csv');
    const rows = Array.from({ length: 120 }, (_, i) => `${(i % 7) / 7},${(i % 5) / 5},${i % 2}`);
    fs.writeFileSync(csv, ['a,b,label', ...rows].join('\n') + '\n');
    const file = path.join(dir, 'missing.json');
    fs.writeFileSync(
      file,
      JSON.stringify({
        name: 'missing',
        model: { kind: 'mlp', hidden: [4] },
        dataset: { format: 'csv', path: csv, testPath: csv, numClasses: 2 },
        workers: { count: 3, cpusPerWorker: 0.5, placementStrategy: 'SPREAD' },
        coordinator: { cpus: 0.5, resources: { [`node:${cluster.headIp}`]: 0.01 } },
        privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, epsilonBudget: null, samplingRate: 0.2 },
        secureAggregation: { mode: 'masking', threshold: 2 },
        optimizer: { kind: 'sgd', learningRate: 0.1 },
        rounds: 1000,
        checkpoint: { dir: path.join(dir, 'ckpt-missing'), everyRounds: 1000 },
        roundTimeoutMs: 3000,
      }),
    );
    const run = cli(['train', file, '--json'], env);
    const code = await run.done;
    expect(code).to.equal(1);
    const result = resultLine(run.stdout);
    expect(result.status).to.equal('failed');
    expect(result.error).to.match(
      new RegExp(
        `^worker \\d on node ${cluster.node2Ip.replace(/\./g, '\\.')}: cannot load its shard: .*${csv.replace(/[/.]/g, '\\$&')}`,
      ),
    );
    expect(Number(result.rounds ?? 0), 'failed before training').to.be.below(10);
  });

  it("the veth link down for longer than roundTimeoutMs: rounds go on with the head's workers at quorum, the other node's rejoin, and every released round is counted", async () => {
    const run = cli(['train', writeFaultSpec('link-down', 40), '--json'], env);
    const id = await until('the job id', () => /submitted job (\S+)/.exec(run.stderr)?.[1], 120_000);
    await until('round 3', () => /^round ([3-9]|\d{2,})\//m.test(run.stderr), 180_000);
    expect((await workersOnNode2(id)).length, 'workers on the second node').to.equal(1);
    cluster.setLink(false);
    try {
      // Twice the round timeout: every round opened meanwhile loses the second node's workers.
      await new Promise((r) => setTimeout(r, 7000));
    } finally {
      cluster.setLink(true);
    }
    const code = await run.done;
    expect(code, run.stderr.slice(-3000)).to.equal(0);
    const result = resultLine(run.stdout);
    expect(result.status).to.equal('succeeded');
    const { survivors } = checkLedger('link-down', result);
    expect(Math.min(...survivors), 'some round ran without the cut-off node').to.be.below(3);
    expect(survivors.at(-1), 'the cut-off workers rejoined after the link came back').to.equal(3);
  });

  it('killing every process of the second node mid-job makes its workers dropouts; the job goes on at quorum and every released round is counted', async () => {
    const run = cli(['train', writeFaultSpec('kill-node', 60), '--json'], env);
    const id = await until('the job id', () => /submitted job (\S+)/.exec(run.stderr)?.[1], 120_000);
    await until('round 3', () => /^round ([3-9]|\d{2,})\//m.test(run.stderr), 180_000);
    const victims = await workersOnNode2(id);
    expect(victims.length, 'workers on the second node').to.equal(1);
    expect(cluster.killNode2()).to.be.above(0);
    const code = await run.done;
    expect(code, run.stderr.slice(-3000)).to.equal(0);
    const result = resultLine(run.stdout);
    expect(result.status).to.equal('succeeded');
    const { survivors } = checkLedger('kill-node', result);
    expect(Math.min(...survivors), 'some round ran without the dead node').to.be.below(3);
  });
});
