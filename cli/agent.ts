import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { CommandModule } from 'yargs';
import { Agent, defaultStopGraceMs } from '../agent/agent.js';
import { loadAgentConfig } from '../agent/config.js';
import type { AgentCollectorConfig, AgentConfig } from '../agent/config.js';
import type { NatsSection } from '../lib/nats-config.js';
import { settleAgentHeap, tuneAgentHeap } from '../agent/heap.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { compileAllowList, defaultPlanPolicy, type PlanPolicy } from '../agent/plan-policy.js';
import type { ProbeInstance, SeriesSelection } from '../agent/telemetry/index.js';
import type { CollectorEndpoint } from '../agent/collector-link.js';
import { ConfigError, isFaultlineError } from '../lib/errors.js';
import { parseLabelText } from '../lib/labels.js';
import { exitCodes } from './exit-codes.js';

interface AgentArgs {
  config?: string;
  'check-config': boolean;
  collector?: string[];
  token?: string;
  'token-file'?: string;
  'ca-file'?: string;
  'require-tls': boolean;
  'allow-targets'?: string;
  'allow-tcp-send': boolean;
  'allow-http-methods': string;
  'allow-http-headers': boolean;
  name?: string;
  labels: string;
  'state-dir'?: string;
  metrics: string;
}

/** Resolves when SIGTERM or SIGINT arrives. */
export function untilStopSignal(log: Logger): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      log.info({ signal }, 'stopping');
      process.removeListener('SIGTERM', stop);
      process.removeListener('SIGINT', stop);
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}

function usage(message: string): ConfigError {
  return new ConfigError(message, { code: 'FL_ERR_USAGE' });
}

/** `--labels k=v,k2=v2` with the same rules as the API's. */
export function parseLabelFlag(text: string): Record<string, string> {
  const parsed = parseLabelText(text);
  if (!parsed.ok) throw usage(`--labels: ${parsed.reason}`);
  return parsed.labels;
}

/** Whether a URL's host is this machine's loopback (a token sent there stays on the host). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1' || h === '0:0:0:0:0:0:0:1';
}

/** Where each setting of one collector came from, for messages: `--ca-file` or `collectors[1].caFile`. */
interface SettingNames {
  url: string;
  token: string;
  tokenFile: string;
  caFile: string;
  requireTls: string;
}

/** One collector as configured (flags or config file). */
interface EndpointSettings {
  readonly names: SettingNames;
  readonly url: string;
  readonly token?: string;
  readonly tokenFile?: string;
  readonly caFile?: string;
  readonly requireTls: boolean;
}

/** Everything the managed agent needs, from flags or from `collector(s):` of a config file. */
interface CollectorSettings {
  /** The collectors (one or several), each with its own URL, token and CA. */
  readonly endpoints: readonly EndpointSettings[];
  /** Where the plan policy's allow-list came from, for messages. */
  readonly allowTargetsName: string;
  /** The token was given on the command line (visible in ps). */
  readonly tokenOnCommandLine: boolean;
  readonly stateDir: string;
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly metrics: string | false;
  /** The config file's `metrics.probeInstance` (flags: the default). */
  readonly probeInstance?: ProbeInstance;
  /** The config file's `metrics.histograms` and `metrics.blackbox` (flags: the defaults). */
  readonly series?: SeriesSelection;
  readonly policy: PlanPolicy;
}

