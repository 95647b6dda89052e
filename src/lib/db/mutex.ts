/** A FIFO async lock: the one guard in front of PGlite's single connection. */
export class Mutex {
  #tail: Promise<void> = Promise.resolve()

  /** Resolves with a release function once every earlier holder has released. */
  lock(): Promise<() => void> {
    let release!: () => void
    const held = new Promise<void>((r) => {
      release = r
    })
    const ready = this.#tail.then(() => release)
    this.#tail = this.#tail.then(() => held)
    return ready
  }
}
