import { expect } from 'chai';
import { formatTable } from './table.js';

describe('formatTable', () => {
  it('aligns columns and right-aligns numbers', () => {
    const out = formatTable([
      { backend: 'tensorflow', ms: 12.3456 },
      { backend: 'cpu', ms: 1234.5 },
    ]).split('\n');
    expect(out[0]).to.equal('backend         ms');
    expect(out[2]).to.equal('tensorflow  12.346');
    expect(out[3]).to.equal('cpu         1234.5');
  });
});
