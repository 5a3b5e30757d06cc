#!/usr/bin/env node
// The aggregator process: `node secure-agg/dist/bin/aggregator.js --config <file>`.
// With no coordinator plugged in, a built-in one opens a round whenever `minMembers` workers are
// joined. stdout carries one JSON line per event ({"event":"listening","port":…},
// {"event":"round",…}, {"event":"abort",…}) for supervisors; the pino log goes to stderr.
import { destination, pino } from 'pino';
import { SecAggError, toIntegers } from '../index.js';
import { AggregatorServer, loadAggregatorConfig } from '../service/index.js';

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
  const { config, server: options } = loadAggregatorConfig(file);
  const logger = pino({ level: config.logLevel ?? 'info' }, destination(2));
  const server = new AggregatorServer({ ...options, logger });
  const port = await server.start();
  emit({ event: 'listening', port });
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
