import type { Candidate, Rule } from '../candidate.js';
import { list } from '../text.js';
import type { PathState } from '../../types.js';
import { byName, layerOf, mtuKind, sorted } from '../views.js';

/**
 * The collector's own side cut off (`network_partition` with `collectorCutOff`): the
 * collector is an observer inside the network, and a cut can isolate its host, switch or
 * zone. Then its local agent reaches nothing beyond its side and the agents beyond fall
 * silent together; from where it stands nothing can be said about the far side — so this
 * explains every failure toward the far side and the silence of its agents, and blames none
 * of its hosts, services or databases.
 *
 * It is the collector's side that is cut off, not the far side, when its side is the smaller
 * (a host, a switch of a few): on a larger side the far side is the part cut off, and the
 * partition rule names it as before.
 */
export const observerCut: Rule = {
  name: 'observer-cut',
  kinds: ['network_partition'],
  tier: 'structural',
  propose: (ev) => {
    const side = new Set(ev.observer.side);
    const inSide = (h: string): boolean => side.has(h);
    // The far side must be unseen: every agent beyond the collector's side is silent.
    const agentsBeyond = ev.agents.filter((a) => !inSide(ev.host(a.agent)));
    if (agentsBeyond.some((a) => a.state !== 'silent' && ev.viewOf(a.agent) !== undefined))
      return [];
    // Silent, or late (reports overdue): a cut of the collector's side makes them late first.
    const silentBeyond = agentsBeyond.filter((a) => !ev.isLive(a.agent));
    // …and not seen answering from the collector's side (that is a silent agent, not a cut),
    // and silent since this collector runs (after a restart, agents take a while to report).
    const upSince = ev.options.observer?.upSinceMs ?? Number.NEGATIVE_INFINITY;
    const silentDark = silentBeyond.filter(
      (a) => !ev.lit.has(ev.host(a.agent)) && a.lastSeenMs >= upSince,
    );
    const far = new Set<string>();
    for (const h of ev.dark) if (!inSide(h)) far.add(h);
    for (const a of silentDark) far.add(ev.host(a.agent));
    if (far.size === 0) return [];
    if (side.size >= far.size) return [];

    // The local agent's word: it reaches nothing beyond its side.
    const local = ev.observer.agents.filter((a) => ev.viewOf(a) !== undefined);
    const localFails = local.some((a) =>
      (ev.viewOf(a)?.failing ?? []).some((p) => far.has(p.component) && layerOf(p) === 'network'),
    );
    const localReachesFar = local.some((a) => [...far].some((h) => ev.reachOf(a, h) === 'yes'));
    if (localReachesFar) return [];
    // The silence's word: the agents beyond fell silent within one event window.
    const lastSeen = silentDark.map((a) => a.lastSeenMs).sort((x, y) => x - y);
    const spreadMs = (lastSeen[lastSeen.length - 1] ?? 0) - (lastSeen[0] ?? 0);
    const together = silentDark.length >= 2 && spreadMs <= ev.eventWindowMs;
    if (!localFails && !together) return [];

    // Nothing can be said about the far side; the local agent's failures are this cut.
    const taken = ev.pick(
      (p) => far.has(p.component) || (local.includes(p.agent) && layerOf(p) === 'network'),
    );
    const farList = sorted(far);
    const sideList = sorted(side);
    const found = ev.cutOf([sideList, farList], [sideList]);
    const cut = sideList.length > 0 ? found.cut : undefined;
    const within = Math.max(1, Math.ceil(spreadMs / 1000));
    const n = silentDark.length;
    const silence =
      n === 0
        ? ''
        : `${n} agent${n === 1 ? '' : 's'} stopped reporting ${n === 1 ? 'at once' : within <= 1 ? 'in the same second' : `within ${within} s of each other`}`;
    const localName = local[0];
    const vantage =
      localName !== undefined && localFails
        ? `its agent ${localName} reaches ${sideList.length > 1 ? 'only its own side' : 'nothing'}`
        : '';
    const why = [vantage, silence].filter((x) => x !== '').join(' and ');
    const whose =
      sideList.length === 0
        ? 'it hears none of its agents'
        : `${list(sideList)}${cut ? `, behind ${cut.key} ${cut.values.join(', ')}` : ''}`;
    const alts =
      cut && found.alternatives.length > 0
        ? ` (or ${found.alternatives.map((c) => `${c.key} ${c.values.join(', ')}`).join(' or ')})`
        : '';
    const summary = `the collector's side is cut off: ${whose}${alts} — ${why}; nothing can be said about the far side ${list(farList)} until their spooled reports arrive`;
    return [
      {
        hypothesis: {
          kind: 'network_partition',
          confidence: localFails && together ? 0.9 : 0.8,
          summary,
          components: sideList,
          groups: [
            { name: 'collector side', members: sideList },
            { name: 'far side (unseen)', members: farList },
          ],
          ...(cut ? { cutLabel: cut } : {}),
          collectorCutOff: true,
        },
        explains: taken,
        silences: silentBeyond.map((a) => a.agent),
        examples: [...silentDark]
          .sort((x, y) => x.lastSeenMs - y.lastSeenMs || byName(x.agent, y.agent))
          .map(
            (a) =>
              `${a.agent}: ${a.state === 'silent' ? 'silent' : 'late'}, last report ${new Date(a.lastSeenMs).toISOString()}`,
          ),
        standalone: true,
        first: true,
        prior: 2,
        ...(taken.length === 0 && lastSeen.length > 0 ? { sinceMs: lastSeen[0] } : {}),
      },
    ];
  },
};

