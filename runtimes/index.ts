export { InvalidModuleError, type Runtime, type RunOptions, type RunResult, type RuntimeCapacityInfo } from './runtime.js'
export { WasmRuntime, type WasmRuntimeInit, limitMemory, WASM_PAGE_BYTES } from './wasm/index.js'
export { RuntimeSet } from './set.js'
export { useLogger, type RuntimeLog } from './log.js'
