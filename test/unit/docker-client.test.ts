import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connectDocker } from '../../runtimes/docker/client.js'

const loaded = (): boolean => Object.keys(createRequire(import.meta.url).cache).some(p => p.includes(`${join('node_modules', 'dockerode')}`))

test('without a Docker daemon, dockerode is never loaded; one that answers its socket gets a client', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edge-docker-'))
  const socket = join(dir, 'docker.sock')
  const saved = process.env.DOCKER_HOST
  t.after(() => {
    if (saved === undefined) delete process.env.DOCKER_HOST
    else process.env.DOCKER_HOST = saved
    rmSync(dir, { recursive: true, force: true })
  })
  process.env.DOCKER_HOST = `unix://${socket}`
  await assert.rejects(connectDocker(1000), { name: 'DockerUnavailableError', message: /cannot reach Docker at unix:\/\/.*docker\.sock \(ENOENT\): install docker\.io/ })
  assert.equal(loaded(), false, 'dockerode was loaded for a daemon that is not there')

  // A server on the socket that answers /_ping as dockerd does: now dockerode is loaded and used.
  const pings: string[] = []
  const server = createServer((req, res) => { pings.push(`${req.method} ${req.url}`); res.end('OK') })
  await new Promise<void>((resolve) => { server.listen(socket, resolve) })
  t.after(() => { server.close() })
  const docker = await connectDocker(1000)
  assert.deepEqual(pings, ['GET /_ping'])
  assert.equal(loaded(), true)
  assert.equal(typeof docker.listContainers, 'function')
  // Without its BuildKit (gRPC) and ssh parts, which the agent never uses: a BuildKit build says so.
  const cache = Object.keys(createRequire(import.meta.url).cache)
  assert.equal(cache.some(p => p.includes(join('node_modules', '@grpc'))), false, 'gRPC was loaded')
  assert.equal(cache.some(p => p.includes(join('node_modules', 'ssh2'))), false, 'ssh2 was loaded')
  await assert.rejects(docker.buildImage({ context: dir, src: [] }, { version: '2' }), /did not load dockerode's support for BuildKit sessions/)
})
