// Membership and the round barrier: which of the workers joined to secure-agg's AggregatorServer
// belong to this job (worker-<index>, index < workers.count, one id per index), how many records
// each declared for its shard, and when a round may open (all workers awaiting, or at least
// max(t, 2) after a grace period). Mechanism only: the release gate decides what may be released.
//
// The barrier sleeps on the server's awaitingChange() (woken when a worker starts or stops
// awaiting a round) until the next moment its decision can change; an AbortSignal ends the wait.

/** What the barrier reads from the aggregator service (AggregatorServer implements it). */
export interface AwaitingView {
  /** Ids of the joined workers now awaiting a round. */
  awaiting(): string[];
  /** Records in each joined worker's shard, as it declared at Join. */
  shardSizes(): Map<string, number>;
  /** Resolves when a worker next starts or stops awaiting, or after `timeoutMs`. */
  awaitingChange(timeoutMs: number): Promise<void>;
}

export interface MembershipOptions {
  /** workers.count: indices 0 … count − 1 belong to the job. */
  count: number;
  /** secureAggregation.quorum t (the fewest contributors a release may have): a round needs max(t, 2) members. */
  quorum: number;
  /** Wait at most this long for all workers before the first round (default 120 s). */
  startupTimeoutMs?: number;
  /** After the first waiting worker, wait this long for the rest before opening with fewer (default 3 s). */
  joinGraceMs?: number;
  /** Told once about each id that is refused (another id holds its index). */
  onRefused?: (id: string, err: MembershipError) => void;
}

/** A worker id that cannot be a member: its index is held by another id. */
export class MembershipError extends Error {
  constructor(
    message: string,
    readonly workerId: string,
    readonly index: number,
  ) {
    super(message);
    this.name = 'MembershipError';
  }
}

const WORKER_ID = /^worker-(\d+)$/;
/** setTimeout's largest delay; a longer one fires at once. */
const MAX_WAIT_MS = 2 ** 31 - 1;

export class Membership {
  readonly #o: Required<Omit<MembershipOptions, 'onRefused'>> & Pick<MembershipOptions, 'onRefused'>;
  /** The id that registered each index first; it holds the index for the job. */
  readonly #idOf = new Map<number, string>();
  readonly #indexOf = new Map<string, number>();
  readonly #refused = new Set<string>();
  /** Records per shard (worker index), as each worker declared at Join; kept after dropouts. */
  readonly #shardSizes = new Map<number, number>();

  constructor(o: MembershipOptions) {
    this.#o = { startupTimeoutMs: 120_000, joinGraceMs: 3000, ...o };
  }

  /** Members a round needs: max(t, 2). */
  get needed(): number {
    return Math.max(this.#o.quorum, 2);
  }

  /**
   * Registers `id` as the member for its index and returns the index; undefined when the id is not
   * one of this job's workers (not worker-<index>, or the index is out of range). Throws
   * MembershipError when another id already holds that index (worker-1 and worker-01): one shard
   * has one member, or its records would be counted twice.
   */
  register(id: string): number | undefined {
    const known = this.#indexOf.get(id);
    if (known !== undefined) return known;
    const m = WORKER_ID.exec(id);
    const index = m ? Number(m[1]) : -1;
    if (!(index >= 0 && index < this.#o.count)) return undefined;
    const holder = this.#idOf.get(index);
    if (holder !== undefined) {
      throw new MembershipError(
        `worker id '${id}' claims shard ${index}, which '${holder}' already holds; each index has one member (worker ids come from the job's certificates: use --tls-dir)`,
        id,
        index,
      );
    }
    this.#idOf.set(index, id);
    this.#indexOf.set(id, index);
    return index;
  }

  /** The shard index of a registered member; throws for an id that never registered. */
  indexOf(id: string): number {
    const i = this.#indexOf.get(id);
    if (i === undefined) throw new Error(`'${id}' is not a registered member of this job`);
    return i;
  }

  /** Records per shard index, as declared at Join (kept after a worker drops out). */
  get shardSizes(): ReadonlyMap<number, number> {
    return this.#shardSizes;
  }

  /** Records in all shards declared so far. */
  totalRecords(): number {
    return [...this.#shardSizes.values()].reduce((x, y) => x + y, 0);
  }

  /** The largest shard declared so far (at least 1). */
  maxShard(): number {
    return Math.max(1, ...this.#shardSizes.values());
  }

  /** This job's workers now awaiting a round, by index; records their shard sizes. */
  awaitingMembers(view: AwaitingView): { id: string; index: number }[] {
    const sizes = view.shardSizes();
    const out: { id: string; index: number }[] = [];
    for (const id of view.awaiting()) {
      let index: number | undefined;
      try {
        index = this.register(id);
      } catch (err) {
        if (!(err instanceof MembershipError)) throw err;
        if (!this.#refused.has(id)) {
          this.#refused.add(id);
          this.#o.onRefused?.(id, err);
        }
        continue;
      }
      if (index === undefined) continue;
      this.#shardSizes.set(index, sizes.get(id) ?? 0);
      out.push({ id, index });
    }
    return out.sort((a, b) => a.index - b.index);
  }

  /**
   * The round barrier: resolves with the ids of the members of the next round (by index) once all
   * workers await one, or once at least max(t, 2) do and the grace period has passed (the first
   * round: startupTimeoutMs since the call; later rounds: joinGraceMs since the first awaited).
   * The first round fails when fewer than max(t, 2) joined within 4 × startupTimeoutMs. Rejects
   * with `signal`'s reason when it is aborted.
   */
  async gather(view: AwaitingView, first: boolean, signal?: AbortSignal): Promise<string[]> {
    const n = this.#o.count;
    const need = this.needed;
    const grace = first ? this.#o.startupTimeoutMs : this.#o.joinGraceMs;
    const hardLimit = 4 * this.#o.startupTimeoutMs;
    const startedAt = Date.now();
    let firstSeen: number | undefined;
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(signal!.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    aborted.catch(() => {});
    try {
      for (;;) {
        signal?.throwIfAborted();
        const ws = this.awaitingMembers(view);
        const k = ws.length;
        const now = Date.now();
        if (k > 0 && firstSeen === undefined) firstSeen = now;
        const since = first ? startedAt : (firstSeen ?? now);
        if (k >= n || (k >= need && now - since >= grace)) return ws.map((w) => w.id);
        if (first && now - startedAt > hardLimit) {
          throw new Error(
            `only ${k} of ${n} workers joined; at least ${need} are needed (secureAggregation.quorum)`,
          );
        }
        // Nothing but a change in who awaits, or one of these instants, can change the decision.
        let wait = MAX_WAIT_MS;
        if (k >= need) wait = Math.min(wait, grace - (now - since));
        if (first) wait = Math.min(wait, hardLimit - (now - startedAt) + 1);
        await Promise.race([view.awaitingChange(Math.max(1, wait)), aborted]);
      }
    } finally {
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }
}
