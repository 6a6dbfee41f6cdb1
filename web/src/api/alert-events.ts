/**
 * The security events behind an alert (its `eventSeqs`, the latest ones, bounded by the server). The
 * events API pages by seq (?after=, oldest first), so this walks from just before the first wanted seq
 * and keeps the wanted ones: a few pages at most, since the seqs of one alert are close together.
 */
import { get, type RequestOptions } from './client.js';
import type { List, SecurityAlert, SecurityEvent } from './types.js';

const PAGE = 1000;
const MAX_PAGES = 5;

export async function loadAlertEvents(alert: SecurityAlert, platform: boolean): Promise<SecurityEvent[]> {
  const wanted = new Set(alert.eventSeqs);
  if (wanted.size === 0) return [];
  const path = platform ? '/v1/platform/security/events' : '/v1/security/events';
  // The alert's own tenant (on the platform route it narrows the stream); platform-wide: none.
  const tenant = alert.tenantId ?? undefined;
  const base: RequestOptions = tenant ? { tenant: false } : {};
  const last = Math.max(...wanted);
  let after = Math.min(...wanted) - 1;
  const found: SecurityEvent[] = [];
  for (let page = 0; page < MAX_PAGES && after < last; page++) {
    const { items } = await get<List<SecurityEvent>>(path, {
      ...base,
      query: { tenant, after: String(after), limit: String(PAGE) },
    });
    for (const event of items) if (wanted.has(event.seq)) found.push(event);
    if (items.length < PAGE) break;
    after = items.at(-1)!.seq;
  }
  return found;
}