/** The text of a file a flag or config key names, or a usage error naming both. */
function readNamedFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw usage(
      `${what}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    );
  }
}

function readSecretFile(path: string, what: string): string {
  const token = readNamedFile(path, what).split('\n')[0]?.trim() ?? '';
  if (token === '') throw usage(`${what}: ${path} is empty (expected the token on its first line)`);
  return token;
}

function readCaFile(path: string, what: string): string {
  const text = readNamedFile(path, what);
  if (!text.includes('-----BEGIN CERTIFICATE-----'))
    throw usage(
      `${what}: ${path} holds no PEM certificate (expected "-----BEGIN CERTIFICATE-----")`,
    );
  return text;
}

/** Checks one collector's URL, TLS and token; returns how to reach it. */
function checkEndpoint(c: EndpointSettings): CollectorEndpoint & { cleartext: boolean } {
  let parsed: URL;
  try {
    parsed = new URL(c.url);
  } catch {
    throw usage(
      `${c.names.url}: expected an http(s) URL such as https://collector:7070 (actual: ${JSON.stringify(c.url)})`,
    );
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw usage(`${c.names.url}: expected an http(s) URL (actual scheme: ${parsed.protocol})`);
  }
  const cleartext = parsed.protocol === 'http:' && !isLoopbackHost(parsed.hostname);
  if (cleartext && c.requireTls) {
    throw usage(
      `${c.names.url}: ${parsed.origin} is plain http to a host other than this one, and ${c.names.requireTls} is set: use https:// (with ${c.names.caFile} for a private CA)`,
    );
  }
  if (c.caFile !== undefined && parsed.protocol !== 'https:') {
    throw usage(
      `${c.names.caFile} is given but ${c.names.url} is not https:// (actual: ${parsed.origin})`,
    );
  }
  let token = c.token;
  if (c.tokenFile !== undefined) {
    if (token !== undefined) throw usage(`give ${c.names.token} or ${c.names.tokenFile}, not both`);
    token = readSecretFile(c.tokenFile, c.names.tokenFile);
  }
  token ??= process.env.FAULTLINE_TOKEN;
  if (token === undefined || token === '') {
    throw usage(
      `a token is required with a collector: ${c.names.tokenFile} FILE, FAULTLINE_TOKEN, or ${c.names.token}`,
    );
  }
  const ca = c.caFile === undefined ? undefined : readCaFile(c.caFile, c.names.caFile);
  return {
    url: parsed.href.replace(/\/$/, ''),
    token,
    ...(ca === undefined ? {} : { ca }),
    cleartext,
  };
}

/**
 * Checks the collector settings (URLs, TLS, credentials, plan policy), warns about what
 * exposes a token, and starts the managed agent until SIGTERM/SIGINT.
 */
async function runWithCollector(c: CollectorSettings): Promise<void> {
  const endpoints = c.endpoints.map(checkEndpoint);
  const seen = new Map<string, number>();
  endpoints.forEach((e, i) => {
    const before = seen.get(e.url);
    if (before !== undefined)
      throw usage(
        `${c.endpoints[i]!.names.url}: ${e.url} is given twice (give each collector once)`,
      );
    seen.set(e.url, i);
  });
  if (c.policy.allowTargets !== undefined) {
    try {
      compileAllowList(c.policy.allowTargets, c.allowTargetsName);
    } catch (err) {
      throw usage((err as Error).message);
    }
  }
  const log = createLogger('agent', { agent: c.name });
  if (c.tokenOnCommandLine) {
    log.warn(
      { flag: '--token' },
      'the token on the command line is visible to every user of this host (ps); prefer --token-file FILE or FAULTLINE_TOKEN',
    );
  }
  endpoints.forEach((e, i) => {
    if (!e.cleartext) return;
    log.warn(
      { collector: new URL(e.url).origin },
      `the collector is plain http on another host: the token and every report cross the network in clear; use https:// (${c.endpoints[i]!.names.requireTls} refuses this)`,
    );
  });
  // Loaded only with a collector: the link's HTTP client is memory a standalone agent need not hold.
  const { startManagedAgent } = await import('../agent/managed.js');
  const managed = await startManagedAgent({
    collectors: endpoints.map(({ cleartext: _, ...e }) => e),
    policy: c.policy,
    name: c.name,
    labels: c.labels,
    stateDir: c.stateDir,
    metricsListen: c.metrics,
    ...(c.probeInstance === undefined ? {} : { probeInstance: c.probeInstance }),
    ...(c.series === undefined ? {} : { series: c.series }),
    log,
  });
  await untilStopSignal(log);
  await managed.stop();
}

