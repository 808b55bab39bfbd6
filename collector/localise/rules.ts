import type { Rule } from './candidate.js';
import { agentSilent } from './kinds/agent-silent.js';
import { dnsFailure } from './kinds/dns-failure.js';
import { hostUnreachable } from './kinds/host-unreachable.js';
import { mtuMismatch } from './kinds/mtu-mismatch.js';
import { observerCut, observerVantage } from './kinds/observer-cut.js';
import { packetLoss } from './kinds/packet-loss.js';
import { partition } from './kinds/partition.js';
import { pathBlocked } from './kinds/path-blocked.js';
import { serviceDown } from './kinds/service-down.js';
import { serviceUnresponsive } from './kinds/service-unresponsive.js';
import { sourceFault } from './kinds/source-fault.js';
import { unexplained } from './kinds/unexplained.js';

/**
 * Every evidence rule, one line each. Structural rules are weighed against each other by
 * the search (their order does not matter); residual rules read what is left in this order.
 */
export const rules: readonly Rule[] = [
  observerCut,
  observerVantage,
  partition,
  hostUnreachable,
  sourceFault,
  mtuMismatch,
  serviceDown,
  serviceUnresponsive,
  pathBlocked,
  dnsFailure,
  packetLoss,
  agentSilent,
  unexplained,
];
