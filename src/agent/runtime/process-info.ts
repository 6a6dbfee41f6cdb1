/**
 * Identifies a process across agent restarts: pid plus its start time from /proc/<pid>/stat, so a
 * recycled pid is never mistaken for our QEMU. Zombies count as dead.
 */
import { readFileSync } from 'node:fs';

export interface ProcessIdentity {
  pid: number;
  startTime: string;
}

interface StatFields {
  state: string;
  startTime: string;
}

function readStat(pid: number): StatFields | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may contain spaces.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0] ?? '?', startTime: rest[19] ?? '' };
  } catch {
    return null;
  }
}

export function identify(pid: number): ProcessIdentity | null {
  const stat = readStat(pid);
  return stat ? { pid, startTime: stat.startTime } : null;
}

export function isAlive(identity: ProcessIdentity): boolean {
  const stat = readStat(identity.pid);
  return stat !== null && stat.state !== 'Z' && stat.state !== 'X' && stat.startTime === identity.startTime;
}

/** Values of a /proc/<pid>/status field, e.g. `Seccomp`, `NoNewPrivs`, `CapEff`, `Uid`. */
export function statusField(pid: number, field: string): string | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const line = status.split('\n').find((l) => l.startsWith(`${field}:`));
    return line ? line.slice(field.length + 1).trim() : null;
  } catch {
    return null;
  }
}
