import { probeKinds, probeRegistry } from './registry.js';

const targetForms = {
  host: 'host or IP',
  hostPort: 'host:port',
  url: 'http(s) URL',
} as const;

/** The README's probe-kinds table, rendered from the registry (so docs cannot drift). */
export function probeKindsTable(): string {
  const rows = probeKinds.map((kind) => {
    const def = probeRegistry[kind];
    const form = targetForms[def.target.form];
    const target =
      def.target.defaultPort === undefined
        ? form
        : `${form} (default port ${def.target.defaultPort})`;
    return `| \`${kind}\` | ${target} | ${def.description} |`;
  });
  return ['| kind | target | what it tells |', '|---|---|---|', ...rows].join('\n');
}
