/** What route handlers may use: the services of the control plane, handed over explicitly. */
import type { VolumeService } from '../volumes/volume-service.js';
import type { VolumeSnapshotService } from '../volumes/volume-snapshots.js';
import type { VolumeBackupService } from '../volumes/volume-backups.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { VmService } from '../compute/vm-service.js';
import type { ConsoleHub } from '../console/console-hub.js';
import type { Authenticator } from '../iam/authenticator.js';
import type { RoleDirectory } from '../iam/role-directory.js';
import type { TenantDirectory } from '../iam/tenant-directory.js';
import type { UserDirectory } from '../iam/user-directory.js';
import type { ServerMetrics } from '../metrics.js';
import type { Db } from '../store/database.js';
import type { Overcommit } from '../compute/scheduler.js';
import type { VmSampleStore } from '../compute/vm-samples.js';
import type { QuotaService } from '../quota/quota-service.js';
import type { ImageServices } from '../images/image-services.js';
import type { NetworkService } from '../network/network-service.js';
import type { AlertStore } from '../security/alerts.js';
import type { SecurityEventLog } from '../security/security-events.js';
import type { ComplianceService } from '../security/compliance/compliance-service.js';
import type { HostEnrollment } from '../cluster/host-enrollment.js';

export interface AppContext {
  db: Db;
  vms: VmService;
  consoleHub: ConsoleHub;
  /** The last hour of resource samples per VM (agent telemetry). */
  vmSamples: VmSampleStore;
  metrics: ServerMetrics;
  authenticator: Authenticator;
  users: UserDirectory;
  roles: RoleDirectory;
  tenants: TenantDirectory;
  audit: AuditLog;
  /** The security event stream (one per server; services that record events get it at construction). */
  securityEvents: SecurityEventLog;
  /** Alerts raised by the detection engine. */
  alerts: AlertStore;
  /** The compliance benchmark (runs, reports, history). */
  compliance: ComplianceService;
  quotas: QuotaService;
  images: ImageServices;
  networks: NetworkService;
  volumes: VolumeService;
  snapshots: VolumeSnapshotService;
  backups: VolumeBackupService;
  overcommit: Overcommit;
  version: string;
  /** Remote hosts: join tokens, joins and certificate revocation. */
  enrollment: HostEnrollment;
}
