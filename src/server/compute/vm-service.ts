/**
 * VMs in the control plane: create, list, show, user actions and delete; and the other direction,
 * folding the agent's status reports into the VM rows (with the restart policy). Every state change
 * goes through vm-state-machine.ts and a conditional UPDATE, and all work on one VM is serialized.
 */
import type { VmIntent, VmStatus } from '../../api/agent-protocol.js';
import {
  ConflictError,
  IllegalStateError,
  InvalidInputError,
  NoCapacityError,
  NotFoundError,
  RampartError,
  UntrustedImageError,
} from '../../api/errors.js';
import type { RestartPolicy, Vm, VmCreate, VmState } from '../../api/vm.js';
import type { HostEvacuation } from '../../api/host.js';
import { isUuid, newId } from '../../common/ids.js';
import { KeyedMutex } from '../../common/keyed-mutex.js';
import type { Logger } from '../../common/logger.js';
import type { AgentConnection } from '../agent-link/agent-connection.js';
import type { PortPacketSample, ServerMetrics } from '../metrics.js';
import { LOCK_CLASS, isUniqueViolation, lockOnPostgres, nowIso, type Db } from '../store/database.js';
import type { HostsTable, PlacementGroupsTable, VmsTable } from '../store/schema.js';
import { findFlavor } from './flavor-catalog.js';
import { hostAllocations, hostOccupancy } from './host-registry.js';
import { groupMemberHosts, placementForCreate } from './placement-groups.js';
import { findImage } from '../images/image-catalog.js';
import { assertImageTrusted, imageTrustMaterial } from '../images/image-signatures.js';
import { assertImageUsable } from '../images/image-import.js';
import { keyDomainOf, type ImageStore } from '../images/image-store.js';
import type { TrustedKey } from '../../common/dsse.js';
import type { ImagesTable } from '../store/schema.js';
import type { NetworkService } from '../network/network-service.js';
import type { Port } from '../../api/network.js';
import { hardeningNotRunning, type VmHardening } from '../../api/hardening.js';
import { chooseDedicatedCpus, hostRoom, pickHost, type Overcommit } from './scheduler.js';
import { failpoint } from '../failpoints.js';
import type { QuotaService } from '../quota/quota-service.js';
import type { VolumeService } from '../volumes/volume-service.js';
import { planUserAction, stateFromPhase, type VmUserAction } from './vm-state-machine.js';
import { planFailover } from '../cluster/host-failover.js';
import type { AgentChannel } from '../cluster/agent-forwarding.js';

/** Where the service finds the agent of a host (all-in-one: the one local agent). */

const GIB = 1024 ** 3;
export interface AgentDirectory {
  connectionFor(hostId: string): AgentChannel | null;
}

export interface VmServiceOptions {
  defaultStopTimeoutSeconds: number;
  quotas: QuotaService;
  overcommit: Overcommit;
  /** Told once when a VM fails for good on its host (e.g. image verification): audit, security events. */
  onFatal?: (vm: VmsTable, reason: string) => Promise<void>;
  /** A running VM's QEMU went away without being asked to (crash, kill, seccomp): once per boot. */
  onCrash?: (vm: VmsTable, reason: string) => Promise<void>;
  /** The encrypted image store (the verified cache is filled from it) and the platform's signing keys. */
  images: { store: ImageStore; platformKeys: readonly TrustedKey[] };
  /** Networks, ports and security groups: VM ports are created with the VM; hosts get their firewall. */
  networks: NetworkService;
  /** Volumes: attached ones go into the intent (with their keys); a deleted VM lets go of them. */
  volumes: VolumeService;
}

const RESTART_WINDOW_MS = 10 * 60_000;

/** A failed host said hello again while its VMs were being moved: the rest stay. */
class HostBackError extends Error {}
const MAX_RESTART_DELAY_MS = 30_000;

