// JSON has no Infinity: JSON.stringify writes null, which a reader then takes for 0, and an
// infinite ε (a job without noise) became ε = 0 in stored events. Stored JSON writes
// non-finite numbers as the strings "Infinity", "-Infinity" and "NaN" (as the proto3 JSON
// mapping does) and reads them back as numbers under the keys that hold figures.

/** Keys whose string values "Infinity", "-Infinity" and "NaN" are read back as numbers. */
const NUMERIC_KEYS = new Set(['epsilon', 'delta', 'accuracy', 'loss', 'sampling_rate', 'samplingRate']);

const NON_FINITE: Record<string, number> = { Infinity: Infinity, '-Infinity': -Infinity, NaN: NaN };

/** JSON.stringify that writes a non-finite number as its name (a string) instead of null. */
export function stringifyKeepingNonFinite(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    typeof x === 'number' && !Number.isFinite(x) ? String(x) : x,
  );
}

/** JSON.parse that reads "Infinity", "-Infinity" and "NaN" back as numbers under figure keys. */
export function parseKeepingNonFinite(text: string): unknown {
  return JSON.parse(text, (k, x: unknown) =>
    typeof x === 'string' && NUMERIC_KEYS.has(k) && x in NON_FINITE ? NON_FINITE[x] : x,
  );
}

/** A figure from untrusted JSON: a finite number, or the string "Infinity"; else null. */
export function figureOrNull(v: unknown): number | null {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (v === 'Infinity') return Infinity;
  return null;
}
