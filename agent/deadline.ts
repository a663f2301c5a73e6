/**
 * A signal that aborts after `ms` (if given) or when any of `parents` aborts, whichever is first,
 * with that parent's reason. Unlike AbortSignal.any over long-lived parents (a stream, the agent's
 * stop), it detaches from them when `done()` is called, so that thousands of calls do not pile up
 * listeners.
 */
export function deadline (parents: AbortSignal | ReadonlyArray<AbortSignal | undefined>, ms?: number): { signal: AbortSignal, done: () => void } {
  const controller = new AbortController()
  const list = (Array.isArray(parents) ? parents : [parents]).filter((p): p is AbortSignal => p !== undefined)
  const detach = (): void => {
    clearTimeout(timer)
    for (const p of list) p.removeEventListener('abort', onAbort)
  }
  const onAbort = function (this: AbortSignal): void {
    detach()
    controller.abort(this.reason)
  }
  const timer = ms === undefined
    ? undefined
    : setTimeout(() => { detach(); controller.abort(new DOMException('deadline exceeded', 'TimeoutError')) }, Math.max(0, ms))
  timer?.unref()
  const aborted = list.find(p => p.aborted)
  if (aborted !== undefined) {
    clearTimeout(timer)
    controller.abort(aborted.reason)
  } else {
    for (const p of list) p.addEventListener('abort', onAbort, { once: true })
  }
  return { signal: controller.signal, done: detach }
}

/** Waits until every one of `tasks` has settled, or `ms` have passed, whichever is first. */
export async function settledWithin (tasks: Iterable<Promise<unknown>>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([Promise.allSettled(tasks), new Promise<void>(resolve => { timer = setTimeout(resolve, ms) })])
  clearTimeout(timer)
}
