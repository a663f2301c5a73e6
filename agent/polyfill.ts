/**
 * libp2p 3 calls Promise.withResolvers (Node >= 22). Node 20 (and armv7's newest Node, 20.11)
 * lack it. This module must be imported before anything that imports libp2p: ES modules evaluate
 * their imports first, so it cannot live inline in an entry file.
 */
if (typeof (Promise as { withResolvers?: unknown }).withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T> () {
      let resolve!: (value: T | PromiseLike<T>) => void
      let reject!: (reason?: unknown) => void
      const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    }
  })
}
// The same place fixes a bug of pnet's cipher that crashes the process after large transfers.
export * from './swarm/pnet-fix.js'
