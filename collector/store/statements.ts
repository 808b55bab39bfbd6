import type { Database as Db, Statement } from 'better-sqlite3';

/** Every statement the store runs, prepared once when it opens. */
export type Statements = ReturnType<typeof prepare>;

export function prepare(db: Db) {
  const p = (sql: string): Statement => db.prepare(sql);
  const agentByIdJoin = 'JOIN agents a ON a.agent_key = t.agent_key';
  const transitionCols = `a.agent_id, t.agent, t.target, t.kind, t.from_class, t.to_class,
    t.from_state, t.to_state, t.at_ms, t.result_seq, t.batch_seq`;
  return {
    agent: p(
      `SELECT agent_key, name, labels, accepted_seq, dropped_batches, dropped_results
       FROM agents WHERE agent_id = ?`,
    ),
    agentKey: p('SELECT agent_key FROM agents WHERE agent_id = ?'),
    binding: p(
      `SELECT b.name, b.agent_id, b.credential, b.exact, b.bound_at_ms, a.last_seen_ms
       FROM bindings b LEFT JOIN agents a ON a.agent_id = b.agent_id WHERE b.name = ?`,
    ),
    upsertBinding: p(
      `INSERT INTO bindings (name, agent_id, credential, exact, bound_at_ms) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET agent_id = excluded.agent_id,
         credential = excluded.credential, exact = excluded.exact, bound_at_ms = excluded.bound_at_ms`,
    ),
    credentialByDigest: p('SELECT id, agent, agent_id FROM credentials WHERE digest = ?'),
    deleteCredentials: p('DELETE FROM credentials WHERE agent = ?'),
    insertCredential: p(
      `INSERT INTO credentials (id, digest, agent, agent_id, issued_by, issued_at_ms)
       VALUES (?, ?, ?, ?, ?, ?)`,
    ),
    insertAgent: p(
      `INSERT INTO agents (agent_id, name, labels, first_seen_ms, last_seen_ms, accepted_seq,
         dropped_batches, dropped_results) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    updateAgent: p(
      `UPDATE agents SET last_seen_ms = max(last_seen_ms, ?), accepted_seq = ?,
         dropped_batches = ?, dropped_results = ?, labels = ? WHERE agent_key = ?`,
    ),
    insertBatch: p(
      `INSERT INTO batches (agent_key, seq, received_at_ms, created_at_ms, results, summaries,
         first_result_id, summaries_json, body, body_gzip) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    insertResult: p(
      `INSERT INTO results (agent_key, seq, idx, target, kind, class, started_at_ms, record)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    insertTransition: p(
      `INSERT INTO transitions (agent_key, agent, target, kind, from_class, to_class,
         from_state, to_state, at_ms, result_seq, batch_seq)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    agents: p(
      `SELECT agent_id, name, labels, first_seen_ms, last_seen_ms, accepted_seq,
         dropped_batches, dropped_results FROM agents ORDER BY last_seen_ms, agent_key`,
    ),
    transitionsSince: p(
      `SELECT ${transitionCols} FROM transitions t ${agentByIdJoin}
       WHERE t.at_ms >= ? ORDER BY t.id LIMIT ?`,
    ),
    pathResults: p(
      `SELECT r.record FROM results r
       WHERE r.agent_key = (SELECT agent_key FROM agents WHERE name = ?
                            ORDER BY last_seen_ms DESC, agent_key DESC LIMIT 1)
         AND r.target = ?
       ORDER BY r.id DESC LIMIT ?`,
    ),
    recentResults: p(
      `SELECT a.agent_id, r.seq, r.record FROM results r JOIN agents a ON a.agent_key = r.agent_key
       WHERE r.started_at_ms >= ? ORDER BY r.started_at_ms, r.id LIMIT ?`,
    ),
    lastPathTransitions: p(
      `SELECT ${transitionCols} FROM transitions t ${agentByIdJoin}
       WHERE t.id IN (
         SELECT max(t2.id) FROM transitions t2 JOIN agents a2 ON a2.agent_key = t2.agent_key
         WHERE a2.agent_id = ? AND t2.batch_seq < ? AND t2.kind <> 'agent'
         GROUP BY t2.target)
       ORDER BY t.id`,
    ),
    pathTransitions: p(
      `SELECT ${transitionCols} FROM transitions t ${agentByIdJoin}
       WHERE t.agent_key IN (SELECT agent_key FROM agents WHERE name = ?) AND t.target = ?
       ORDER BY t.id DESC LIMIT ?`,
    ),
    lastAgentTransition: p(
      `SELECT ${transitionCols} FROM transitions t ${agentByIdJoin}
       WHERE a.agent_id = ? AND t.kind = 'agent' ORDER BY t.id DESC LIMIT 1`,
    ),
    firstSeqSince: p(
      `SELECT min(b.seq) FROM batches b JOIN agents a ON a.agent_key = b.agent_key
       WHERE a.agent_id = ? AND b.received_at_ms >= ?`,
    ),
    batchReceivedAt: p(
      `SELECT b.received_at_ms FROM batches b JOIN agents a ON a.agent_key = b.agent_key
       WHERE a.agent_id = ? AND b.seq = ?`,
    ),
    replayHead: p(
      `SELECT a.name, b.seq, b.received_at_ms, b.results, b.summaries, b.first_result_id,
         b.summaries_json, b.body, b.body_gzip
       FROM batches b JOIN agents a ON a.agent_key = b.agent_key
       WHERE a.agent_id = ? AND b.seq >= ? ORDER BY b.seq`,
    ),
    batchResults: p('SELECT record FROM results WHERE id >= ? AND id < ? ORDER BY id'),
    clearCheckpointAgents: p('DELETE FROM checkpoint_agents'),
    clearCheckpointPaths: p('DELETE FROM checkpoint_paths'),
    insertCheckpointAgent: p('INSERT INTO checkpoint_agents (agent_id, seq) VALUES (?, ?)'),
    upsertCheckpointAgent: p(
      'INSERT INTO checkpoint_agents (agent_id, seq) VALUES (?, ?) ON CONFLICT (agent_id) DO UPDATE SET seq = excluded.seq',
    ),
    deleteCheckpointPathsOf: p('DELETE FROM checkpoint_paths WHERE agent = ?'),
    insertCheckpointPath: p('INSERT INTO checkpoint_paths (agent, target, state) VALUES (?, ?, ?)'),
    checkpointAgents: p('SELECT agent_id, seq FROM checkpoint_agents'),
    checkpointPaths: p('SELECT state FROM checkpoint_paths'),
    oldBatches: p(
      `SELECT agent_key, seq, results, summaries, first_result_id
       FROM batches WHERE received_at_ms < ? ORDER BY received_at_ms LIMIT ?`,
    ),
    deleteResults: p('DELETE FROM results WHERE id >= ? AND id < ?'),
    deleteBatch: p('DELETE FROM batches WHERE agent_key = ? AND seq = ?'),
    deleteOldTransitions: p(
      `DELETE FROM transitions WHERE id IN (
         SELECT id FROM transitions WHERE at_ms < ? ORDER BY at_ms LIMIT ?)`,
    ),
    ...incidentStatements(p),
  };
}

/** The incidents' and the alert outbox's statements (store/incidents.ts, store/outbox.ts). */
function incidentStatements(p: (sql: string) => Statement) {
  return {
    insertIncident: p(
      `INSERT INTO incidents (opened_at_ms, first_failure_ms, kind, summary, components)
       VALUES (?, ?, ?, ?, ?)`,
    ),
    updateIncident: p(
      `UPDATE incidents SET first_failure_ms = ?, kind = ?, summary = ?, components = ?,
         closed_at_ms = ? WHERE id = ?`,
    ),
    insertIncidentEvent: p(
      'INSERT INTO incident_events (incident_id, at_ms, type, diagnosis) VALUES (?, ?, ?, ?)',
    ),
    incidents: p(`SELECT * FROM incidents WHERE id < ? ORDER BY id DESC LIMIT ?`),
    incident: p('SELECT * FROM incidents WHERE id = ?'),
    openIncident: p('SELECT * FROM incidents WHERE closed_at_ms IS NULL ORDER BY id DESC LIMIT 1'),
    incidentEvents: p(
      'SELECT at_ms, type, diagnosis FROM incident_events WHERE incident_id = ? ORDER BY id',
    ),
    outboxAdd: p(
      'INSERT INTO outbox (sink, created_at_ms, next_attempt_ms, payload) VALUES (?, ?, ?, ?)',
    ),
    outboxPending: p(
      'SELECT * FROM outbox WHERE sink = ? AND dead_at_ms IS NULL ORDER BY id LIMIT ?',
    ),
    outboxDelete: p('DELETE FROM outbox WHERE id = ?'),
    outboxRetry: p(
      'UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?, last_error = ? WHERE id = ?',
    ),
    outboxDead: p(
      'UPDATE outbox SET attempts = attempts + 1, dead_at_ms = ?, last_error = ? WHERE id = ?',
    ),
    deadLetters: p(
      'SELECT * FROM outbox WHERE dead_at_ms IS NOT NULL ORDER BY dead_at_ms DESC, id DESC LIMIT ?',
    ),
  };
}
