/** Entry point of `rampart agent` (filled in by the agent work). */
export interface AgentCliOptions {
  dataDir?: string;
  socket?: string;
  config?: string;
}

export async function runAgent(_options: AgentCliOptions): Promise<void> {
  throw new Error('not implemented yet');
}
