/**
 * Phase timings for benchmarks: with HEARTH_PROFILE=1, `timed` adds up the milliseconds spent in
 * each named phase and `printPhases` writes them to stderr as one JSON line (bench/bulk.ts shows it).
 * Off by default: then `timed` only calls through.
 */
const totals = new Map<string, number>()
const profiling = process.env.HEARTH_PROFILE === '1'

export async function timed<T>(name: string, fn: () => Promise<T>): Promise<T> {
  if (!profiling) return fn()
  const started = performance.now()
  try {
    return await fn()
  } finally {
    totals.set(name, (totals.get(name) ?? 0) + performance.now() - started)
    sampleMemory()
  }
}

const peakMB: Record<string, number> = {}

/** Records the largest heap, external (WebAssembly memory included) and RSS figures seen so far. */
export function sampleMemory() {
  if (!profiling) return
  for (const [k, v] of Object.entries(process.memoryUsage())) {
    peakMB[k] = Math.max(peakMB[k] ?? 0, Math.round(v / 1e6))
  }
}

export function printPhases(label: string) {
  if (!profiling) return
  const ms = Object.fromEntries([...totals].map(([k, v]) => [k, Math.round(v)]))
  process.stderr.write(`${JSON.stringify({ phasesMs: ms, memoryPeakMB: { ...peakMB }, label })}\n`)
  totals.clear()
  for (const k of Object.keys(peakMB)) delete peakMB[k]
}
