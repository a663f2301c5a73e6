import { request } from 'node:http'
import { raceSignal } from 'race-signal'
import type Docker from 'dockerode'

export class DockerUnavailableError extends Error {
  override name = 'DockerUnavailableError'
}

const DEFAULT_SOCKET = '/var/run/docker.sock'

/** Asks the daemon on a unix socket for /_ping with node:http: resolves once it answers OK. */
async function pingSocket (socketPath: string, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const req = request({ socketPath, path: '/_ping', method: 'GET', signal }, (res) => {
      res.resume()
      if (res.statusCode === 200) resolve()
      else reject(new Error(`answered ${res.statusCode ?? '?'} to a ping`))
    })
    req.on('error', reject)
    req.end()
  })
}

/**
 * A Docker client that has answered a ping ($DOCKER_HOST or the local socket), or a clear error:
 * agents without Docker keep running WASM functions. A daemon on a unix socket (the default) is
 * pinged before dockerode is loaded, so that an agent without Docker never loads it (with gRPC,
 * protobufjs and ssh2, some 20 MiB and a tenth of a second of CPU).
 */
export async function connectDocker (timeoutMs = 3000): Promise<Docker> {
  const host = process.env.DOCKER_HOST
  const where = host ?? DEFAULT_SOCKET
  const signal = AbortSignal.timeout(timeoutMs)
  try {
    const socket = host === undefined ? DEFAULT_SOCKET : host.startsWith('unix://') ? host.slice('unix://'.length) : undefined
    if (socket !== undefined) await pingSocket(socket, signal)
    const { default: Dockerode } = await import('dockerode')
    const docker = new Dockerode()
    // A daemon elsewhere (tcp://, ssh://) is pinged by dockerode itself.
    if (socket === undefined) await raceSignal(docker.ping(), signal)
    return docker
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    const why = e.name === 'AbortError' || e.name === 'TimeoutError' ? `no answer in ${timeoutMs} ms` : e.code ?? e.message
    throw new DockerUnavailableError(`cannot reach Docker at ${where} (${why}): install docker.io and start dockerd to run node, python and binary functions (WASM functions need no Docker)`, { cause: err })
  }
}
