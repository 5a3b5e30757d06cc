import { expect } from 'chai';
import {
  checkValueBounds,
  DocumentError,
  parseDocumentText,
  prescanText,
  type DocumentLimits,
} from './bounded-yaml.js';

const small: DocumentLimits = { maxBytes: 1000, maxNodes: 20, maxDepth: 4 };

function issueOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(DocumentError);
    return `${(err as DocumentError).issue.path}|${(err as DocumentError).issue.message}`;
  }
  throw new Error('expected a DocumentError');
}

describe('spec/bounded-yaml', () => {
  const cases: Array<{ what: string; text: string; issue: RegExp }> = [
    {
      what: 'too many bytes',
      text: 'a: ' + 'x'.repeat(1000),
      issue: /^\|is too large: more than 1000 bytes/,
    },
    {
      what: 'multi-byte characters counted as UTF-8 bytes',
      text: 'a: ' + 'é'.repeat(600),
      issue: /more than 1000 bytes/,
    },
    {
      what: 'too many block keys',
      text: Array.from({ length: 21 }, (_, i) => `k${i}: 1`).join('\n'),
      issue: /more than 20 entries \(map keys and list items\)/,
    },
    {
      what: 'too many flow keys without values',
      text: `{${'k, '.repeat(25)}}`,
      issue: /more than 20 entries/,
    },
    { what: 'too many sequence items', text: '- 1\n'.repeat(21), issue: /more than 20 entries/ },
    { what: 'flow nesting', text: '[[[[[1]]]]]', issue: /more than 4 levels \(nesting depth\)/ },
    { what: 'block nesting', text: 'a:\n b:\n  c:\n   d:\n    e: 1\n', issue: /more than 4 levels/ },
    { what: 'a duplicate key', text: 'a: 1\nb:\n  c: 1\n  c: 2\n', issue: /^b\|.*the key "c" appears twice/ },
    { what: 'a syntax error', text: 'a: [1, 2\n', issue: /^\|is not valid YAML\/JSON/ },
  ];
  for (const c of cases) {
    it(`refuses ${c.what}`, () => {
      expect(issueOf(() => parseDocumentText(c.text, small))).to.match(c.issue);
    });
  }

  it('parses an ordinary document like YAML.parse', () => {
    expect(parseDocumentText('name: x\nrounds: 3\nlist: [1, 2]\nref: &r {a: 1}\nagain: *r\n')).to.deep.equal({
      name: 'x',
      rounds: 3,
      list: [1, 2],
      ref: { a: 1 },
      again: { a: 1 },
    });
  });

  it('parses 10 000 keys in linear time (no quadratic duplicate check)', () => {
    const text = Array.from({ length: 9000 }, (_, i) => `k${i}: 1`).join('\n');
    const doc = parseDocumentText(text) as Record<string, number>;
    expect(Object.keys(doc)).to.have.length(9000);
    expect(() => prescanText(text + '\n' + text)).to.throw(DocumentError, /more than 10000 entries/);
  });

  it('bounds a parsed value (a Struct) by entries and depth, stopping at the first limit', () => {
    expect(() => checkValueBounds({ a: [1, 2, { b: 3 }] }, small)).to.not.throw();
    expect(issueOf(() => checkValueBounds({ a: Array.from({ length: 30 }, () => 1) }, small))).to.match(
      /more than 20 entries/,
    );
    let deep: unknown = 1;
    for (let i = 0; i < 5; i++) deep = { d: deep };
    expect(issueOf(() => checkValueBounds(deep, small))).to.match(/more than 4 levels/);
  });
});
