// Shared by the job commands (train, status, logs, stop, list): flag parsing, the progress line,
// and how Ray errors become exit codes.
import path from 'node:path';
import { RayError } from '../ray/errors.js';
import type { ProgressLine, ResultLine } from '../ray/job.js';
import { type Io, UsageError } from './types.js';

export interface ParsedArgs {
  positional: string[];
  flags: Record<string, string | true>;
}

/** `--name value`, `--name=value` and boolean `--name` / `-x` aliases; unknown flags are errors. */
export function parseArgs(
  args: string[],
  spec: { booleans?: string[]; values?: string[]; aliases?: Record<string, string> },
): ParsedArgs {
  const out: ParsedArgs = { positional: [], flags: {} };
  for (let i = 0; i < args.length; i++) {
    let a = args[i]!;
    if (spec.aliases?.[a]) a = spec.aliases[a]!;
    if (!a.startsWith('--')) {
      if (a.startsWith('-') && a !== '-') throw new UsageError(`unknown option ${a}`);
      out.positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    if (spec.booleans?.includes(name)) {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`);
      out.flags[name] = true;
    } else if (spec.values?.includes(name)) {
      const v = eq >= 0 ? a.slice(eq + 1) : args[++i];
      if (v === undefined || v === '') throw new UsageError(`--${name} needs a value`);
      out.flags[name] = v;
    } else {
      throw new UsageError(`unknown option --${name}`);
    }
  }
  return out;
}

export function str(flags: ParsedArgs['flags'], name: string): string | undefined {
  const v = flags[name];
  return typeof v === 'string' ? v : undefined;
}

/** Exactly one positional job id. */
export function jobIdArg(p: ParsedArgs): string {
  if (p.positional.length !== 1) throw new UsageError('expected one job id');
  return p.positional[0]!;
}

const fmt = (x: number | null | undefined, digits: number) =>
  x === null || x === undefined ? '–' : x.toFixed(digits);

/**
 * ε as the job lines carry it: a number, or infinite (JSON has no Infinity: the coordinator's
 * lines write null, the API "Infinity"). Never shown as a number it is not, nor as 0.
 */
const fmtEpsilon = (x: number | string | null | undefined, digits: number) =>
  typeof x === 'number' && Number.isFinite(x) ? x.toFixed(digits) : '∞ (no noise: not private)';

function duration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '–';
  if (s < 90) return `${Math.round(s)}s`;
  if (s < 5400) return `${Math.round(s / 60)}m`;
  return `${(s / 3600).toFixed(1)}h`;
}

/** "round 3/10 · ε 0.75 of 8 · eval acc 0.812 · 1.20 s/round · ETA 8s" */
export function progressText(
  p: ProgressLine,
  budget: number | null | undefined,
  lastAccuracy?: number | null,
): string {
  const acc = p.eval_accuracy ?? lastAccuracy ?? null;
  const eta = (p.rounds_total - p.round) * p.round_seconds;
  return [
    `round ${p.round}/${p.rounds_total}`,
    `ε ${fmtEpsilon(p.epsilon, 3)}${budget ? ` of ${budget}` : ''}`,
    `eval acc ${fmt(acc, 3)}`,
    `${fmt(p.round_seconds, 2)} s/round`,
    `ETA ${duration(eta)}`,
  ].join(' · ');
}

/**
 * The live progress line of a followed job, on stderr: rewritten in place on a terminal (unless
 * `inPlace` is false, e.g. under --json), else one line per round. The accuracy of the latest
 * evaluation stays shown between evaluations. `end()` finishes the line.
 */
export function liveProgress(
  io: Io,
  budget: number | null | undefined,
  inPlace = true,
): { onProgress: (p: ProgressLine) => void; end: () => void } {
  const tty = (process.stderr.isTTY ?? false) && inPlace;
  let lastAccuracy: number | null = null;
  return {
    onProgress(p) {
      if (p.eval_accuracy !== null) lastAccuracy = p.eval_accuracy;
      const text = progressText(p, budget, lastAccuracy);
      io.stderr(tty ? `\r\x1b[2K${text}` : `${text}\n`);
    },
    end() {
      if (tty) io.stderr('\n');
    },
  };
}

/** ε budget a job was submitted with (Ray metadata `tensorguard_epsilon_budget`), else null. */
export function budgetOf(metadata: Record<string, string> | null | undefined): number | null {
  const v = Number(metadata?.tensorguard_epsilon_budget ?? NaN);
  return Number.isFinite(v) && v > 0 ? v : null;
}

export function resultText(r: ResultLine): string {
  if (r.status === 'succeeded') {
    return (
      `job ${r.job_id} succeeded: ${r.rounds ?? '?'} rounds, ε = ${fmtEpsilon(r.epsilon, 4)} (δ = ${r.delta ?? '?'}), ` +
      `test accuracy ${fmt(r.test_accuracy, 4)}\n  checkpoint: ${r.checkpoint ?? '–'}\n  privacy report: ${r.privacy_report ?? '–'}` +
      // The coordinator writes the HTML job report beside the privacy report.
      (r.privacy_report ? `\n  report: ${path.join(path.dirname(r.privacy_report), 'report.html')}` : '') +
      (r.adapter ? `\n  adapter: ${r.adapter} (PEFT)` : '')
    );
  }
  return `job ${r.job_id} failed: ${r.error ? oneLine(r.error) : 'no error message'}`;
}

// eslint-disable-next-line no-control-regex -- ANSI escape sequences are what it removes
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;

/**
 * A message from Ray or a job as one line: ANSI colour codes removed; for a Python traceback only
 * its last line (the exception and its message), else its lines joined by "; ".
 */
export function oneLine(text: string): string {
  const lines = text
    .replace(ANSI, '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  if (lines.some((l) => l.startsWith('Traceback (most recent call last)') || l.startsWith('File "')))
    return lines.at(-1) ?? '';
  return lines.join('; ');
}

/** Runs a command body, turning RayErrors into a message and exit code 1. */
export async function withRayErrors(io: Io, name: string, f: () => Promise<number>): Promise<number> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof RayError) {
      io.stderr(`tensorguard ${name}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
