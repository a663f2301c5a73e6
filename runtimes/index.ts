export type { Runtime, RunOptions, RunResult, RuntimeCapacityInfo } from './runtime.js'
export { WasmRuntime, type WasmRuntimeInit, limitMemory, InvalidModuleError, WASM_PAGE_BYTES } from './wasm/index.js'
