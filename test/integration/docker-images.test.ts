import { describe, test, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import type Docker from 'dockerode'
import { buildRuntimeImage, RUN_AS, type ImageKind } from '../../runtimes/docker/index.js'
import { EDGE_AGENT_BIN } from '../../testnet/process.js'
import { dockerForTests, runNode } from '../helpers.js'

/**
 * Runtime images built offline from the host. Docker tests run where Docker is; in CI (CI=true)
 * its absence fails them, elsewhere they are skipped with the reason shown.
 */
const { docker, skip } = await dockerForTests()

describe('runtime images built offline', { skip }, () => {
  const label = `edge.test=${randomUUID()}`
  after(async () => {
    if (docker === undefined) return
    for (const c of await docker.listContainers({ all: true, filters: { label: [label] } })) await docker.getContainer(c.Id).remove({ force: true })
  })

  /** Runs a command in an image with the hardening functions get; returns its output and exit code. */
  async function runIn (image: string, cmd: string[]): Promise<{ code: number, output: string }> {
    const d = docker as Docker
    const container = await d.createContainer({
      Image: image,
      Cmd: cmd,
      Labels: { [label.split('=')[0] as string]: label.split('=')[1] as string },
      HostConfig: {
        NetworkMode: 'none',
        ReadonlyRootfs: true,
        Tmpfs: { '/tmp': 'size=16m' },
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges'],
        PidsLimit: 64,
        Memory: 128 * 1024 * 1024,
        MemorySwap: 128 * 1024 * 1024
      }
    })
    try {
      await container.start()
      const { StatusCode } = await container.wait() as { StatusCode: number }
      const logs = await container.logs({ stdout: true, stderr: true })
      // Without a TTY the log stream is multiplexed: 8-byte frame headers before each chunk.
      let output = ''
      for (let off = 0; off + 8 <= logs.length; off += 8 + logs.readUInt32BE(off + 4)) output += logs.subarray(off + 8, off + 8 + logs.readUInt32BE(off + 4)).toString()
      return { code: StatusCode, output }
    } finally {
      await container.remove({ force: true })
    }
  }

  test('edge-agent runtimes build makes node, python3 and binary images, then finds them up to date', async () => {
    const first = await runNode(EDGE_AGENT_BIN, ['runtimes', 'build'])
    assert.equal(first.code, 0, first.stderr)
    for (const kind of ['node', 'python3', 'binary']) assert.match(first.stdout, new RegExp(`^${kind} +edge-runtime/${kind}:[0-9a-f]{16}  `, 'm'))
    const again = await runNode(EDGE_AGENT_BIN, ['runtimes', 'build'])
    assert.equal(again.stdout.match(/up to date/g)?.length, 3, again.stdout)
    const bad = await runNode(EDGE_AGENT_BIN, ['runtimes', 'build', 'java'])
    assert.equal(bad.code, 1)
    assert.match(bad.stderr, /unknown runtime 'java': use node, python3, binary/)
  })

  const checks: Array<[ImageKind, string[], RegExp]> = [
    ['node', ['node', '-e', 'console.log(process.version, process.getuid(), require("os").networkInterfaces().lo !== undefined)'], /^v\d+\.\d+\.\d+ 65534 true$/],
    ['python3', ['python3', '-c', 'import json, hashlib, os, asyncio; print(json.dumps({"uid": os.getuid()}))'], /^\{"uid": 65534\}$/],
    ['binary', ['sh', '-c', 'echo "$(id -u) $(echo hi | tr a-z A-Z)"; touch /x 2>/dev/null || echo read-only; touch /tmp/x && echo tmp-ok'], /^65534 HI\nread-only\ntmp-ok$/]
  ]
  for (const [kind, cmd, expected] of checks) {
    test(`the ${kind} image runs as nobody, without network, on a read-only root`, async () => {
      const image = await buildRuntimeImage(docker as Docker, kind)
      const { code, output } = await runIn(image.tag, cmd)
      assert.equal(code, 0, output)
      assert.match(output.trim(), expected)
      assert.equal((await (docker as Docker).getImage(image.tag).inspect()).Config.User, RUN_AS)
    })
  }
})