async function runConfigured(args: AgentArgs, file: string): Promise<void> {
  const config = loadAgentConfig(file);
  if (args['check-config']) {
    const metrics = config.metrics.listen === false ? 'off' : config.metrics.listen;
    const n = config.collectors?.length ?? 0;
    const source =
      n === 0
        ? `${config.targets.length} targets`
        : `plan from ${n === 1 ? 'its collector' : `the newest of ${n} collectors`}, reporting to ${config.collectors!.map((c) => c.url).join(' and ')}`;
    process.stdout.write(
      `${file}: valid — agent ${config.agent.name}, ${source}, metrics ${metrics}\n`,
    );
    return;
  }
  if (config.collector?.nats !== undefined && config.collector.transport === 'nats') {
    await runWithNats(config, config.collector, config.collector.nats);
    return;
  }
  if (config.collectors !== undefined && config.collector !== undefined) {
    const c = config.collector;
    const list = config.collectors;
    // The path each setting came from: `collector.url`, or `collectors[1].url`.
    const at = (i: number): string =>
      config.collectorsKey === 'collector' ? 'collector' : `collectors[${i}]`;
    await runWithCollector({
      endpoints: list.map((e, i) => ({
        names: {
          url: `${at(i)}.url`,
          token: `${at(i)}.token`,
          tokenFile: `${at(i)}.tokenFile`,
          caFile: `${at(i)}.caFile`,
          requireTls: `${at(i)}.requireTls`,
        },
        // HTTP: the schema requires every URL unless `transport: nats` (handled above).
        url: e.url ?? '',
        ...(e.token === undefined ? {} : { token: e.token }),
        ...(e.tokenFile === undefined ? {} : { tokenFile: e.tokenFile }),
        ...(e.caFile === undefined ? {} : { caFile: e.caFile }),
        requireTls: e.requireTls,
      })),
      allowTargetsName: `${at(0)}.plan.allowTargets`,
      tokenOnCommandLine: false,
      stateDir: c.stateDir,
      name: config.agent.name,
      labels: { ...config.agent.labels },
      metrics: config.metrics.listen,
      probeInstance: config.metrics.probeInstance,
      series: { histograms: config.metrics.histograms, blackbox: config.metrics.blackbox },
      policy: {
        ...(c.plan.allowTargets === undefined ? {} : { allowTargets: c.plan.allowTargets }),
        allowTcpSend: c.plan.allowTcpSend,
        allowHttpMethods: c.plan.allowHttpMethods,
        allowHttpHeaders: c.plan.allowHttpHeaders,
      },
    });
    return;
  }
  const log = createLogger('agent', { agent: config.agent.name });
  const agent = await Agent.start(config, log);
  const onHup = (): void => {
    try {
      agent.reload(loadAgentConfig(file));
    } catch (err) {
      if (!isFaultlineError(err)) throw err;
      log.error(
        { file, reason: err.message },
        'configuration reload refused; keeping the running configuration',
      );
    }
  };
  process.on('SIGHUP', onHup);
  await untilStopSignal(log);
  process.removeListener('SIGHUP', onHup);
  await agent.stop(defaultStopGraceMs);
}

/**
 * `transport: nats`: reports go to the JetStream stream and the plan comes from the KV
 * bucket (agent/nats-channel.ts); the collector's URL and token are not used.
 */
async function runWithNats(
  config: AgentConfig,
  c: AgentCollectorConfig,
  nats: NatsSection,
): Promise<void> {
  if (c.plan.allowTargets !== undefined) {
    try {
      compileAllowList(c.plan.allowTargets, 'collector.plan.allowTargets');
    } catch (err) {
      throw usage((err as Error).message);
    }
  }
  const log = createLogger('agent', { agent: config.agent.name });
  const { startManagedAgent } = await import('../agent/managed.js');
  const managed = await startManagedAgent({
    url: '',
    token: '',
    nats,
    policy: {
      ...(c.plan.allowTargets === undefined ? {} : { allowTargets: c.plan.allowTargets }),
      allowTcpSend: c.plan.allowTcpSend,
      allowHttpMethods: c.plan.allowHttpMethods,
      allowHttpHeaders: c.plan.allowHttpHeaders,
    },
    name: config.agent.name,
    labels: { ...config.agent.labels },
    stateDir: c.stateDir,
    metricsListen: config.metrics.listen,
    probeInstance: config.metrics.probeInstance,
    series: { histograms: config.metrics.histograms, blackbox: config.metrics.blackbox },
    log,
  });
  await untilStopSignal(log);
  await managed.stop();
}

function splitList(text: string): string[] {
  return text
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');
}

