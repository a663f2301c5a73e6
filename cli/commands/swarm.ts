import type { Command } from 'commander'
import { clientFor, globals } from '../context.js'
import { bytes, ms, printJson, shortId, table } from '../output.js'
import type { RuntimeInfo } from '../client.js'

/** peers, status */
export function registerSwarmCommands (program: Command): void {
  program.command('peers')
    .description('peers in the agent\'s peer table, from their adverts')
    .action(async (_opts: unknown, cmd: Command) => {
      const peers = await clientFor(cmd).peers()
      if (globals(cmd).json === true) { printJson(peers); return }
      if (peers.length === 0) { process.stdout.write('no peers yet\n'); return }
      process.stdout.write(table(['PEER', 'ARCH', 'RUNTIMES', 'FREE/TOTAL', 'QUEUE', 'FUNCTIONS', 'RTT', 'ADVERT AGE'],
        peers.map(p => [
          shortId(p.peerId),
          p.arch,
          p.runtimes.map(r => r.kind).join(','),
          p.runtimes.map(r => `${r.free ?? r.slots - r.busy}/${r.slots}`).join(','),
          String(p.queue),
          String(p.functions.length),
          ms(p.rttMs),
          ms(p.advertAgeMs)
        ])) + '\n')
    })

  program.command('status')
    .description('the agent itself')
    .action(async (_opts: unknown, cmd: Command) => {
      const s = await clientFor(cmd).status()
      if (globals(cmd).json === true) { printJson(s); return }
      const free = (r: RuntimeInfo): string => `${r.slots - r.busy}/${r.slots} free, ${r.queued ?? 0} queued`
      const wasm = s.runtimes.filter(r => r.kind === 'wasm').map(r => `wasm ${free(r)}`)
      const inContainers = s.runtimes.filter(r => r.kind !== 'wasm')
      const containers = s.docker?.available === true && inContainers[0] !== undefined
        ? [`${inContainers.map(r => r.kind).join(', ')} in Docker ${free(inContainers[0])}, ${s.docker.total ?? 0} containers` +
            ((s.docker.functions ?? []).length > 0 ? ` (${(s.docker.functions ?? []).map(f => `${f.name}@${f.version}: ${f.containers}`).join(', ')})` : '')]
        : [`no containers: ${s.docker?.reason ?? 'no Docker'}`]
      const rt = [...wasm, ...containers].join('\n           ')
      const lines = [
        `peer id    ${s.peerId}`,
        `version    ${s.version} (node ${s.node}, ${s.platform}/${s.arch}, ${s.cpus} cpus)`,
        `api        ${s.api}${s.coap !== null ? `, CoAP ${s.coap}` : ''}`,
        ...s.addrs.map((a, i) => `${i === 0 ? 'addresses ' : '          '} ${a}`),
        `runtimes   ${rt}`,
        `functions  ${s.functions.length === 0 ? 'none held' : s.functions.map(f => `${f.name}@${f.version}`).join(', ')}`,
        `async      ${s.async.queued} queued, ${s.async.running} running, ${s.async.done} done, ${s.async.failed} failed`,
        `peers      ${s.peers === 0 && (s.problems ?? []).length > 0 ? `none: ${(s.problems ?? [])[0]?.message ?? ''}` : `${s.peers} in table, ${s.connections} connections`}`,
        ...(s.problems ?? []).slice(s.peers === 0 ? 1 : 0).map(p => `problem    ${p.message}${p.count > 1 ? ` (${p.count}×)` : ''}`),
        ...(s.owner !== undefined ? [`owner      ${s.owner.id} (${s.owner.devices} device${s.owner.devices === 1 ? '' : 's'}${s.owner.holdsKey ? ', its key is here' : ''})`] : []),
        `memory     rss ${bytes(s.rss)}, host ${bytes(s.memFree)} free of ${bytes(s.memTotal)}`,
        `uptime     ${ms(s.uptimeMs)}`,
        ...(Object.keys(s.labels).length > 0 ? [`labels     ${Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(',')}`] : [])
      ]
      process.stdout.write(lines.join('\n') + '\n')
    })
}
