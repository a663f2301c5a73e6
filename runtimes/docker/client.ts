import Docker from 'dockerode'

export class DockerUnavailableError extends Error {
  override name = 'DockerUnavailableError'
}

/**
 * A Docker client that has answered a ping ($DOCKER_HOST or the local socket), or a clear error:
 * agents without Docker keep running WASM functions.
 */
export async function connectDocker (timeoutMs = 3000): Promise<Docker> {
  const docker = new Docker()
  const where = process.env.DOCKER_HOST ?? '/var/run/docker.sock'
  try {
    await Promise.race([
      docker.ping(),
      new Promise((_resolve, reject) => setTimeout(() => { reject(new Error(`no answer in ${timeoutMs} ms`)) }, timeoutMs).unref())
    ])
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new DockerUnavailableError(`cannot reach Docker at ${where} (${e.code ?? e.message}): install docker.io and start dockerd to run node, python and binary functions (WASM functions need no Docker)`, { cause: err })
  }
  return docker
}
