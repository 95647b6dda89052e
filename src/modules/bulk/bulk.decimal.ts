/**
 * Exact decimals for the played bulk path (bulk.users-play.ts): custom number fields live in jsonb
 * as PostgreSQL numeric, and `x_op` arithmetic must give what `numeric + numeric` gives there, not
 * what doubles give (0.1 + 0.2). A value is digits × 10^-scale; a sum keeps the larger scale, and
 * prints with exactly that many decimals, as numeric_out does.
 */
export interface Decimal {
  digits: bigint
  scale: number
}

const LITERAL = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/

/** Parses a JSON number or numeric text; null when it is not a plain finite decimal. */
export function parseDecimal(text: string): Decimal | null {
  const m = LITERAL.exec(text.trim())
  if (!m || (m[2] === '' && (m[3] ?? '') === '')) return null
  const fraction = m[3] ?? ''
  const exponent = Number(m[4] ?? 0)
  if (!Number.isSafeInteger(exponent) || Math.abs(exponent) > 1000) return null
  let digits = BigInt(`${m[2]}${fraction}` || '0')
  let scale = fraction.length - exponent
  if (scale < 0) {
    digits *= 10n ** BigInt(-scale)
    scale = 0
  }
  return { digits: m[1] === '-' ? -digits : digits, scale }
}

function rescale(d: Decimal, scale: number): bigint {
  return d.digits * 10n ** BigInt(scale - d.scale)
}

export function addDecimal(a: Decimal, b: Decimal, sign: 1n | -1n = 1n): Decimal {
  const scale = Math.max(a.scale, b.scale)
  return { digits: rescale(a, scale) + sign * rescale(b, scale), scale }
}

export function sameDecimal(a: Decimal, b: Decimal): boolean {
  const scale = Math.max(a.scale, b.scale)
  return rescale(a, scale) === rescale(b, scale)
}

export function formatDecimal(d: Decimal): string {
  const negative = d.digits < 0n
  const abs = (negative ? -d.digits : d.digits).toString().padStart(d.scale + 1, '0')
  const whole = abs.slice(0, abs.length - d.scale)
  const text = d.scale > 0 ? `${whole}.${abs.slice(abs.length - d.scale)}` : whole
  return negative && d.digits !== 0n ? `-${text}` : text
}
