import {
  defaultResource,
  detectResources,
  envDetector,
  resourceFromAttributes,
} from '@opentelemetry/resources';
import { describe, expect, it } from 'vitest';
import { isolateOtelEnv } from '../test/helpers/otel-env.js';
import { ExportWatch, resourceAttributes, type TelemetryLogger } from './telemetry.js';

isolateOtelEnv();

type ExportResult = Parameters<ExportWatch['onResult']>[0];
const ok = { code: 0 } as ExportResult;
const failed = (message: string): ExportResult => ({ code: 1, error: new Error(message) });

function watch(): {
  w: ExportWatch;
  logs: { level: string; obj: Record<string, unknown>; msg: string }[];
  at: (ms: number) => void;
} {
  const logs: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  const log =
    (level: string) =>
    (obj: object, msg: string): void =>
      void logs.push({ level, obj: obj as Record<string, unknown>, msg });
  const logger: TelemetryLogger = { info: log('info'), warn: log('warn'), debug: log('debug') };
  let nowMs = 0;
  const w = new ExportWatch('http://otel:4318/v1/metrics', logger, 60_000, () => nowMs);
  return { w, logs, at: (ms) => (nowMs = ms) };
}

describe('ExportWatch', () => {
  it('logs the first failure at once, then at most once a minute with the count since, and the recovery once', () => {
    const { w, logs, at } = watch();
    w.onResult(ok);
    expect(logs).toEqual([]);
    at(1_000);
    w.onResult(failed('connect ECONNREFUSED'));
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatchObject({
      level: 'warn',
      msg: 'OTLP metrics export failing',
      obj: { url: 'http://otel:4318/v1/metrics', err: 'connect ECONNREFUSED', failures: 1 },
    });
    for (let s = 2; s <= 60; s++) {
      at(s * 1_000);
      w.onResult(failed('connect ECONNREFUSED'));
    }
    expect(logs).toHaveLength(1);
    at(61_000);
    w.onResult(failed('timed out'));
    expect(logs).toHaveLength(2);
    expect(logs[1]).toMatchObject({ level: 'warn', obj: { err: 'timed out', failures: 60 } });
    at(62_000);
    w.onResult(failed('timed out'));
    w.onResult(ok);
    expect(logs).toHaveLength(3);
    expect(logs[2]).toMatchObject({
      level: 'info',
      msg: 'OTLP metrics export recovered',
      obj: { failures: 1 },
    });
    expect({ successes: w.successes, failures: w.failures, lastError: w.lastError }).toEqual({
      successes: 2,
      failures: 62,
      lastError: undefined,
    });
    // A new failure after the recovery is news again: logged at once.
    w.onResult(failed('HTTP 503'));
    expect(logs).toHaveLength(4);
    expect(w.lastError).toBe('HTTP 503');
  });
});

describe('resourceAttributes (the OTel resource without the SDK)', () => {
  const own = {
    serviceName: 'faultline-agent',
    serviceVersion: '1.2.3',
    resource: { 'host.name': 'h', 'faultline.agent': 'a1', 'faultline.agent.label.zone': 'a' },
  };
  it.each([
    [{}],
    [{ OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=test,service.name=not-us' }],
    [{ OTEL_RESOURCE_ATTRIBUTES: ' team = net%2Cops , ,region=eu%3Dwest', OTEL_SERVICE_NAME: 'x' }],
    [{ OTEL_RESOURCE_ATTRIBUTES: 'host.name=theirs,telemetry.sdk.name=other' }],
    // Malformed: the SDK drops the whole variable.
    [{ OTEL_RESOURCE_ATTRIBUTES: 'ok=1,broken' }],
    [{ OTEL_RESOURCE_ATTRIBUTES: 'ok=1,a=b=c' }],
    [{ OTEL_RESOURCE_ATTRIBUTES: 'ok=1,bad=%E0%A4%A' }],
    [{ OTEL_RESOURCE_ATTRIBUTES: `ok=1,long=${'v'.repeat(256)}` }],
    [{ OTEL_RESOURCE_ATTRIBUTES: '   ', OTEL_SERVICE_NAME: ' ' }],
  ])('%j: the attributes the SDK gives, in its order', (env: Record<string, string>) => {
    Object.assign(process.env, env);
    const sdk = defaultResource()
      .merge(detectResources({ detectors: [envDetector] }))
      .merge(
        resourceFromAttributes({
          'service.name': own.serviceName,
          'service.version': own.serviceVersion,
          ...own.resource,
        }),
      );
    expect(Object.entries(resourceAttributes(own, env))).toEqual(Object.entries(sdk.attributes));
  });
});
