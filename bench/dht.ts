import { readFileSync } from 'node:fs'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createNode } from '../agent/swarm/node.js'
import { up } from '../testnet/index.js'
import { bigModule } from '../test/helpers.js'
import { pct } from './stats.js'

/**
 * Issue 4's figures: the time to a first invoke on an agent that never held the code (fetch,
 * verify, compile, run) against moving the same bytes over a bare libp2p stream with the same
 * transport stack (TCP, pnet, noise, yamux) in this run; and the DHT manifest lookup on 10 agents.
 */

const PROTOCOL = '/edge-bench/raw/1'

/** ms to move `bytes` over one libp2p stream between two nodes of the swarm's transport stack. */
async function rawTransfer (swarmKey: Uint8Array, bytes: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'edge-bench-raw-'))
  const make = async (name: string): Promise<Awaited<ReturnType<typeof createNode>>> => await createNode({
    privateKey: await generateKeyPair('Ed25519'), swarmKey, listen: ['/ip4/127.0.0.1/tcp/0'], announce: [], bootstrap: [], mdns: false, datastorePath: join(dir, name), trusts: () => false
  })
  const [a, b] = [await make('a'), await make('b')]
  try {
    await a.start()
    await b.start()
    let done: () => void = () => {}
    const received = new Promise<void>(resolve => { done = resolve })
    await b.handle(PROTOCOL, (stream) => {
      let got = 0
      stream.addEventListener('message', (evt) => {
        got += evt.data.byteLength
        if (got >= bytes) done()
      })
    })
    const payload = new Uint8Array(bytes)
    const stream = await a.dialProtocol(b.getMultiaddrs(), PROTOCOL)
    const started = performance.now()
    for (let off = 0; off < bytes; off += 256 * 1024) {
      if (!stream.send(payload.subarray(off, off + 256 * 1024))) await stream.onDrain()
    }
    await received
    const ms = performance.now() - started
    await stream.close()
    return ms
  } finally {
    await a.stop()
    await b.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

export async function dhtBench (print: (title: string, headers: string[], rows: string[][]) => void): Promise<void> {
  // 1. first invoke on a new peer, 100 KB and 10 MB, against the raw transfer of the same bytes.
  const net = await up({ peers: 3, agentArgs: () => ['--replicas', '1'] })
  const rows: string[][] = []
  try {
    const swarmKey = readFileSync(net.state.swarmKey)
    let k = 2
    for (const [label, size] of [['100 KB', 100 * 1024], ['10 MB', 10 * 1024 * 1024]] as const) {
      const { module } = bigModule(size)
      const name = `big${size}`
      await net.client(1).deploy(name, module, { memory: '64MiB' })
      // wait until the new peer knows the function
      const client = net.client(k++)
      for (let i = 0; i < 100 && !(await client.list()).some(f => f.name === name); i++) await new Promise(resolve => setTimeout(resolve, 100))
      const res = await client.invoke(name, { policy: 'local', timeoutMs: 60_000 })
      const raw = await rawTransfer(swarmKey, module.byteLength)
      rows.push([label, res.timings.totalMs.toFixed(1), res.timings.fetchMs.toFixed(1), raw.toFixed(1), `${(res.timings.totalMs / raw).toFixed(2)}×`])
    }
  } finally {
    await net.down()
  }
  print('3. first invoke on a peer that never held the code (fetch + verify + compile + run) vs a raw libp2p stream transfer',
    ['size', 'first invoke ms', 'of which fetch ms', 'raw transfer ms', 'invoke / raw'], rows)

  // 2. DHT manifest lookup p50 on 10 agents (through the HTTP API, which adds ~0.2 ms).
  const ten = await up({ peers: 10, agentArgs: () => ['--replicas', '1'] })
  try {
    await ten.client(1).deploy('echo', bigModule(1024).module)
    // The put may still be spreading: wait for a first successful look-up.
    for (let i = 0; i < 50 && (await ten.client(10).manifest('echo').catch(() => undefined))?.source !== 'dht'; i++) await new Promise(resolve => setTimeout(resolve, 200))
    const samples: number[] = []
    let misses = 0
    for (let i = 0; i < 50; i++) {
      const client = ten.client(2 + (i % 9))
      const t = performance.now()
      const m = await client.manifest('echo').catch(() => undefined)
      if (m?.source === 'dht') samples.push(performance.now() - t)
      else misses++
    }
    samples.sort((a, b) => a - b)
    print('4. DHT manifest lookup on a 10-agent testnet (GET /v1/functions/NAME/manifest: DHT get + signature check)',
      ['lookups', 'not found', 'p50 ms', 'p99 ms'], [[String(samples.length), String(misses), pct(samples, 0.5).toFixed(2), pct(samples, 0.99).toFixed(2)]])
  } finally {
    await ten.down()
  }
}
