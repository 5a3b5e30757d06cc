// Turns zod issues into one line per bad field: its path, what is wrong, and the allowed values.
import type { z } from 'zod';

/** One bad field: dot path inside the job document ('' = the document) and what to fix. */
export interface SpecIssue {
  path: string;
  message: string;
}

/** The spec is invalid; `issues` lists every bad field. Nothing was submitted. */
export class JobSpecError extends Error {
  override name = 'JobSpecError';
  constructor(
    readonly issues: SpecIssue[],
    /** The file the spec came from, when it came from one. */
    readonly file?: string,
  ) {
    super(formatIssues(issues, file));
  }
}

export function formatIssues(issues: SpecIssue[], file?: string): string {
  const head = `invalid job spec${file ? ` ${file}` : ''} (${issues.length} problem${issues.length === 1 ? '' : 's'}):`;
  return [head, ...issues.map((i) => `  - ${i.path || '(document)'}: ${i.message}`)].join('\n');
}

export function pathString(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += (out ? '.' : '') + String(p);
  }
  return out;
}

function at(raw: unknown, path: readonly PropertyKey[]): unknown {
  let v = raw;
  for (const p of path) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

const show = (v: unknown): string => (typeof v === 'string' ? `'${v}'` : (JSON.stringify(v) ?? String(v)));
const list = (vs: readonly unknown[]): string => vs.map(show).join(', ');

function describeType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${show(v)}`;
}

/** Allowed keys of the object schema at `path` (following the input through unions). */
function allowedKeys(schema: z.ZodType, path: readonly PropertyKey[], raw: unknown): string[] | undefined {
  let s: unknown = schema;
  let value = raw;
  const unwrap = (x: unknown): unknown => {
    for (;;) {
      const def = (x as { def?: { type?: string; innerType?: unknown; in?: unknown } }).def;
      if (!def) return x;
      if (def.type === 'default' || def.type === 'optional' || def.type === 'nullable') x = def.innerType;
      else if (def.type === 'pipe') x = def.in;
      else return x;
    }
  };
  const pick = (x: unknown, v: unknown): unknown => {
    x = unwrap(x);
    const def = (x as { def?: { type?: string; options?: unknown[]; discriminator?: string } }).def;
    if (def?.type === 'union' && def.options) {
      const kind = (v as Record<string, unknown> | undefined)?.[def.discriminator ?? 'kind'];
      const match = def.options.find((o) => {
        const shape = (unwrap(o) as { shape?: Record<string, { def?: { values?: unknown[] } }> }).shape;
        return shape?.[def.discriminator ?? 'kind']?.def?.values?.includes(kind);
      });
      return match ? unwrap(match) : undefined;
    }
    return x;
  };
  s = pick(s, value);
  for (const p of path) {
    const shape = (s as { shape?: Record<string, unknown> } | undefined)?.shape;
    if (!shape) return undefined;
    value = at(value, [p]);
    s = pick(shape[String(p)], value);
  }
  const shape = (s as { shape?: Record<string, unknown> } | undefined)?.shape;
  return shape ? Object.keys(shape) : undefined;
}

/** One SpecIssue per zod issue (unknown keys: one per key), with the offending value shown. */
export function issuesFromZod(error: z.ZodError, raw: unknown, schema: z.ZodType): SpecIssue[] {
  const out: SpecIssue[] = [];
  for (const issue of error.issues) {
    const path = pathString(issue.path);
    const value = at(raw, issue.path);
    switch (issue.code) {
      case 'invalid_type': {
        const expected = issue.expected === 'int' ? 'an integer' : `${issue.expected}`;
        out.push({
          path,
          message:
            value === undefined
              ? `is required (${expected})`
              : issue.expected === 'int'
                ? `must be an integer, got ${show(value)}`
                : `must be ${expected === 'object' ? 'an object' : `a ${expected}`}, got ${describeType(value)}`,
        });
        break;
      }
      case 'too_small':
      case 'too_big': {
        const small = issue.code === 'too_small';
        const bound = small ? issue.minimum : issue.maximum;
        const inclusive = issue.inclusive !== false;
        if (issue.origin === 'array') {
          out.push({ path, message: `must have ${small ? 'at least' : 'at most'} ${bound} item(s)` });
        } else if (issue.origin === 'string') {
          out.push({ path, message: small ? 'must not be empty' : `must be at most ${bound} characters` });
        } else {
          const rel = small ? (inclusive ? '≥' : '>') : inclusive ? '≤' : '<';
          out.push({ path, message: `must be ${rel} ${String(bound)}, got ${show(value)}` });
        }
        break;
      }
      case 'invalid_value':
        out.push({ path, message: `must be one of ${list(issue.values)}, got ${show(value)}` });
        break;
      case 'unrecognized_keys': {
        const allowed = allowedKeys(schema, issue.path, raw);
        for (const key of issue.keys) {
          out.push({
            path: pathString([...issue.path, key]),
            message: `unknown field${allowed ? ` (allowed: ${allowed.join(', ')})` : ''}`,
          });
        }
        break;
      }
      case 'invalid_union': {
        const i = issue as typeof issue & { options?: unknown[]; note?: string };
        if (i.options) {
          out.push({ path, message: `must be one of ${list(i.options)}, got ${show(value)}` });
          break;
        }
        const alternatives = issue.errors.flat();
        const literalsOnly = alternatives.length > 0 && alternatives.every((e) => e.code === 'invalid_value');
        const values = alternatives.flatMap((e) => (e.code === 'invalid_value' ? e.values : []));
        out.push({
          path,
          message: literalsOnly
            ? `must be one of ${list(values)}, got ${show(value)}`
            : `${issue.message}, got ${show(value)}`,
        });
        break;
      }
      default:
        out.push({ path, message: issue.message });
    }
  }
  return out;
}
