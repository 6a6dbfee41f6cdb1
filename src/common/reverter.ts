/**
 * Undo for multi-step host changes: register an undo after each step; `fail()` runs them in reverse
 * order (best effort, every undo is attempted), `success()` forgets them.
 */
export class Reverter {
  private undos: Array<() => unknown> = [];

  add(undo: () => unknown): void {
    this.undos.push(undo);
  }

  success(): void {
    this.undos = [];
  }

  async fail(): Promise<void> {
    const undos = this.undos.reverse();
    this.undos = [];
    for (const undo of undos) {
      try {
        await undo();
      } catch {
        // best effort: the remaining undos still run
      }
    }
  }
}
