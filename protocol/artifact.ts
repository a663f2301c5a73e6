import { lstatSync, readdirSync } from 'node:fs'
import { basename, dirname, join, posix } from 'node:path'
import { create, Parser, type ReadEntry } from 'tar'
import { BadRequestError } from './errors.js'
import { RuntimeKind } from './messages.js'
import { MAX_CODE_BYTES } from './protocols.js'
import { ENTRY_PATH } from './validate.js'

/**
 * The code of a container function: a gzipped tar of its directory (or of its one file), packed so
 * that the same files always give the same bytes — and so the same sha256, chunks and version.
 * The CLI packs; agents list (to check the entry before signing) and unpack (the Docker runtime).
 */

/** Bounds on what an artifact may unpack to. */
export const MAX_UNPACKED_BYTES = 512 * 1024 * 1024
export const MAX_ARTIFACT_FILES = 20_000

/** Left out of packed directories. */
const SKIP = new Set(['.git', '.hg', '.svn', '.DS_Store', '__pycache__'])

export interface ArtifactEntry {
  path: string
  type: 'file' | 'directory' | 'symlink' | 'link'
  size: number
  mode: number
}

/** Every path under `root` (relative, posix), directories before their contents, sorted. */
function walk (root: string, rel: string, out: string[]): void {
  for (const name of readdirSync(join(root, rel)).sort()) {
    if (SKIP.has(name)) continue
    const path = rel === '' ? name : `${rel}/${name}`
    out.push(path)
    if (out.length > MAX_ARTIFACT_FILES) throw new BadRequestError(`more than ${MAX_ARTIFACT_FILES} files under ${root}`)
    const st = lstatSync(join(root, path))
    if (st.isDirectory()) walk(root, path, out)
  }
}

/** Packs a function's directory, or one file, into a reproducible gzipped tar. */
export async function packFunction (path: string): Promise<Uint8Array> {
  const st = lstatSync(path, { throwIfNoEntry: false })
  if (st === undefined) throw new BadRequestError(`no such file or directory: ${path}`)
  let cwd: string
  let paths: string[]
  if (st.isDirectory()) {
    cwd = path
    paths = []
    walk(path, '', paths)
    if (paths.length === 0) throw new BadRequestError(`${path} is empty`)
  } else if (st.isFile()) {
    cwd = dirname(path)
    paths = [basename(path)]
  } else {
    throw new BadRequestError(`${path} is neither a file nor a directory`)
  }
  const chunks: Buffer[] = []
  let size = 0
  // Fixed mtimes and no owners: the same files pack to the same bytes on any machine.
  const stream = create({ cwd, gzip: { level: 9 }, portable: true, mtime: new Date(0), noDirRecurse: true }, paths)
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    size += chunk.byteLength
    if (size > MAX_CODE_BYTES) throw new BadRequestError(`${path} packs to more than ${MAX_CODE_BYTES} bytes`)
    chunks.push(chunk)
  }
  return new Uint8Array(Buffer.concat(chunks))
}

function typeOf (entry: ReadEntry): ArtifactEntry['type'] | undefined {
  switch (entry.type) {
    case 'File': case 'OldFile': case 'ContiguousFile': return 'file'
    case 'Directory': return 'directory'
    case 'SymbolicLink': return 'symlink'
    case 'Link': return 'link'
    default: return undefined
  }
}

/** Lists an artifact, checking it is a tar (gzipped or not) within the bounds above. */
export async function listArtifact (code: Uint8Array): Promise<ArtifactEntry[]> {
  return (await readArtifact(code)).entries
}

