import { createRequire } from 'node:module';
import type * as Cron from 'cron';
import type * as Re2js from 're2js';

/*
 * Libraries most agents never call, loaded the first time one is: `cron` (and luxon behind
 * it, ~2.5 MB of a daemon's memory) only for a target scheduled by a cron expression, `re2js`
 * (~1.5 MB) only for a user regex (an `expect` option). Both have a CommonJS build, so a
 * synchronous require serves the synchronous callers (config validation, the scheduler).
 */
const load = createRequire(import.meta.url);

/** The `cron` package. */
export function cronLibrary(): typeof Cron {
  return load('cron') as typeof Cron;
}

/** The `re2js` package. */
export function re2Library(): typeof Re2js {
  return load('re2js') as typeof Re2js;
}
