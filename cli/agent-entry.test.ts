import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { agentDaemonUrl } from './agent-entry.js';

describe('agentDaemonUrl', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  function built(withBundle: boolean): string {
    const root = mkdtempSync(join(tmpdir(), 'fl-entry-'));
    dirs.push(root);
    mkdirSync(join(root, 'cli'));
    writeFileSync(join(root, 'cli', 'agent-entry.js'), '');
    if (withBundle) {
      mkdirSync(join(root, 'agent-bundle'));
      writeFileSync(join(root, 'agent-bundle', 'agent-daemon.js'), '');
    }
    return pathToFileURL(join(root, 'cli', 'agent-entry.js')).href;
  }

  it('is the bundle beside the built CLI when the build made one', () => {
    const from = built(true);
    expect(agentDaemonUrl(from).href).toBe(new URL('../agent-bundle/agent-daemon.js', from).href);
  });

  it("is the CLI's own module where there is no bundle (from source, a build without it)", () => {
    const from = built(false);
    expect(agentDaemonUrl(from).href).toBe(new URL('./agent-daemon.js', from).href);
  });
});
