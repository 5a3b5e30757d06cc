import type { Row } from './types.js';

/** Formats rows as an aligned plain-text table; numbers are right-aligned. */
export function formatTable(rows: Row[]): string {
  if (rows.length === 0) return '(no rows)';
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: Row[string] | undefined): string =>
    v === undefined || v === null ? '' : typeof v === 'number' ? fmtNumber(v) : String(v);
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[], nums: boolean[]) =>
    vals.map((v, i) => (nums[i] ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join('  ');
  const isNum = cols.map((c) => rows.every((r) => typeof r[c] === 'number' || r[c] === undefined));
  return [
    line(cols, isNum),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...rows.map((r) =>
      line(
        cols.map((c) => cell(r[c])),
        isNum,
      ),
    ),
  ].join('\n');
}

function fmtNumber(v: number): string {
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(1) : a >= 1 ? v.toFixed(3) : v.toPrecision(3);
}
