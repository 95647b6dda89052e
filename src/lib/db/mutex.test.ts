import { describe, expect, it } from 'vitest'
import { Mutex } from './mutex.ts'

const tick = () => new Promise((r) => setTimeout(r, 1))

describe('Mutex', () => {
  describe('lock', () => {
    it('grants the lock at once when nobody holds it', async () => {
      const mutex = new Mutex()
      const release = await mutex.lock()
      expect(typeof release).toBe('function')
      release()
      // Free again after the release.
      const again = await Promise.race([mutex.lock(), tick().then(() => 'blocked')])
      expect(again).not.toBe('blocked')
    })

    it('makes a second caller wait until the holder releases', async () => {
      const mutex = new Mutex()
      const release = await mutex.lock()
      let second = false
      const waiting = mutex.lock().then((r) => {
        second = true
        return r
      })
      await tick()
      expect(second).toBe(false)
      release()
      const releaseSecond = await waiting
      expect(second).toBe(true)
      releaseSecond()
    })

    it('grants waiters in the order they asked (FIFO), one at a time', async () => {
      const mutex = new Mutex()
      const order: number[] = []
      let holders = 0
      let maxHolders = 0
      const runs = Array.from({ length: 8 }, (_, i) =>
        mutex.lock().then(async (release) => {
          holders++
          maxHolders = Math.max(maxHolders, holders)
          order.push(i)
          // Later callers finish faster: order must still follow the requests.
          await new Promise((r) => setTimeout(r, 8 - i))
          holders--
          release()
        }),
      )
      await Promise.all(runs)
      expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
      expect(maxHolders).toBe(1)
    })

    it('keeps FIFO order for callers arriving while others wait', async () => {
      const mutex = new Mutex()
      const order: string[] = []
      const first = await mutex.lock()
      const take = (name: string) =>
        mutex.lock().then((release) => {
          order.push(name)
          return release
        })
      const a = take('a')
      const b = take('b')
      first()
      const releaseA = await a
      const c = take('c')
      await tick()
      expect(order).toEqual(['a'])
      releaseA()
      ;(await b)()
      ;(await c)()
      expect(order).toEqual(['a', 'b', 'c'])
    })

    it('ignores a second release of the same hold', async () => {
      const mutex = new Mutex()
      const release = await mutex.lock()
      const next = mutex.lock()
      release()
      const releaseNext = await next
      release() // stale: must not let a third caller in while `next` holds the lock
      let third = false
      const waiting = mutex.lock().then((r) => {
        third = true
        return r
      })
      await tick()
      expect(third).toBe(false)
      releaseNext()
      ;(await waiting)()
      expect(third).toBe(true)
    })
  })
})
