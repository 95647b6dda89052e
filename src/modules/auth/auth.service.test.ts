import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../lib/config.ts'
import { publicBase } from './auth.service.ts'

describe('publicBase', () => {
  it('uses PUBLIC_URL without a trailing slash', () => {
    expect(publicBase(loadConfig({ PUBLIC_URL: 'https://community.example.com/' }))).toBe(
      'https://community.example.com',
    )
  })

  it('falls back to this server on localhost and its port', () => {
    expect(publicBase(loadConfig({ PORT: '8080' }))).toBe('http://localhost:8080')
  })
})
