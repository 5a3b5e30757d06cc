// Job records and their events in SQLite (better-sqlite3, WAL). One server process owns a
// database file: it is opened with an exclusive lock, so a second server on the same file fails
// at start instead of corrupting state (see docs/api.md, "Replicas"). Events are appended in the
// same transaction as the log cursor they came from, which is what lets a restarted server
// continue a job's event stream with no event lost or repeated.
import Database from 'better-sqlite3';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  assertTransition,
  isTerminal,
  type Job,
  type JobEvent,
  type JobEventKind,
  type JobState,
  type ListJobsFilter,
} from './domain.js';
import { parseKeepingNonFinite, stringifyKeepingNonFinite } from '../edge/json-numbers.js';

const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  job_id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  request_id TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  display_name TEXT NOT NULL,
  state TEXT NOT NULL,
  message TEXT NOT NULL DEFAULT '',
  create_time_ms INTEGER NOT NULL,
  update_time_ms INTEGER NOT NULL,
  end_time_ms INTEGER,
  rounds_completed INTEGER NOT NULL DEFAULT 0,
  rounds_total INTEGER NOT NULL,
  epsilon REAL NOT NULL DEFAULT 0,
  delta REAL NOT NULL DEFAULT 0,
  accountant TEXT NOT NULL,
  eval_accuracy REAL,
  last_event_id INTEGER NOT NULL DEFAULT 0,
  spec_json TEXT NOT NULL,
  backend TEXT NOT NULL,
  backend_job_id TEXT NOT NULL DEFAULT '',
  backend_data TEXT NOT NULL DEFAULT '{}',
  log_cursor INTEGER NOT NULL DEFAULT 0,
  privacy_json TEXT NOT NULL DEFAULT '{}',
  UNIQUE (tenant, request_id)
);
CREATE INDEX IF NOT EXISTS jobs_by_tenant_time ON jobs (tenant, create_time_ms DESC, job_id DESC);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
CREATE TABLE IF NOT EXISTS events (
  job_id TEXT NOT NULL,
  event_id INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  kind_json TEXT NOT NULL,
  PRIMARY KEY (job_id, event_id)
) WITHOUT ROWID;
`;

interface JobRow {
  job_id: string;
  tenant: string;
  request_id: string;
  request_hash: string;
  display_name: string;
  state: JobState;
  message: string;
  create_time_ms: number;
  update_time_ms: number;
  end_time_ms: number | null;
  rounds_completed: number;
  rounds_total: number;
  epsilon: number;
  delta: number;
  accountant: string;
  eval_accuracy: number | null;
  last_event_id: number;
  spec_json: string;
  backend: string;
  backend_job_id: string;
  backend_data: string;
  log_cursor: number;
  privacy_json: string;
}

/** A job with what only the server needs: the backend handle, log cursor and privacy details. */
export interface JobRecord extends Job {
  requestHash: string;
  backend: string;
  backendData: Record<string, unknown>;
  logCursor: number;
  /** The latest privacy details the job reported (shards, accounting parameters), as JSON. */
  privacy: Record<string, unknown>;
}

function rowToRecord(r: JobRow): JobRecord {
  return {
    jobId: r.job_id,
    tenant: r.tenant,
    displayName: r.display_name,
    state: r.state,
    message: r.message,
    requestId: r.request_id,
    createTimeMs: r.create_time_ms,
    updateTimeMs: r.update_time_ms,
    endTimeMs: r.end_time_ms,
    roundsCompleted: r.rounds_completed,
    roundsTotal: r.rounds_total,
    privacySpent: { epsilon: r.epsilon, delta: r.delta, accountant: r.accountant },
    evalAccuracy: r.eval_accuracy,
    lastEventId: r.last_event_id,
    spec: JSON.parse(r.spec_json) as Record<string, unknown>,
    backendJobId: r.backend_job_id,
    requestHash: r.request_hash,
    backend: r.backend,
    backendData: JSON.parse(r.backend_data) as Record<string, unknown>,
    logCursor: r.log_cursor,
    privacy: parseKeepingNonFinite(r.privacy_json) as Record<string, unknown>,
  };
}

export class StoreLockedError extends Error {
  override name = 'StoreLockedError';
  constructor(readonly file: string) {
    super(
      `job database ${file} is in use by another tensorguard serve process; one server owns a database ` +
        '(stop the other one, or give this one its own --db)',
    );
  }
}

/** Position in a ListJobs result: the last row of the previous page. */
export interface ListCursor {
  createTimeMs: number;
  jobId: string;
}

export interface NewJob {
  tenant: string;
  requestId: string;
  requestHash: string;
  displayName: string;
  roundsTotal: number;
  accountant: string;
  delta: number;
  spec: Record<string, unknown>;
  backend: string;
}

/** Field updates that ride along with appended events. */
export interface JobUpdate {
  roundsCompleted?: number;
  epsilon?: number;
  delta?: number;
  evalAccuracy?: number;
  logCursor?: number;
  privacy?: Record<string, unknown>;
  /** The job's message without a state change (a QUEUED job's reason for waiting). */
  message?: string;
}

export class JobStore {
  private readonly db: Database.Database;
  private closed = false;

  /** Opens (creating if needed) the database at `file`; ':memory:' for tests. */
  constructor(
    readonly file: string,
    private readonly now: () => number = Date.now,
  ) {
    if (file !== ':memory:') fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.db = new Database(file);
    try {
      this.db.pragma('busy_timeout = 0');
      // Exclusive locking + WAL: the WAL index lives in heap memory (no -shm file) and the lock
      // is held from the first write until close, so a second process fails fast.
      this.db.pragma('locking_mode = EXCLUSIVE');
      this.db.pragma('journal_mode = WAL');
      // NORMAL in WAL mode survives a process crash (what restarts need); a power loss may
      // drop the last transactions, never corrupt the file.
      this.db.pragma('synchronous = NORMAL');
      this.db.exec('BEGIN IMMEDIATE; COMMIT;'); // take the lock now
      this.db.exec(SCHEMA);
      const v = this.db.prepare('SELECT value FROM meta WHERE key = ?').get('schema_version') as
        { value: string } | undefined;
      if (v === undefined) {
        this.db
          .prepare('INSERT INTO meta (key, value) VALUES (?, ?)')
          .run('schema_version', String(SCHEMA_VERSION));
      } else if (Number(v.value) !== SCHEMA_VERSION) {
        throw new Error(
          `job database ${file} has schema version ${v.value}; this server reads version ${SCHEMA_VERSION}`,
        );
      }
    } catch (err) {
      this.db.close();
      if ((err as { code?: string }).code === 'SQLITE_BUSY') throw new StoreLockedError(file);
      throw err;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  /**
   * Records a new job and its first event (QUEUED), or returns the job that `requestId`
   * already created for this tenant (`created: false`); `conflict` when that job was
   * created from a different request.
   */
  createJob(n: NewJob): { record: JobRecord; created: boolean; conflict: boolean } {
    return this.db.transaction(() => {
      const existing = this.db
        .prepare('SELECT * FROM jobs WHERE tenant = ? AND request_id = ?')
        .get(n.tenant, n.requestId) as JobRow | undefined;
      if (existing) {
        return {
          record: rowToRecord(existing),
          created: false,
          conflict: existing.request_hash !== n.requestHash,
        };
      }
      const jobId = newJobId();
      const t = this.now();
      this.db
        .prepare(
          `INSERT INTO jobs (job_id, tenant, request_id, request_hash, display_name, state, create_time_ms,
             update_time_ms, rounds_total, accountant, delta, spec_json, backend)
           VALUES (?, ?, ?, ?, ?, 'QUEUED', ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          jobId,
          n.tenant,
          n.requestId,
          n.requestHash,
          n.displayName,
          t,
          t,
          n.roundsTotal,
          n.accountant,
          n.delta,
          JSON.stringify(n.spec),
          n.backend,
        );
      this.insertEvents(
        jobId,
        0,
        [{ type: 'state_changed', state: 'QUEUED', previousState: null, message: '' }],
        t,
      );
      return { record: this.get(jobId)!, created: true, conflict: false };
    })();
  }

  /** Removes a job that never reached the backend (its submission failed), so a retry can succeed. */
  deleteJob(jobId: string): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM events WHERE job_id = ?').run(jobId);
      this.db.prepare('DELETE FROM jobs WHERE job_id = ?').run(jobId);
    })();
  }

  get(jobId: string): JobRecord | null {
    const r = this.db.prepare('SELECT * FROM jobs WHERE job_id = ?').get(jobId) as JobRow | undefined;
    return r ? rowToRecord(r) : null;
  }

  setBackendHandle(jobId: string, backendJobId: string, data: Record<string, unknown>): void {
    this.db
      .prepare('UPDATE jobs SET backend_job_id = ?, backend_data = ?, update_time_ms = ? WHERE job_id = ?')
      .run(backendJobId, JSON.stringify(data), this.now(), jobId);
  }

  /** Jobs not yet in a terminal state, oldest first (the server resumes following them). */
  activeJobs(): JobRecord[] {
    return (
      this.db
        .prepare("SELECT * FROM jobs WHERE state IN ('QUEUED', 'RUNNING') ORDER BY create_time_ms, job_id")
        .all() as JobRow[]
    ).map(rowToRecord);
  }

  /** A tenant's jobs, newest first, after `cursor`; returns up to `limit` + whether more exist. */
  list(
    tenant: string,
    filter: ListJobsFilter,
    limit: number,
    cursor: ListCursor | null,
  ): { jobs: JobRecord[]; more: boolean } {
    const where = ['tenant = ?'];
    const args: (string | number)[] = [tenant];
    if (filter.states.length > 0) {
      where.push(`state IN (${filter.states.map(() => '?').join(', ')})`);
      args.push(...filter.states);
    }
    if (filter.createTimeFromMs !== null) {
      where.push('create_time_ms >= ?');
      args.push(filter.createTimeFromMs);
    }
    if (filter.createTimeToMs !== null) {
      where.push('create_time_ms < ?');
      args.push(filter.createTimeToMs);
    }
    if (cursor) {
      where.push('(create_time_ms < ? OR (create_time_ms = ? AND job_id < ?))');
      args.push(cursor.createTimeMs, cursor.createTimeMs, cursor.jobId);
    }
    const rows = this.db
      .prepare(
        `SELECT * FROM jobs WHERE ${where.join(' AND ')} ORDER BY create_time_ms DESC, job_id DESC LIMIT ?`,
      )
      .all(...args, limit + 1) as JobRow[];
    return { jobs: rows.slice(0, limit).map(rowToRecord), more: rows.length > limit };
  }

  /**
   * Appends events to a job with field updates, in one transaction; a state_changed kind also
   * moves the job's state (and throws on an illegal transition). Nothing is appended to a job
   * that is already terminal: late log lines of a cancelled job are dropped there. Returns the
   * stored events.
   */
  append(jobId: string, kinds: JobEventKind[], update: JobUpdate = {}): JobEvent[] {
    return this.db.transaction(() => {
      const job = this.get(jobId);
      if (!job) throw new Error(`job ${jobId} is not in the store`);
      if (isTerminal(job.state)) return [];
      const t = this.now();
      let state = job.state;
      let message = job.message;
      for (const k of kinds) {
        if (k.type === 'state_changed') {
          assertTransition(state, k.state, jobId);
          k.previousState = state;
          state = k.state;
          message = k.message;
        }
      }
      if (update.message !== undefined && !kinds.some((k) => k.type === 'state_changed'))
        message = update.message;
      const events = this.insertEvents(jobId, job.lastEventId, kinds, t);
      this.db
        .prepare(
          `UPDATE jobs SET state = ?, message = ?, update_time_ms = ?, end_time_ms = ?,
             rounds_completed = ?, epsilon = ?, delta = ?, eval_accuracy = ?, last_event_id = ?,
             log_cursor = ?, privacy_json = ?
           WHERE job_id = ?`,
        )
        .run(
          state,
          message,
          t,
          isTerminal(state) ? t : null,
          update.roundsCompleted ?? job.roundsCompleted,
          update.epsilon ?? job.privacySpent.epsilon,
          update.delta ?? job.privacySpent.delta,
          update.evalAccuracy ?? job.evalAccuracy,
          job.lastEventId + kinds.length,
          update.logCursor ?? job.logCursor,
          stringifyKeepingNonFinite(update.privacy ?? job.privacy),
          jobId,
        );
      return events;
    })();
  }

  private insertEvents(jobId: string, lastId: number, kinds: JobEventKind[], t: number): JobEvent[] {
    const stmt = this.db.prepare(
      'INSERT INTO events (job_id, event_id, time_ms, kind_json) VALUES (?, ?, ?, ?)',
    );
    if (lastId === 0)
      this.db.prepare('UPDATE jobs SET last_event_id = ? WHERE job_id = ?').run(kinds.length, jobId);
    return kinds.map((k, i) => {
      const eventId = lastId + i + 1;
      stmt.run(jobId, eventId, t, stringifyKeepingNonFinite(k));
      return { eventId, jobId, timeMs: t, ...k };
    });
  }

  /** Up to `limit` events of a job with id > afterId, in order. */
  eventsAfter(jobId: string, afterId: number, limit: number): JobEvent[] {
    const rows = this.db
      .prepare(
        'SELECT event_id, time_ms, kind_json FROM events WHERE job_id = ? AND event_id > ? ORDER BY event_id LIMIT ?',
      )
      .all(jobId, afterId, limit) as { event_id: number; time_ms: number; kind_json: string }[];
    return rows.map((r) => ({
      eventId: r.event_id,
      jobId,
      timeMs: r.time_ms,
      ...(parseKeepingNonFinite(r.kind_json) as JobEventKind),
    }));
  }
}

/** "job-" + 26 lowercase base32 characters (130 random bits). */
export function newJobId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  const bytes = crypto.randomBytes(26);
  let s = 'job-';
  for (const b of bytes) s += alphabet[b & 31];
  return s;
}
