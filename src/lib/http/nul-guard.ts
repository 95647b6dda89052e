import type { FastifyRequest } from 'fastify'
import { AppError } from '../errors.ts'

const NUL = '\u0000'

/**
 * PostgreSQL text and jsonb cannot hold U+0000: a request string carrying one would reach the
 * database and fail there as a 500. Every route refuses it first, with a 400 naming the field, in
 * its family's envelope (the error handler shapes it): a preValidation hook, so it sees the parsed
 * query, params and JSON body before any schema or handler does.
 */
export async function refuseNulCharacters(req: FastifyRequest): Promise<void> {
  for (const [where, value] of [
    ['params', req.params],
    ['querystring', req.query],
    ['body', req.body],
  ] as const) {
    const path = nulPath(value)
    if (path === null) continue
    const field = path.length ? path.join('.') : where
    throw new AppError(
      400,
      'invalid_character',
      `Invalid ${where} field "${field}": it holds a NUL character (U+0000), which cannot be stored`,
      field,
    )
  }
}

type Node = { value: unknown; key: string | null; parent: Node | null }

/**
 * The path (keys and array indexes) to the first string or key holding U+0000, or null if none does.
 * Walked with a stack, not recursion: a JSON body may nest deeper than the call stack goes.
 */
export function nulPath(root: unknown): string[] | null {
  const stack: Node[] = [{ value: root, key: null, parent: null }]
  while (stack.length > 0) {
    const node = stack.pop() as Node
    if (node.key?.includes(NUL)) return pathOf(node)
    const v = node.value
    if (typeof v === 'string') {
      if (v.includes(NUL)) return pathOf(node)
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], key: String(i), parent: node })
    } else if (v !== null && typeof v === 'object' && !Buffer.isBuffer(v)) {
      const entries = Object.entries(v)
      for (let i = entries.length - 1; i >= 0; i--)
        stack.push({ value: entries[i][1], key: entries[i][0], parent: node })
    }
  }
  return null
}

/** The field's path, its NUL shown as U+FFFD (the answer should not carry one either). */
function pathOf(node: Node): string[] {
  const path: string[] = []
  for (let n: Node | null = node; n?.key != null; n = n.parent) path.push(n.key.replaceAll(NUL, '\uFFFD'))
  return path.reverse()
}
