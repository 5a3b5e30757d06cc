#!/usr/bin/env node
// node worker-ts/dist/bin/worker.js --config <job.json> --worker-index i --aggregator HOST:PORT
//   [--tls-dir DIR | --identity-dir DIR]
// --tls-dir: mutual TLS and the protocol's signatures with the job identity (what Ray passes).
// --identity-dir: the same signatures over a plaintext channel (loopback): the protocol of a TLS
// run with only the transport changed, which is what the multinode benchmark compares TLS to.
// stdout: one {"type":"metrics",...} line per round; exit 0 when the coordinator says done.
import '../env.js';
import { parseArgs } from './args.js';
import { emitLine } from '../metrics.js';
import { createLogger } from '../logger.js';
import { startTelemetry, type Telemetry } from '../telemetry.js';

let telemetry: Telemetry | undefined;

/**
 * The worker cannot run where it is: it prints a {"type":"fatal"} line and exits with
 * EXIT_FATAL, which its Ray supervisor reports to the job instead of restarting it.
 */
class FatalError extends Error {}
const EXIT_FATAL = 3;

async function main(): Promise<number> {
  telemetry = await startTelemetry(process.env, 'tensorguard-worker');
  const args = parseArgs(process.argv.slice(2), [
    'config',
    'worker-index',
    'aggregator',
    'tls-dir',
    'identity-dir',
  ]);
  const index = Number(args['worker-index'] ?? process.env.TENSORGUARD_WORKER_INDEX);
  if (!args.config || !args.aggregator || !Number.isInteger(index)) {
    throw new Error('usage: worker.js --config <job.json> --worker-index <i> --aggregator <host:port>');
  }
  if (args['tls-dir'] && args['identity-dir'])
    throw new Error(
      '--tls-dir already gives the job identity its signatures use; pass --identity-dir only without --tls-dir',
    );
  const log = createLogger('worker', { workerIndex: index });
  const { tf } = await import('@tensorguard/dp/tfjs');
  const { clippingLanes, loadRunConfig } = await import('../config.js');
  const { loadShard, loadTestSet } = await import('../data/load.js');
  const { refuseTestOverlap } = await import('../data/overlap.js');
  const { prepareModel } = await import('../job.js');
  const { DpClippingEngine } = await import('../clipping.js');
  const { RoundClient } = await import('../round-client.js');
  const { AnnouncementError } = await import('../announcement.js');
  const { RoundLimitError } = await import('../round-limit.js');
  const { readTlsDir } = await import('../tls.js');
  const { resolvePresets } = await import('../hf/resolve.js');
  // Presets (model folder, text dataset) are fetched here, on this worker's node, if missing.
  const cfg = await resolvePresets(loadRunConfig(args.config));
  if (index < 0 || index >= cfg.workers.count)
    throw new Error(`--worker-index ${index} is outside [0, ${cfg.workers.count})`);
  let shard: Awaited<ReturnType<typeof loadShard>>;
  try {
    shard = loadShard(cfg, index);
  } catch (err) {
    // Missing or unreadable on this node: a restart here would fail the same way.
    throw new FatalError(`cannot load its shard: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    refuseTestOverlap(cfg, shard, () => loadTestSet(cfg));
  } catch (err) {
    throw new FatalError(err instanceof Error ? err.message : String(err));
  }
  const prepared = prepareModel(cfg, shard);
  log.info(
    { records: shard.size, model: prepared.def.kind, parameters: prepared.parameters },
    'shard loaded',
  );
  const lanes = clippingLanes(cfg.workers);
  const engine = await DpClippingEngine.start(prepared.def, prepared.initial, {
    lanes: { ...lanes, recipe: prepared.recipe },
  });
  if (lanes.count > 1) log.info(lanes, 'clipping step runs over lanes');
  const client = new RoundClient({
    tf,
    address: args.aggregator,
    workerIndex: index,
    config: cfg,
    dimension: prepared.parameters,
    ...(args['tls-dir'] ? { tls: readTlsDir(args['tls-dir']) } : {}),
    ...(args['identity-dir'] ? { identity: readTlsDir(args['identity-dir']) } : {}),
    shard,
    engine,
    log,
    emit: emitLine,
  });
  let reason: string;
  try {
    reason = await client.run();
  } catch (err) {
    // The coordinator asked for other privacy parameters than the job's, or for more rounds than
    // the job allows: it would ask again (and a restarted worker would start its count afresh).
    if (err instanceof AnnouncementError || err instanceof RoundLimitError) throw new FatalError(err.message);
    throw err;
  }
  log.info({ reason }, 'job done');
  client.close();
  engine.dispose();
  return 0;
}

main().then(
  async (code) => {
    await telemetry?.shutdown();
    process.exit(code);
  },
  (err: unknown) => {
    createLogger('worker').error({ err }, 'worker failed');
    process.stderr.write(`worker failed: ${err instanceof Error ? err.message : String(err)}\n`);
    if (err instanceof FatalError) {
      emitLine({ type: 'fatal', error: err.message });
      process.exit(EXIT_FATAL);
    }
    process.exit(1);
  },
);
