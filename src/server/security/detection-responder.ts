/**
 * The automatic responses of detection rules, through the same services a person uses: pause or stop
 * a VM (VmService), disable a user (which also revokes its sessions and tokens), revoke an API token.
 * Each answers a short outcome for the alert; a person undoes it the usual way (resume or start the
 * VM, re-enable the user).
 */
import { nowIso, type Db } from '../store/database.js';
import type { VmService } from '../compute/vm-service.js';
import type { UserDirectory } from '../iam/user-directory.js';
import type { VolumeSnapshotService } from '../volumes/volume-snapshots.js';
import type { DetectionResponder } from './detection-service.js';

/** How long a forensic snapshot waits for the VM to stop. */
const STOP_WAIT_MS = 120_000;

export function detectionResponder(deps: {
  db: Db;
  vms: VmService;
  users: UserDirectory;
  snapshots?: VolumeSnapshotService;
}): DetectionResponder {
  return {
    /**
     * A forensic copy of the VM's root disk: the VM is stopped at once (a consistent disk; its memory is
     * not kept), then its root volume is snapshotted (encrypted under the volume's key, on its host).
     */
    async snapshotVm(vmId, label) {
      if (!deps.snapshots) return 'not available: no snapshot service';
      const vm = await deps.vms.findRow(vmId);
      if (!vm.rootVolumeId) return `not done: VM ${vm.name} boots a kernel+initrd image and has no root disk`;
      if (vm.state !== 'stopped') {
        await deps.vms.act(vm.id, 'stop', { force: true }).catch(() => undefined);
        const deadline = Date.now() + STOP_WAIT_MS;
        while ((await deps.vms.findRow(vm.id)).state !== 'stopped') {
          if (Date.now() > deadline) return `failed: VM ${vm.name} did not stop`;
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
      }
      const snapshot = await deps.snapshots.create(vm.rootVolumeId, label, vm.tenantId, 'system:detection');
      return `stopped VM ${vm.name} and took snapshot ${snapshot.name} (${snapshot.id}) of its root disk (start it to undo the stop)`;
    },
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
