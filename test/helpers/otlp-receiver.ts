import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

/**
 * A tiny OTLP/HTTP metrics receiver for tests: collects what exporters POST to /v1/metrics,
 * decoded from both encodings (`application/json` and `application/x-protobuf`, optionally
 * gzip) into one simplified shape, so a test asserts names, attributes and values without
 * caring which protocol carried them. The protobuf decoder is hand-written for the subset
 * of opentelemetry/proto/metrics/v1 that metric exporters send: no dependency.
 */

export type AttrValue =
  string | number | boolean | null | AttrValue[] | { [key: string]: AttrValue };
export type Attrs = Record<string, AttrValue>;

/** One data point: `value` for gauges and sums; the histogram fields for histograms. */
export interface ReceivedPoint {
  readonly attributes: Attrs;
  readonly startTimeUnixNano: bigint;
  readonly timeUnixNano: bigint;
  readonly value?: number;
  readonly count?: number;
  readonly sum?: number;
  readonly min?: number;
  readonly max?: number;
  readonly bucketCounts?: number[];
  readonly explicitBounds?: number[];
}

export interface ReceivedMetric {
  readonly name: string;
  readonly description: string;
  readonly unit: string;
  readonly type: 'gauge' | 'sum' | 'histogram' | 'exponentialHistogram' | 'summary' | 'unknown';
  /** 1 delta, 2 cumulative (the OTLP enum); absent for gauges. */
  readonly temporality?: number;
  readonly monotonic?: boolean;
  readonly scope: { readonly name: string; readonly version: string };
  readonly points: ReceivedPoint[];
}

/** One POST, decoded. */
export interface ReceivedExport {
  readonly path: string;
  readonly encoding: 'json' | 'protobuf';
  readonly headers: IncomingHttpHeaders;
  readonly resource: Attrs;
  readonly metrics: ReceivedMetric[];
}

export interface OtlpReceiverOptions {
  /** Never answer (tests that an exporter's caller gives up in time). */
  readonly hang?: boolean;
  /** HTTP status to answer with; 200 by default. */
  readonly status?: number;
}

/** A started receiver on 127.0.0.1, port 0. `close()` it in afterEach/afterAll. */
export class OtlpReceiver {
  readonly exports: ReceivedExport[] = [];
  /** Requests whose body could not be decoded (the test should assert this stays empty). */
  readonly errors: string[] = [];
  private readonly server: Server;
  private readonly hanging = new Set<() => void>();
  private port = 0;

  private constructor(private readonly options: OtlpReceiverOptions) {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.receive(req.url ?? '', req.headers, Buffer.concat(chunks));
        if (this.options.hang === true) {
          this.hanging.add(() => void res.destroy());
          return;
        }
        const json = String(req.headers['content-type']).includes('json');
        res.writeHead(this.options.status ?? 200, {
          'content-type': json ? 'application/json' : 'application/x-protobuf',
        });
        res.end(json ? '{}' : undefined);
      });
    });
  }

  /** Base URL, e.g. `http://127.0.0.1:41234`: what OTEL_EXPORTER_OTLP_ENDPOINT takes. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(options: OtlpReceiverOptions = {}): Promise<OtlpReceiver> {
    const receiver = new OtlpReceiver(options);
    await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
    receiver.port = (receiver.server.address() as AddressInfo).port;
    return receiver;
  }

  /** Every data point of `name` in every export so far, oldest first. */
  points(name: string): { metric: ReceivedMetric; point: ReceivedPoint }[] {
    const out: { metric: ReceivedMetric; point: ReceivedPoint }[] = [];
    for (const e of this.exports)
      for (const m of e.metrics)
        if (m.name === name) for (const p of m.points) out.push({ metric: m, point: p });
    return out;
  }

  /** The newest data point of `name` whose attributes include `match`. */
  latest(
    name: string,
    match: Attrs = {},
  ): { metric: ReceivedMetric; point: ReceivedPoint } | undefined {
    const all = this.points(name).filter(({ point }) =>
      Object.entries(match).every(([k, v]) => point.attributes[k] === v),
    );
    return all.at(-1);
  }

  async close(): Promise<void> {
    for (const release of this.hanging) release();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private receive(path: string, headers: IncomingHttpHeaders, raw: Buffer): void {
    try {
      const body = headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
      const json = String(headers['content-type']).includes('json');
      const decoded = json
        ? fromJson(JSON.parse(body.toString('utf8')) as JsonRequest)
        : fromProtobuf(body);
      for (const r of decoded)
        this.exports.push({ path, encoding: json ? 'json' : 'protobuf', headers, ...r });
    } catch (err) {
      this.errors.push(err instanceof Error ? err.message : String(err));
    }
  }
}

