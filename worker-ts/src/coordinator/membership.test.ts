import { expect } from 'chai';
import { Membership, MembershipError, type AwaitingView } from './membership.js';

/** An aggregator's view the test drives: who awaits, their shard sizes, and each awaitingChange call. */
class FakeView implements AwaitingView {
  readonly ids: string[] = [];
  readonly sizes = new Map<string, number>();
  /** The timeouts of every awaitingChange call, and the wakers of those still pending. */
  readonly waits: number[] = [];
  readonly #wakers = new Set<() => void>();
  /** When set, awaitingChange resolves only when the test calls change() (never on its timeout). */
  constructor(readonly honourTimeout = true) {}

  awaiting(): string[] {
    return [...this.ids];
  }
  shardSizes(): Map<string, number> {
    return new Map(this.sizes);
  }
  awaitingChange(timeoutMs: number): Promise<void> {
    this.waits.push(timeoutMs);
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#wakers.delete(wake);
        resolve();
      };
      const timer = this.honourTimeout ? setTimeout(wake, timeoutMs) : undefined;
      this.#wakers.add(wake);
    });
  }
  join(id: string, records: number): void {
    this.ids.push(id);
    this.sizes.set(id, records);
  }
  change(): void {
    for (const w of [...this.#wakers]) w();
  }
  get pending(): number {
    return this.#wakers.size;
  }
}

describe('coordinator/membership', () => {
  it('maps worker-<index> to its index and ignores ids that are not workers of this job', () => {
    const m = new Membership({ count: 3, quorum: 2 });
    expect(m.register('worker-2')).to.equal(2);
    expect(m.register('worker-2')).to.equal(2);
    expect(m.register('worker-3')).to.equal(undefined);
    expect(m.register('aggregator')).to.equal(undefined);
    expect(m.indexOf('worker-2')).to.equal(2);
    expect(() => m.indexOf('worker-0')).to.throw("'worker-0' is not a registered member of this job");
  });

  it('refuses a second id for an index another id holds', () => {
    const m = new Membership({ count: 3, quorum: 2 });
    m.register('worker-1');
    let err: unknown;
    try {
      m.register('worker-01');
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(MembershipError);
    expect((err as MembershipError).message).to.equal(
      "worker id 'worker-01' claims shard 1, which 'worker-1' already holds; each index has one member (worker ids come from the job's certificates: use --tls-dir)",
    );
    expect((err as MembershipError).index).to.equal(1);
    expect(m.indexOf('worker-1')).to.equal(1);
    expect(() => m.indexOf('worker-01')).to.throw(/not a registered member/);
  });

  it('leaves a refused id out of the round and reports it once; records the members’ shard sizes', () => {
    const refused: string[] = [];
    const m = new Membership({ count: 3, quorum: 2, onRefused: (id) => refused.push(id) });
    const view = new FakeView();
    view.join('worker-1', 40);
    view.join('worker-01', 1000);
    view.join('worker-0', 60);
    view.join('stranger', 5);
    expect(m.awaitingMembers(view)).to.deep.equal([
      { id: 'worker-0', index: 0 },
      { id: 'worker-1', index: 1 },
    ]);
    m.awaitingMembers(view);
    expect(refused).to.deep.equal(['worker-01']);
    expect([...m.shardSizes]).to.deep.equal([
      [1, 40],
      [0, 60],
    ]);
    expect(m.totalRecords()).to.equal(100);
    expect(m.maxShard()).to.equal(60);
  });

  it('opens at once when every worker awaits, without waiting on the view', async () => {
    const m = new Membership({ count: 3, quorum: 2 });
    const view = new FakeView();
    for (const i of [2, 0, 1]) view.join(`worker-${i}`, 10);
    expect(await m.gather(view, true)).to.deep.equal(['worker-0', 'worker-1', 'worker-2']);
    expect(view.waits).to.deep.equal([]);
  });

  it('wakes on a change in who awaits, not on a polling interval', async () => {
    const m = new Membership({ count: 3, quorum: 2, startupTimeoutMs: 3_600_000 });
    const view = new FakeView(false);
    view.join('worker-0', 10);
    const gathered = m.gather(view, true);
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(view.pending).to.equal(1);
    // Below quorum in the first round: the only deadline is the startup limit (4 × 1 h).
    expect(view.waits[0]).to.be.greaterThan(3 * 3_600_000);
    view.join('worker-1', 10);
    view.join('worker-2', 10);
    view.change();
    expect(await gathered).to.deep.equal(['worker-0', 'worker-1', 'worker-2']);
  });

  it('after the first round, opens with a quorum once the join grace has passed, sleeping exactly until then', async () => {
    const m = new Membership({ count: 3, quorum: 2, joinGraceMs: 30 });
    const view = new FakeView();
    view.join('worker-2', 10);
    view.join('worker-0', 10);
    expect(await m.gather(view, false)).to.deep.equal(['worker-0', 'worker-2']);
    expect(view.waits.length).to.be.greaterThan(0);
    for (const w of view.waits) expect(w).to.be.within(1, 30);
  });

  it('fails the first round when fewer than max(t, 2) joined within 4 × startupTimeoutMs', async () => {
    const m = new Membership({ count: 3, quorum: 2, startupTimeoutMs: 2 });
    const view = new FakeView();
    view.join('worker-1', 10);
    let err: unknown;
    await m.gather(view, true).catch((e: unknown) => (err = e));
    expect((err as Error).message).to.equal(
      'only 1 of 3 workers joined; at least 2 are needed (secureAggregation.quorum)',
    );
  });

  it('ends the wait when its signal is aborted, with the signal’s reason', async () => {
    const m = new Membership({ count: 3, quorum: 2 });
    const view = new FakeView(false);
    const ac = new AbortController();
    const gathered = m.gather(view, false, ac.signal);
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(view.pending).to.equal(1);
    const reason = new Error('closed');
    ac.abort(reason);
    let err: unknown;
    await gathered.catch((e: unknown) => (err = e));
    expect(err).to.equal(reason);
    view.change();
    // An already aborted signal ends it before the view is read.
    const again = await m.gather(view, false, ac.signal).catch((e: unknown) => e);
    expect(again).to.equal(reason);
  });
});
