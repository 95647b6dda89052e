import { PerformanceObserver } from 'node:perf_hooks'
import { CopyWriter, copyCell } from '../../src/lib/db/copy.ts'
import { stageColumns } from '../../src/modules/bulk/bulk.apply-users.ts'
import { planColumns } from '../../src/modules/bulk/bulk.plan.ts'
import { checkImportRow, isRowError } from '../../src/modules/bulk/bulk.rows.ts'
import { assignWaves } from '../../src/modules/bulk/bulk.stage.ts'
import { CsvParser } from '../../src/modules/bulk/csv/csv-parser.ts'

const N = Number(process.argv[2] ?? 100000)
const TIERS = ['bronze', 'silver', 'gold', '"platinum, plus"']
let text = 'email,username,first_name,last_name,display_name,phone,country,join_date,xp,coins,deposit,tier\n'
for (let i = 0; i < N; i++)
  text +=
    [
      `user${i}@bench.example`,
      `user_${i}`,
      `First${i}`,
      `Last${i}`,
      `User ${i}`,
      `+4477009${String(i).padStart(5, '0')}`,
      ['GB', 'DE', 'SG', 'AE'][i % 4],
      `2025-${String((i % 12) + 1).padStart(2, '0')}-${String((i % 28) + 1).padStart(2, '0')}`,
      i % 1000,
      i % 500,
      (i % 10000) / 4,
      TIERS[i % 4],
    ].join(',') + '\n'
const buf = Buffer.from(text)
const pieces: Buffer[] = []
for (let o = 0; o < buf.length; o += 65536) pieces.push(buf.subarray(o, o + 65536))

let gcMs = 0,
  gcN = 0
new PerformanceObserver((l) => {
  for (const e of l.getEntries()) {
    gcMs += e.duration
    gcN++
  }
}).observe({ entryTypes: ['gc'] })

const ctx = {
  identifierField: null,
  customFields: [
    { id: 'f1', field: 'deposit', type: 'number', options: null },
    { id: 'f2', field: 'tier', type: 'text', options: null },
  ],
}
async function run() {
  const parser = new CsvParser()
  let plan: any = null
  let batch: any[] = []
  let rowNo = 0
  let total = 0
  const flush = () => {
    const rows = batch
      .map(({ rowNo, record }) => checkImportRow(plan, record.cells, rowNo, record.line))
      .filter((r) => !isRowError(r)) as any[]
    const cols = stageColumns(plan)
    const { waves } = assignWaves(rows.map((r) => r.key))
    let csv = ''
    if (process.env.NOCSV) {
      total += rows.length
      batch = []
      return
    }
    if (process.env.WRITER) {
      const w = new CopyWriter()
      rows.forEach((r, k) => {
        const out: unknown[] = [r.rowNo, waves[k], r.key, r.newId, r.email]
        plan.targets.forEach((t: any, i: number) => {
          out.push(r.values[i])
          if (t.opIndex !== null) out.push(r.ops[i])
        })
        for (let i = 0; i < out.length; i++) {
          const v = out[i]
          w.cell(
            v === undefined || v === null
              ? null
              : cols[i].type === 'jsonb'
                ? JSON.stringify(v)
                : (v as string),
          )
        }
        w.endRow()
      })
      total += w.bytes().length
      batch = []
      return
    }
    rows.forEach((r, k) => {
      const out: unknown[] = [r.rowNo, waves[k], r.key, r.newId, r.email]
      plan.targets.forEach((t: any, i: number) => {
        out.push(r.values[i])
        if (t.opIndex !== null) out.push(r.ops[i])
      })
      let line = ''
      for (let i = 0; i < out.length; i++) {
        const v = out[i]
        const cell =
          v === undefined || v === null
            ? ''
            : cols[i].type === 'jsonb'
              ? copyCell(JSON.stringify(v))
              : copyCell(v as string)
        line += i === 0 ? cell : `,${cell}`
      }
      csv += `${line}\n`
    })
    total += Buffer.byteLength(csv)
    batch = []
  }
  for (const piece of pieces)
    for (const record of parser.push(piece)) {
      if (!plan) {
        const p = planColumns((record as any).cells, { type: 'import', ...ctx } as any)
        plan = (p as any).plan
        continue
      }
      batch.push({ rowNo: ++rowNo, record })
      if (batch.length >= 10000) flush()
    }
  for (const record of parser.end()) batch.push({ rowNo: ++rowNo, record })
  if (batch.length) flush()
  return total
}
await run() // warm up
gcMs = 0
gcN = 0
const t0 = performance.now()
const cpu0 = process.cpuUsage()
const bytes = await run()
const ms = performance.now() - t0
const cpu = process.cpuUsage(cpu0)
await new Promise((r) => setTimeout(r, 50))
console.log(
  JSON.stringify({
    rows: N,
    ms: Math.round(ms),
    cpuMs: Math.round((cpu.user + cpu.system) / 1000),
    gcMs: Math.round(gcMs),
    gcN,
    stageMB: Math.round(bytes / 1e6),
  }),
)
