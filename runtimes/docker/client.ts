import { request } from 'node:http'
import { createRequire, Module } from 'node:module'
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
 * dockerode loads, at its own load, gRPC and protobufjs for BuildKit sessions (`buildImage` with
 * `version: '2'`) and docker-modem loads ssh2 for ssh:// daemons: ~10 MiB of an agent's memory,
 * which edge-agent never uses (its images are `docker import`ed, and ssh is needed only when
 * DOCKER_HOST says ssh://). Those two modules are put in Node's module cache as functions that
 * throw, before dockerode is loaded; the rest of dockerode is untouched.
 */
function skipUnusedParts (ssh: boolean): void {
  const fromDockerode = createRequire(createRequire(import.meta.url).resolve('dockerode'))
  const parts: Array<[string, string]> = [['dockerode/lib/session.js', 'BuildKit sessions']]
  if (!ssh) parts.push(['docker-modem/lib/ssh.js', 'ssh:// Docker daemons (set DOCKER_HOST=ssh://… before the agent starts)'])
  for (const [part, what] of parts) {
    const path = fromDockerode.resolve(part)
    if (fromDockerode.cache[path] !== undefined) continue
    const stub = new Module(path)
    stub.filename = path
    stub.loaded = true
    stub.exports = () => { throw new Error(`edge-agent did not load dockerode's support for ${what}`) }
    fromDockerode.cache[path] = stub
  }
}

/**
 * A Docker client that has answered a ping ($DOCKER_HOST or the local socket), or a clear error:
 * agents without Docker keep running WASM functions. A daemon on a unix socket (the default) is
 * pinged before dockerode is loaded, so that an agent without Docker never loads it (with gRPC,
 * protobufjs and ssh2, some 20 MiB and a tenth of a second of CPU), and loads it without the
 * parts it never uses (skipUnusedParts).
 */
export async function connectDocker (timeoutMs = 3000): Promise<Docker> {
  const host = process.env.DOCKER_HOST
  const where = host ?? DEFAULT_SOCKET
  const signal = AbortSignal.timeout(timeoutMs)
  try {
    const socket = host === undefined ? DEFAULT_SOCKET : host.startsWith('unix://') ? host.slice('unix://'.length) : undefined
    if (socket !== undefined) await pingSocket(socket, signal)
    skipUnusedParts(host?.startsWith('ssh://') === true)
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
