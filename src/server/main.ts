/** Entry point of `rampart server` (filled in by the server work). */
export interface ServerCliOptions {
  listen?: string;
  dataDir?: string;
  config?: string;
}

export async function runServer(_options: ServerCliOptions): Promise<void> {
  throw new Error('not implemented yet');
}
