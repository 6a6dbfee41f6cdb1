/** Fans live console output from the agent out to WebSocket listeners, per VM. */
import { EventEmitter } from 'node:events';

export class ConsoleHub {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  publish(vmId: string, data: Buffer): void {
    this.emitter.emit(vmId, data);
  }

  /** Returns the unsubscribe function. */
  subscribe(vmId: string, listener: (data: Buffer) => void): () => void {
    this.emitter.on(vmId, listener);
    return () => this.emitter.off(vmId, listener);
  }

  listenerCount(vmId: string): number {
    return this.emitter.listenerCount(vmId);
  }
}
