/** What route handlers may use: the services of the control plane, handed over explicitly. */
import type { VmService } from '../compute/vm-service.js';
import type { ConsoleHub } from '../console/console-hub.js';
import type { ServerMetrics } from '../metrics.js';
import type { Db } from '../store/database.js';
import type { TokenVerifier } from '../auth/bootstrap-token.js';

export interface AppContext {
  db: Db;
  vms: VmService;
  consoleHub: ConsoleHub;
  metrics: ServerMetrics;
  tokens: TokenVerifier;
  version: string;
}
