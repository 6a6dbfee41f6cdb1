/**
 * A VM's resource samples, oldest first: GET /v1/vms/{ref}/samples where the server has it, else the
 * `vm.sample` security events (their detail carries the same numbers). Which one exists is read once
 * from the OpenAPI document, so the console never asks for a route that is not there.
 */
import { get } from './client.js';
import type { List, SecurityEvent, VmSample } from './types.js';

let hasSamplesRoute: Promise<boolean> | null = null;

function samplesRoute(): Promise<boolean> {
  hasSamplesRoute ??= get<{ paths: Record<string, unknown> }>('/v1/openapi.json', { tenant: false })
    .then((doc) => '/v1/vms/{ref}/samples' in doc.paths)
    .catch(() => false);
  return hasSamplesRoute;
}

function num(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

export async function loadSamples(vmId: string, canReadEvents: boolean): Promise<VmSample[]> {
  if (await samplesRoute()) return (await get<List<VmSample>>(`/v1/vms/${vmId}/samples`)).items;
  if (!canReadEvents) return [];
  const events = await get<List<SecurityEvent>>('/v1/security/events', {
    query: { kind: 'vm.sample', limit: '500' },
  });
  return events.items
    .filter((e) => e.subjectId === vmId || e.detail.vmId === vmId)
    .reverse()
    .map((e) => ({
      at: e.occurredAt,
      cpuPercent: num(e.detail.cpuPercent),
      txPps: num(e.detail.txPps),
      rxPps: num(e.detail.rxPps),
      txBps: num(e.detail.txBps),
      rxBps: num(e.detail.rxBps),
    }));
}
