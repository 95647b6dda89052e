import type { App } from '../app.ts'
import type { AppDeps } from '../lib/deps.ts'
import { registerAdmin } from './admin/admin.routes.ts'
import { registerApiKeys } from './api-keys/api-keys.routes.ts'
import { registerApiLog } from './api-log/api-log.routes.ts'
import { registerAuth } from './auth/auth.routes.ts'
import { registerBulk } from './bulk/bulk.routes.ts'
import { registerCommunities } from './communities/communities.routes.ts'
import { registerUserData } from './user-fields/user-data.ts'
import { registerUsers } from './users/users.routes.ts'

export type ModuleRegister = (app: App, deps: AppDeps) => Promise<void> | void

/** Every feature module, in registration order. */
export const modules: ModuleRegister[] = [
  registerCommunities,
  registerUserData,
  registerAuth,
  registerApiKeys,
  registerApiLog,
  registerUsers,
  registerBulk,
  registerAdmin,
]
