#!/usr/bin/env node
// node worker-ts/dist/bin/key-holder.js --config <job.json> [--listen HOST:PORT] [--watch-stdin yes]
// The HE key holder for a training job: secure-agg's key holder service (KeyHolderServer, whose
// rules are secure-agg's HeKeyService), decrypting only aggregates of ≥ secureAggregation.threshold
// contributions. It reads the threshold from its own copy of the job config, not from the
// coordinator. stdout: {"type":"listening","address","key_id"}; SIGTERM/SIGINT (or stdin closing
// with --watch-stdin yes) stop it. It must run where the coordinator's operator cannot read its
// memory (see docs/secure-aggregation.md, HE mode).
import { parseArgs } from './args.js';
import { emitLine } from '../metrics.js';
import { createLogger } from '../logger.js';

const log = createLogger('key-holder');

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2), ['config', 'listen', 'watch-stdin']);
  if (!args.config) throw new Error('usage: key-holder.js --config <job.json> [--listen HOST:PORT]');
  const { loadRunConfig } = await import('../config.js');
  const { KeyHolderServer } = await import('@tensorguard/secure-agg/service');
  const cfg = loadRunConfig(args.config);
  const listen = args.listen ?? '127.0.0.1:0';
  const m = /^(.*):(\d+)$/.exec(listen);
  if (!m) throw new Error(`--listen must be HOST:PORT, got '${listen}'`);
  const server = await KeyHolderServer.create({
    address: listen,
    minInputs: cfg.secureAggregation.threshold,
  });
  const address = `${m[1]!}:${await server.start()}`;
  emitLine({ type: 'listening', address, key_id: server.keyId });
  log.info({ address, keyId: server.keyId, minInputs: server.minInputs }, 'key holder listening');
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
    if (args['watch-stdin'] === 'yes') {
      process.stdin.on('end', resolve);
      process.stdin.on('error', resolve);
      process.stdin.resume();
    }
  });
  await server.close(500);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    log.error({ err }, 'key holder failed');
    process.stderr.write(`key holder failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
