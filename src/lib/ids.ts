import { randomBytes } from 'node:crypto'

let counter = randomBytes(3).readUIntBE(0, 3)
const processPart = randomBytes(5)

const processHex = processPart.toString('hex')
let second = -1
let secondHex = ''

/**
 * A 24-hex id shaped like a MongoDB ObjectId (the id format the public API documents): 8 hex of
 * epoch seconds, 10 of this process, 6 of a counter. Built from strings: bulk jobs make one per row.
 */
export function newId(): string {
  const now = Math.floor(Date.now() / 1000)
  if (now !== second) {
    second = now
    secondHex = now.toString(16).padStart(8, '0')
  }
  counter = (counter + 1) % 0xffffff
  return secondHex + processHex + counter.toString(16).padStart(6, '0')
}

export const OBJECT_ID = /^[0-9a-fA-F]{24}$/
export const isObjectId = (v: string) => OBJECT_ID.test(v)