async function runManaged(args: AgentArgs, urls: readonly string[]): Promise<void> {
  const name = args.name ?? hostname();
  if (!/^[A-Za-z0-9._:-]{1,128}$/.test(name)) {
    throw usage(
      `--name: expected letters, digits and . _ : - (1–128 characters) (actual: ${JSON.stringify(name)})`,
    );
  }
  const stateDir = args['state-dir'];
  if (stateDir === undefined)
    throw usage(
      '--state-dir is required with --collector (the spool and the cached plan live there)',
    );
  const metrics = args.metrics === '' || args.metrics === 'false' ? false : args.metrics;
  if (metrics !== false && !/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(metrics)) {
    throw usage(
      `--metrics: expected host:port or "" to disable (actual: ${JSON.stringify(metrics)})`,
    );
  }
  const methods = splitList(args['allow-http-methods']).map((m) => m.toUpperCase());
  for (const m of methods) {
    if (m !== 'GET' && m !== 'HEAD' && m !== 'POST')
      throw usage(
        `--allow-http-methods: expected GET, HEAD or POST (actual: ${JSON.stringify(m)})`,
      );
  }
  const allowTargets =
    args['allow-targets'] === undefined ? undefined : splitList(args['allow-targets']);
  const labels = parseLabelFlag(args.labels);
  await runWithCollector({
    endpoints: urls.map((url) => ({
      names: {
        url: urls.length === 1 ? '--collector' : `--collector ${url}`,
        token: '--token',
        tokenFile: '--token-file',
        caFile: '--ca-file',
        requireTls: '--require-tls',
      },
      url,
      ...(args.token === undefined ? {} : { token: args.token }),
      ...(args['token-file'] === undefined ? {} : { tokenFile: args['token-file'] }),
      ...(args['ca-file'] === undefined ? {} : { caFile: args['ca-file'] }),
      requireTls: args['require-tls'],
    })),
    allowTargetsName: '--allow-targets',
    tokenOnCommandLine: args.token !== undefined,
    stateDir,
    name,
    labels,
    metrics,
    policy: {
      ...(allowTargets === undefined ? {} : { allowTargets }),
      allowTcpSend: args['allow-tcp-send'],
      allowHttpMethods: methods.length === 0 ? defaultPlanPolicy.allowHttpMethods : methods,
      allowHttpHeaders: args['allow-http-headers'],
    },
  });
}

/**
 * The agent command's options, one table for yargs (help, completion, odd spellings) and for
 * `agentArgsWithoutYargs`, the daemon's start-up path, which does not load yargs at all.
 */
const agentOptions = {
  config: {
    alias: 'c',
    type: 'string',
    describe: 'Agent config (YAML); see deploy/examples/agent.yaml',
  },
  'check-config': {
    type: 'boolean',
    default: false,
    describe: 'Validate the config, print a summary and exit (0 valid, 2 invalid)',
  },
  collector: {
    type: 'string',
    array: true,
    describe:
      'Collector URL: take the plan from it and report to it; repeat it to report to every one of several (HA: two in two failure domains)',
  },
  token: {
    type: 'string',
    describe:
      'Bearer token for the collector; visible in ps: prefer --token-file or FAULTLINE_TOKEN',
  },
  'token-file': { type: 'string', describe: 'File holding the token (first line)' },
  'ca-file': {
    type: 'string',
    describe: 'PEM CA certificates trusted for an https collector (a private CA pins it)',
  },
  'require-tls': {
    type: 'boolean',
    default: false,
    describe: 'Refuse to start when --collector is plain http:// to another host',
  },
  'allow-targets': {
    type: 'string',
    describe:
      'Where plan targets may point: CIDR blocks, addresses, host names (*.example), comma-separated',
  },
  'allow-tcp-send': {
    type: 'boolean',
    default: false,
    describe: 'Run plan tcp targets that send a raw payload',
  },
  'allow-http-methods': {
    type: 'string',
    default: 'GET,HEAD',
    describe: 'HTTP methods a plan may use',
  },
  'allow-http-headers': {
    type: 'boolean',
    default: false,
    describe: 'Run plan http targets with custom headers or a body',
  },
  name: { type: 'string', describe: 'Agent name (default: the host name)' },
  labels: {
    type: 'string',
    default: '',
    describe: 'Topology labels of this host: zone=a,switch=sw-1',
  },
  'state-dir': { type: 'string', describe: 'Where the spool and the cached plan live' },
  metrics: {
    type: 'string',
    default: '127.0.0.1:9465',
    describe: 'With --collector: where /metrics listens ("" disables)',
  },
} as const satisfies Record<
  keyof AgentArgs,
  {
    type: 'string' | 'boolean';
    alias?: string;
    array?: true;
    default?: string | boolean;
    describe: string;
  }
