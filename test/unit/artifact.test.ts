import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { create } from 'tar'
import { artifactEntry, listArtifact, packFunction } from '../../protocol/index.js'

/** Function artifacts: reproducible packing, listing within bounds, and finding the entry file. */

function tree (files: Record<string, string | { text: string, mode: number }>): string {
  const dir = mkdtempSync(join(tmpdir(), 'edge-artifact-'))
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true })
    const { text, mode } = typeof content === 'string' ? { text: content, mode: 0o644 } : content
    writeFileSync(join(dir, path), text)
    chmodSync(join(dir, path), mode)
  }
  return dir
}

test('the same files pack to the same bytes, whatever their times; other files to other bytes', async () => {
  const a = tree({ 'index.js': 'module.exports = async () => 1', 'lib/util.js': 'x', '.git/HEAD': 'ref' })
  const b = tree({ 'index.js': 'module.exports = async () => 1', 'lib/util.js': 'x' })
  utimesSync(join(b, 'index.js'), new Date(2001, 1, 1), new Date(2001, 1, 1))
  try {
    const packedA = await packFunction(a)
    assert.deepEqual(packedA, await packFunction(b))
    writeFileSync(join(b, 'lib/util.js'), 'y')
    assert.notDeepEqual(packedA, await packFunction(b))
    // .git is left out.
    assert.deepEqual((await listArtifact(packedA)).map(e => e.path), ['index.js', 'lib', 'lib/util.js'])
  } finally {
    rmSync(a, { recursive: true, force: true })
    rmSync(b, { recursive: true, force: true })
  }
})

test('the entry is the one asked for, else the usual name, else the only file of the kind', async () => {
  const dir = tree({
    'node/package.json': '{"main": "./src/main.js"}',
    'node/src/main.js': '',
    'plain/index.js': '',
    'py/app.py': '',
    'py/README.md': '',
    'bin/tool': { text: '#!/bin/sh\n', mode: 0o755 },
    'bin/notes.txt': '',
    'two/a.py': '',
    'two/b.py': '',
    'noexec/handler': '#!/bin/sh\n'
  })
  try {
    const pack = async (sub: string): Promise<Uint8Array> => await packFunction(join(dir, sub))
    assert.equal(await artifactEntry('node', await pack('node')), 'src/main.js')
    assert.equal(await artifactEntry('node', await pack('plain')), 'index.js')
    assert.equal(await artifactEntry('node', await pack('plain/index.js')), 'index.js')
    assert.equal(await artifactEntry('python', await pack('py')), 'app.py')
    assert.equal(await artifactEntry('binary', await pack('bin')), 'tool')
    assert.equal(await artifactEntry('python', await pack('two'), 'b.py'), 'b.py')
    await assert.rejects(artifactEntry('python', await pack('two')), { name: 'BadRequestError', message: /cannot tell which file holds the python function: name it one of handler\.py, main\.py/ })
    await assert.rejects(artifactEntry('python', await pack('two'), 'c.py'), { message: /has no file 'c\.py' \(it has a\.py, b\.py\)/ })
    await assert.rejects(artifactEntry('python', await pack('two'), '../a.py'), { message: /bad entry '\.\.\/a\.py'/ })
    await assert.rejects(artifactEntry('binary', await pack('noexec')), { message: /'handler' is not executable: chmod \+x it/ })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('what is not a tar, or unpacks to something odd, is refused with the reason', async () => {
  await assert.rejects(listArtifact(Buffer.from('not a tarball at all, just some text')), { name: 'BadRequestError', message: /bad function artifact/ })
  await assert.rejects(listArtifact(new Uint8Array(0)), { message: /bad function artifact/ })
  const dir = tree({ 'index.js': '' })
  try {
    symlinkSync('/etc/passwd', join(dir, 'link'))
    // Links are allowed (they resolve inside the container, never on the host).
    const entries = await listArtifact(await packFunction(dir))
    assert.deepEqual(entries.map(e => [e.path, e.type]), [['index.js', 'file'], ['link', 'symlink']])
    // A FIFO in a hand-made tar is not.
    const chunks: Buffer[] = []
    const fifo = create({ gzip: false, portable: true, cwd: dir, filter: () => true, onWriteEntry: (e) => { (e as unknown as { type: string }).type = 'FIFO' } }, ['index.js'])
    for await (const c of fifo as AsyncIterable<Buffer>) chunks.push(c)
    await assert.rejects(listArtifact(Buffer.concat(chunks)), { message: /is a FIFO entry: only files, directories and links are allowed/ })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
