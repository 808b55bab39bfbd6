import type { Diagnosis, Hypothesis } from '../wire/diagnosis.js';
import { hypothesisKey } from './incidents.js';
import type { IncidentDetail } from './store/incidents.js';
import type { Transition } from './paths/checkpoint.js';

/**
 * The postmortem draft of an incident, in Markdown, in the shape of a classic postmortem:
 * issue summary (duration, impact), timeline, root cause hint with its evidence, what was
 * ruled out, and space for what people add (corrective measures, lessons).
 *
 * `transitions` are the path and agent state changes recorded between the first failure and
 * the recovery: they give every agent's own view — also of agents that were cut off and
 * delivered their spooled results only after the partition healed.
 */

const maxAgentsListed = 50;
const maxExamples = 5;

function utc(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z');
}

/** `1 h 2 min`, `3 min 20 s`, `45 s`. */
export function humanDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return sec > 0 ? `${m} min ${sec} s` : `${m} min`;
  return `${sec} s`;
}

function isDiagnosis(x: unknown): x is Diagnosis {
  return (
    typeof x === 'object' &&
    x !== null &&
    Array.isArray((x as Diagnosis).hypotheses) &&
    Array.isArray((x as Diagnosis).ruledOut)
  );
}

function failingPaths(h: Hypothesis): number {
  let n = 0;
  for (const [cls, count] of Object.entries(h.evidence.counts)) if (cls !== 'ok') n += count;
  return n;
}

function describeHypothesis(h: Hypothesis): string {
  const cut =
    h.cutLabel === undefined ? '' : ` (cut at ${h.cutLabel.key}=${h.cutLabel.values.join(', ')})`;
  return `\`${h.kind}\`${cut}: ${h.summary}`;
}

function escapeCell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/**
 * The components each agent probes (component → agent names), from the path matrix: with the
 * transitions it tells which agents reached a component throughout the incident.
 */
export type ComponentViewers = ReadonlyMap<string, readonly string[]>;

/**
 * The root cause hint: the diagnosis whose leading hypothesis held longest, weighed by the
 * failing paths it explained (failing path-seconds) — not the last one, which may be the
 * aftermath (late spooled failures read just before the recovery, agents still silent from a
 * cut that healed: they explain no failing path).
 */
function longestHeld(incident: IncidentDetail, nowMs: number): Diagnosis | undefined {
  const endForHold = incident.closedAtMs ?? nowMs;
  let last: Diagnosis | undefined;
  let longestMs = -1;
  const held = new Map<string, number>();
  for (const [i, e] of incident.events.entries()) {
    const d = e.diagnosis;
    if (!isDiagnosis(d) || d.healthy || d.hypotheses.length === 0) continue;
    const key = hypothesisKey(d.hypotheses[0]!);
    const untilMs = incident.events[i + 1]?.atMs ?? endForHold;
    // A leader that explains no failing path (a silent agent) weighs 1 % of one that
    // explains one: it is the cause only when nothing failed.
    const weight = Math.max(0.01, failingPaths(d.hypotheses[0]!));
    const total = (held.get(key) ?? 0) + Math.max(0, untilMs - e.atMs) * weight;
    held.set(key, total);
    if (total > longestMs || (total === longestMs && last !== undefined)) {
      longestMs = total;
      last = d;
    }
  }
  return last;
}

/** The peak: the snapshot whose hypotheses explained the most failing paths. */
function peakOf(incident: IncidentDetail): { peak?: Diagnosis; peakPaths: number } {
  let peak: Diagnosis | undefined;
  let peakPaths = -1;
  for (const e of incident.events) {
    if (!isDiagnosis(e.diagnosis) || e.diagnosis.healthy) continue;
    const d = e.diagnosis;
    const n = d.hypotheses.reduce((sum, h) => sum + failingPaths(h), 0);
    if (n > peakPaths) {
      peak = d;
      peakPaths = n;
    }
  }
  return { peak, peakPaths };
}

function summarySection(
  incident: IncidentDetail,
  endMs: number,
  lead: Hypothesis | undefined,
  { peak, peakPaths }: { peak?: Diagnosis; peakPaths: number },
): string[] {
  const out: string[] = [];
  out.push(`# Postmortem (draft): incident ${incident.id} — ${incident.summary}`);
  out.push('');
  out.push(
    `*Written by Faultline from the incident record${incident.closedAtMs === undefined ? ' while the incident is still open' : ''}; edit freely.*`,
  );
  out.push('');
  out.push('## Issue summary');
  out.push('');
  out.push(
    `- **Status:** ${incident.closedAtMs === undefined ? 'ongoing' : `resolved at ${utc(incident.closedAtMs)}`}`,
  );
  out.push(
    `- **Duration:** ${humanDuration(endMs - incident.firstFailureMs)} (first failed probe ${utc(incident.firstFailureMs)} → ${incident.closedAtMs === undefined ? 'now' : 'recovery'})`,
  );
  out.push(
    `- **Detected:** ${utc(incident.openedAtMs)}, ${humanDuration(incident.openedAtMs - incident.firstFailureMs)} after the first failed probe`,
  );
  out.push(`- **Components involved:** ${incident.components.join(', ') || '—'}`);
  if (peak !== undefined) {
    out.push(
      `- **Impact at the peak:** ${peakPaths} failing path${peakPaths === 1 ? '' : 's'} explained by ${peak.hypotheses.length} hypothes${peak.hypotheses.length === 1 ? 'is' : 'es'}`,
    );
  }
  if (lead !== undefined) out.push(`- **Most likely cause:** ${describeHypothesis(lead)}`);
  out.push('');
  return out;
}

