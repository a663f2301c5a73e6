/**
 * Works around a bug in `xsalsa20` 1.2.0, the cipher of @libp2p/pnet: all instances share one
 * WebAssembly memory, but each keeps its own view of it. When one instance grows the memory, the
 * others' views are detached (length 0), so each of their next updates "grows" the memory again by
 * the size of its input. After ~60 MB of traffic the memory reaches its maximum and `grow` throws
 * inside a socket handler, which kills the process. Here every update first picks up the current
 * memory. Imported before libp2p, like the polyfill.
 */
import { createRequire } from 'node:module'

interface WasmCipher {
  _memory: Uint8Array
  realloc: (size: number) => void
  update: (input: Uint8Array, output: Uint8Array) => void
}

const require = createRequire(import.meta.url)
const XSalsa20 = require('xsalsa20') as new (nonce: Uint8Array, key: Uint8Array) => { _xor: WasmCipher, finalize?: () => void }

const probe = new XSalsa20(new Uint8Array(24), new Uint8Array(32))
const proto = Object.getPrototypeOf(probe._xor) as WasmCipher & { __edgeFixed?: boolean }
if (typeof proto.realloc === 'function' && typeof proto.update === 'function' && proto.__edgeFixed !== true) {
  let current = probe._xor._memory.buffer
  const realloc = proto.realloc
  const update = proto.update
  proto.realloc = function (this: WasmCipher, size: number): void {
    if (this._memory.buffer !== current) this._memory = new Uint8Array(current)
    realloc.call(this, size)
    current = this._memory.buffer
  }
  proto.update = function (this: WasmCipher, input: Uint8Array, output: Uint8Array): void {
    if (this._memory.buffer !== current) this._memory = new Uint8Array(current)
    update.call(this, input, output)
  }
  proto.__edgeFixed = true
}

/** Exposed for tests: the size of the shared cipher memory now. */
export function cipherMemoryBytes (): number {
  return new XSalsa20(new Uint8Array(24), new Uint8Array(32))._xor._memory.buffer.byteLength
}
