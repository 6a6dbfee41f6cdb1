/**
 * Watches every VM's serial console for the lines a kernel prints when something is wrong (oops,
 * panic, BUG, general protection fault, KASAN, stack smashing, segfaults, OOM kills) and records each
 * such line as a `guest.console` security event (detail { vmId, vmName, line }), for the detection
 * rules. Only matching lines become events: the console itself is the tenant's and stays out of the
 * stream. Lines are split per VM (a partial line is kept, bounded), stripped of escape sequences and
 * control characters, cut to 1 KiB, and at most MAX_PER_MINUTE lines per VM are recorded per minute
 * (a guest printing oopses in a loop cannot flood the stream).
 */
import type { Logger } from '../../common/logger.js';
import type { SecurityEventInput } from './security-events.js';

export interface ConsoleWatchDeps {
  /** The VM's name and tenant (undefined: gone). */
  vmOf: (vmId: string) => Promise<{ id: string; name: string; tenantId: string } | undefined>;
  record: (event: SecurityEventInput) => Promise<unknown>;
  log: Logger;
  now?: () => number;
}

/** Lines worth an event: a superset of what the shipped guest rules match. */
export const KERNEL_TROUBLE =
  /Kernel panic - not syncing|BUG: |general protection fault|Oops: |kernel BUG at|stack-protector: |segfault at [0-9a-f]+|Out of memory: Kill|invoked oom-killer|oom-kill:/;
const MAX_LINE = 1024;
const MAX_PARTIAL = 4096;
export const MAX_PER_MINUTE = 20;
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]/g;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f]/g;

/** A console line as it goes into an event: escape sequences and control characters removed, cut. */
export function cleanLine(raw: string): string {
  return raw.replace(ANSI, '').replace(CONTROL, '').trim().slice(0, MAX_LINE);
}

export class ConsoleWatch {
  private readonly partial = new Map<string, string>();
  private readonly budget = new Map<string, { minute: number; used: number }>();

  constructor(private readonly deps: ConsoleWatchDeps) {}

  /** A chunk of a VM's console output (as the host sent it). */
  feed(vmId: string, data: Buffer): void {
    const text = (this.partial.get(vmId) ?? '') + data.toString('utf8');
    const lines = text.split(/\r?\n/);
    const rest = lines.pop() ?? '';
    this.partial.set(vmId, rest.slice(-MAX_PARTIAL));
    for (const raw of lines) {
      if (!KERNEL_TROUBLE.test(raw)) continue;
      const line = cleanLine(raw);
      if (line === '' || !this.spend(vmId)) continue;
      void this.record(vmId, line).catch((error: unknown) =>
        this.deps.log.error({ vmId, err: (error as Error).message }, 'console event failed'),
      );
    }
  }

  /** Forgets a VM (deleted). */
  forget(vmId: string): void {
    this.partial.delete(vmId);
    this.budget.delete(vmId);
  }

  private spend(vmId: string): boolean {
    const minute = Math.floor((this.deps.now ?? Date.now)() / 60_000);
    const entry = this.budget.get(vmId);
    if (!entry || entry.minute !== minute) {
      this.budget.set(vmId, { minute, used: 1 });
      return true;
    }
    if (entry.used >= MAX_PER_MINUTE) return false;
    entry.used += 1;
    return true;
  }

  private async record(vmId: string, line: string): Promise<void> {
    const vm = await this.deps.vmOf(vmId);
    if (!vm) return;
    await this.deps.record({
      kind: 'guest.console',
      severity: 'medium',
      tenantId: vm.tenantId,
      subjectType: 'vm',
      subjectId: vm.id,
      summary: `VM ${vm.name} console: ${line.slice(0, 160)}`,
      detail: { vmId: vm.id, vmName: vm.name, line },
    });
  }
}
