// Bundles the agent daemon (dist/cli/agent-daemon.js and everything it imports, its
// dependencies included) into dist/agent-bundle/, which `faultline agent` runs
// (cli/agent-entry.ts). Run by `npm run build` after tsc.
//
// Why: Node keeps ~35 kB of RSS for every ES module it loads, plus each module's source;
// the agent loads ~250 of them (zod alone ~95, all 60-odd of its message locales among
// them). One minified module, with zod's English messages only, is ~3 MB less RSS at 100
// and at 1,000 targets (the README's fifth pass) for a daemon that runs on every host. What is loaded lazily stays a separate chunk, loaded
// when needed (the managed agent's modules).
import { renameSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const outdir = `${root}dist/agent-bundle`;

/**
 * zod's locales index re-exports every language's messages, which its core imports: here it
 * exports English only, the language zod is configured with (and the agent's own messages
 * replace most of it: lib/config-file.ts). `z.locales` is used nowhere in the agent.
 */
const zodEnglishOnly = {
  name: 'zod-english-only',
  setup(b) {
    b.onLoad({ filter: /[\\/]zod[\\/]v4[\\/]locales[\\/]index\.js$/ }, () => ({
      contents: 'export { default as en } from "./en.js";',
      loader: 'js',
    }));
  },
};

// Built beside and moved into place: a test's ensureBuilt() may rebuild it while another
// test's agent runs from it.
const building = `${outdir}.${process.pid}`;
rmSync(building, { recursive: true, force: true });
const result = await build({
  absWorkingDir: root,
  entryPoints: ['dist/cli/agent-daemon.js'],
  outdir: building,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Whitespace and syntax, not names: classes and functions keep theirs (pino logs an
  // error's class as its `type`; stacks name functions) at no cost, where esbuild's
  // keepNames costs ~1.5 MB of RSS in the helpers it wraps every function with.
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: true,
  // CommonJS dependencies (yaml, pino) call require: give the ES module one.
  banner: {
    js: "import { createRequire as __faultlineRequire } from 'node:module'; const require = __faultlineRequire(import.meta.url);",
  },
  plugins: [zodEnglishOnly],
  // Loaded only by the agents that use them (an OTLP push, NATS, a mysql target), from
  // node_modules as published: the OTLP exporters, loaded with require, bring their own copy
  // of the SDK, which must be the one the pipeline uses.
  external: ['@opentelemetry/*', '@nats-io/*', 'mysql2', 'mysql2/*'],
  logLevel: 'warning',
  metafile: true,
});
const inputs = Object.keys(result.metafile.inputs);
const problem = inputs.some((p) => /[\\/]zod[\\/]v4[\\/]locales[\\/](?!en\.js|index\.js)/.test(p))
  ? "a zod locale other than English was bundled: zod's locales index moved; point the zod-english-only plugin's filter in scripts/bundle-agent.mjs at it"
  : !inputs.some((p) => /[\\/]zod[\\/]/.test(p))
    ? 'zod was not bundled: check that dist/cli/agent-daemon.js is built (npx tsc -p tsconfig.build.json) and imports the agent'
    : undefined;
if (problem !== undefined) {
  rmSync(building, { recursive: true, force: true });
  throw new Error(`bundle-agent: ${problem}`);
}
rmSync(outdir, { recursive: true, force: true });
renameSync(building, outdir);
