import { abortError } from '../protocol/errors.js'

/** A call waiting for what runs it (a worker, a container); whoever frees one settles the first waiter. */
export interface Waiter<T> {
  resolve: (value: T) => void
  reject: (err: Error) => void
}

/**
 * Puts a call at the end of `queue` until it is handed what it waits for, or until `signal` aborts:
 * then it leaves the queue and fails with the signal's reason when it is one of ours (cancelled,
 * interrupted), else DeadlineExceededError ("… while waiting for `what`").
 * `fields` are whatever else the queue's owner keeps on each waiter.
 */
export async function enqueue<T, W extends Waiter<T>> (queue: W[], fields: Omit<W, keyof Waiter<T>>, signal: AbortSignal | undefined, what: string): Promise<T> {
  signal?.throwIfAborted()
  return await new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      const i = queue.indexOf(waiter)
      if (i >= 0) queue.splice(i, 1)
      reject(abortError(signal as AbortSignal, `deadline exceeded while waiting for ${what}`))
    }
    const waiter = {
      ...fields,
      resolve: (value: T) => { signal?.removeEventListener('abort', onAbort); resolve(value) },
      reject: (err: Error) => { signal?.removeEventListener('abort', onAbort); reject(err) }
    } as W
    signal?.addEventListener('abort', onAbort, { once: true })
    queue.push(waiter)
  })
}
