/** Permission names of community API keys, as the public docs spell them. */
export const COMMUNITY_KEY_PERMISSIONS = [
  'createUser',
  'getUserData',
  'manageUser',
  'getUserStats',
  'bulkUpdateUser',
  'userFields',
  'sendMessage',
  'replyMessage',
  'getMessages',
  'manageRedemptions',
  'manageGamification',
  'manageAnalysis',
  'manageWebhooks',
  'readApiLog',
] as const
export type Permission = (typeof COMMUNITY_KEY_PERMISSIONS)[number]

/** Permission names of user API keys. */
export const USER_KEY_PERMISSIONS = [
  'sendMessages',
  'readOwnProfile',
  'updateOwnProfile',
  'readOwnMessages',
] as const
export type UserPermission = (typeof USER_KEY_PERMISSIONS)[number]
