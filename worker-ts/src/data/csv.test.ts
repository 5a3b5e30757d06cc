import { expect } from 'chai';
import { parseCsv } from './csv.js';
import { DatasetError } from './errors.js';
import { parseJsonl } from './jsonl.js';
import { CLS_ID, tokenize } from './tokenizer.js';
import { shardFiles, shardRange } from './shard.js';
import fc from 'fast-check';

describe('data/csv', () => {
  it('reads features and the label column', () => {
    const ds = parseCsv('a,label,b\n1,0,2\n3.5,2,-1\n', 'x.csv');
    expect(ds.size).to.equal(2);
    expect(Array.from(ds.features)).to.deep.equal([1, 2, 3.5, -1]);
    expect(Array.from(ds.labels)).to.deep.equal([0, 2]);
    expect(ds.numClasses).to.equal(3);
  });
  it('names the file and line of a truncated row', () => {
    expect(() => parseCsv('a,label\n1,0\n2', 'x.csv'))
      .to.throw(DatasetError, 'x.csv:3: 1 fields, the header has 2 (is the file truncated?)')
      .with.property('location')
      .that.deep.equals({ line: 3 });
  });
  it('names a non-numeric cell and a missing label column', () => {
    expect(() => parseCsv('a,label\nfoo,1\n', 'x.csv')).to.throw('x.csv:2: column 1 is not a finite number');
    expect(() => parseCsv('a,b\n1,2\n', 'x.csv')).to.throw("no column named 'label'");
    expect(() => parseCsv('a,label\n1,1.5\n', 'x.csv')).to.throw('x.csv:2: the label is not a class index');
  });
  it('never shows a value in an error message, only the file and line', () => {
    const secret = 'Jane Patient-Doe 1961';
    const cases: [string, string][] = [
      [`a,label\n1,0\n${secret},1\n`, 'x.csv:3:'],
      [`a,label\n1,0\n2,${secret}\n`, 'x.csv:3:'],
      [`${secret},b\n1,2\n`, 'x.csv:1:'],
    ];
    for (const [text, where] of cases) {
      let msg = '';
      try {
        parseCsv(text, 'x.csv');
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(msg).to.include(where);
      expect(msg).not.to.include('Jane');
      expect(msg).not.to.include('1961');
    }
    const jsonl: [string, string][] = [
      [`{"text":"a","label":0}\n{"text":"a","label":"${secret}"}\n`, 'd.jsonl:2:'],
      [`{"text":"a","label":0}\n{"text":"${secret}",label:1}\n`, 'd.jsonl:2:'],
      [`{"text":"${secret}","label":0`, 'd.jsonl:1:'],
    ];
    for (const [text, where] of jsonl) {
      let msg = '';
      try {
        parseJsonl(text, 'd.jsonl', { vocabSize: 10, seqLen: 4 });
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(msg).to.include(where);
      expect(msg).not.to.include('Jane');
    }
  });
});

describe('data/jsonl + tokenizer', () => {
  const opts = { vocabSize: 100, seqLen: 6 };
  it('tokenizes deterministically with CLS first and padding', () => {
    const a = tokenize('Hello, hello world!', opts);
    expect(a[0]).to.equal(CLS_ID);
    expect(a[1]).to.equal(a[2]);
    expect(Array.from(a.subarray(4))).to.deep.equal([0, 0]);
    fc.assert(
      fc.property(fc.string(), (s) => tokenize(s, opts).every((id) => id >= 0 && id < opts.vocabSize)),
    );
  });
  it('reads records and reports a bad line', () => {
    const ds = parseJsonl('{"text":"a b","label":1}\n\n{"text":"c","label":0}\n', 'd.jsonl', opts);
    expect(ds.size).to.equal(2);
    expect(ds.featureShape).to.deep.equal([6]);
    expect(() => parseJsonl('{"text":"a","label":1}\n{"text":"b","lab', 'd.jsonl', opts)).to.throw(
      DatasetError,
      'd.jsonl:2: not valid JSON (the last line is cut short: is the file truncated?)',
    );
    expect(() => parseJsonl('{"text":3,"label":1}\n', 'd.jsonl', opts)).to.throw(
      "d.jsonl:1: field 'text' must be a string",
    );
  });
});

describe('data/shard', () => {
  it('partitions every record into exactly one shard', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 1, max: 17 }), (n, k) => {
        let next = 0;
        for (let i = 0; i < k; i++) {
          const { start, end } = shardRange(n, k, i);
          if (start !== next || end < start) return false;
          next = end;
        }
        return next === n;
      }),
    );
    expect(shardFiles(['a', 'b', 'c'], 2, 1)).to.deep.equal(['b']);
    expect(() => shardRange(10, 3, 3)).to.throw('worker index 3 is outside [0, 3)');
  });
});