>;

/** The checks across options, the same on both paths. */
function checkAgentArgs(a: Pick<AgentArgs, 'config' | 'collector'>): true {
  if ((a.config === undefined) === (a.collector === undefined)) {
    throw usage('give either --config FILE or --collector URL (one of them)');
  }
  if (a.collector?.length === 0) throw usage('--collector: expected a URL after it');
  return true;
}

/**
 * `faultline agent …` parsed without yargs, for the daemon's start: yargs and its helpers
 * are ~5 MB of a process that lives for months to read a dozen flags once. Only the plain
 * spellings are taken (`--flag value`, `--flag=value`, `-c FILE`, `--no-flag`, each once,
 * `--collector` repeated); anything else — help, version, completion, a mistyped or
 * camel-cased flag, a stray word, a repeated flag — returns undefined and the caller goes
 * through yargs, whose answers (and error messages) stay the reference.
 */
export function agentArgsWithoutYargs(argv: readonly string[]): AgentArgs | undefined {
  if (argv[0] !== 'agent') return undefined;
  const options: ParseArgsConfig['options'] = {};
  for (const [key, o] of Object.entries(agentOptions)) {
    options[key] = {
      type: o.type,
      ...('alias' in o && o.alias.length === 1 ? { short: o.alias } : {}),
      ...('array' in o ? { multiple: true } : {}),
    };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv.slice(1),
      options,
      strict: true,
      allowPositionals: false,
      allowNegative: true,
      tokens: true,
    });
  } catch {
    return undefined;
  }
  const seen = new Set<string>();
  for (const t of parsed.tokens ?? []) {
    if (t.kind !== 'option') return undefined;
    const multiple = options[t.name]?.multiple === true;
    if (seen.has(t.name) && !multiple) return undefined;
    seen.add(t.name);
  }
  const v = parsed.values;
  const str = (k: keyof typeof agentOptions): string | undefined =>
    typeof v[k] === 'string' ? v[k] : undefined;
  const bool = (k: keyof typeof agentOptions): boolean => v[k] === true;
  const args: AgentArgs = {
    'check-config': bool('check-config'),
    'require-tls': bool('require-tls'),
    'allow-tcp-send': bool('allow-tcp-send'),
    'allow-http-methods': str('allow-http-methods') ?? agentOptions['allow-http-methods'].default,
    'allow-http-headers': bool('allow-http-headers'),
    labels: str('labels') ?? agentOptions.labels.default,
    metrics: str('metrics') ?? agentOptions.metrics.default,
  };
  for (const k of [
    'config',
    'token',
    'token-file',
    'ca-file',
    'allow-targets',
    'name',
    'state-dir',
  ] as const) {
    const s = str(k);
    if (s !== undefined) args[k] = s;
  }
  if (Array.isArray(v.collector)) args.collector = v.collector.map(String);
  checkAgentArgs(args);
  return args;
}

/** Runs the agent command with its parsed arguments. */
export async function runAgentCommand(
  args: AgentArgs,
  setExit: (code: number) => void,
): Promise<void> {
  tuneAgentHeap();
  if (!args['check-config']) settleAgentHeap();
  if (args.config !== undefined) await runConfigured(args, args.config);
  else await runManaged(args, args.collector ?? []);
  setExit(exitCodes.ok);
}

/** `faultline agent`: the daemon on every host, from a config file or a collector's plan. */
export function agentCommand(setExit: (code: number) => void): CommandModule<object, AgentArgs> {
  return {
    command: 'agent',
    describe:
      'Probe on schedule and export path health; from --config FILE, or from a collector plan',
    builder: (y) =>
      y
        .options(agentOptions)
        .check((a) => checkAgentArgs(a))
        .epilog(
          'Signals: SIGHUP reloads the config file (a broken file is refused and the running config kept); ' +
            'SIGTERM/SIGINT let probes in flight finish, flush telemetry and exit.\n' +
            'OTLP push is on when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._METRICS_ENDPOINT) is set.',
        ),
    handler: (args) => runAgentCommand(args, setExit),
  };
}
