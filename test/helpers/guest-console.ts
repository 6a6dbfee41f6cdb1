/**
 * Runs shell commands in a tiny guest through its serial console (the WebSocket console stream), and
 * returns what they printed. Lines stay short: busybox ash loses input lines longer than ~80 columns.
 */
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import type { RampartHarness } from './rampart-harness.js';

export class GuestConsole {
  private received = '';

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => (this.received += data.toString('utf8')));
  }

  static async open(harness: RampartHarness, vm: string, tenant?: string): Promise<GuestConsole> {
    const query = tenant ? `?tenant=${tenant}` : '';
    const ws = new WebSocket(`${harness.url.replace('http', 'ws')}/v1/vms/${vm}/console/stream${query}`, {
      headers: { authorization: `Bearer ${harness.token}` },
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const console = new GuestConsole(ws);
    // Wake the shell (the console may be mid-boot): wait until it answers.
    await console.run('true', 90_000);
    return console;
  }

  /** Runs one short command line; resolves with its output and exit status. */
  async run(line: string, timeoutMs = 30_000): Promise<{ output: string; status: number }> {
    const tag = randomBytes(3).toString('hex');
    this.received = '';
    // The markers are computed by the shell, so the echo of the typed line never matches them.
    const begin = `echo B-${tag}-$((1+1))\n`;
    const deadline = Date.now() + timeoutMs;
    // The command is typed only once the shell has answered the begin marker: typed while the shell
    // was still printing, its echo came interleaved with that output, and half of it was taken for
    // the command's output (seen through a replica's console relay). The marker is typed again every
    // 10 s while nothing answers (a console still booting).
    for (let sentAt = 0; !this.received.includes(`B-${tag}-2`);) {
      if (Date.now() > deadline)
        throw new Error(`guest did not answer on its console: ${this.received.slice(-500)}`);
      if (Date.now() - sentAt >= 10_000) {
        this.ws.send(begin);
        sentAt = Date.now();
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    this.ws.send(`${line}\n`);
    this.ws.send(`echo E-${tag}-$((1+1))-$?\n`);
    const end = new RegExp(`E-${tag}-2-(\\d+)`);
    for (;;) {
      const match = end.exec(this.received);
      if (match) {
        const start = this.received.lastIndexOf(`B-${tag}-2`, match.index);
        const body = this.received.slice(start + `B-${tag}-2`.length, match.index);
        // Drop the echo of the typed command and of the end marker line.
        const output = body
          .split(/\r?\n/)
          .filter((l) => !l.includes(line) && !l.includes(`E-${tag}`))
          .join('\n')
          .trim();
        return { output, status: Number(match[1]) };
      }
      if (Date.now() > deadline)
        throw new Error(`guest did not finish "${line}": ${this.received.slice(-500)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  close(): void {
    this.ws.close();
  }
}

/** Starts a stopped VM, runs `work` on its serial console, then stops it again (and waits for both). */
export async function withRunningGuest(
  harness: RampartHarness,
  vm: string,
  work: (shell: GuestConsole) => Promise<void>,
): Promise<void> {
  const started = await harness.api('POST', `/v1/vms/${vm}/start`);
  if (started.status !== 202)
    throw new Error(`start ${vm}: ${started.status} ${JSON.stringify(started.body)}`);
  await harness.waitForState(vm, 'running');
  const shell = await GuestConsole.open(harness, vm);
  try {
    await work(shell);
  } finally {
    shell.close();
  }
  const stopped = await harness.api('POST', `/v1/vms/${vm}/stop`);
  if (stopped.status !== 202)
    throw new Error(`stop ${vm}: ${stopped.status} ${JSON.stringify(stopped.body)}`);
  await harness.waitForState(vm, 'stopped');
}
