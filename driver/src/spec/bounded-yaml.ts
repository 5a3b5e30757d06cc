// Job documents come from users and, through the API, from other tenants' services: parsing one
// must cost time linear in its size. The `yaml` package checks each new map key against every
// earlier one (quadratic: a 3.6 MiB document with 150k keys held the event loop for minutes), so
// a document is bounded by a cheap linear pre-scan of its text before it is parsed, parsed with
// that check off, and its duplicate keys are then found with one Set per map (linear).
import YAML, { isMap, isScalar, isSeq, type Node as YamlNode } from 'yaml';
import type { SpecIssue } from './errors.js';

/** Bounds on one job document. A job spec has about a hundred keys; these leave ample room. */
export interface DocumentLimits {
  /** Largest document text in bytes (UTF-8). */
  maxBytes: number;
  /** Most map entries and sequence items in the whole document. */
  maxNodes: number;
  /** Deepest nesting of maps and sequences. */
  maxDepth: number;
}

export const DEFAULT_DOCUMENT_LIMITS: Readonly<DocumentLimits> = Object.freeze({
  maxBytes: 1024 * 1024,
  maxNodes: 10_000,
  maxDepth: 64,
});

/** Thrown (as a spec issue on the document) when a document is over a limit or not YAML. */
export class DocumentError extends Error {
  override name = 'DocumentError';
  constructor(readonly issue: SpecIssue) {
    super(issue.message);
  }
}

const over = (what: string, limit: number, unit: string) =>
  new DocumentError({
    path: '',
    message: `is too large: more than ${limit} ${unit} (${what}); a job spec is far smaller, so check what was sent`,
  });

/**
 * One pass over the text: its size, an upper bound on its entries (every map entry or sequence
 * item needs a `:`, `,`, `-` or `?`, and these also count inside strings and comments, so the
 * bound only over-counts) and the nesting of flow brackets, which the parser would otherwise
 * follow recursively.
 */
export function prescanText(text: string, limits: DocumentLimits = DEFAULT_DOCUMENT_LIMITS): void {
  // UTF-8 is at most 3 bytes per UTF-16 unit; count exactly only when the cheap bound is unsure.
  if (
    text.length > limits.maxBytes ||
    (text.length * 3 > limits.maxBytes && Buffer.byteLength(text) > limits.maxBytes)
  ) {
    throw over('document size', limits.maxBytes, 'bytes');
  }
  let marks = 0;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // : , - ?
    if (c === 58 || c === 44 || c === 45 || c === 63) {
      if (++marks > limits.maxNodes) throw over('map keys and list items', limits.maxNodes, 'entries');
    } else if (c === 91 || c === 123) {
      // [ {
      if (++depth > limits.maxDepth) throw over('nesting depth', limits.maxDepth, 'levels');
    } else if ((c === 93 || c === 125) && depth > 0) depth--;
  }
}

/**
 * A bounded walk of an already-parsed value (a `spec.document` Struct): stops at the first limit
 * passed, so its cost is bounded by the limits, not by the value.
 */
export function checkValueBounds(value: unknown, limits: DocumentLimits = DEFAULT_DOCUMENT_LIMITS): void {
  let nodes = 0;
  const stack: Array<{ v: unknown; depth: number }> = [{ v: value, depth: 0 }];
  while (stack.length > 0) {
    const { v, depth } = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= limits.maxDepth) throw over('nesting depth', limits.maxDepth, 'levels');
    const children = Array.isArray(v) ? (v as unknown[]) : Object.values(v as Record<string, unknown>);
    nodes += children.length;
    if (nodes > limits.maxNodes) throw over('map keys and list items', limits.maxNodes, 'entries');
    for (const c of children) stack.push({ v: c, depth: depth + 1 });
  }
}

/** Duplicate keys, found with one Set per map; also enforces the depth bound on the AST. */
function checkDuplicateKeys(root: YamlNode | null, limits: DocumentLimits): void {
  const stack: Array<{ n: unknown; depth: number; path: string }> = [{ n: root, depth: 0, path: '' }];
  while (stack.length > 0) {
    const { n, depth, path } = stack.pop()!;
    if (depth > limits.maxDepth) throw over('nesting depth', limits.maxDepth, 'levels');
    if (isMap(n)) {
      const seen = new Set<unknown>();
      for (const pair of n.items) {
        const k = isScalar(pair.key) ? pair.key.value : pair.key;
        if (seen.has(k)) {
          throw new DocumentError({
            path,
            message: `is not valid YAML/JSON: the key "${String(k).slice(0, 64)}" appears twice`,
          });
        }
        seen.add(k);
        const child = typeof k === 'string' || typeof k === 'number' ? String(k) : '?';
        stack.push({ n: pair.value, depth: depth + 1, path: path ? `${path}.${child}` : child });
      }
    } else if (isSeq(n)) {
      n.items.forEach((item, i) => stack.push({ n: item, depth: depth + 1, path: `${path}[${i}]` }));
    }
  }
}

/**
 * Parses a YAML or JSON job document in time linear in its length: the pre-scan, the parse
 * without the quadratic key check, duplicate keys found afterwards, at most 100 aliases. Throws
 * DocumentError naming the limit passed or the syntax error. Used by `tensorguard train`
 * (loadJobSpec) and by the API server (spec.yaml), so both accept the same documents.
 */
export function parseDocumentText(text: string, limits: DocumentLimits = DEFAULT_DOCUMENT_LIMITS): unknown {
  prescanText(text, limits);
  let doc;
  try {
    doc = YAML.parseDocument(text, { uniqueKeys: false, prettyErrors: true });
  } catch (err) {
    throw new DocumentError({ path: '', message: `is not valid YAML/JSON: ${(err as Error).message}` });
  }
  if (doc.errors.length > 0) {
    throw new DocumentError({ path: '', message: `is not valid YAML/JSON: ${doc.errors[0]!.message}` });
  }
  checkDuplicateKeys(doc.contents, limits);
  try {
    return doc.toJS({ maxAliasCount: 100 }) as unknown;
  } catch (err) {
    throw new DocumentError({ path: '', message: `is not valid YAML/JSON: ${(err as Error).message}` });
  }
}
