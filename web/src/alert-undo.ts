/**
 * The inverse of each automatic response a detection rule can take (src/server/security/
 * detection-responder.ts), with the permission its route needs (src/server/http/route-policy.ts):
 * - isolate-vm  -> PUT /v1/vms/{id}/isolation {isolated:false}   security:respond
 * - pause-vm    -> POST /v1/vms/{id}/resume                      vm:resume
 * - stop-vm     -> POST /v1/vms/{id}/start                       vm:start
 * - snapshot-vm -> POST /v1/vms/{id}/start (it stopped the VM; the snapshot stays as evidence)
 * - disable-user -> PATCH /v1/users/{id} {disabled:false}        platform:user:update
 * - revoke-token: cannot be undone (a revoked token stays revoked): issue a new token.
 * Offered only once the response was done (its outcome says what it did, not "failed"/"not done").
 */
import type { RequestOptions } from './api/client.js';
import type { SecurityAlert } from './api/types.js';

export interface Undo {
  label: string;
  /** What the notice says once it is done. */
  done: string;
  method: string;
  path: string;
  body: unknown;
  permission: string;
  options: RequestOptions;
}

export type UndoOf = { kind: 'undo'; undo: Undo } | { kind: 'impossible'; text: string } | null;

/** Outcomes of a response that was done: the responder's messages start with what it did. */
const DONE = /^(isolated|paused|stopped|disabled|revoked)\b/;

export function undoOf(alert: SecurityAlert): UndoOf {
  const { action, target, outcome } = alert.response;
  if (!target || !DONE.test(outcome)) return null;
  const id = encodeURIComponent(target);
  // VM routes act in the alert's tenant (by id), whichever tenant the switcher shows.
  const inTenant: RequestOptions = alert.tenantId ? { tenant: false, query: { tenant: alert.tenantId } } : {};
  const vm = (label: string, done: string, method: string, path: string, body: unknown, permission: string) =>
    ({ kind: 'undo', undo: { label, done, method, path, body, permission, options: inTenant } }) as const;
  switch (action) {
    case 'isolate-vm':
      return vm(
        'Release isolation',
        'Isolation released',
        'PUT',
        `/v1/vms/${id}/isolation`,
        { isolated: false },
        'security:respond',
      );
    case 'pause-vm':
      return vm('Resume VM', 'VM resumed', 'POST', `/v1/vms/${id}/resume`, {}, 'vm:resume');
    case 'stop-vm':
    case 'snapshot-vm':
      return vm('Start VM', 'VM starting', 'POST', `/v1/vms/${id}/start`, {}, 'vm:start');
    case 'disable-user':
      return {
        kind: 'undo',
        undo: {
          label: 'Re-enable user',
          done: 'User re-enabled (their sessions and tokens stay revoked)',
          method: 'PATCH',
          path: `/v1/users/${id}`,
          body: { disabled: false },
          permission: 'platform:user:update',
          options: { tenant: false },
        },
      };
    case 'revoke-token':
      return {
        kind: 'impossible',
        text: 'A revoked token cannot be restored: issue a new token if it is still needed.',
      };
    default:
      return null;
  }
}