export class VmService {
  private readonly mutex = new KeyedMutex();
  private readonly recentRestarts = new Map<string, number[]>();
  private readonly restartTimers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly db: Db,
    private readonly agents: AgentDirectory,
    private readonly metrics: ServerMetrics,
    private readonly log: Logger,
    private readonly options: VmServiceOptions,
  ) {}

  // ---------------------------------------------------------------- reads

  /** VMs of one tenant (all VMs when tenantId is undefined: internal use only). */
  async list(tenantId?: string): Promise<Vm[]> {
    let query = this.selectVms().orderBy('vms.createdAt');
    if (tenantId !== undefined) query = query.where('vms.tenantId', '=', tenantId);
    const rows = await query.execute();
    return rows.map(toApi);
  }

  async get(ref: string, tenantId?: string): Promise<Vm> {
    return toApi(await this.findJoined(ref, tenantId));
  }

  async countByState(): Promise<Record<string, number>> {
    const rows = await this.db
      .selectFrom('vms')
      .select((eb) => ['state', eb.fn.countAll<number>().as('n')])
      .groupBy('state')
      .execute();
    return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
  }

  /**
   * Resolves a ref (id or name) to the VM's row, within a tenant when tenantId is given: another
   * tenant's VM answers exactly like an absent one (NotFound).
   */
  async findRow(ref: string, tenantId?: string): Promise<VmsTable> {
    let query = this.db
      .selectFrom('vms')
      .selectAll()
      .where(isUuid(ref) ? 'id' : 'name', '=', ref);
    if (tenantId !== undefined) query = query.where('tenantId', '=', tenantId);
    const row = await query.executeTakeFirst();
    if (!row) throw new NotFoundError('VM');
    return row;
  }

  // ---------------------------------------------------------------- user requests

  async create(input: VmCreate, tenantId: string): Promise<Vm> {
    // An unknown image or flavor is a problem with the request body, not a missing URL.
    const bodyRef = (kind: string, ref: string) => (error: unknown) => {
      if (error instanceof NotFoundError)
        throw new InvalidInputError(`${kind} ${JSON.stringify(ref)} not found`);
      throw error;
    };
    if ((input.image === undefined) === (input.bootVolume === undefined))
      throw new InvalidInputError('give an image or a bootVolume (exactly one of them)');
    const flavor = await findFlavor(this.db, input.flavor).catch(bodyRef('flavor', input.flavor));
    // Booting from a volume: the image is the one it was made from (its trust is checked as for any).
    const bootVolume =
      input.bootVolume !== undefined ? await this.options.volumes.bootable(input.bootVolume, tenantId) : null;
    const image = bootVolume
      ? await this.db
          .selectFrom('images')
          .selectAll()
          .where('id', '=', bootVolume.imageId!)
          .executeTakeFirstOrThrow()
      : await findImage(this.db, input.image!, tenantId).catch(bodyRef('image', input.image!));
    // Usable (not quarantined), and trusted under the tenant's policy: 409 / 403 otherwise.
    await this.admitImage(image, tenantId);
    const diskImage = image.format !== 'kernel-initrd';
    if (diskImage && !bootVolume && image.virtualSizeBytes && image.virtualSizeBytes > flavor.diskGib * GIB)
      throw new InvalidInputError(
        `flavor ${flavor.name} has a ${flavor.diskGib} GiB disk; image ${image.name} needs ${Math.ceil(image.virtualSizeBytes / GIB)} GiB`,
      );
    if (!diskImage && input.sshKeys !== undefined)
      throw new InvalidInputError(
        `sshKeys go into the NoCloud seed of disk-image VMs; ${image.name} is a kernel+initrd image`,
      );
    const rootDisk = diskImage && !bootVolume ? await this.options.volumes.newRootDisk(tenantId) : null;
    const start = input.start ?? true;
    const id = newId();
    const now = nowIso();
    failpoint('create:before-transaction');
    let row: VmsTable | null = null;
    await this.db.transaction().execute(async (trx) => {
      // Quota first: the admission write serialises this tenant's creates until commit.
      await this.options.quotas.admit(trx, tenantId, {
        vms: 1,
        vcpus: flavor.vcpus,
        memoryMiB: flavor.memoryMib,
        diskGiB: bootVolume ? 0 : flavor.diskGib,
      });
      const placement =
        input.placementGroup !== undefined
          ? await placementForCreate(trx, input.placementGroup, tenantId)
          : null;
      const { host, pinnedCpus } = await this.chooseHost(trx, {
        tenantId,
        vcpus: flavor.vcpus,
        memoryMiB: flavor.memoryMib,
        dedicatedCpus: flavor.cpuPolicy === 'dedicated',
        group: placement ? { ...placement.group, memberHosts: placement.memberHosts } : null,
        ...(bootVolume?.hostId ? { onlyHost: bootVolume.hostId } : {}),
      });
      failpoint('create:after-admission');
      row = {
        id,
        tenantId,
        name: input.name,
        imageId: image.id,
        flavorId: flavor.id,
        placementGroupId: placement?.group.id ?? null,
        pinnedCpus: pinnedCpus ? JSON.stringify(pinnedCpus) : null,
        vcpus: flavor.vcpus,
        memoryMib: flavor.memoryMib,
        // Booted from a volume: its disk is that volume (counted in volumeGiB), not the flavor's.
        diskGib: bootVolume ? 0 : flavor.diskGib,
        cpuLimitPercent: flavor.cpuLimitPercent,
        networkMbps: flavor.networkMbps,
        diskIops: flavor.diskIops ?? null,
        diskMibps: flavor.diskMibps ?? null,
        cpuWeight: flavor.cpuWeight,
        pidsMax: flavor.pidsMax,
        state: start ? 'pending' : 'stopped',
        power: start ? 'running' : 'stopped',
        bootId: start ? 1 : 0,
        rebootId: 0,
        stopTimeoutMs: this.options.defaultStopTimeoutSeconds * 1000,
        restartPolicy: input.restartPolicy ?? 'on-failure',
        restartCount: 0,
        hostId: host.id,
        accelerator: null,
        pid: null,
        guestIps: '[]',
        lastHeartbeatAt: null,
        guestUptimeSeconds: null,
        bootMs: null,
        error: null,
        rootVolumeId: rootDisk?.id ?? bootVolume?.id ?? null,
        sshKeys: input.sshKeys ? JSON.stringify(input.sshKeys) : null,
        generationId: diskImage ? newId() : null,
        createdAt: now,
        updatedAt: now,
      };
      // The unique (tenant, name) index decides a name race: no check-then-insert window.
      await trx
        .insertInto('vms')
        .values(row)
        .execute()
        .catch((error: unknown) => {
          if (
            isUniqueViolation(error, {
              sqliteColumns: 'vms.tenant_id, vms.name',
              postgres: 'vms_tenant_name',
            })
          )
            throw new ConflictError(`a VM named ${input.name} already exists`);
          throw error;
        });
      if (rootDisk)
        await this.options.volumes.insertRootDisk(trx, rootDisk, {
          id,
          tenantId,
          name: input.name,
          hostId: host.id,
          imageId: image.id,
          sizeGiB: flavor.diskGib,
        });
      if (bootVolume) await this.options.volumes.attachBoot(trx, bootVolume.id, { id, hostId: host.id });
      if (input.network !== undefined)
        await this.options.networks.createPort(trx, tenantId, id, input.network, input.securityGroups);
      else if (input.securityGroups !== undefined)
        throw new InvalidInputError('securityGroups apply to a port: give a network too');
    });
    failpoint('create:after-commit');
    this.log.info({ vmId: id, tenantId, name: input.name, start }, 'VM created');
    if (start) await this.mutex.run(id, () => this.pushIntent(id));
    failpoint('create:after-apply');
    // Not started: nothing changed since the insert, so answer from the row (no second read).
    if (!start && row && !rootDisk && !bootVolume)
      return toApi({
        ...(row as VmsTable),
        imageName: image.name,
        flavorName: flavor.name,
        rootVolumeName: null,
      });
    return this.get(id);
  }

  async act(
    ref: string,
    action: Exclude<VmUserAction, 'delete'>,
    stop?: { force?: boolean; timeoutSeconds?: number },
    tenantId?: string,
  ): Promise<Vm> {
    const row = await this.findRow(ref, tenantId);
    await this.mutex.run(row.id, async () => {
      const current = await this.findRow(row.id);
      const effective: VmUserAction = action === 'stop' && stop?.force ? 'force-stop' : action;
      const rule = planUserAction(effective, current.state as VmState);
      const patch: Partial<VmsTable> = { state: rule.to, power: rule.power, updatedAt: nowIso() };
      if (action === 'start') {
        // A policy tightened (or a key or attestation removed) since the VM was created is honoured.
        const image = await this.db
          .selectFrom('images')
          .selectAll()
          .where('id', '=', current.imageId)
          .executeTakeFirst();
        if (!image) throw new NotFoundError('image');
        await this.admitImage(image, current.tenantId).catch(async (error: unknown) => {
          // An image that no longer passes (tampered or withdrawn signature, tightened policy): the VM
          // shows why it cannot start, and the refusal is audited and raised as a security event.
          if (error instanceof UntrustedImageError) {
            await this.db
              .updateTable('vms')
              .set({ state: 'error', error: `not started: ${error.message}`, updatedAt: nowIso() })
              .where('id', '=', current.id)
              .execute();
            await this.options.onFatal?.(current, `not started: ${error.message}`);
          }
          throw error;
        });
        patch.bootId = current.bootId + 1;
        patch.error = null;
        this.cancelRestart(current.id);
      }
      if (action === 'reboot') patch.rebootId = current.rebootId + 1;
      if (action === 'stop') {
        patch.stopTimeoutMs = stop?.force
          ? 0
          : (stop?.timeoutSeconds ?? this.options.defaultStopTimeoutSeconds) * 1000;
        this.cancelRestart(current.id);
      }
      await this.updateIfState(current, patch);
      await this.pushIntent(current.id);
    });
    return this.get(row.id);
  }

  /**
   * Gives a stopped VM another flavor. Quota counts the difference (growing needs room, shrinking
   * frees it) and the host must have room for the growth; all in one transaction.
   */
  async resize(ref: string, flavorRef: string, tenantId: string): Promise<Vm> {
    const row = await this.findRow(ref, tenantId);
    const flavor = await findFlavor(this.db, flavorRef).catch((error: unknown) => {
      if (error instanceof NotFoundError)
        throw new InvalidInputError(`flavor ${JSON.stringify(flavorRef)} not found`);
      throw error;
    });
    await this.mutex.run(row.id, async () => {
      await this.db.transaction().execute(async (trx) => {
        const current = await trx
          .selectFrom('vms')
          .selectAll()
          .where('id', '=', row.id)
          .executeTakeFirstOrThrow();
        if (current.state !== 'stopped') throw new IllegalStateError('resize', current.state);
        // Pinned cores are chosen at placement: the CPU policy and a dedicated VM's size stay.
        const pinned = current.pinnedCpus != null;
        if (
          (pinned || flavor.cpuPolicy === 'dedicated') &&
          (pinned !== (flavor.cpuPolicy === 'dedicated') || flavor.vcpus !== current.vcpus)
        )
          throw new ConflictError(
            'a resize keeps the CPU policy, and a dedicated-CPU VM keeps its vCPUs (its cores are pinned); create a new VM instead',
          );
        // A root disk made with the VM follows the flavor's disk: it grows (at the next start), never shrinks.
        const root = current.rootVolumeId
          ? await trx
              .selectFrom('volumes')
              .select(['id', 'sizeGib', 'vmRoot'])
              .where('id', '=', current.rootVolumeId)
              .executeTakeFirst()
          : undefined;
        // A VM booted from a volume has no disk of its flavor's (its volume counts in volumeGiB).
        const diskGib = root && root.vmRoot !== 1 ? 0 : flavor.diskGib;
        await this.options.quotas.admit(trx, tenantId, {
          vcpus: flavor.vcpus - current.vcpus,
          memoryMiB: flavor.memoryMib - current.memoryMib,
          diskGiB: diskGib - current.diskGib,
        });
        if (root?.vmRoot === 1) {
          if (flavor.diskGib < root.sizeGib)
            throw new ConflictError(
              `flavor ${flavor.name} has a ${flavor.diskGib} GiB disk; this VM's root disk has ${root.sizeGib} GiB and a disk never shrinks`,
            );
          await trx
            .updateTable('volumes')
            .set({ sizeGib: flavor.diskGib, updatedAt: nowIso() })
            .where('id', '=', root.id)
            .execute();
        }
        if (current.hostId) {
          await lockOnPostgres(trx, LOCK_CLASS.placement);
          const host = await trx
            .selectFrom('hosts')
            .selectAll()
            .where('id', '=', current.hostId)
            .executeTakeFirst();
          const used = (await hostAllocations(trx)).get(current.hostId) ?? { vcpus: 0, memoryMiB: 0, vms: 0 };
          if (host) {
            const room = hostRoom(host, used, this.options.overcommit);
            const growVcpus = flavor.vcpus - current.vcpus;
            const growMemory = flavor.memoryMib - current.memoryMib;
            if (growVcpus > room.vcpus || growMemory > room.memoryMiB)
              throw new NoCapacityError(
                `host ${host.hostname} has no room to grow this VM to ${flavor.name}`,
              );
          }
        }
        await trx
          .updateTable('vms')
          .set({
            flavorId: flavor.id,
            vcpus: flavor.vcpus,
            memoryMib: flavor.memoryMib,
            diskGib,
            cpuLimitPercent: flavor.cpuLimitPercent,
            networkMbps: flavor.networkMbps,
            diskIops: flavor.diskIops ?? null,
            diskMibps: flavor.diskMibps ?? null,
            cpuWeight: flavor.cpuWeight,
            pidsMax: flavor.pidsMax,
            updatedAt: nowIso(),
          })
          .where('id', '=', current.id)
          .execute();
      });
    });
    this.log.info({ vmId: row.id, flavor: flavor.name }, 'VM resized');
    return this.get(row.id);
  }

  async delete(ref: string, tenantId?: string): Promise<Vm> {
    const row = await this.findRow(ref, tenantId);
    // Its root disk goes with it (erased): snapshots of that disk must go first, as for any volume.
    if (row.rootVolumeId) {
      const snapshot = await this.db
        .selectFrom('volumeSnapshots')
        .innerJoin('volumes', 'volumes.id', 'volumeSnapshots.volumeId')
        .select('volumeSnapshots.name')
        .where('volumes.id', '=', row.rootVolumeId)
        .where('volumes.vmRoot', '=', 1)
        .executeTakeFirst();
      if (snapshot)
        throw new ConflictError(
          `the root disk of VM ${row.name} has snapshots (${snapshot.name}); delete them (or clone them into volumes) first`,
        );
    }
    await this.mutex.run(row.id, async () => {
      const current = await this.findRow(row.id);
      const rule = planUserAction('delete', current.state as VmState);
      this.cancelRestart(current.id);
      await this.updateIfState(current, { state: rule.to, power: rule.power, updatedAt: nowIso() });
    });
    const deleting = await this.get(row.id);
    // The host work (stop QEMU, remove files) continues after the answer; GET shows `deleting` meanwhile.
    void this.mutex
      .run(row.id, () => this.finishDelete(row.id))
      .catch((error: unknown) => {
        this.log.warn(
          { vmId: row.id, err: (error as Error).message },
          'delete will be retried when the host reconnects',
        );
      });
    return deleting;
  }

  /** The hardening self-check of the VM's QEMU, from its host (503 when the host is not connected). */
  async hardening(ref: string, tenantId?: string): Promise<VmHardening> {
    const row = await this.findRow(ref, tenantId);
    if (!row.hostId) return hardeningNotRunning('the VM is not placed on a host');
    const agent = this.requireAgent(row);
    return agent.request('vm.hardening', { vmId: row.id }, 20_000);
  }

  async consoleTail(
    ref: string,
    bytes: number,
    tenantId?: string,
  ): Promise<{ vmId: string; data: Buffer; capBytes: number }> {
    const row = await this.findRow(ref, tenantId);
    const agent = this.requireAgent(row);
    const result = await agent.request('console.tail', { vmId: row.id, bytes });
    return { vmId: row.id, data: Buffer.from(result.dataBase64, 'base64'), capBytes: result.capBytes };
  }

  async consoleWrite(vmId: string, data: Buffer): Promise<void> {
    const row = await this.findRow(vmId);
    const agent = this.requireAgent(row);
    await agent.request('console.write', { vmId: row.id, dataBase64: data.toString('base64') });
  }

  /**
   * Moves the VMs of a host that are stopped to other hosts (maintenance, a failed host): each is
   * placed again under every constraint (capacity, dedicated hosts, its placement group) with the
   * source host left out. Running VMs stay and are reported (no live migration). The source host's
   * agent drops its copy now, or at its next sync when it is offline.
   */
  async evacuateHost(hostId: string): Promise<HostEvacuation> {
    const source = await this.db.selectFrom('hosts').selectAll().where('id', '=', hostId).executeTakeFirst();
    if (!source) throw new NotFoundError('host');
    const rows = await this.db
      .selectFrom('vms')
      .selectAll()
      .where('hostId', '=', hostId)
      .orderBy('createdAt')
      .execute();
    const result: HostEvacuation = { hostId, moved: [], skipped: [] };
    for (const candidate of rows) {
      await this.mutex.run(candidate.id, async () => {
        const row = await this.db
          .selectFrom('vms')
          .selectAll()
          .where('id', '=', candidate.id)
          .executeTakeFirst();
        if (!row || row.hostId !== hostId) return;
        if (row.state === 'stopped' && (await this.options.volumes.hasVolumes(row.id))) {
          result.skipped.push({
            vmId: row.id,
            name: row.name,
            reason:
              'the VM has volumes, which live on this host (detach them first; volumes do not move yet)',
          });
          return;
        }
        if (row.state !== 'stopped') {
          result.skipped.push({
            vmId: row.id,
            name: row.name,
            reason: `the VM is ${row.state}: only stopped VMs are evacuated (stop it first; live migration is not supported)`,
          });
          return;
        }
        try {
          const target = await this.db.transaction().execute(async (trx) => {
            const { host, pinnedCpus } = await this.chooseHostElsewhere(trx, row, hostId);
            const moved = await trx
              .updateTable('vms')
              .set({
                hostId: host.id,
                pinnedCpus: pinnedCpus ? JSON.stringify(pinnedCpus) : null,
                updatedAt: nowIso(),
              })
              .where('id', '=', row.id)
              .where('hostId', '=', hostId)
              .where('state', '=', 'stopped')
              .executeTakeFirst();
            if (Number(moved.numUpdatedRows) !== 1) throw new ConflictError('the VM changed concurrently');
            return host;
          });
          result.moved.push({
            vmId: row.id,
            name: row.name,
            toHostId: target.id,
            toHostname: target.hostname,
          });
          this.log.info({ vmId: row.id, from: hostId, to: target.id }, 'VM evacuated');
        } catch (error) {
          if (!(error instanceof RampartError)) throw error;
          result.skipped.push({ vmId: row.id, name: row.name, reason: error.message });
          return;
        }
        // The source's agent forgets the VM (an offline one does at its next sync).
        await this.agents
          .connectionFor(hostId)
          ?.request('remove', { vmId: row.id }, 120_000)
          .catch((error: unknown) =>
            this.log.warn({ vmId: row.id, err: (error as Error).message }, 'source host did not drop the VM'),
          );
      });
    }
    if (result.moved.length > 0)
      await this.publishFirewalls([hostId, ...result.moved.map((m) => m.toHostId)]);
    return result;
  }

  /**
   * A failed host (its lease expired: its agent has fenced itself): its running VMs with a restart
   * policy and no volumes are placed on another online host and started there (a new boot); the
   * others that were running go to error with the reason (host-failover.ts's planFailover). Nothing
   * happens when the host is no longer failed (it came back meanwhile).
   */
  async failoverHost(hostId: string): Promise<{
    moved: { vmId: string; name: string; tenantId: string; toHostId: string; toHostname: string }[];
    stayed: { vmId: string; name: string; tenantId: string; reason: string }[];
  }> {
    const result: Awaited<ReturnType<VmService['failoverHost']>> = { moved: [], stayed: [] };
    const ids = await this.db
      .selectFrom('vms')
      .select('id')
      .where('hostId', '=', hostId)
      .orderBy('createdAt')
      .execute();
    for (const { id } of ids) {
      await this.mutex.run(id, async () => {
        const host = await this.db
          .selectFrom('hosts')
          .select('state')
          .where('id', '=', hostId)
          .executeTakeFirst();
        if (host?.state !== 'failed') return;
        const row = await this.db.selectFrom('vms').selectAll().where('id', '=', id).executeTakeFirst();
        if (!row || row.hostId !== hostId) return;
        const plan = planFailover([{ ...row, hasVolumes: await this.options.volumes.hasVolumes(row.id) }]);
        const stay = plan.stay[0];
        const markError = async (reason: string) => {
          this.cancelRestart(row.id);
          await this.db
            .updateTable('vms')
            .set({ state: 'error', error: reason, pid: null, updatedAt: nowIso() })
            .where('id', '=', row.id)
            .where('hostId', '=', hostId)
            .where('state', '!=', 'deleting')
            .execute();
          result.stayed.push({ vmId: row.id, name: row.name, tenantId: row.tenantId, reason });
          this.log.warn({ vmId: row.id, hostId, reason }, 'VM not restarted elsewhere');
        };
        if (stay) return markError(stay.reason);
        if (plan.move.length === 0) return;
        let target: HostsTable;
        try {
          target = await this.db.transaction().execute(async (trx) => {
            // The host must still be failed when the VM moves: this no-op write holds its row (on
            // PostgreSQL), so a hello that brings it back waits for this commit and its sync sees the
            // move, or comes first and nothing moves.
            const still = await trx
              .updateTable('hosts')
              .set({ state: 'failed' })
              .where('id', '=', hostId)
              .where('state', '=', 'failed')
              .executeTakeFirst();
            if (Number(still.numUpdatedRows) !== 1) throw new HostBackError();
            const { host: chosen, pinnedCpus } = await this.chooseHostElsewhere(trx, row, hostId);
            const moved = await trx
              .updateTable('vms')
              .set({
                hostId: chosen.id,
                pinnedCpus: pinnedCpus ? JSON.stringify(pinnedCpus) : null,
                state: 'starting',
                power: 'running',
                bootId: row.bootId + 1,
                pid: null,
                error: null,
                lastHeartbeatAt: null,
                restartCount: row.restartCount + 1,
                updatedAt: nowIso(),
              })
              .where('id', '=', row.id)
              .where('hostId', '=', hostId)
              .where('state', '=', row.state)
              .executeTakeFirst();
            if (Number(moved.numUpdatedRows) !== 1) throw new ConflictError('the VM changed concurrently');
            return chosen;
          });
        } catch (error) {
          if (error instanceof HostBackError) return;
          if (!(error instanceof RampartError)) throw error;
          return markError(
            `its host failed (lease expired) and it could not be restarted elsewhere: ${error.message}`,
          );
        }
        this.cancelRestart(row.id);
        result.moved.push({
          vmId: row.id,
          name: row.name,
          tenantId: row.tenantId,
          toHostId: target.id,
          toHostname: target.hostname,
        });
        this.log.warn(
          { vmId: row.id, from: hostId, to: target.id },
          'VM restarted elsewhere: its host failed',
        );
        this.metrics.vmRestarts.inc({ reason: 'host-failure' });
        await this.pushIntent(row.id);
      });
    }
    if (result.moved.length > 0)
      await this.publishFirewalls([hostId, ...result.moved.map((m) => m.toHostId)]);
    return result;
  }

  /**
   * Picks a host for a VM under every placement constraint (inside the caller's transaction), and for
   * a dedicated-CPU VM the whole cores it gets there.
   */
  private async chooseHost(
    trx: Db,
    spec: {
      tenantId: string;
      vcpus: number;
      memoryMiB: number;
      dedicatedCpus: boolean;
      group: (PlacementGroupsTable & { memberHosts: Set<string> }) | null;
      excludeHost?: string;
      /** The VM must go to this host (its boot volume's file is there). */
      onlyHost?: string;
    },
  ): Promise<{ host: HostsTable; pinnedCpus: number[] | null }> {
    // On PostgreSQL concurrent transactions (and replicas) would each see the same free room; placement
    // is serialized until the VM row commits (SQLite serializes writers itself).
    await lockOnPostgres(trx, LOCK_CLASS.placement);
    const hosts = await trx.selectFrom('hosts').selectAll().execute();
    const tenant = await trx
      .selectFrom('tenants')
      .select('dedicatedHosts')
      .where('id', '=', spec.tenantId)
      .executeTakeFirst();
    const allocations = await hostAllocations(trx);
    const host = pickHost(
      hosts.filter(
        (h) => h.id !== spec.excludeHost && (spec.onlyHost === undefined || h.id === spec.onlyHost),
      ),
      allocations,
      {
        vcpus: spec.vcpus,
        memoryMiB: spec.memoryMiB,
        tenantId: spec.tenantId,
        dedicated: tenant?.dedicatedHosts === 1,
        dedicatedCpus: spec.dedicatedCpus,
        ...(spec.group
          ? {
              group: {
                name: spec.group.name,
                policy: spec.group.policy,
                memberHosts: spec.group.memberHosts,
              },
            }
          : {}),
      },
      this.options.overcommit,
      await hostOccupancy(trx),
    );
    if (!spec.dedicatedCpus) return { host, pinnedCpus: null };
    const pinnedCpus = chooseDedicatedCpus(host, allocations.get(host.id), spec.vcpus);
    if (!pinnedCpus) throw new NoCapacityError(`host ${host.hostname} has no free dedicated cores`);
    return { host, pinnedCpus };
  }

  // ---------------------------------------------------------------- agent side

  /** A host (re)connected: send it the full desired state and fold in what it reports. */
  async syncHost(hostId: string, agent: AgentConnection): Promise<void> {
    const rows = await this.db.selectFrom('vms').selectAll().where('hostId', '=', hostId).execute();
    const live = rows.filter((r) => r.state !== 'deleting');
    const intents = await this.intentsFor(live);
    // The firewall first: a port must never be up without its anti-spoofing and security groups.
    await agent.request('firewall', {
      firewall: await this.options.networks.firewallFor(hostId, this.nextGeneration()),
    });
    const { statuses } = await agent.request('sync', { vms: intents }, 120_000);
    for (const status of statuses) await this.mutex.run(status.id, () => this.applyStatus(status, hostId));
    // Its tunnel address may be new, and VMs being deleted here are no longer counted: the hosts
    // sharing a network with it get their tunnel peers again.
    const peers = await this.options.networks.hostsSharingNetworks([hostId]).catch((error: unknown) => {
      this.log.error({ hostId, err: (error as Error).message }, 'could not find the hosts sharing networks');
      return [];
    });
    const others = peers.filter((h) => h !== hostId);
    if (others.length > 0) await this.publishFirewalls(others);
    // VMs being deleted were not in the list, so the agent has removed them: finish the deletes.
    for (const row of rows.filter((r) => r.state === 'deleting')) {
      await this.options.volumes.releaseVm(row.id);
      await this.db.deleteFrom('vms').where('id', '=', row.id).where('state', '=', 'deleting').execute();
      this.log.info({ vmId: row.id }, 'VM deleted');
    }
  }

  /** Sends a VM's changed intent (e.g. its volumes) to its host now. */
  async republish(vmId: string): Promise<void> {
    await this.mutex.run(vmId, () => this.pushIntent(vmId));
  }

  /** A status report from the agent of `hostId`. */
  onStatus(status: VmStatus, hostId: string): void {
    void this.mutex
      .run(status.id, () => this.applyStatus(status, hostId))
      .catch((error: unknown) => {
        this.log.error({ vmId: status.id, err: (error as Error).message }, 'failed to record VM status');
      });
  }

  stopTimers(): void {
    for (const timer of this.restartTimers.values()) clearTimeout(timer);
    this.restartTimers.clear();
  }

  // ---------------------------------------------------------------- internals

  private async applyStatus(status: VmStatus, hostId: string): Promise<void> {
    const row = await this.db.selectFrom('vms').selectAll().where('id', '=', status.id).executeTakeFirst();
    if (!row || row.state === 'deleting') return;
    // Only the VM's own host speaks for it (a host it was evacuated from may still hold a stale copy).
    if (row.hostId !== hostId) {
      this.log.warn({ vmId: row.id, from: hostId, host: row.hostId }, 'status from a host the VM is not on');
      return;
    }
    if (status.bootId < row.bootId) return; // a report about an older boot of this VM
    const current = row.state as VmState;
    let next = stateFromPhase(status.phase, current);
    // A freshly restarted agent knows the boot but has not heard a heartbeat yet: keep the last one.
    const sameBootNoBeat =
      status.lastHeartbeatAt === null && status.bootId === row.bootId && status.pid === row.pid;
    const patch: Partial<VmsTable> = {
      pid: status.pid,
      accelerator: status.accelerator,
      guestIps: sameBootNoBeat ? row.guestIps : JSON.stringify(status.guestIps),
      lastHeartbeatAt: sameBootNoBeat ? row.lastHeartbeatAt : status.lastHeartbeatAt,
      guestUptimeSeconds: sameBootNoBeat ? row.guestUptimeSeconds : status.guestUptimeSeconds,
      bootMs: status.bootMs,
    };
    // While a requested change is in flight, an older report must not undo the recorded intent.
    const inFlight =
      (row.power === 'stopped' && ['running', 'paused', 'starting'].includes(status.phase)) ||
      (row.power === 'paused' && status.phase === 'running') ||
      (row.power === 'running' && status.phase === 'paused') ||
      (status.rebootId < row.rebootId && status.phase === 'running');
    if (inFlight) next = current;
    let restart = false;
    if (status.phase === 'crashed') {
      patch.error = status.error ?? 'QEMU exited unexpectedly';
      // A fatal failure (the image did not verify) is not retried: the VM stays in error.
      // Not for a VM someone stopped since (its desired power is stopped): that crash is old news.
      restart =
        !status.fatal &&
        row.power !== 'stopped' &&
        (row.restartPolicy === 'on-failure' || row.restartPolicy === 'always');
      if (status.fatal && (current !== 'error' || row.error !== patch.error))
        await this.options.onFatal?.(row, patch.error);
    } else if (status.phase === 'stopped') {
      // The guest powered itself off, or we stopped it: either way the desired power is now stopped.
      const guestInitiated = row.power !== 'stopped';
      patch.power = 'stopped';
      patch.error = status.error;
      patch.pid = null;
      restart = guestInitiated && row.restartPolicy === 'always';
    } else if (status.phase === 'running' || status.phase === 'paused') {
      patch.error = null;
    }
    if (next === 'running' && current !== 'running' && status.bootMs !== null) {
      this.metrics.vmBootSeconds.observe(
        { accelerator: status.accelerator ?? 'unknown' },
        status.bootMs / 1000,
      );
    }
    patch.state = next;
    if (next !== current || JSON.stringify(pick(row, patch)) !== JSON.stringify(patch)) {
      patch.updatedAt = nowIso();
      await this.db.updateTable('vms').set(patch).where('id', '=', row.id).execute();
    }
    if (next !== current)
      this.log.info({ vmId: row.id, from: current, to: next, phase: status.phase }, 'VM state');
    if (status.phase === 'crashed' && !status.fatal && current !== next)
      await this.options.onCrash?.(row, patch.error ?? 'QEMU exited unexpectedly');
    if (restart) this.scheduleRestart(row.id, status.phase === 'crashed' ? 'crash' : 'guest-shutdown');
  }

  private scheduleRestart(vmId: string, reason: string): void {
    if (this.restartTimers.has(vmId)) return;
    const now = Date.now();
    const recent = (this.recentRestarts.get(vmId) ?? []).filter((t) => now - t < RESTART_WINDOW_MS);
    const delay = Math.min(MAX_RESTART_DELAY_MS, 250 * 2 ** recent.length);
    this.log.warn({ vmId, reason, delayMs: delay }, 'restarting VM per its restart policy');
    const timer = setTimeout(() => {
      this.restartTimers.delete(vmId);
      void this.mutex
        .run(vmId, async () => {
          const row = await this.db.selectFrom('vms').selectAll().where('id', '=', vmId).executeTakeFirst();
          if (!row || (row.state !== 'error' && row.state !== 'stopped')) return;
          // A restart is a boot like any other: the tenant's current image trust policy applies.
          const image = await this.db
            .selectFrom('images')
            .selectAll()
            .where('id', '=', row.imageId)
            .executeTakeFirst();
          const refusal = image
            ? await this.admitImage(image, row.tenantId).then(
                () => null,
                (error: unknown) => (error as Error).message,
              )
            : 'the image no longer exists';
          if (refusal) {
            this.log.warn({ vmId, reason: refusal }, 'not restarting VM: its image is not trusted');
            await this.options.onFatal?.(row, `not restarted: ${refusal}`);
            await this.db
              .updateTable('vms')
              .set({ state: 'error', error: `not restarted: ${refusal}`, updatedAt: nowIso() })
              .where('id', '=', vmId)
              .execute();
            return;
          }
          this.recentRestarts.set(vmId, [...recent, Date.now()]);
          await this.db
            .updateTable('vms')
            .set({
              state: 'starting',
              power: 'running',
              bootId: row.bootId + 1,
              restartCount: row.restartCount + 1,
              updatedAt: nowIso(),
            })
            .where('id', '=', vmId)
            .where('state', '=', row.state)
            .execute();
          this.metrics.vmRestarts.inc({ reason });
          await this.pushIntent(vmId);
        })
        .catch((error: unknown) => this.log.error({ vmId, err: (error as Error).message }, 'restart failed'));
    }, delay);
    timer.unref();
    this.restartTimers.set(vmId, timer);
  }

  private cancelRestart(vmId: string): void {
    const timer = this.restartTimers.get(vmId);
    if (timer) clearTimeout(timer);
    this.restartTimers.delete(vmId);
  }

  /** Sends the VM's desired state to its host and records the answer. Host absent: reconciled later. */
  private async pushIntent(vmId: string): Promise<void> {
    const row = await this.findRow(vmId);
    if (!row.hostId) return;
    const agent = this.agents.connectionFor(row.hostId);
    if (!agent) {
      this.log.warn({ vmId }, 'host agent not connected; change will be applied when it reconnects');
      return;
    }
    const [intent] = await this.intentsFor([row]);
    // The host's firewall first: a VM powering on gets its port's rules before its tap exists, one
    // powering off loses them.
    if (intent!.ports.length > 0) await this.publishFirewalls([row.hostId]);
    try {
      const { status } = await agent.request('apply', { vm: intent! });
      // Through another replica the answer may arrive after the host's newer reports (recorded there).
      if (!agent.forwarded) await this.applyStatus(status, row.hostId);
    } catch (error) {
      if (error instanceof RampartError && error.code === 'RAMPART_HOST_UNAVAILABLE') return;
      await this.db
        .updateTable('vms')
        .set({ state: 'error', error: (error as Error).message, updatedAt: nowIso() })
        .where('id', '=', vmId)
        .where('state', '!=', 'deleting')
        .execute();
    }
  }

  private async finishDelete(vmId: string): Promise<void> {
    const row = await this.db.selectFrom('vms').selectAll().where('id', '=', vmId).executeTakeFirst();
    if (!row || row.state !== 'deleting') return;
    // Its networks, while its ports still exist: their other hosts lose this one as a tunnel peer.
    const networkIds = (
      await this.db.selectFrom('ports').select('networkId').distinct().where('vmId', '=', vmId).execute()
    ).map((p) => p.networkId);
    if (row.hostId) {
      const agent = this.agents.connectionFor(row.hostId);
      if (!agent) throw new RampartError('RAMPART_HOST_UNAVAILABLE', 'host agent not connected');
      await agent.request('remove', { vmId }, 120_000);
    }
    await this.options.volumes.releaseVm(vmId);
    await this.db.deleteFrom('vms').where('id', '=', vmId).execute();
    this.recentRestarts.delete(vmId);
    this.log.info({ vmId }, 'VM deleted');
    if (row.hostId) await this.publishFirewalls([row.hostId], networkIds);
  }

  private requireAgent(row: VmsTable): AgentChannel {
    const agent = row.hostId ? this.agents.connectionFor(row.hostId) : null;
    if (!agent) throw new RampartError('RAMPART_HOST_UNAVAILABLE', "the VM's host agent is not connected");
    return agent;
  }

  private async updateIfState(current: VmsTable, patch: Partial<VmsTable>): Promise<void> {
    const result = await this.db
      .updateTable('vms')
      .set(patch)
      .where('id', '=', current.id)
      .where('state', '=', current.state)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1)
      throw new ConflictError('the VM changed concurrently; try again');
  }

  private generation = Date.now();

  /** Firewall generations only grow (a later push always wins). */
  private nextGeneration(): number {
    this.generation = Math.max(this.generation + 1, Date.now());
    return this.generation;
  }

  /**
   * Sends each host its whole firewall as it is now. A host that is not connected gets it at its next
   * sync; a failure is logged (the agent's periodic reconciliation keeps the last applied state).
   */
  async publishFirewalls(hostIds: readonly string[], networkIds: readonly string[] = []): Promise<void> {
    // Networks spanning hosts: the other hosts on the same networks get their tunnel peers updated.
    const affected = await this.options.networks
      .hostsSharingNetworks(hostIds, networkIds)
      .catch((error: unknown) => {
        this.log.error({ err: (error as Error).message }, 'could not find the hosts sharing networks');
        return hostIds;
      });
    for (const hostId of new Set(affected)) {
      const agent = this.agents.connectionFor(hostId);
      if (!agent) continue;
      try {
        const firewall = await this.options.networks.firewallFor(hostId, this.nextGeneration());
        await agent.request('firewall', { firewall });
      } catch (error) {
        this.log.error({ hostId, err: (error as Error).message }, 'firewall update failed');
      }
    }
  }

  /** Every port's counters on every connected host, for /metrics. */
  async portPacketSamples(): Promise<PortPacketSample[]> {
    const ports = await this.db
      .selectFrom('ports')
      .innerJoin('vms', 'vms.id', 'ports.vmId')
      .select(['ports.id', 'ports.tag', 'ports.tenantId', 'ports.vmId', 'vms.hostId'])
      .where('vms.hostId', 'is not', null)
      .execute();
    const samples: PortPacketSample[] = [];
    for (const hostId of new Set(ports.map((p) => p.hostId!))) {
      const agent = this.agents.connectionFor(hostId);
      if (!agent) continue;
      const live = await agent.request('net.counters', {}).then(
        (r) => r.ports,
        () => [],
      );
      for (const port of ports.filter((p) => p.hostId === hostId)) {
        const c = live.find((x) => x.tag === port.tag);
        if (!c) continue;
        const base = { tenantId: port.tenantId, vmId: port.vmId, portId: port.id };
        samples.push({ ...base, verdict: 'accepted', packets: c.fromGuestPackets });
        samples.push({ ...base, verdict: 'ingress-denied', packets: c.ingressDenied });
        samples.push({ ...base, verdict: 'egress-denied', packets: c.egressDenied });
        for (const [reason, packets] of Object.entries(c.spoofDrops))
          samples.push({ ...base, verdict: `spoof-${reason}`, packets });
      }
    }
    return samples;
  }

  /** The VM's ports with the live counters of its host (null when the host is not reachable). */
  /** Isolates a VM (its host drops every frame of its ports) or releases it; answers its ports. */
  async setIsolation(vm: VmsTable, isolated: boolean): Promise<Port[]> {
    await this.options.networks.setQuarantine(vm.id, isolated);
    if (vm.hostId) await this.publishFirewalls([vm.hostId]);
    this.log.warn({ vmId: vm.id, isolated }, isolated ? 'VM isolated' : 'VM released from isolation');
    return this.portsWithCounters(vm);
  }

  async portsWithCounters(vm: VmsTable): Promise<Port[]> {
    const ports = await this.options.networks.portsOfVm(vm.id);
    const agent = vm.hostId ? this.agents.connectionFor(vm.hostId) : null;
    const counters = agent
      ? await agent.request('net.counters', {}).then(
          (r) => r.ports,
          () => null,
        )
      : null;
    const tags = new Map(
      (await this.db.selectFrom('ports').select(['id', 'tag']).where('vmId', '=', vm.id).execute()).map(
        (r) => [r.id, r.tag],
      ),
    );
    return ports.map((p) => {
      const c = counters?.find((x) => x.tag === tags.get(p.id));
      return {
        ...p,
        counters: c
          ? {
              fromGuestPackets: c.fromGuestPackets,
              spoofDrops: c.spoofDrops,
              ingressDenied: c.ingressDenied,
              egressDenied: c.egressDenied,
            }
          : null,
      };
    });
  }

  /** May this tenant boot this image now? Active (not quarantined), bootable, trusted by its policy. */
  private async admitImage(image: ImagesTable, tenantId: string): Promise<void> {
    assertImageUsable(image);
    await assertImageTrusted(this.db, image, tenantId, this.options.images.platformKeys);
  }

  /**
   * The intents for these VMs. A VM about to boot (pending, starting) gets its image's verified
   * plaintext in the cache first, rebuilt from the encrypted store when missing or altered; when that
   * fails (tampered ciphertext, destroyed key) the VM goes to error for good instead of booting.
   */
  private async intentsFor(rows: VmsTable[]): Promise<VmIntent[]> {
    if (rows.length === 0) return [];
    const images = await this.db
      .selectFrom('images')
      .selectAll()
      .where('id', 'in', [...new Set(rows.map((r) => r.imageId))])
      .execute();
    const byId = new Map(images.map((r) => [r.id, r]));
    const prepared = new Map<string, Promise<void>>();
    const intents: VmIntent[] = [];
    for (const original of rows) {
      let row = original;
      const image = byId.get(row.imageId);
      if (!image) throw new RampartError('RAMPART_INTERNAL', `image of VM ${row.id} is missing`);
      if (row.state === 'pending' || row.state === 'starting') {
        const key = `${image.id}`;
        if (!prepared.has(key)) prepared.set(key, this.prepareImage(image));
        const problem = await prepared.get(key)!.then(
          () => null,
          (error: unknown) => `image verification failed: ${(error as Error).message}`,
        );
        if (problem) row = await this.failBoot(row, problem);
      }
      // Material beyond the protocol's bounds: send a policy that admits nothing (the agent refuses).
      const trust = await imageTrustMaterial(
        this.db,
        image,
        row.tenantId,
        this.options.images.platformKeys,
      ).catch((error: unknown) => {
        this.log.warn({ vmId: row.id, err: (error as Error).message }, 'image trust material not sendable');
        return {
          rules: { requireSignatures: true, acceptPlatformImages: false },
          trustedKeys: [],
          attestations: [],
          platformKeys: [],
          platformSignature: null,
          platformImage: image.tenantId === null,
        };
      });
      const volumes = await this.options.volumes.intentsFor(row);
      intents.push({
        ...toIntent(row, image, this.options.images.store, trust),
        ports: await this.options.networks.portIntents(row.id),
        ...(volumes.length > 0 ? { volumes } : {}),
        ...(await this.tenantIntent(row.tenantId)),
      });
    }
    return intents;
  }

  /** What the host must know of the VM's tenant: dedicated hosts, nested virtualization. */
  private async tenantIntent(tenantId: string): Promise<Pick<VmIntent, 'tenant' | 'nestedVirtualization'>> {
    const tenant = await this.db
      .selectFrom('tenants')
      .select(['allowNestedVirtualization', 'dedicatedHosts'])
      .where('id', '=', tenantId)
      .executeTakeFirst();
    return {
      tenant: { id: tenantId, dedicatedHosts: tenant?.dedicatedHosts === 1 },
      nestedVirtualization: tenant?.allowNestedVirtualization === 1,
    };
  }

  private async prepareImage(image: ImagesTable): Promise<void> {
    const domain = keyDomainOf(image.tenantId);
    if (image.format !== 'kernel-initrd') {
      await this.options.images.store.materialize(domain, image.diskSha256 ?? '');
      return;
    }
    await this.options.images.store.materialize(domain, image.kernelSha256);
    await this.options.images.store.materialize(domain, image.initrdSha256);
  }

  /** A host other than `excludeHost` with room for `row` (its placement group honoured): evacuation, failover. */
  private async chooseHostElsewhere(trx: Db, row: VmsTable, excludeHost: string) {
    const group = row.placementGroupId
      ? await trx
          .selectFrom('placementGroups')
          .selectAll()
          .where('id', '=', row.placementGroupId)
          .executeTakeFirst()
      : undefined;
    return this.chooseHost(trx, {
      tenantId: row.tenantId,
      vcpus: row.vcpus,
      memoryMiB: row.memoryMib,
      dedicatedCpus: row.pinnedCpus != null,
      group: group ? { ...group, memberHosts: await groupMemberHosts(trx, group.id, row.id) } : null,
      excludeHost,
    });
  }

  /** The VM cannot boot (its image did not verify): error, powered off, no restart; audited. */
  private async failBoot(row: VmsTable, reason: string): Promise<VmsTable> {
    const patch = { state: 'error', power: 'stopped', error: reason, pid: null, updatedAt: nowIso() };
    await this.db.updateTable('vms').set(patch).where('id', '=', row.id).execute();
    this.cancelRestart(row.id);
    this.log.warn({ vmId: row.id, reason }, 'VM not started: its image did not verify');
    await this.options.onFatal?.(row, reason);
    return { ...row, ...patch };
  }

  private selectVms() {
    return this.db
      .selectFrom('vms')
      .innerJoin('images', 'images.id', 'vms.imageId')
      .innerJoin('flavors', 'flavors.id', 'vms.flavorId')
      .leftJoin('volumes as rootVolumes', 'rootVolumes.id', 'vms.rootVolumeId')
      .selectAll('vms')
      .select([
        'images.name as imageName',
        'flavors.name as flavorName',
        'rootVolumes.name as rootVolumeName',
      ]);
  }

  private async findJoined(ref: string, tenantId?: string): Promise<JoinedVm> {
    let query = this.selectVms().where(isUuid(ref) ? 'vms.id' : 'vms.name', '=', ref);
    if (tenantId !== undefined) query = query.where('vms.tenantId', '=', tenantId);
    const row = await query.executeTakeFirst();
    if (!row) throw new NotFoundError('VM');
    return row;
  }
}

