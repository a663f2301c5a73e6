#!/usr/bin/env node
import { statSync } from 'node:fs'

/**
 * `edge`: the CLI, from its bundle (`npm run build` makes dist/clibundle/edge-main.js) — one file
 * to load instead of some thirty modules, which is most of what an `edge` command costs beyond
 * `node -e 0` — or from the modules when the bundle is older than them (a `tsc` alone).
 */
const bundle = new URL('../clibundle/edge-main.js', import.meta.url)
let fresh = false
try {
  fresh = statSync(bundle).mtimeMs >= statSync(new URL('./edge-main.js', import.meta.url)).mtimeMs
} catch {
  // no bundle: the modules
}
await import(fresh ? bundle.href : './edge-main.js')