// ---------------------------------------------------------------------------------------
// JSON (OTLP/HTTP JSON encoding: camelCase keys, 64-bit integers as strings)

interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number;
  arrayValue?: { values?: JsonAnyValue[] };
  kvlistValue?: { values?: JsonKeyValue[] };
}
interface JsonKeyValue {
  key: string;
  value?: JsonAnyValue;
}
interface JsonPoint {
  attributes?: JsonKeyValue[];
  startTimeUnixNano?: string | number;
  timeUnixNano?: string | number;
  asDouble?: number;
  asInt?: string | number;
  count?: string | number;
  sum?: number;
  min?: number;
  max?: number;
  bucketCounts?: (string | number)[];
  explicitBounds?: number[];
}
interface JsonMetric {
  name: string;
  description?: string;
  unit?: string;
  gauge?: { dataPoints?: JsonPoint[] };
  sum?: { dataPoints?: JsonPoint[]; aggregationTemporality?: number; isMonotonic?: boolean };
  histogram?: { dataPoints?: JsonPoint[]; aggregationTemporality?: number };
  exponentialHistogram?: unknown;
  summary?: unknown;
}
interface JsonRequest {
  resourceMetrics?: {
    resource?: { attributes?: JsonKeyValue[] };
    scopeMetrics?: { scope?: { name?: string; version?: string }; metrics?: JsonMetric[] }[];
  }[];
}

function jsonValue(v: JsonAnyValue | undefined): AttrValue {
  if (v === undefined) return null;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(jsonValue);
  if (v.kvlistValue !== undefined) return jsonAttrs(v.kvlistValue.values);
  return null;
}
function jsonAttrs(kvs: JsonKeyValue[] | undefined): Attrs {
  const out: Attrs = {};
  for (const kv of kvs ?? []) out[kv.key] = jsonValue(kv.value);
  return out;
}
function jsonPoint(p: JsonPoint): ReceivedPoint {
  const point: Record<string, unknown> = {
    attributes: jsonAttrs(p.attributes),
    startTimeUnixNano: BigInt(p.startTimeUnixNano ?? 0),
    timeUnixNano: BigInt(p.timeUnixNano ?? 0),
  };
  if (p.asDouble !== undefined) point.value = p.asDouble;
  if (p.asInt !== undefined) point.value = Number(p.asInt);
  if (p.count !== undefined) point.count = Number(p.count);
  if (p.sum !== undefined) point.sum = p.sum;
  if (p.min !== undefined) point.min = p.min;
  if (p.max !== undefined) point.max = p.max;
  if (p.bucketCounts !== undefined) point.bucketCounts = p.bucketCounts.map(Number);
  if (p.explicitBounds !== undefined) point.explicitBounds = p.explicitBounds;
  return point as unknown as ReceivedPoint;
}
function fromJson(req: JsonRequest): Omit<ReceivedExport, 'path' | 'encoding' | 'headers'>[] {
  return (req.resourceMetrics ?? []).map((rm) => ({
    resource: jsonAttrs(rm.resource?.attributes),
    metrics: (rm.scopeMetrics ?? []).flatMap((sm) => {
      const scope = { name: sm.scope?.name ?? '', version: sm.scope?.version ?? '' };
      return (sm.metrics ?? []).map((m): ReceivedMetric => {
        const base = { name: m.name, description: m.description ?? '', unit: m.unit ?? '', scope };
        if (m.gauge)
          return { ...base, type: 'gauge', points: (m.gauge.dataPoints ?? []).map(jsonPoint) };
        if (m.sum) {
          return {
            ...base,
            type: 'sum',
            temporality: m.sum.aggregationTemporality ?? 0,
            monotonic: m.sum.isMonotonic ?? false,
            points: (m.sum.dataPoints ?? []).map(jsonPoint),
          };
        }
        if (m.histogram) {
          return {
            ...base,
            type: 'histogram',
            temporality: m.histogram.aggregationTemporality ?? 0,
            points: (m.histogram.dataPoints ?? []).map(jsonPoint),
          };
        }
        return {
          ...base,
          type: m.exponentialHistogram ? 'exponentialHistogram' : m.summary ? 'summary' : 'unknown',
          points: [],
        };
      });
    }),
  }));
}

