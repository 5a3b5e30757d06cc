// Messages about a job that reach a tenant (GetJob.message, WatchJob's terminal event) come from
// the cluster: Ray's status message, the coordinator's result line, an exception's text. Those
// may quote file contents, host paths, PIDs or stack traces. The client gets a stable category
// and the job id instead; the server log keeps the original (monitor.ts logs it).

/** Messages the coordinator writes itself, with no path or data in them: passed unchanged. */
const SAFE = [
  /^$/,
  /^completed \d+ rounds$/,
  /^privacy budget: [A-Za-z0-9 ,.=<>≤≥ε()-]{0,200}$/,
  /^stopped on the cluster$/,
  /^failed on the cluster$/,
];

/** Categories, first match wins: [pattern on the raw message, what the client reads]. */
const CATEGORIES: [RegExp, string][] = [
  [/ledger/i, 'the privacy ledger could not be read or written'],
  [/checkpoint|safetensors|manifest|\bLATEST\b/i, 'a checkpoint could not be read or written'],
  [/non-?finite|\bNaN\b|\bInfinity\b/, 'training produced non-finite values'],
  [
    /also appear in the test set/i,
    'the test set shares records with the training set (held-out metrics would describe training records)',
  ],
  [
    /dataset|\.csv\b|\.jsonl\b|\bcsv\b|\bjsonl\b|\bidx\b|shard|record|label|ENOENT|EACCES|EISDIR|ENOTDIR|no such file|permission denied|cannot (read|open)/i,
    'dataset file could not be read',
  ],
  [
    /placement|resources|infeasible|timed? ?out|timeout/i,
    'the cluster could not place or run the job in time',
  ],
  [/budget/i, 'the privacy budget stopped the job'],
  [/killed|SIGTERM|SIGKILL|exit code|exited|signal/i, "the job's process ended unexpectedly"],
];

/**
 * The message a tenant may read for a job whose cluster-side message is `raw`: `raw` itself when
 * it is one of the coordinator's own fixed forms, else `<category>: see the server log (job <id>)`.
 */
export function clientJobMessage(jobId: string, raw: string): string {
  const text = raw.trim();
  if (SAFE.some((re) => re.test(text))) return text;
  const category = CATEGORIES.find(([re]) => re.test(text))?.[1] ?? 'the job failed on the cluster';
  return `${category}: see the server log (job ${jobId})`;
}
