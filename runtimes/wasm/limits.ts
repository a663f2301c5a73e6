import { InvalidModuleError } from '../runtime.js'
/**
 * Reads and rewrites the memory of a WebAssembly binary.
 *
 * Worker `resourceLimits` do not cap WASM memory, so the limit is enforced on the module itself: a
 * declared maximum above the limit is refused, a memory without a maximum gets the limit as its
 * maximum. The memory is also turned from a definition into an import (`env.memory`), so that a
 * worker can hand each call a memory it already has: creating a memory costs ~110 µs of the
 * ~130 µs of an instantiation here, reusing one ~15 µs.
 */
export const WASM_PAGE_BYTES = 65536
export const MEMORY_IMPORT = { module: 'env', name: 'memory' } as const

export { InvalidModuleError }

export interface MemoryLimits {
  minPages: number
  maxPages: number
}

export interface LimitedModule {
  /** The module with its memory imported as `env.memory`, bounded by `memory.maxPages`. */
  code: Uint8Array
  memory: MemoryLimits
  /** The original declared no maximum; the limit was written in. */
  capped: boolean
}

const IMPORT_SECTION = 2
const MEMORY_SECTION = 5
const IMPORT_KIND_MEMORY = 0x02

function readU32 (buf: Uint8Array, offset: number): [value: number, next: number] {
  let result = 0
  let shift = 0
  let pos = offset
  while (true) {
    if (pos >= buf.length) throw new InvalidModuleError('truncated module')
    const byte = buf[pos++] as number
    result += (byte & 0x7f) * 2 ** shift
    if ((byte & 0x80) === 0) break
    shift += 7
    if (shift > 28) throw new InvalidModuleError('malformed LEB128 in module')
  }
  return [result, pos]
}

function writeU32 (value: number): number[] {
  const out: number[] = []
  do {
    let byte = value & 0x7f
    value = Math.floor(value / 128)
    if (value !== 0) byte |= 0x80
    out.push(byte)
  } while (value !== 0)
  return out
}

function name (text: string): number[] {
  const bytes = [...Buffer.from(text)]
  return [...writeU32(bytes.length), ...bytes]
}

function section (id: number, content: number[] | Uint8Array): number[] {
  return [id, ...writeU32(content.length), ...content]
}

function mib (pages: number): string {
  const bytes = pages * WASM_PAGE_BYTES
  return `${(bytes / 1048576).toFixed(bytes % 1048576 === 0 ? 0 : 1)} MiB`
}

interface Section { id: number, start: number, contentStart: number, end: number }

function sections (code: Uint8Array): Section[] {
  if (code.length < 8 || code[0] !== 0 || code[1] !== 0x61 || code[2] !== 0x73 || code[3] !== 0x6d) {
    throw new InvalidModuleError('not a WebAssembly module (bad magic number)')
  }
  const out: Section[] = []
  let pos = 8
  while (pos < code.length) {
    const [size, contentStart] = readU32(code, pos + 1)
    const end = contentStart + size
    if (end > code.length) throw new InvalidModuleError('truncated module section')
    out.push({ id: code[pos] as number, start: pos, contentStart, end })
    pos = end
  }
  return out
}

/** Checks the module's memory against `limitBytes` and moves it to an `env.memory` import. */
export function limitMemory (code: Uint8Array, limitBytes: number): LimitedModule {
  const limitPages = Math.floor(limitBytes / WASM_PAGE_BYTES)
  const all = sections(code)
  const memory = all.find(s => s.id === MEMORY_SECTION)
  if (memory === undefined) throw new InvalidModuleError('module defines no memory of its own (imported memories are not supported): build it as a WASI command')
  const [count, p1] = readU32(code, memory.contentStart)
  if (count !== 1) throw new InvalidModuleError('module defines more than one memory, which this runtime does not support')
  const flags = code[p1] as number
  if (flags > 1) throw new InvalidModuleError('module uses shared or 64-bit memory, which this runtime does not support')
  const [minPages, p2] = readU32(code, p1 + 1)
  if (minPages > limitPages) {
    throw new InvalidModuleError(`module needs at least ${mib(minPages)} of memory, above the limit of ${mib(limitPages)}: deploy with a larger --memory`)
  }
  let maxPages = limitPages
  let end = p2
  if (flags === 1) {
    [maxPages, end] = readU32(code, p2)
    if (maxPages > limitPages) {
      throw new InvalidModuleError(`module declares up to ${mib(maxPages)} of memory, above the limit of ${mib(limitPages)}: deploy with --memory ${mib(maxPages).replace(' ', '')} or build with a lower maximum (-Wl,--max-memory=N)`)
    }
  }
  if (end !== memory.end) throw new InvalidModuleError('malformed memory section')

  // Imported memories come before defined ones in the index space: with the only definition
  // removed and one import added, memory 0 (and the "memory" export) stays the same memory.
  const entry = [...name(MEMORY_IMPORT.module), ...name(MEMORY_IMPORT.name), IMPORT_KIND_MEMORY, 0x01, ...writeU32(minPages), ...writeU32(maxPages)]
  const imports = all.find(s => s.id === IMPORT_SECTION)
  let importSection: number[]
  if (imports !== undefined) {
    const [n, rest] = readU32(code, imports.contentStart)
    importSection = section(IMPORT_SECTION, [...writeU32(n + 1), ...code.subarray(rest, imports.end), ...entry])
  } else {
    importSection = section(IMPORT_SECTION, [...writeU32(1), ...entry])
  }
  const parts: Uint8Array[] = [code.subarray(0, 8)]
  let placed = false
  for (const s of all) {
    // The import section goes after the type section (1) and before anything else but custom ones.
    if (!placed && s.id !== 0 && s.id > IMPORT_SECTION) {
      parts.push(Uint8Array.from(importSection))
      placed = true
    }
    if (s.id === IMPORT_SECTION || s.id === MEMORY_SECTION) continue
    parts.push(code.subarray(s.start, s.end))
  }
  if (!placed) parts.push(Uint8Array.from(importSection))
  return { code: Buffer.concat(parts), memory: { minPages, maxPages }, capped: flags === 0 }
}
