import { expect } from 'chai';
import { AccountantPool } from './accountant-pool.js';
import { plannedEpsilon } from './accounting.js';
import { ApiError } from '../edge/errors.js';

const rdp = { samplingRate: 0.02, noiseMultiplier: 1.1, delta: 1e-5, rounds: 100 };
// The continuous reference (PLD) over this many rounds takes seconds: long enough to be cut by a
// short deadline.
const slowPld = { ...rdp, rounds: 400, accountant: 'pld' as const, continuousReference: true };

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('api/accountant-pool', function () {
  this.timeout(60_000);
  let pool: AccountantPool | undefined;
  afterEach(async () => pool?.close());

  it('computes in a thread what accounting computes inline', async () => {
    pool = new AccountantPool({ threads: 1 });
    expect(await pool.plannedEpsilon(rdp)).to.equal(await plannedEpsilon(rdp));
    expect(await pool.plannedEpsilon({ ...rdp, noiseMultiplier: 0 })).to.equal(Infinity);
  });

  it('ends a task at its deadline (DEADLINE_EXCEEDED), replaces the thread and serves the queue', async () => {
    pool = new AccountantPool({ threads: 1, taskTimeoutMs: 300 });
    const slow = pool.plannedEpsilon(slowPld);
    const queued = pool.plannedEpsilon(rdp);
    const err = await rejection(slow);
    expect(err).to.be.instanceOf(ApiError);
    expect((err as ApiError).code).to.equal('DEADLINE_EXCEEDED');
    expect((err as ApiError).message).to.match(/took longer than 300 ms/);
    expect(await queued).to.equal(await plannedEpsilon(rdp));
  });

  it('keeps a thread for quick work while PLD tasks hold the others', async () => {
    pool = new AccountantPool({ threads: 2 });
    const ctl = new AbortController();
    const pld = [pool.plannedEpsilon(slowPld, ctl.signal), pool.plannedEpsilon(slowPld, ctl.signal)];
    // The second PLD task waits; the quick one after it runs on the reserved thread.
    expect(await pool.plannedEpsilon(rdp)).to.equal(await plannedEpsilon(rdp));
    expect(pool.load).to.deep.equal({ running: 1, queued: 1 });
    ctl.abort(new ApiError('CANCELLED', 'done'));
    await Promise.allSettled(pld);
  });

  it("honours the caller's signal, queued or running", async () => {
    pool = new AccountantPool({ threads: 1 });
    const ctl = new AbortController();
    const running = pool.plannedEpsilon(slowPld, ctl.signal);
    const queuedCtl = new AbortController();
    const queued = pool.plannedEpsilon(rdp, queuedCtl.signal);
    queuedCtl.abort(new ApiError('CANCELLED', 'gone'));
    expect(((await rejection(queued)) as ApiError).code).to.equal('CANCELLED');
    ctl.abort(new ApiError('DEADLINE_EXCEEDED', 'deadline of 10 ms passed'));
    expect(((await rejection(running)) as ApiError).code).to.equal('DEADLINE_EXCEEDED');
    expect(pool.load).to.deep.equal({ running: 0, queued: 0 });
    expect(await pool.plannedEpsilon(rdp)).to.be.greaterThan(0);
  });

  it('refuses more than maxQueued waiting tasks (RESOURCE_EXHAUSTED) and everything after close', async () => {
    pool = new AccountantPool({ threads: 1, maxQueued: 1 });
    const ctl = new AbortController();
    const a = pool.plannedEpsilon(slowPld, ctl.signal);
    const b = pool.plannedEpsilon(rdp, ctl.signal);
    expect(((await rejection(pool.plannedEpsilon(rdp))) as ApiError).code).to.equal('RESOURCE_EXHAUSTED');
    ctl.abort(new ApiError('CANCELLED', 'done'));
    await Promise.allSettled([a, b]);
    await pool.close();
    expect(((await rejection(pool.plannedEpsilon(rdp))) as ApiError).code).to.equal('UNAVAILABLE');
  });
});
