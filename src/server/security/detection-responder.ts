/**
 * The automatic responses of detection rules, through the same services a person uses: pause or stop
 * a VM (VmService), disable a user (which also revokes its sessions and tokens), revoke an API token.
 * Each answers a short outcome for the alert; a person undoes it the usual way (resume or start the
 * VM, re-enable the user).
 */
import { nowIso, type Db } from '../store/database.js';
import type { VmService } from '../compute/vm-service.js';
import type { UserDirectory } from '../iam/user-directory.js';
import type { DetectionResponder } from './detection-service.js';

export function detectionResponder(deps: {
  db: Db;
  vms: VmService;
  users: UserDirectory;
}): DetectionResponder {
  return {
    async pauseVm(vmId) {
      const vm = await deps.vms.act(vmId, 'pause');
      return `paused VM ${vm.name} (resume it to undo)`;
    },
    async stopVm(vmId) {
      const vm = await deps.vms.act(vmId, 'stop', { force: true });
      return `stopped VM ${vm.name} (start it to undo)`;
    },
    async isolateVm(vmId) {
      const vm = await deps.vms.findRow(vmId);
      const ports = await deps.vms.setIsolation(vm, true);
      return ports.length > 0
        ? `isolated VM ${vm.name}: ${ports.length} port(s) drop everything (PUT /v1/vms/${vm.name}/isolation {"isolated":false} to undo)`
        : `not done: VM ${vm.name} has no network port`;
    },
    async disableUser(userId) {
      const user = await deps.users.setDisabled(userId, true);
      return `disabled user ${user.username} and revoked its sessions and tokens (re-enable to undo)`;
    },
    async revokeToken(tokenId) {
      const result = await deps.db
        .updateTable('apiTokens')
        .set({ revokedAt: nowIso() })
        .where('id', '=', tokenId)
        .where('revokedAt', 'is', null)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) === 1
        ? `revoked API token ${tokenId}`
        : 'not done: no such live token';
    },
  };
}
