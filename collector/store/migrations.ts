import type { Database as Db } from 'better-sqlite3';
import { ConfigError } from '../../lib/errors.js';

/**
 * The store's schema, as migrations keyed by `PRAGMA user_version`: add one at the end of
 * `migrations`, never change one that has shipped.
 */
const migrations: readonly string[] = [
  // 1: the first schema.
  `
  CREATE TABLE agents (
    agent_key INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    accepted_seq INTEGER NOT NULL,
    dropped_batches INTEGER NOT NULL DEFAULT 0,
    dropped_results INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE batches (
    agent_key INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    results INTEGER NOT NULL,
    summaries INTEGER NOT NULL,
    first_result_id INTEGER,
    summaries_json TEXT,
    PRIMARY KEY (agent_key, seq)
  ) WITHOUT ROWID;
  CREATE INDEX batches_received ON batches (received_at_ms);
  CREATE INDEX batches_agent_received ON batches (agent_key, received_at_ms);
  CREATE TABLE results (
    id INTEGER PRIMARY KEY,
    agent_key INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    class TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    record TEXT NOT NULL
  );
  CREATE INDEX results_started ON results (started_at_ms);
  CREATE TABLE transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_key INTEGER NOT NULL,
    agent TEXT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    from_class TEXT,
    to_class TEXT,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    result_seq INTEGER,
    batch_seq INTEGER NOT NULL
  );
  CREATE INDEX transitions_at ON transitions (at_ms);
  CREATE INDEX transitions_agent ON transitions (agent_key, batch_seq);
  CREATE TABLE checkpoint_agents (
    agent_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE checkpoint_paths (
    agent TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (agent, target)
  ) WITHOUT ROWID;
  `,
  // 2: incidents and their timelines.
  `
  CREATE TABLE incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    opened_at_ms INTEGER NOT NULL,
    first_failure_ms INTEGER NOT NULL,
    closed_at_ms INTEGER,
    kind TEXT NOT NULL,
    summary TEXT NOT NULL,
    components TEXT NOT NULL
  );
  CREATE INDEX incidents_open ON incidents (closed_at_ms);
  CREATE TABLE incident_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    at_ms INTEGER NOT NULL,
    type TEXT NOT NULL,
    diagnosis TEXT NOT NULL
  );
  CREATE INDEX incident_events_incident ON incident_events (incident_id, id);
  CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    payload TEXT NOT NULL,
    last_error TEXT,
    dead_at_ms INTEGER
  );
  CREATE INDEX outbox_sink ON outbox (sink, dead_at_ms, id);
  `,
  // 3: a batch's body as received (its summaries are read from it).
  `
  ALTER TABLE batches ADD COLUMN body BLOB;
  ALTER TABLE batches ADD COLUMN body_gzip INTEGER NOT NULL DEFAULT 0;
  `,
  // 4: each agent name bound to one agent id and the credential that sent it; per-agent
  // credentials issued by enrolment (SHA-256 digests only). A store from before binds each
  // name to the id it heard from last, by no known credential ('').
  `
  CREATE TABLE IF NOT EXISTS bindings (
    name TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    credential TEXT NOT NULL,
    exact INTEGER NOT NULL,
    bound_at_ms INTEGER NOT NULL
  );
  INSERT OR IGNORE INTO bindings (name, agent_id, credential, exact, bound_at_ms)
    SELECT a.name, a.agent_id, '', 0, a.first_seen_ms FROM agents a
    WHERE a.agent_key = (SELECT b.agent_key FROM agents b WHERE b.name = a.name
                         ORDER BY b.last_seen_ms DESC, b.agent_key DESC LIMIT 1);
  CREATE TABLE IF NOT EXISTS credentials (
    id TEXT PRIMARY KEY,
    digest BLOB NOT NULL UNIQUE,
    agent TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    issued_at_ms INTEGER NOT NULL
  );
  CREATE INDEX IF NOT EXISTS credentials_agent ON credentials (agent);
  `,
  // 5: one path's newest full results (the dashboard's hover) without a scan of them all.
  `
  CREATE INDEX IF NOT EXISTS results_path ON results (agent_key, target, id);
  `,
];

/** Schema version this code writes. */
export const storeSchemaVersion = migrations.length;

/** Brings `db` to `storeSchemaVersion`; refuses a store written by a newer collector. */
export function migrate(db: Db, file: string): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > migrations.length) {
    throw new ConfigError(
      `cannot open the store ${file}: its schema version ${version} is newer than this collector's (${migrations.length}); run a newer Faultline or point dataDir elsewhere`,
      { code: 'FL_ERR_STORE' },
    );
  }
  for (let v = version; v < migrations.length; v++) {
    db.transaction(() => {
      db.exec(migrations[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}
