/** A small typed event emitter: listeners run in the order they were added. */
export class Emitter<Events extends object> {
  private listeners = new Map<keyof Events, Array<(payload: any) => void>>();

  on<K extends keyof Events>(event: K, listener: (payload: Events[K]) => void): () => void {
    const list = this.listeners.get(event) ?? [];
    list.push(listener);
    this.listeners.set(event, list);
    return () => this.off(event, listener);
  }

  off<K extends keyof Events>(event: K, listener: (payload: Events[K]) => void): void {
    const list = this.listeners.get(event);
    if (!list) return;
    const i = list.indexOf(listener);
    if (i >= 0) list.splice(i, 1);
  }

  has(event: keyof Events): boolean {
    return (this.listeners.get(event)?.length ?? 0) > 0;
  }

  /** Calls the listeners; one that throws does not stop the others. Returns the errors thrown. */
  emit<K extends keyof Events>(event: K, payload: Events[K]): unknown[] {
    const errors: unknown[] = [];
    for (const l of [...(this.listeners.get(event) ?? [])]) {
      try {
        l(payload);
      } catch (err) {
        errors.push(err);
      }
    }
    return errors;
  }
}
