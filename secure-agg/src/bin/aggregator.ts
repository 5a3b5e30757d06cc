#!/usr/bin/env node
// The aggregator process: `node secure-agg/dist/bin/aggregator.js --config <file>`.
// With no coordinator plugged in, a built-in one opens a round whenever `minMembers` workers are
// joined. stdout carries one JSON line per event ({"event":"listening","port":…},
// {"event":"round",…}, {"event":"abort",…}) for supervisors; the pino log goes to stderr.
// With scheme "he" it connects to the key holder named by `keyHolder`, or starts bin/key-holder as
// its child (on loopback, watching its stdin so that it dies with this process even on SIGKILL) and
// stops it on exit; the listening line then also names the key holder and its key id.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { destination, pino } from 'pino';
import { SecAggError, toIntegers } from '../index.js';
import {
  AggregatorServer,
  KeyHolderClient,
  loadAggregatorConfig,
  spawnKeyHolder,
  type KeyHolderLink,
  type SpawnedKeyHolder,
} from '../service/index.js';

function emit(obj: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function main(argv: string[]): Promise<number> {
  const i = argv.indexOf('--config');
  const file = i >= 0 ? argv[i + 1] : undefined;
  if (!file) {
    process.stderr.write('usage: aggregator --config <file.json>\n');
    return 2;
  }
  const { config, server: options, keyHolder: external, keyHolderTls } = loadAggregatorConfig(file);
  const logger = pino({ level: config.logLevel ?? 'info' }, destination(2));
  let child: SpawnedKeyHolder | undefined;
  let client: KeyHolderClient | undefined;
  let link: KeyHolderLink | undefined;
  if (options.scheme === 'he') {
    if (external) {
      client = new KeyHolderClient(external);
    } else {
      const here = fileURLToPath(import.meta.url);
      child = await spawnKeyHolder(path.join(path.dirname(here), `key-holder${path.extname(here)}`), [
        '--listen',
        '127.0.0.1:0',
        '--tls-dir',
        config.keyHolderTlsDir!,
        '--watch-stdin',
      ]);
      logger.info({ keyHolder: child.address, pid: child.child.pid }, 'started the HE key holder');
      client = new KeyHolderClient({ address: child.address, tls: keyHolderTls! });
    }
    link = await client.link().catch(async (err: unknown) => {
      client?.close();
      await child?.close();
      throw err;
    });
  }
  const server = new AggregatorServer({ ...options, ...(link ? { keyHolder: link } : {}), logger });
  const port = await server.start();
  emit({
    event: 'listening',
    port,
    ...(link
      ? {
          scheme: 'he',
          keyHolder: link.address,
          keyId: link.keyId,
          ...(child ? { keyHolderPid: child.child.pid } : {}),
        }
      : {}),
  });
  const stop = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => stop.abort(new Error(sig)));
  const minMembers = config.minMembers ?? 2;
  let done = 0;
  try {
    while (
      !stop.signal.aborted &&
      (config.rounds === undefined || config.rounds === 0 || done < config.rounds)
    ) {
      await server.waitForMembers(minMembers, stop.signal);
      try {
        const r = await server.openRound();
        emit({
          event: 'round',
          round: r.round,
          survivors: r.survivors,
          ...(config.printSums ? { sum: Array.from(toIntegers(r.ring)) } : {}),
        });
      } catch (err) {
        if (!(err instanceof SecAggError)) throw err;
        emit({ event: 'abort', reason: err.message, code: err.code });
      }
      done++;
    }
  } catch (err) {
    if (!stop.signal.aborted) throw err;
  } finally {
    await server.close();
    client?.close();
    await child?.close();
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`aggregator failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
