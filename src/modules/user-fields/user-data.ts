import type { App } from '../../app.ts'
import type { AppDeps } from '../../lib/deps.ts'
import { registerFieldHistories } from '../field-histories/field-histories.routes.ts'
import { registerUserFields } from './user-fields.routes.ts'

/** User Data (api-reference section 7): user fields and their value histories. */
export async function registerUserData(app: App, deps: AppDeps) {
  await registerUserFields(app, deps)
  await registerFieldHistories(app, deps)
}
