// From zod issues to one "field: what is wrong" line per bad field, worded from the field's JSON
// schema node, so that the Python side (ray-cluster/tensorguard_ray/_internal/spec.py, which
// validates against the exported JSON schema) names the same field with the same words.
import type { z } from 'zod';
import { runConfigJsonSchema } from './schema.js';

export interface RunConfigIssue {
  /** Dot path of the field ('' for the config itself), array indices as [i]. */
  path: string;
  message: string;
}

type Node = Record<string, unknown>;
type Key = PropertyKey;

export function pathString(path: readonly Key[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : (out ? '.' : '') + String(p);
  return out;
}

const SAFE = Number.MAX_SAFE_INTEGER;
const show = (v: unknown): string => String(v);
const got = (v: unknown): string => JSON.stringify(v) ?? String(v);

/** What a JSON schema node accepts, in words (spec.py `_describe` says the same). */
export function describe(node: Node): string {
  if (typeof node['x-must-be'] === 'string') return node['x-must-be'];
  const alts = (node.anyOf ?? node.oneOf) as Node[] | undefined;
  if (alts) return [...new Set(alts.map(describe))].join(' or ');
  if ('const' in node) return show(node.const);
  if (Array.isArray(node.enum)) return `one of ${node.enum.map(show).join(', ')}`;
  switch (node.type) {
    case 'null':
      return 'null';
    case 'boolean':
      return 'true or false';
    case 'integer':
    case 'number': {
      const bounds: string[] = [];
      if (typeof node.minimum === 'number' && node.minimum > -SAFE) bounds.push(`≥ ${show(node.minimum)}`);
      if (typeof node.exclusiveMinimum === 'number') bounds.push(`> ${show(node.exclusiveMinimum)}`);
      if (typeof node.maximum === 'number' && node.maximum < SAFE) bounds.push(`≤ ${show(node.maximum)}`);
      if (typeof node.exclusiveMaximum === 'number') bounds.push(`< ${show(node.exclusiveMaximum)}`);
      const kind = node.type === 'integer' ? 'an integer' : 'a number';
      return bounds.length ? `${kind} ${bounds.join(' and ')}` : kind;
    }
    case 'string':
      if (typeof node.pattern === 'string') return `a string matching ${node.pattern}`;
      return typeof node.minLength === 'number' && node.minLength > 0 ? 'a non-empty string' : 'a string';
    case 'array': {
      const items = node.items as Node | undefined;
      const head = typeof node.minItems === 'number' && node.minItems > 0 ? 'a non-empty list' : 'a list';
      return items ? `${head} of (${describe(items)})` : head;
    }
    case 'object':
      return 'an object';
    default:
      return 'a valid value';
  }
}

function valueAt(doc: unknown, path: readonly Key[]): unknown {
  let v = doc;
  for (const p of path) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<Key, unknown>)[p];
  }
  return v;
}

/** The branch of a discriminated union (oneOf of objects with a `kind` const) that `value` picks. */
function branch(node: Node, value: unknown): Node | undefined {
  const alts = node.oneOf as Node[] | undefined;
  if (!alts || typeof value !== 'object' || value === null) return undefined;
  const kind = (value as Node).kind;
  return alts.find((a) => ((a.properties as Node | undefined)?.kind as Node | undefined)?.const === kind);
}

/** The JSON schema node of the field at `path`, following discriminated unions by the document. */
function nodeAt(root: Node, doc: unknown, path: readonly Key[]): Node | undefined {
  let node: Node | undefined = root;
  for (let i = 0; i < path.length && node; i++) {
    node = branch(node, valueAt(doc, path.slice(0, i))) ?? node;
    const p = path[i]!;
    if (typeof p === 'number') node = node.items as Node | undefined;
    else {
      const props = node.properties as Record<string, Node> | undefined;
      const extra = node.additionalProperties;
      node = props?.[String(p)] ?? (typeof extra === 'object' ? (extra as Node) : undefined);
    }
  }
  return node && (branch(node, valueAt(doc, path)) ?? node);
}

let cached: Node | undefined;

/** One issue per bad field of `doc`, in zod's order (document order, cross-field rules last). */
export function issuesFromZod(error: z.ZodError, doc: unknown): RunConfigIssue[] {
  cached ??= runConfigJsonSchema();
  const root = cached;
  const out: RunConfigIssue[] = [];
  for (const issue of error.issues) {
    const path = issue.path as Key[];
    if (issue.code === 'custom') {
      out.push({ path: pathString(path), message: issue.message });
      continue;
    }
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys)
        out.push({ path: pathString([...path, key]), message: 'is not a run config field; remove it' });
      continue;
    }
    const value = valueAt(doc, path);
    const parentPath = path.slice(0, -1);
    const parent = nodeAt(root, doc, parentPath);
    if (value === undefined) out.push({ path: pathString(path), message: 'is required' });
    else if (path.at(-1) === 'kind' && parent?.oneOf && !branch(parent, valueAt(doc, parentPath))) {
      const kinds = (parent.oneOf as Node[]).map((a) => ((a.properties as Node).kind as Node).const);
      out.push({
        path: pathString(path),
        message: `must be one of ${kinds.map(show).join(', ')}, got ${got(value)}`,
      });
    } else {
      const node = nodeAt(root, doc, path);
      out.push({
        path: pathString(path),
        message: `must be ${node ? describe(node) : 'valid'}, got ${got(value)}`,
      });
    }
  }
  return out;
}
