/**
 * The API's shapes, taken from the server's own TypeBox definitions (types only: nothing of the
 * server is bundled), so the console cannot drift from what the server answers.
 */
export type { Vm, VmState } from '../../../src/api/vm.js';
export type { Host } from '../../../src/api/host.js';
export type { Quota } from '../../../src/api/quota.js';
export type { SecurityAlert, SecurityEvent, AlertStatus } from '../../../src/api/security.js';
export type { ComplianceReport, ComplianceCheckResult } from '../../../src/api/compliance.js';
export type { AuditRecordView, AuditVerification } from '../../../src/api/audit.js';
export type { Image } from '../../../src/api/image.js';
export type { Network, SecurityGroup, SecurityGroupRule, Port } from '../../../src/api/network.js';
export type { SessionTokens, WhoAmI, Tenant, User, Role, ApiToken } from '../../../src/api/iam.js';
export type { TrustPolicy, TrustedKey } from '../../../src/api/trust.js';
export type { Flavor } from '../../../src/api/flavor.js';

export interface List<T> {
  items: T[];
}

/** A member of a tenant (GET /v1/tenants/{tenant}/members). */
export interface Member {
  user: { id: string; username: string };
  roles: string[];
}

/** One resource sample of a running VM (GET /v1/vms/{ref}/samples, or a `vm.sample` event's detail). */
export interface VmSample {
  at: string;
  cpuPercent: number;
  memoryBytes?: number | null;
  txPps: number;
  rxPps: number;
  txBps: number;
  rxBps: number;
}

/** The error body of every failed request. */
export interface ErrorBody {
  error: { code: string; message: string; requestId: string; details?: Record<string, unknown> };
}
