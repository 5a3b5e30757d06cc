// Runs the in-process and HE examples of secure-agg/README.md so that they cannot rot (the
// service example needs a running cluster of workers and is covered by service.test.ts).
import { expect } from 'chai';
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';

function blockUnder(readme: string, heading: string): string {
  const section = readme.split(/^## /m).find((s) => s.startsWith(heading));
  const block = section && /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error(`README.md has no \`\`\`ts block under "## ${heading}"`);
  return block;
}

async function run(block: string): Promise<string[]> {
  // Inside secure-agg/dist (ignored by git) so that '@tensorguard/secure-agg' resolves through the workspace.
  const dir = new URL('../dist/', import.meta.url);
  fs.mkdirSync(dir, { recursive: true });
  const file = new URL(`readme-example-${process.pid}-${Math.random().toString(36).slice(2)}.ts`, dir);
  const lines: string[] = [];
  const log = console.log;
  fs.writeFileSync(file, block);
  console.log = (...args: unknown[]) =>
    void lines.push(
      args
        .map((a) =>
          typeof a === 'string'
            ? a
            : JSON.stringify(a, (_, v: unknown) => (v instanceof Float64Array ? Array.from(v) : v)),
        )
        .join(' '),
    );
  try {
    await import(pathToFileURL(file.pathname).href);
  } finally {
    console.log = log;
    fs.rmSync(file, { force: true });
  }
  return lines;
}

describe('secure-agg/README.md', function () {
  this.timeout(60_000);
  const readme = fs.readFileSync(new URL('../README.md', import.meta.url), 'utf8');

  it('the in-process example prints the decoded sum (≈ [0.1, -0.4, 0, 0.6])', async () => {
    const [line] = await run(blockUnder(readme, 'In process'));
    const sum = JSON.parse(line!) as number[];
    [0.1, -0.4, 0, 0.6].forEach((x, i) => expect(sum[i]).to.be.closeTo(x, 0.05));
  });

  it('the HE example prints the exact sum', async () => {
    expect(await run(blockUnder(readme, 'HE mode'))).to.deep.equal(['[11,18,-27]']);
  });
});
