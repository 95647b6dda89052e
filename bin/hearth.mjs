#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx's loader: no build step between clone and start.
// (tsx's full loader, as `node --import tsx` uses it: its esm/api register() alone made the process
// hold about three times the memory.)
import 'tsx'

await import('../src/cli/main.ts')
