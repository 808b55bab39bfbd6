import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';

/** Debian's Chromium (scripts/install-system-deps.sh installs it); playwright-core drives it. */
export const chromiumBin = '/usr/bin/chromium';

/** Whether the tests can start a browser here. */
export const canRunBrowser = existsSync(chromiumBin);

/**
 * Starts Debian's Chromium headless. Close it with `browser.close()` in afterAll (it also
 * dies with the test process: playwright-core holds it on a pipe).
 */
export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumBin,
    headless: true,
    // Root in a container: Chromium's sandbox needs user namespaces it may not have.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
}
