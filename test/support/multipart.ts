import { randomBytes } from 'node:crypto'

/** A multipart/form-data body for app.inject: fields in the given order, the CSV as `data` unless said otherwise. */
export function multipart(parts: {
  fields?: Record<string, string>
  file?: string | Buffer
  fileField?: string
  fileName?: string
  fileFirst?: boolean
}) {
  const boundary = `----hearth${randomBytes(8).toString('hex')}`
  const chunks: Buffer[] = []
  const field = (name: string, value: string) =>
    chunks.push(
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`),
    )
  const file = () => {
    if (parts.file === undefined) return
    chunks.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${parts.fileField ?? 'data'}"; filename="${parts.fileName ?? 'users.csv'}"\r\nContent-Type: text/csv\r\n\r\n`,
      ),
      Buffer.isBuffer(parts.file) ? parts.file : Buffer.from(parts.file),
      Buffer.from('\r\n'),
    )
  }
  if (parts.fileFirst) file()
  for (const [k, v] of Object.entries(parts.fields ?? {})) field(k, v)
  if (!parts.fileFirst) file()
  chunks.push(Buffer.from(`--${boundary}--\r\n`))
  return {
    payload: Buffer.concat(chunks),
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
  }
}