async function readArtifact (code: Uint8Array): Promise<{ entries: ArtifactEntry[], packageJson?: string }> {
  const entries: ArtifactEntry[] = []
  const packageJson: Buffer[] = []
  let total = 0
  let problem: string | undefined
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({
      strict: true,
      maxDecompressionRatio: 1000,
      onReadEntry: (entry: ReadEntry) => {
        const type = typeOf(entry)
        const path = entry.path.replace(/\/+$/, '').replace(/^\.\//, '')
        if (path === 'package.json' && type === 'file' && entry.size <= 1024 * 1024) entry.on('data', (d: Buffer) => packageJson.push(d))
        else entry.resume()
        if (path === '' || path === '.') return
        if (type === undefined) { problem ??= `${path} is a ${entry.type} entry: only files, directories and links are allowed`; return }
        total += entry.size ?? 0
        entries.push({ path, type, size: entry.size ?? 0, mode: entry.mode ?? 0o644 })
        if (entries.length > MAX_ARTIFACT_FILES) problem ??= `more than ${MAX_ARTIFACT_FILES} files`
        if (total > MAX_UNPACKED_BYTES) problem ??= `unpacks to more than ${MAX_UNPACKED_BYTES} bytes`
      }
    })
    parser.on('error', reject)
    parser.on('end', () => { resolve() })
    parser.on('close', () => { resolve() })
    parser.end(Buffer.from(code.buffer, code.byteOffset, code.byteLength))
  }).catch((err: Error) => { problem ??= `not a tar archive (${err.message})` })
  if (problem === undefined && entries.length === 0) problem = 'not a tar archive, or an empty one'
  if (problem !== undefined) throw new BadRequestError(`bad function artifact: ${problem}`)
  return packageJson.length === 0 ? { entries } : { entries, packageJson: Buffer.concat(packageJson).toString('utf8') }
}

const CANDIDATES: Partial<Record<RuntimeKind, string[]>> = {
  [RuntimeKind.node]: ['index.js', 'index.mjs', 'index.cjs', 'handler.js', 'handler.mjs', 'main.js'],
  [RuntimeKind.python]: ['handler.py', 'main.py', '__init__.py'],
  [RuntimeKind.binary]: ['handler', 'main', 'run', 'bootstrap']
}

const EXTENSIONS: Partial<Record<RuntimeKind, RegExp>> = {
  [RuntimeKind.node]: /\.(?:js|mjs|cjs)$/,
  [RuntimeKind.python]: /\.py$/
}

/** The main file named by a node function's package.json, if any. */
function packageMain (text: string | undefined): string | undefined {
  if (text === undefined) return undefined
  try {
    const main = (JSON.parse(text) as { main?: unknown }).main
    return typeof main === 'string' ? posix.normalize(main).replace(/^\.\//, '') : undefined
  } catch {
    throw new BadRequestError('bad function artifact: package.json is not valid JSON')
  }
}

/**
 * The file that holds the handler: the one asked for, else the usual names (package.json's main,
 * index.js; handler.py, main.py; handler, main), else the only top-level file of the runtime's kind.
 * Throws BadRequestError saying what to do.
 */
export async function artifactEntry (kind: RuntimeKind, code: Uint8Array, asked?: string): Promise<string> {
  const { entries, packageJson } = await readArtifact(code)
  const files = entries.filter(e => e.type === 'file' || e.type === 'symlink' || e.type === 'link')
  const byPath = new Map(files.map(e => [e.path, e]))
  const usable = (path: string): string => {
    if (!ENTRY_PATH.test(path)) throw new BadRequestError(`bad entry '${path}': a path within the function's directory, without '..'`)
    const e = byPath.get(path)
    if (e === undefined) throw new BadRequestError(`the function has no file '${path}' (it has ${files.slice(0, 5).map(f => f.path).join(', ')}${files.length > 5 ? ', …' : ''})`)
    if (kind === RuntimeKind.binary && e.type === 'file' && (e.mode & 0o111) === 0) throw new BadRequestError(`'${path}' is not executable: chmod +x it before deploying`)
    return path
  }
  if (asked !== undefined) return usable(asked)
  if (kind === RuntimeKind.node) {
    const main = packageMain(packageJson)
    if (main !== undefined) return usable(byPath.has(main) ? main : byPath.has(`${main}.js`) ? `${main}.js` : main)
  }
  const known = (CANDIDATES[kind] ?? []).find(p => byPath.has(p))
  if (known !== undefined) return usable(known)
  const top = files.filter(e => !e.path.includes('/'))
  const ext = EXTENSIONS[kind]
  const fitting = ext === undefined ? top.filter(e => e.type !== 'file' || (e.mode & 0o111) !== 0) : top.filter(e => ext.test(e.path))
  if (fitting.length === 1 && fitting[0] !== undefined) return usable(fitting[0].path)
  const names = (CANDIDATES[kind] ?? []).join(', ')
  throw new BadRequestError(`cannot tell which file holds the ${kind} function: name it ${names === '' ? '' : `one of ${names}, `}or give --entry FILE`)
}
