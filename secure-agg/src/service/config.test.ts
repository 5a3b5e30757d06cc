import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../index.js';
import { loadAggregatorConfig, loadKeyHolderConfig } from './index.js';

describe('service/config', () => {
  let dir: string;
  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-agg-config-'))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (obj: unknown) => {
    const f = path.join(dir, `c${Math.random().toString(36).slice(2)}.json`);
    fs.writeFileSync(f, JSON.stringify(obj));
    return f;
  };
  const refused = (f: () => unknown): ConfigError => {
    try {
      f();
    } catch (err) {
      if (err instanceof ConfigError) return err;
      throw err;
    }
    throw new Error('expected a ConfigError');
  };
  const base = { vectorLength: 3, bits: 32 };
  const pemFile = (name: string) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, `-----BEGIN ${name}-----\n`);
    return f;
  };
  /** The aggregator's mutual TLS to the key holder (the loader reads the files, not their PKI). */
  const khTls = () => ({ rootCa: pemFile('ca.pem'), cert: pemFile('agg.pem'), key: pemFile('agg.key') });

  it('defaults to masking; scheme "he" without keyHolder means a child key holder with keyHolderTlsDir', () => {
    const m = loadAggregatorConfig(write(base));
    expect(m.server.scheme).to.equal('masking');
    expect(m.keyHolder).to.equal(undefined);
    const h = loadAggregatorConfig(
      write({
        ...base,
        scheme: 'he',
        deadlinesMs: { ENCRYPTED_INPUT: 900, UNMASK: 5 },
        keyHolderTls: khTls(),
        keyHolderTlsDir: '/pki/key-holder',
      }),
    );
    expect(h.server).to.deep.include({ scheme: 'he', encryptedInputMs: 900, deadlinesMs: { UNMASK: 5 } });
    expect(h.keyHolder).to.equal(undefined);
    expect(h.keyHolderTls?.certChain?.toString()).to.equal('-----BEGIN agg.pem-----\n');
    const e = loadAggregatorConfig(
      write({ ...base, scheme: 'he', keyHolder: 'keys.internal:7000', keyHolderTls: khTls() }),
    );
    expect(e.keyHolder?.address).to.equal('keys.internal:7000');
    expect(e.keyHolder?.tls.rootCa.toString()).to.equal('-----BEGIN ca.pem-----\n');
  });

  it('refuses unknown and inconsistent options, naming the field', () => {
    const cases: [unknown, string, RegExp][] = [
      [{ ...base, scheme: 'paillier' }, 'scheme', /must be "masking" or "he", got "paillier"/],
      [{ ...base, keyHolder: 'a:1' }, 'keyHolder', /applies to scheme "he" only/],
      [
        { ...base, scheme: 'masking', keyHolderTls: { rootCa: 'x' } },
        'keyHolderTls',
        /applies to scheme "he" only/,
      ],
      [{ ...base, scheme: 'he', mode: 'secagg+' }, 'mode', /applies to scheme "masking" only/],
      [{ ...base, scheme: 'he', secAggPlus: {} }, 'secAggPlus', /applies to scheme "masking" only/],
      [{ ...base, scheme: 'he', keyHolder: 'http://keys' }, 'keyHolder', /must be HOST:PORT/],
      [
        { ...base, scheme: 'he', keyHolder: 'a:1' },
        'keyHolderTls',
        /is required with scheme "he": the key holder serves mutual TLS only/,
      ],
      [
        { ...base, scheme: 'he', keyHolderTls: { rootCa: 'ca.pem' } },
        'keyHolderTlsDir',
        /names the key holder's identity directory exactly when keyHolder is absent/,
      ],
      [
        {
          ...base,
          scheme: 'he',
          keyHolder: 'a:1',
          keyHolderTls: { rootCa: 'ca.pem' },
          keyHolderTlsDir: '/d',
        },
        'keyHolderTlsDir',
        /exactly when keyHolder is absent/,
      ],
      [
        { ...base, scheme: 'he', keyHolder: 'a:1', keyHolderTls: { rootCa: 'ca.pem', cert: 'c.pem' } },
        'keyHolderTls',
        /needs cert and key \(the aggregator's job identity\)/,
      ],
      [
        { ...base, scheme: 'he', keyHolder: 'a:1', keyHolderTls: { root: 'x' } },
        'keyHolderTls.root',
        /unknown option/,
      ],
      [{ ...base, deadlinesMs: { ENCRYPTED_INPUT: 5 } }, 'deadlinesMs.ENCRYPTED_INPUT', /scheme "he" only/],
      [{ ...base, deadlinesMs: { MASKED: 5 } }, 'deadlinesMs.MASKED', /unknown option/],
      [{ ...base, keyholder: 'a:1' }, 'keyholder', /unknown option/],
    ];
    for (const [cfg, field, msg] of cases) {
      const err = refused(() => loadAggregatorConfig(write(cfg)));
      expect(err.field, JSON.stringify(cfg)).to.equal(field);
      expect(err.message).to.match(msg);
    }
  });

  it('reads the key holder config and refuses a floor below 2', () => {
    expect(loadKeyHolderConfig(write({})).server).to.deep.equal({ address: '127.0.0.1:0', minInputs: 2 });
    expect(loadKeyHolderConfig(write({ minInputs: 3, address: '0.0.0.0:7000' })).server).to.deep.equal({
      address: '0.0.0.0:7000',
      minInputs: 3,
    });
    expect(refused(() => loadKeyHolderConfig(write({ minInputs: 1 }))).field).to.equal('minInputs');
    expect(refused(() => loadKeyHolderConfig(write({ threshold: 2 }))).field).to.equal('threshold');
    expect(
      refused(() => loadKeyHolderConfig(write({ tls: { cert: 'nope.pem', key: 'k.pem' } }))).field,
    ).to.equal('tls.cert');
    const only = { cert: pemFile('kh.pem'), key: pemFile('kh.key') };
    const noCa = refused(() => loadKeyHolderConfig(write({ tls: only })));
    expect(noCa.field).to.equal('tls.clientCa');
    expect(noCa.message).to.match(/is required: the job's CA/);
    const withCa = loadKeyHolderConfig(write({ tls: { ...only, clientCa: pemFile('ca.pem') } }));
    expect(withCa.server.identity?.ca.toString()).to.equal('-----BEGIN ca.pem-----\n');
  });
});