function timelineSection(incident: IncidentDetail): string[] {
  const out: string[] = [];
  out.push('## Timeline (UTC)');
  out.push('');
  out.push(`- ${utc(incident.firstFailureMs)} — first failed probe the diagnosis explains`);
  for (const e of incident.events) {
    const d = isDiagnosis(e.diagnosis) ? e.diagnosis : undefined;
    const h = d?.hypotheses[0];
    switch (e.type) {
      case 'opened':
        out.push(
          `- ${utc(e.atMs)} — **detected**${h === undefined ? '' : `: ${describeHypothesis(h)}`}`,
        );
        break;
      case 'leading_changed':
        out.push(
          `- ${utc(e.atMs)} — leading hypothesis now${h === undefined ? '' : ` ${describeHypothesis(h)}`}`,
        );
        break;
      case 'hypotheses_changed':
        out.push(
          `- ${utc(e.atMs)} — hypotheses now: ${d === undefined ? '?' : d.hypotheses.map((x) => `\`${x.kind}\` ${x.components.join(', ')}`).join('; ')}`,
        );
        break;
      case 'recovered':
        out.push(`- ${utc(e.atMs)} — **recovered**: every path healthy again`);
        break;
      default:
        out.push(`- ${utc(e.atMs)} — ${e.type}`);
    }
  }
  out.push('');
  return out;
}

/** One agent's row: the paths it saw fail, when first, their classes, whether it went silent. */
function agentRow(agent: string, ts: readonly Transition[]): string {
  const failed = new Set<string>();
  const classes = new Set<string>();
  let first = Number.POSITIVE_INFINITY;
  let silent = false;
  for (const t of ts) {
    if (t.kind === 'agent') {
      if (t.toState === 'silent') silent = true;
      continue;
    }
    if (t.toState === 'failing') {
      failed.add(t.target);
      if (t.toClass !== null) classes.add(t.toClass);
      if (t.atMs < first) first = t.atMs;
    }
  }
  return `| ${escapeCell(agent)} | ${failed.size} | ${Number.isFinite(first) ? utc(first) : '—'} | ${[...classes].sort().join(', ') || '—'} | ${silent ? 'yes' : 'no'} |`;
}

function agentsSection(
  incident: IncidentDetail,
  transitions: readonly Transition[],
  endMs: number,
): string[] {
  const out: string[] = [];
  out.push('## What each agent saw');
  out.push('');
  const byAgent = new Map<string, Transition[]>();
  for (const t of transitions) {
    if (t.atMs < incident.firstFailureMs - 60_000 || t.atMs > endMs) continue;
    const list = byAgent.get(t.agent);
    if (list === undefined) byAgent.set(t.agent, [t]);
    else list.push(t);
  }
  if (byAgent.size === 0) {
    out.push('No path changed state in this window.');
  } else {
    out.push('| agent | paths that failed | first failure | classes | went silent |');
    out.push('|---|---:|---|---|---|');
    const agents = [...byAgent.keys()].sort();
    for (const agent of agents.slice(0, maxAgentsListed)) {
      out.push(agentRow(agent, byAgent.get(agent)!));
    }
    if (agents.length > maxAgentsListed)
      out.push(`| … ${agents.length - maxAgentsListed} more agents | | | | |`);
    out.push('');
    out.push(
      'Agents cut off from the collector keep probing and deliver their spooled results when they are back: their rows show their side of the fault.',
    );
  }
  out.push('');
  return out;
}

function rootCauseSection(last: Diagnosis | undefined): string[] {
  const out: string[] = [];
  const lead = last?.hypotheses[0];
  out.push('## Root cause hint');
  out.push('');
  if (lead === undefined) {
    out.push('No hypothesis was recorded.');
  } else {
    out.push(`${describeHypothesis(lead)}`);
    out.push('');
    out.push(`- Confidence: ${Math.round(lead.confidence * 100)} %`);
    if (lead.groups.length > 0)
      out.push(
        `- Groups: ${lead.groups.map((g) => `${g.name ?? 'group'} {${g.members.join(', ')}}`).join(' / ')}`,
      );
    const counts = Object.entries(lead.evidence.counts)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    if (counts !== '') out.push(`- Evidence: ${counts}`);
    for (const ex of lead.evidence.examples.slice(0, maxExamples)) out.push(`  - ${ex}`);
    const others = last?.hypotheses.slice(1) ?? [];
    if (others.length > 0) {
      out.push('');
      out.push('Other hypotheses at the end:');
      for (const h of others) out.push(`- ${describeHypothesis(h)}`);
    }
  }
  out.push('');
  return out;
}

function hindsightSection(
  later: { readonly atMs: number; readonly diagnosis: Diagnosis },
  lead: Hypothesis | undefined,
): string[] {
  const out: string[] = [];
  out.push('## In hindsight: every agent heard');
  out.push('');
  out.push(
    `Agents cut off from the collector delivered their spooled results after the heal. The path matrix as it stood at ${utc(later.atMs)}, rebuilt from every agent's results and localised again:`,
  );
  out.push('');
  const hs = later.diagnosis.hypotheses;
  if (hs.length === 0) out.push("- no fault shows in the agents' own results at that time");
  for (const h of hs.slice(0, maxExamples)) {
    const groups = h.groups
      .map((g) => `${g.name ?? 'group'} {${g.members.join(', ')}}`)
      .join(' / ');
    out.push(`- ${describeHypothesis(h)}${groups === '' ? '' : ` — groups: ${groups}`}`);
  }
  if (hs.length > maxExamples) out.push(`- … and ${hs.length - maxExamples} more`);
  const changed =
    lead !== undefined &&
    hs[0] !== undefined &&
    (hs[0].kind !== lead.kind || hs[0].components.join() !== lead.components.join());
  if (changed)
    out.push(
      '',
      'This differs from what the collector could say while the fault lasted: it saw only its own side.',
    );
  out.push('');
  return out;
}