type JoinedVm = VmsTable & { imageName: string; flavorName: string; rootVolumeName: string | null };

function pick(row: VmsTable, patch: Partial<VmsTable>): Partial<VmsTable> {
  return Object.fromEntries(Object.keys(patch).map((k) => [k, row[k as keyof VmsTable]]));
}

function toIntent(
  row: VmsTable,
  image: ImagesTable,
  store: ImageStore,
  trust: NonNullable<VmIntent['image']['trust']>,
): Omit<VmIntent, 'ports'> {
  const disk = image.format !== 'kernel-initrd';
  return {
    id: row.id,
    name: row.name,
    vcpus: row.vcpus,
    memoryMiB: row.memoryMib,
    image:
      image.format === 'kernel-initrd'
        ? {
            format: 'kernel-initrd',
            sha256: image.sha256,
            kernelPath: store.cachePath(image.kernelSha256),
            initrdPath: store.cachePath(image.initrdSha256),
            kernelSha256: image.kernelSha256,
            initrdSha256: image.initrdSha256,
            trust,
          }
        : {
            format: image.format,
            sha256: image.sha256,
            diskPath: store.cachePath(image.diskSha256 ?? image.sha256),
            trust,
          },
    // Disk images read their identity from a NoCloud seed: the VM id is the instance id (a clone is
    // another VM: a new instance), the VM name its hostname.
    ...(disk
      ? {
          seed: {
            instanceId: row.id,
            hostname: row.name,
            sshKeys: row.sshKeys ? (JSON.parse(row.sshKeys) as string[]) : [],
          },
        }
      : {}),
    ...(row.generationId ? { generationId: row.generationId } : {}),
    power: row.power as VmIntent['power'],
    bootId: row.bootId,
    rebootId: row.rebootId,
    stopTimeoutMs: row.stopTimeoutMs,
    ...(row.pinnedCpus ? { pinnedCpus: JSON.parse(row.pinnedCpus) as number[] } : {}),
    limits: {
      cpuPercent: row.cpuLimitPercent ?? row.vcpus * 100,
      cpuWeight: row.cpuWeight,
      pidsMax: row.pidsMax,
      ...(row.networkMbps !== null ? { networkMbps: row.networkMbps } : {}),
      ...(row.diskIops ? { diskIops: row.diskIops } : {}),
      ...(row.diskMibps ? { diskBytesPerSecond: row.diskMibps * 1024 * 1024 } : {}),
    },
  };
}

