// The run config's one schema: defaults filled once, the same field-named errors as the Python
// side (ray-cluster/tests/test_spec.py reads the same testdata), the exported JSON schema current.
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, parseRunConfig } from '../config.js';
import { runConfigJsonSchemaText, runConfigSchema } from './schema.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const read = (file: string): unknown =>
  JSON.parse(fs.readFileSync(path.join(here, 'testdata', file), 'utf8'));
const SCHEMA_FILE = path.join(
  here,
  '..',
  '..',
  '..',
  'ray-cluster',
  'tensorguard_ray',
  '_internal',
  'run_config.schema.json',
);

interface Case {
  path: string[];
  value?: unknown;
  error: string;
}

/** `minimal.json` with `c.path` set to `c.value` (deleted when there is none). */
function withCase(c: Case): Record<string, unknown> {
  const doc = structuredClone(read('minimal.json')) as Record<string, unknown>;
  let at = doc;
  for (const k of c.path.slice(0, -1)) at = (at[k] ??= {}) as Record<string, unknown>;
  const last = c.path[c.path.length - 1]!;
  if ('value' in c) at[last] = c.value;
  else delete at[last];
  return doc;
}

describe('run config schema', () => {
  it('fills every default of a minimal config once (the fully-defaulted object the Python side fills too)', () => {
    const want = read('minimal.resolved.json');
    expect(runConfigSchema.parse(read('minimal.json'))).to.deep.equal(want);
    // parseRunConfig adds nothing: the quorum has one name (no `threshold` alias on the parsed config).
    expect(parseRunConfig(read('minimal.json'))).to.deep.equal(want);
  });

  it('names the bad field in the same words as ray-cluster spec.py', () => {
    const cases = read('invalid.json') as Case[];
    expect(cases.length).to.be.greaterThan(5);
    for (const c of cases) {
      const colon = c.error.indexOf(': ');
      const [field, message] = [c.error.slice(0, colon), c.error.slice(colon + 2)];
      let err: unknown;
      try {
        parseRunConfig(withCase(c));
      } catch (e) {
        err = e;
      }
      expect(err, c.error).to.be.instanceOf(ConfigError);
      expect((err as ConfigError).field, c.error).to.equal(field);
      expect((err as ConfigError).message).to.equal(`config field '${field}': ${message}`);
    }
  });

  it('refuses a warm-up as long as the job (every round would be warm-up)', () => {
    const schedule = { kind: 'linear', warmupRounds: 10 };
    const doc = withCase({ path: ['optimizer', 'schedule'], value: schedule, error: '' });
    expect(() => parseRunConfig(doc)).to.throw(
      ConfigError,
      "config field 'optimizer.schedule.warmupRounds': is 10, not fewer than the job's 10 rounds",
    );
    const ok = withCase({
      path: ['optimizer', 'schedule'],
      value: { ...schedule, warmupRounds: 3 },
      error: '',
    });
    expect(parseRunConfig(ok).optimizer.schedule).to.deep.equal({ kind: 'linear', warmupRounds: 3 });
  });

  it("reads secureAggregation.threshold, the quorum's old name, as quorum", () => {
    const doc = withCase({ path: ['secureAggregation'], value: { threshold: 3 }, error: '' });
    const cfg = parseRunConfig(doc);
    expect(cfg.secureAggregation.quorum).to.equal(3);
    expect(runConfigSchema.parse(doc).secureAggregation).to.deep.equal({
      mode: 'masking',
      bits: 'auto',
      quorum: 3,
      scale: 2 ** 16,
    });
    expect(() => parseRunConfig(withCase({ path: ['secureAggregation'], value: {}, error: '' }))).to.throw(
      ConfigError,
      "config field 'secureAggregation.quorum': is required",
    );
  });

  it('the committed JSON schema is the one the zod schema exports (node worker-ts/scripts/run-config-schema.mjs)', () => {
    expect(fs.readFileSync(SCHEMA_FILE, 'utf8')).to.equal(runConfigJsonSchemaText());
  });
});
