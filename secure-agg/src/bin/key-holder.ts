#!/usr/bin/env node
// The HE key holder process: `node secure-agg/dist/bin/key-holder.js [--config <file>]
// [--listen HOST:PORT] [--min-inputs N] [--tls-dir DIR] [--watch-stdin]`. --min-inputs and
// --tls-dir (the key holder's job identity: ca.pem, cert.pem naming tensorguard-key-holder,
// key.pem; mutual TLS, OpenRound and DecryptSum only for the aggregator's certificate) override
// the file, so a training coordinator can start it from its job's config without writing another
// file. An identity (--tls-dir or the file's tls) is required. It generates a BFV key pair, serves the public key and
// decrypts only aggregates (he_key_holder.proto; the rules are HeKeyService's). Without --config it
// runs with the defaults (loopback, an ephemeral port, minInputs 2), as when an aggregator starts it
// as its child; --listen overrides the file's address. stdout carries one JSON line,
// {"event":"listening","port","address","keyId","minInputs"}; the pino log goes to stderr.
// SIGTERM/SIGINT (or stdin closing, with --watch-stdin) stop it. It must run where the aggregator's
// operator cannot read its memory (docs/secure-aggregation.md, HE mode).
import fs from 'node:fs';
import path from 'node:path';
import { destination, pino } from 'pino';
import { KeyHolderServer, loadKeyHolderConfig, type KeyHolderConfig } from '../service/index.js';

function emit(obj: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value`);
  return v;
}

async function main(argv: string[]): Promise<number> {
  for (const a of argv.filter((x) => x.startsWith('--')))
    if (!['--config', '--listen', '--min-inputs', '--tls-dir', '--watch-stdin'].includes(a)) {
      process.stderr.write(
        'usage: key-holder [--config <file.json>] [--listen HOST:PORT] [--min-inputs N] [--tls-dir DIR] [--watch-stdin]\n',
      );
      return 2;
    }
  const file = flag(argv, '--config');
  const { config, server: options }: ReturnType<typeof loadKeyHolderConfig> = file
    ? loadKeyHolderConfig(file)
    : { config: {} as KeyHolderConfig, server: {} };
  const listen = flag(argv, '--listen');
  const minInputsFlag = flag(argv, '--min-inputs');
  if (minInputsFlag !== undefined && !/^\d+$/.test(minInputsFlag))
    throw new Error(`--min-inputs must be an integer ≥ 2, got ${JSON.stringify(minInputsFlag)}`);
  const tlsDir = flag(argv, '--tls-dir');
  const read = (f: string) => {
    try {
      return fs.readFileSync(path.join(tlsDir!, f));
    } catch (err) {
      throw new Error(
        `--tls-dir ${tlsDir}: cannot read ${f} (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
      );
    }
  };
  const identity = tlsDir
    ? { ca: read('ca.pem'), cert: read('cert.pem'), key: read('key.pem') }
    : options.identity;
  if (!identity)
    throw new Error(
      'the key holder needs its job identity: --tls-dir DIR (ca.pem, cert.pem, key.pem naming tensorguard-key-holder, as pki.py writes them) or tls in --config',
    );
  const logger = pino({ level: config.logLevel ?? 'info' }, destination(2));
  const server = await KeyHolderServer.create({
    ...options,
    ...(listen ? { address: listen } : {}),
    ...(minInputsFlag !== undefined ? { minInputs: Number(minInputsFlag) } : {}),
    identity,
    logger,
  });
  const port = await server.start();
  const host = (listen ?? options?.address ?? '127.0.0.1:0').replace(/:\d+$/, '');
  emit({
    event: 'listening',
    port,
    address: `${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${port}`,
    keyId: server.keyId,
    minInputs: server.minInputs,
  });
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
    if (argv.includes('--watch-stdin')) {
      process.stdin.on('end', () => resolve());
      process.stdin.on('error', () => resolve());
      process.stdin.resume();
    }
  });
  await server.close(500);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`key holder failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
