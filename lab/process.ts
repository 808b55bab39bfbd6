import type { ChildProcess } from 'node:child_process';
import { sh } from './netns.js';

/** A lab process with its output tail kept. */
export class LabProcess {
  private output = '';
  readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    const keep = (d: Buffer): void => {
      this.output = (this.output + d.toString()).slice(-64 * 1024);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.on('error', (err) => keep(Buffer.from(`spawn error: ${err.message}\n`)));
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  log(): string {
    return this.output;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.pid !== undefined && this.running) {
      try {
        process.kill(this.pid, sig);
      } catch {
        /* already gone */
      }
    }
  }

  /** SIGKILL and wait until it is gone (bounded). */
  async kill(): Promise<void> {
    this.signal('SIGCONT');
    this.signal('SIGKILL');
    await Promise.race([this.exited, new Promise((r) => setTimeout(r, 5000))]);
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    this.signal('SIGTERM');
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs));
    if ((await Promise.race([this.exited.then(() => 'exited' as const), timer])) === 'timeout') {
      await this.kill();
    }
  }
}

/** `cmd args` made to die with this process (setpriv execs: the PID stays the command's). */
export function dying(cmd: string, args: readonly string[]): string[] {
  return ['setpriv', '--pdeathsig', 'KILL', '--', cmd, ...args];
}

/** `argv` run at nice value `niceness` (nice execs: the PID stays the command's). */
export function niced(argv: string[], niceness: number): string[] {
  return niceness === 0 ? argv : ['nice', '-n', String(niceness), ...argv];
}

/**
 * Gives a started server's processes nice value `niceness` (its children inherit it). A
 * process that ended between being listed and reniced (PostgreSQL's short-lived start-up
 * children) is no error; any other refusal is.
 */
export async function renice(pids: readonly number[], niceness: number): Promise<void> {
  if (niceness === 0 || pids.length === 0) return;
  try {
    await sh('renice', ['-n', String(niceness), '-p', ...pids.map(String)]);
  } catch (err) {
    const refusals = (err as Error).message.split('\n').filter((l) => l.includes('renice:'));
    const onlyGone = refusals.length > 0 && refusals.every((l) => l.includes('No such process'));
    if (!onlyGone) throw err;
  }
}
