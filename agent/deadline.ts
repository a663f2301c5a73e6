/**
 * A signal that aborts after `ms` or when `parent` aborts, whichever is first. Unlike
 * AbortSignal.any over a long-lived parent, it detaches from the parent when `done()` is called,
 * so that thousands of calls on one stream do not pile up listeners.
 */
export function deadline (parent: AbortSignal, ms: number): { signal: AbortSignal, done: () => void } {
  const controller = new AbortController()
  const onAbort = (): void => { controller.abort(parent.reason) }
  const timer = setTimeout(() => { controller.abort(new DOMException('deadline exceeded', 'TimeoutError')) }, ms)
  timer.unref()
  if (parent.aborted) onAbort()
  else parent.addEventListener('abort', onAbort, { once: true })
  return {
    signal: controller.signal,
    done: () => {
      clearTimeout(timer)
      parent.removeEventListener('abort', onAbort)
    }
  }
}
