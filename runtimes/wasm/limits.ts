/**
 * Reads and rewrites the memory limits of a WebAssembly binary.
 *
 * Worker `resourceLimits` do not cap WASM memory, so the limit is enforced on the module itself:
 * a declared maximum above the limit is refused; a memory without a maximum gets the limit written
 * in as its maximum, so `memory.grow` fails beyond it.
 */
export const WASM_PAGE_BYTES = 65536

export class InvalidModuleError extends Error {
  override name = 'InvalidModuleError'
}

export interface MemoryLimits {
  minPages: number
  maxPages: number | undefined
}

export interface LimitedModule {
  code: Uint8Array
  memory: MemoryLimits
  /** true when a maximum was written into the module. */
  patched: boolean
}

const MEMORY_SECTION = 5

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

function mib (pages: number): string {
  return `${(pages * WASM_PAGE_BYTES / 1048576).toFixed(pages * WASM_PAGE_BYTES % 1048576 === 0 ? 0 : 1)} MiB`
}

export function applyMemoryLimit (code: Uint8Array, limitBytes: number): LimitedModule {
  if (code.length < 8 || code[0] !== 0 || code[1] !== 0x61 || code[2] !== 0x73 || code[3] !== 0x6d) {
    throw new InvalidModuleError('not a WebAssembly module (bad magic number)')
  }
  const limitPages = Math.floor(limitBytes / WASM_PAGE_BYTES)
  let pos = 8
  while (pos < code.length) {
    const id = code[pos] as number
    const [size, contentStart] = readU32(code, pos + 1)
    const end = contentStart + size
    if (end > code.length) throw new InvalidModuleError('truncated module section')
    if (id !== MEMORY_SECTION) {
      pos = end
      continue
    }
    const [count, p1] = readU32(code, contentStart)
    if (count === 0) return { code, memory: { minPages: 0, maxPages: 0 }, patched: false }
    if (count > 1) throw new InvalidModuleError('module defines more than one memory, which this runtime does not support')
    const flags = code[p1] as number
    if (flags > 1) throw new InvalidModuleError('module uses shared or 64-bit memory, which this runtime does not support')
    const [minPages, p2] = readU32(code, p1 + 1)
    if (minPages > limitPages) {
      throw new InvalidModuleError(`module needs at least ${mib(minPages)} of memory, above the limit of ${mib(limitPages)}: deploy with a larger --memory`)
    }
    if (flags === 1) {
      const [maxPages, p3] = readU32(code, p2)
      if (p3 !== end) throw new InvalidModuleError('malformed memory section')
      if (maxPages > limitPages) {
        throw new InvalidModuleError(`module declares up to ${mib(maxPages)} of memory, above the limit of ${mib(limitPages)}: deploy with --memory ${mib(maxPages).replace(' ', '')} or build with a lower maximum (-Wl,--max-memory=N)`)
      }
      return { code, memory: { minPages, maxPages }, patched: false }
    }
    if (p2 !== end) throw new InvalidModuleError('malformed memory section')
    const content = [...writeU32(1), 0x01, ...writeU32(minPages), ...writeU32(limitPages)]
    const section = [MEMORY_SECTION, ...writeU32(content.length), ...content]
    const patched = new Uint8Array(pos + section.length + (code.length - end))
    patched.set(code.subarray(0, pos), 0)
    patched.set(section, pos)
    patched.set(code.subarray(end), pos + section.length)
    return { code: patched, memory: { minPages, maxPages: limitPages }, patched: true }
  }
  return { code, memory: { minPages: 0, maxPages: 0 }, patched: false }
}
