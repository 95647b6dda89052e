/** The one error type of Hearth: a stable snake_case code, an HTTP status, and the field at fault. */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
    readonly details?: unknown,
  ) {
    super(message)
    this.name = 'AppError'
  }
}

export const badRequest = (code: string, message: string, field?: string, details?: unknown) =>
  new AppError(400, code, message, field, details)
export const unauthorized = (message = 'Missing or invalid credentials', code = 'unauthorized') =>
  new AppError(401, code, message)
export const forbidden = (message = 'Not allowed', code = 'forbidden') => new AppError(403, code, message)
export const notFound = (resource: string, field?: string) =>
  new AppError(404, `${resource}_not_found`, `${humanize(resource)} not found`, field)
export const conflict = (code: string, message: string, field?: string) =>
  new AppError(409, code, message, field)
export const tooLarge = (code: string, message: string, field?: string) =>
  new AppError(413, code, message, field)
export const tooMany = (code: string, message: string) => new AppError(429, code, message)

function humanize(resource: string): string {
  const s = resource.replace(/_/g, ' ')
  return s.charAt(0).toUpperCase() + s.slice(1)
}
