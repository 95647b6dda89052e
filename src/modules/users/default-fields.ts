/**
 * Default user fields, maintained by the system. `column` is the database name used in
 * Get Users with Filters, the bulk CSV template and bulk updates (api-reference 2.2, 12.4).
 */
export interface DefaultField {
  column: string
  name: string
  type: 'text' | 'number' | 'date' | 'boolean'
  /** Can be written by create/bulk import/update. */
  writable: boolean
  /** Changes only through ledger entries. */
  currency?: 'xp' | 'coins' | 'premium'
}

export const DEFAULT_FIELDS: readonly DefaultField[] = [
  { column: 'email', name: 'Email', type: 'text', writable: true },
  { column: 'username', name: 'Username', type: 'text', writable: true },
  { column: 'first_name', name: 'First Name', type: 'text', writable: true },
  { column: 'last_name', name: 'Last Name', type: 'text', writable: true },
  { column: 'display_name', name: 'Display Name', type: 'text', writable: true },
  { column: 'phone', name: 'Phone', type: 'text', writable: true },
  { column: 'country', name: 'Country', type: 'text', writable: true },
  { column: 'language', name: 'Language', type: 'text', writable: true },
  { column: 'avatar', name: 'Avatar', type: 'text', writable: true },
  { column: 'join_date', name: 'Join date', type: 'date', writable: true },
  { column: 'xp', name: 'Total XP', type: 'number', writable: true, currency: 'xp' },
  { column: 'coins', name: 'Total Coins', type: 'number', writable: true, currency: 'coins' },
  { column: 'premium', name: 'Premium Currency', type: 'number', writable: false, currency: 'premium' },
  { column: 'last_login', name: 'Last Login', type: 'date', writable: false },
  { column: 'created_at', name: 'Created At', type: 'date', writable: false },
]

export const DEFAULT_FIELD_BY_COLUMN = new Map(DEFAULT_FIELDS.map((f) => [f.column, f]))
