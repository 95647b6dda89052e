import { randomBytes } from 'node:crypto'

let counter = randomBytes(3).readUIntBE(0, 3)
const processPart = randomBytes(5)

/** A 24-hex id shaped like a MongoDB ObjectId (the id format the public API documents). */
export function newId(): string {
  const buf = Buffer.alloc(12)
  buf.writeUInt32BE(Math.floor(Date.now() / 1000), 0)
  processPart.copy(buf, 4)
  counter = (counter + 1) % 0xffffff
  buf.writeUIntBE(counter, 9, 3)
  return buf.toString('hex')
}

export const OBJECT_ID = /^[0-9a-fA-F]{24}$/
export const isObjectId = (v: string) => OBJECT_ID.test(v)
