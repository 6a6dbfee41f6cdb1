/** Fans live console output from the agent out to WebSocket listeners, per VM. */
import { EventEmitter } from 'node:events';

export class ConsoleHub {
  private readonly emitter = new EventEmitter();
  /** Told when a VM gets a listener (server replicas: ask the replica linked to its host to relay). */
  onSubscribe: (vmId: string) => void = () => undefined;

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  publish(vmId: string, data: Buffer): void {
    this.emitter.emit(vmId, data);
  }

  /** Returns the unsubscribe function. */
  subscribe(vmId: string, listener: (data: Buffer) => void): () => void {
    this.emitter.on(vmId, listener);
    this.onSubscribe(vmId);
    return () => this.emitter.off(vmId, listener);
  }

  listenerCount(vmId: string): number {
    return this.emitter.listenerCount(vmId);
  }

  /** The VMs with at least one listener now. */
  watchedVms(): string[] {
    return this.emitter.eventNames().filter((name): name is string => typeof name === 'string');
  }
}