function toApi(row: JoinedVm): Vm {
  return {
    id: row.id,
    tenantId: row.tenantId,
    name: row.name,
    state: row.state as VmState,
    image: { id: row.imageId, name: row.imageName },
    flavor: { id: row.flavorId, name: row.flavorName },
    rootVolume:
      row.rootVolumeId && row.rootVolumeName ? { id: row.rootVolumeId, name: row.rootVolumeName } : null,
    generationId: row.generationId ?? null,
    vcpus: row.vcpus,
    memoryMiB: row.memoryMib,
    diskGiB: row.diskGib,
    cpuLimitPercent: row.cpuLimitPercent,
    cpuWeight: row.cpuWeight,
    pidsMax: row.pidsMax,
    networkMbps: row.networkMbps,
    diskIops: row.diskIops ?? null,
    diskMiBps: row.diskMibps ?? null,
    pinnedCpus: row.pinnedCpus ? (JSON.parse(row.pinnedCpus) as number[]) : null,
    restartPolicy: row.restartPolicy as RestartPolicy,
    restartCount: row.restartCount,
    hostId: row.hostId,
    accelerator: row.accelerator as Vm['accelerator'],
    pid: row.pid,
    guestIps: JSON.parse(row.guestIps) as string[],
    lastHeartbeatAt: row.lastHeartbeatAt,
    guestUptimeSeconds: row.guestUptimeSeconds,
    bootMs: row.bootMs,
    error: row.error,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}
