#!/usr/bin/env node
// node worker-ts/dist/bin/key-holder.js --config <job.json> [--listen HOST:PORT] [--watch-stdin yes]
// The HE key holder (he/key-holder.ts): generates a BFV key pair, serves the public key and
// decrypts only aggregates of ≥ secureAggregation.threshold contributions. It reads the threshold
// from its own copy of the config, not from the coordinator. stdout:
// {"type":"listening","address","key_id"}; SIGTERM/SIGINT (or stdin closing with --watch-stdin yes)
// stop it. It must run where the coordinator's operator cannot read its memory (see
// docs/secure-aggregation.md, HE mode).
import { parseArgs } from './args.js';
import { emitLine } from '../metrics.js';
import { createLogger } from '../logger.js';

const log = createLogger('key-holder');

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2), ['config', 'listen', 'watch-stdin']);
  if (!args.config) throw new Error('usage: key-holder.js --config <job.json> [--listen HOST:PORT]');
  const { loadRunConfig } = await import('../config.js');
  const { KeyHolderService, KEY_HOLDER_SERVICE } = await import('../he/key-holder.js');
  const { startRpcServer } = await import('../coordinator/rpc.js');
  const cfg = loadRunConfig(args.config);
  const listen = args.listen ?? '127.0.0.1:0';
  const m = /^(.*):(\d+)$/.exec(listen);
  if (!m) throw new Error(`--listen must be HOST:PORT, got '${listen}'`);
  const service = await KeyHolderService.create(cfg.secureAggregation.threshold);
  const { server, address } = await startRpcServer(
    KEY_HOLDER_SERVICE,
    service.handlers(),
    m[1]!,
    Number(m[2]),
  );
  emitLine({ type: 'listening', address, key_id: service.keyId });
  log.info({ address, keyId: service.keyId, minInputs: service.minInputs }, 'key holder listening');
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
    if (args['watch-stdin'] === 'yes') {
      process.stdin.on('end', resolve);
      process.stdin.on('error', resolve);
      process.stdin.resume();
    }
  });
  server.forceShutdown();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    log.error({ err }, 'key holder failed');
    process.stderr.write(`key holder failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