/** The far side of a chosen collector's cut: hosts it can say nothing about. */
export function unseenHosts(chosen: readonly Candidate[]): ReadonlySet<string> {
  const out = new Set<string>();
  for (const c of chosen)
    if (c.hypothesis.collectorCutOff)
      for (const h of c.hypothesis.groups[1]?.members ?? []) out.add(h);
  return out;
}

/**
 * The collector's own vantage failing (`source_fault` on its host): its local agent fails,
 * at the network layer, toward hosts that other agents still reach. The collector cannot yet
 * tell its host's link going down (the other agents' reports will stop next: then its side is
 * cut off, above) from a filter on its own paths — but either way the fault is on its side.
 * Naming the targets, as a blocked path would, is exactly the wrong turn: the far side's
 * hosts and databases are blamed for what the collector's own host cannot reach.
 */
export const observerVantage: Rule = {
  name: 'observer-vantage',
  kinds: ['source_fault'],
  tier: 'structural',
  propose: (ev) => {
    const out = [];
    for (const a of ev.observer.agents) {
      if (!ev.soundSet.has(a)) continue;
      const self = ev.host(a);
      const failing = ev.viewOf(a)?.failing ?? [];
      const network = (p: PathState): boolean => layerOf(p) === 'network' && p.component !== self;
      // Triggered by hosts others still reach — also by lost full-size echoes alone: the
      // first of its paths to count as failing when its link goes may be one of those. A real
      // MTU fault on its port or route shows from the far end too, and that explains more.
      if (!failing.some((p) => network(p) && ev.lit.has(p.component))) continue;
      // …on more than one host (when it probes more than one). The collector's own link
      // going down loses every host, the second a fraction of a round after the first; one
      // host lost by the local agent alone is that host's fault, which the other agents see
      // within the round (a smaller MTU at its port, loss on its link).
      const view = ev.viewOf(a);
      const probed = (view?.yesIds.length ?? 0) + (view?.no.length ?? 0);
      const lost = new Set(failing.filter(network).map((p) => p.component)).size;
      if (lost < Math.min(2, probed)) continue;
      // …it explains the local agent's every network failure: the hosts already dark too, as
      // their agents fall silent one by one while the cut takes hold.
      const offset = ev.failingOffset(a) ?? 0;
      const taken: number[] = [];
      failing.forEach((p, i) => {
        if (network(p)) taken.push(offset + i);
      });
      const targets = sorted(failing.filter(network).map((p) => p.component));
      const bigOnly = failing.filter(network).every((p) => p.kind === mtuKind);
      // Agents beyond that fell silent: what the local agent cannot reach, nor they the collector.
      const silenced = ev.agents
        .filter((x) => !ev.isLive(x.agent) && ev.reachOf(a, ev.host(x.agent)) === 'no')
        .map((x) => x.agent);
      const silent =
        silenced.length === 0
          ? ''
          : ` (${silenced.length} agent${silenced.length === 1 ? '' : 's'} there stopped reporting already)`;
      out.push({
        hypothesis: {
          kind: 'source_fault' as const,
          confidence: 0.7,
          summary: `${bigOnly ? `full-size packets from the collector's own host ${self} to ${list(targets)} are lost, while other agents get through` : `the collector's own host ${self} fails to reach ${list(targets)}, which other agents reach`}${silent}: its port or link, or a filter on its own paths — if the other agents fall silent next, the collector's side is cut off`,
          components: [self],
          groups: [{ name: 'source', members: [self] }],
        },
        explains: taken,
        silences: silenced,
        prior: 3,
      });
    }
    return out;
  },
};
