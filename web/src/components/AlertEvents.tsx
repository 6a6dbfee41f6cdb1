/**
 * The evidence of an alert: its security events, in a collapsible list loaded when first opened,
 * each with a link to what it is about where the console has a page for it.
 */
import { useState } from 'react';
import { loadAlertEvents } from '../api/alert-events.js';
import type { SecurityAlert, SecurityEvent } from '../api/types.js';
import { when } from '../format.js';
import { Link } from '../router.js';
import { Notice } from './Notice.js';
import { Badge } from './StateBadge.js';

/** The console page of an event's subject, if there is one. */
function subjectHref(event: SecurityEvent): string | null {
  if (!event.subjectId) return null;
  switch (event.subjectType) {
    case 'vm':
      return `/vms/${event.subjectId}`;
    case 'image':
      return '/images';
    case 'user':
      return '/users';
    case 'token':
      return '/tokens';
    case 'network':
      return '/networks';
    case 'security-group':
      return '/security-groups';
    default:
      return null;
  }
}

function detailText(detail: Record<string, unknown>): string {
  return Object.entries(detail)
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .join(' ');
}

export function AlertEvents({ alert, platform }: { alert: SecurityAlert; platform: boolean }) {
  const [events, setEvents] = useState<SecurityEvent[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = () => {
    if (events !== null) return;
    loadAlertEvents(alert, platform)
      .then((found) => setEvents(found.reverse()))
      .catch((e: Error) => setError(e.message));
  };
  const count = alert.eventSeqs.length;
  return (
    <details className="alert-events" onToggle={(e) => e.currentTarget.open && load()}>
      <summary>
        Evidence: {count} event{count === 1 ? '' : 's'}
      </summary>
      <Notice error={error} />
      {events === null && !error && <p className="muted">Loading events…</p>}
      {events !== null && events.length === 0 && (
        <p className="muted">The events are no longer kept (or not visible to you).</p>
      )}
      {events !== null && events.length > 0 && (
        <ol className="plain event-list">
          {events.map((event) => {
            const href = subjectHref(event);
            return (
              <li key={event.id}>
                <span className="nowrap muted">
                  #{event.seq} {when(event.occurredAt)}
                </span>{' '}
                <Badge value={event.severity} kind="severity" /> <code>{event.kind}</code>{' '}
                {href ? <Link href={href}>{event.summary}</Link> : event.summary}
                {Object.keys(event.detail).length > 0 && (
                  <code className="event-detail break">{detailText(event.detail)}</code>
                )}
              </li>
            );
          })}
        </ol>
      )}
    </details>
  );
}
