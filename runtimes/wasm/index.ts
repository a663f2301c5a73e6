export { WasmRuntime, type WasmRuntimeInit } from './pool.js'
export { limitMemory, InvalidModuleError, WASM_PAGE_BYTES, type MemoryLimits } from './limits.js'