function ruledOutSection(
  last: Diagnosis | undefined,
  transitions: readonly Transition[],
  viewers: ComponentViewers,
): string[] {
  const out: string[] = [];
  const lead = last?.hypotheses[0];
  out.push('## Ruled out');
  out.push('');
  const ruledOut = last?.ruledOut ?? [];
  if (ruledOut.length === 0) out.push('Nothing was ruled out.');
  for (const r of ruledOut)
    out.push(
      `- **${r.component}** — ${r.canBeRuledOut ? 'ruled out' : 'cannot be ruled out'}: ${r.reason}`,
    );
  // What could not be ruled out while the fault lasted, in the light of the reports that
  // arrived since (agents cut off from the collector deliver their spool after the heal).
  const hindsight: string[] = [];
  for (const r of ruledOut) {
    if (r.canBeRuledOut) continue;
    const failedToward = new Set(
      transitions
        .filter((t) => t.target.startsWith(`${r.component}/`) && t.toState === 'failing')
        .map((t) => t.agent),
    );
    const sameSide = new Set(
      lead?.groups.find((g) => g.members.includes(r.component))?.members ?? [],
    );
    const reached = (viewers.get(r.component) ?? []).filter(
      (a) => !failedToward.has(a) && sameSide.has(a),
    );
    if (reached.length > 0)
      hindsight.push(
        `- **${r.component}** — ruled out in hindsight: ${reached.sort().join(', ')}, on its side of the cut, reached it without a failure throughout (their reports arrived after the heal)`,
      );
  }
  if (hindsight.length > 0) out.push('', 'Since the recovery:', ...hindsight);
  out.push('');
  return out;
}

/** What people add: corrective measures, lessons; and where the record is. */
function closingSection(incident: IncidentDetail, collectorUrl: string | undefined): string[] {
  const out: string[] = [];
  out.push('## Corrective measures');
  out.push('');
  out.push('- [ ] *(what fixes the root cause)*');
  out.push('- [ ] *(what detects it sooner, or limits its impact next time)*');
  out.push('');
  out.push('## Lessons learned');
  out.push('');
  out.push('- What went well: *…*');
  out.push('- What went wrong: *…*');
  out.push('- Where we got lucky: *…*');
  if (collectorUrl !== undefined) {
    out.push('');
    out.push(`Incident record: ${collectorUrl.replace(/\/$/, '')}/api/v1/incidents/${incident.id}`);
  }
  out.push('');
  return out;
}

export function postmortem(
  incident: IncidentDetail,
  transitions: readonly Transition[],
  nowMs: number,
  collectorUrl?: string,
  viewers: ComponentViewers = new Map(),
  later?: { readonly atMs: number; readonly diagnosis: Diagnosis },
): string {
  const last = longestHeld(incident, nowMs);
  const endMs = incident.closedAtMs ?? nowMs;
  const lead = last?.hypotheses[0];
  return [
    ...summarySection(incident, endMs, lead, peakOf(incident)),
    ...timelineSection(incident),
    ...agentsSection(incident, transitions, endMs),
    ...rootCauseSection(last),
    ...(later === undefined ? [] : hindsightSection(later, lead)),
    ...ruledOutSection(last, transitions, viewers),
    ...closingSection(incident, collectorUrl),
  ].join('\n');
}