// ---------------------------------------------------------------------------------------
// Protobuf (opentelemetry/proto/collector/metrics/v1 ExportMetricsServiceRequest)

/** A protobuf field: its number and raw payload (varint as bigint, fixed as bytes). */
interface Field {
  readonly no: number;
  readonly wire: number;
  readonly varint?: bigint;
  readonly bytes?: Uint8Array;
}

function readFields(buf: Uint8Array): Field[] {
  const out: Field[] = [];
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw new Error('protobuf: truncated varint');
      const b = buf[pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  const take = (n: number): Uint8Array => {
    if (pos + n > buf.length) throw new Error('protobuf: truncated field');
    const b = buf.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  while (pos < buf.length) {
    const tag = Number(varint());
    const no = tag >>> 3;
    const wire = tag & 7;
    if (wire === 0) out.push({ no, wire, varint: varint() });
    else if (wire === 1) out.push({ no, wire, bytes: take(8) });
    else if (wire === 2) out.push({ no, wire, bytes: take(Number(varint())) });
    else if (wire === 5) out.push({ no, wire, bytes: take(4) });
    else throw new Error(`protobuf: unsupported wire type ${wire} at byte ${pos}`);
  }
  return out;
}

const text = (b: Uint8Array | undefined): string => new TextDecoder().decode(b ?? new Uint8Array());
const fixed64 = (b: Uint8Array | undefined): bigint =>
  b ? new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true) : 0n;
const double = (b: Uint8Array | undefined): number =>
  b ? new DataView(b.buffer, b.byteOffset, 8).getFloat64(0, true) : 0;
const signed64 = (v: bigint): number => Number(BigInt.asIntN(64, v));

/** Repeated fixed64/double: packed (one length-delimited field) or not (one field each). */
function repeated8(fields: Field[], no: number, read: (b: Uint8Array) => number): number[] {
  const out: number[] = [];
  for (const f of fields) {
    if (f.no !== no || f.bytes === undefined) continue;
    if (f.wire === 1) out.push(read(f.bytes));
    else
      for (let i = 0; i + 8 <= f.bytes.length; i += 8) out.push(read(f.bytes.subarray(i, i + 8)));
  }
  return out;
}

function pbAnyValue(buf: Uint8Array): AttrValue {
  for (const f of readFields(buf)) {
    switch (f.no) {
      case 1:
        return text(f.bytes);
      case 2:
        return f.varint === 1n;
      case 3:
        return signed64(f.varint ?? 0n);
      case 4:
        return double(f.bytes);
      case 5:
        return readFields(f.bytes ?? new Uint8Array())
          .filter((v) => v.no === 1)
          .map((v) => pbAnyValue(v.bytes ?? new Uint8Array()));
      case 6:
        return pbAttrs(readFields(f.bytes ?? new Uint8Array()), 1);
      case 7:
        return Buffer.from(f.bytes ?? new Uint8Array()).toString('base64');
    }
  }
  return null;
}

function pbAttrs(fields: Field[], no: number): Attrs {
  const out: Attrs = {};
  for (const f of fields) {
    if (f.no !== no) continue;
    const kv = readFields(f.bytes ?? new Uint8Array());
    const key = text(kv.find((x) => x.no === 1)?.bytes);
    const value = kv.find((x) => x.no === 2);
    out[key] = value ? pbAnyValue(value.bytes ?? new Uint8Array()) : null;
  }
  return out;
}

function pbNumberPoint(buf: Uint8Array): ReceivedPoint {
  const f = readFields(buf);
  const point: Record<string, unknown> = {
    attributes: pbAttrs(f, 7),
    startTimeUnixNano: fixed64(f.find((x) => x.no === 2)?.bytes),
    timeUnixNano: fixed64(f.find((x) => x.no === 3)?.bytes),
  };
  const asDouble = f.find((x) => x.no === 4);
  const asInt = f.find((x) => x.no === 6);
  if (asDouble) point.value = double(asDouble.bytes);
  if (asInt) point.value = signed64(fixed64(asInt.bytes));
  return point as unknown as ReceivedPoint;
}

function pbHistogramPoint(buf: Uint8Array): ReceivedPoint {
  const f = readFields(buf);
  const point: Record<string, unknown> = {
    attributes: pbAttrs(f, 9),
    startTimeUnixNano: fixed64(f.find((x) => x.no === 2)?.bytes),
    timeUnixNano: fixed64(f.find((x) => x.no === 3)?.bytes),
    count: Number(fixed64(f.find((x) => x.no === 4)?.bytes)),
    bucketCounts: repeated8(f, 6, (b) => Number(fixed64(b))),
    explicitBounds: repeated8(f, 7, double),
  };
  const sum = f.find((x) => x.no === 5);
  const min = f.find((x) => x.no === 11);
  const max = f.find((x) => x.no === 12);
  if (sum) point.sum = double(sum.bytes);
  if (min) point.min = double(min.bytes);
  if (max) point.max = double(max.bytes);
  return point as unknown as ReceivedPoint;
}

function pbMetric(buf: Uint8Array, scope: ReceivedMetric['scope']): ReceivedMetric {
  const f = readFields(buf);
  const base = {
    name: text(f.find((x) => x.no === 1)?.bytes),
    description: text(f.find((x) => x.no === 2)?.bytes),
    unit: text(f.find((x) => x.no === 3)?.bytes),
    scope,
  };
  const data = (no: number): Field[] | undefined => {
    const d = f.find((x) => x.no === no);
    return d ? readFields(d.bytes ?? new Uint8Array()) : undefined;
  };
  const points = (d: Field[], decode: (b: Uint8Array) => ReceivedPoint): ReceivedPoint[] =>
    d.filter((x) => x.no === 1).map((x) => decode(x.bytes ?? new Uint8Array()));
  const temporality = (d: Field[]): number => Number(d.find((x) => x.no === 2)?.varint ?? 0n);
  const gauge = data(5);
  if (gauge) return { ...base, type: 'gauge', points: points(gauge, pbNumberPoint) };
  const sum = data(7);
  if (sum)
    return {
      ...base,
      type: 'sum',
      temporality: temporality(sum),
      monotonic: sum.find((x) => x.no === 3)?.varint === 1n,
      points: points(sum, pbNumberPoint),
    };
  const histogram = data(9);
  if (histogram)
    return {
      ...base,
      type: 'histogram',
      temporality: temporality(histogram),
      points: points(histogram, pbHistogramPoint),
    };
  return {
    ...base,
    type: data(10) ? 'exponentialHistogram' : data(11) ? 'summary' : 'unknown',
    points: [],
  };
}

function fromProtobuf(buf: Uint8Array): Omit<ReceivedExport, 'path' | 'encoding' | 'headers'>[] {
  return readFields(buf)
    .filter((rm) => rm.no === 1)
    .map((rm) => {
      const rmFields = readFields(rm.bytes ?? new Uint8Array());
      const resource = rmFields.find((x) => x.no === 1);
      return {
        resource: resource ? pbAttrs(readFields(resource.bytes ?? new Uint8Array()), 1) : {},
        metrics: rmFields
          .filter((x) => x.no === 2)
          .flatMap((sm) => {
            const smFields = readFields(sm.bytes ?? new Uint8Array());
            const scopeFields = readFields(
              smFields.find((x) => x.no === 1)?.bytes ?? new Uint8Array(),
            );
            const scope = {
              name: text(scopeFields.find((x) => x.no === 1)?.bytes),
              version: text(scopeFields.find((x) => x.no === 2)?.bytes),
            };
            return smFields
              .filter((x) => x.no === 2)
              .map((m) => pbMetric(m.bytes ?? new Uint8Array(), scope));
          }),
      };
    });
}
