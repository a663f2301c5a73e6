import { execFile, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmodSync, closeSync, cpSync, openSync, readSync, existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import type Docker from 'dockerode'

const run = promisify(execFile)

/**
 * Runtime images built offline from the host's own binaries (no registry is needed, or reachable,
 * on an edge device): a root filesystem holding the interpreter and the libraries `ldd` lists, the
 * ELF loader among them, a passwd entry for the unprivileged user, and nothing else — imported with
 * `docker import` and tagged with a hash of its sources, so that it is rebuilt only when the host's
 * binaries change. The same recipe works on arm64 and armv7.
 */

export const IMAGE_KINDS = ['node', 'python3', 'binary'] as const
export type ImageKind = typeof IMAGE_KINDS[number]

/** Bumped when the recipe changes, so that images are rebuilt. */
const RECIPE_VERSION = 1
export const IMAGE_REPO = 'edge-runtime'
/** The user functions run as: nobody. */
export const RUN_AS = '65534:65534'

export interface RuntimeImage {
  kind: ImageKind
  /** e.g. `edge-runtime/node:3f2a…` */
  tag: string
  /** False when an image of this tag was there already. */
  built: boolean
  ms: number
}

interface Recipe {
  /** Host files or directories copied to the same path in the image (symlinks followed). */
  paths: string[]
  /** Paths to leave out of copied directories. */
  exclude: (path: string) => boolean
  /** Symlinks to make in the image: path → target. */
  links: Record<string, string>
  env: string[]
}

export class ImageBuildError extends Error {
  override name = 'ImageBuildError'
}

/** Absolute paths of the shared libraries (and loader) that `ldd` lists for a binary. */
async function libraries (binary: string): Promise<string[]> {
  let out: string
  try {
    out = (await run('ldd', [binary])).stdout
  } catch (err) {
    // A static binary: "not a dynamic executable" (exit 1).
    if (/not a dynamic executable/.test(String((err as { stdout?: string, stderr?: string }).stderr ?? '') + String((err as { stdout?: string }).stdout ?? ''))) return []
    throw new ImageBuildError(`ldd ${binary}: ${(err as Error).message}`)
  }
  const found: string[] = []
  for (const line of out.split('\n')) {
    const m = /=>[ \t]*(\/[^ \t]+)[ \t]*\(/.exec(line) ?? /^[ \t]*(\/[^ \t]+)[ \t]*\(/.exec(line)
    if (m?.[1] !== undefined) found.push(m[1])
  }
  return found
}

/**
 * The real path of an executable binary named `name`: the system's own first, then along PATH,
 * skipping scripts (a pyenv shim is a shell script that cannot run in the image).
 */
function findBinary (name: string): string | undefined {
  const dirs = ['/usr/bin', '/bin', '/usr/local/bin', ...(process.env.PATH ?? '').split(':').filter(Boolean)]
  for (const dir of dirs) {
    const p = join(dir, name)
    if (!existsSync(p)) continue
    const real = realpathSync(p)
    if (isElf(real)) return real
  }
  return undefined
}

function isElf (path: string): boolean {
  try {
    const fd = openSync(path, 'r')
    try {
      const head = Buffer.alloc(4)
      readSync(fd, head, 0, 4, 0)
      return head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))
    } finally {
      closeSync(fd)
    }
  } catch {
    return false
  }
}

async function recipeFor (kind: ImageKind): Promise<Recipe> {
  const env = ['PATH=/usr/local/bin:/usr/bin:/bin', 'HOME=/tmp', 'LANG=C.UTF-8']
  if (kind === 'node') {
    const node = realpathSync(process.execPath)
    return { paths: [node, ...await libraries(node)], exclude: () => false, links: node === '/usr/local/bin/node' ? {} : { '/usr/local/bin/node': node }, env }
  }
  if (kind === 'python3') {
    const python = hostPython()
    const { stdout } = await run(python, ['-c', 'import sysconfig; print(sysconfig.get_paths()["stdlib"])'])
    const stdlib = stdout.trim()
    const dynload = join(stdlib, 'lib-dynload')
    const modules = existsSync(dynload) ? readdirSync(dynload).filter(f => f.endsWith('.so')).map(f => join(dynload, f)) : []
    const libs = new Set(await libraries(python))
    for (const so of modules) for (const lib of await libraries(so)) libs.add(lib)
    const skip = ['test', 'idlelib', 'tkinter', 'turtledemo', 'ensurepip', 'lib2to3', '__pycache__', 'site-packages', 'dist-packages'].map(d => `/${d}`)
    return {
      paths: [python, stdlib, ...libs],
      // config-3.x-* holds the static libpython for building extensions: 25 MB no function needs.
      exclude: (p) => skip.some(s => p.endsWith(s) || p.includes(`${s}/`)) || /\/config-[0-9][^/]*$/.test(p),
      links: { '/usr/bin/python3': python, '/usr/local/bin/python3': python },
      env: [...env, 'PYTHONDONTWRITEBYTECODE=1', 'PYTHONUNBUFFERED=1']
    }
  }
  const busybox = await hostBusybox()
  const { stdout } = await run(busybox, ['--list'])
  const links: Record<string, string> = {}
  for (const applet of stdout.split('\n').map(s => s.trim()).filter(Boolean)) {
    if (applet !== 'busybox') links[`/bin/${applet}`] = '/bin/busybox'
  }
  return { paths: [busybox], exclude: () => false, links: { ...links, ...(busybox === '/bin/busybox' ? {} : { '/bin/busybox': busybox }) }, env }
}

function hostPython (): string {
  const python = findBinary('python3')
  if (python === undefined) throw new ImageBuildError('no python3 on this host: install it (apt-get install python3) to run python functions')
  return python
}

async function hostBusybox (): Promise<string> {
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find(p => existsSync(p))
  if (busybox === undefined) throw new ImageBuildError('no busybox on this host: install busybox-static (apt-get install busybox-static) to run binary functions')
  if ((await libraries(busybox)).length > 0) throw new ImageBuildError(`${busybox} is not static: install busybox-static`)
  return busybox
}

/**
 * Why this host cannot build the image of `kind` (no python3, no static busybox), or undefined
 * when it can. Cheap, for every start: the recipe itself (an ldd of every python module) is worked
 * out only when an image is built or checked.
 */
export async function imageProblem (kind: ImageKind): Promise<string | undefined> {
  try {
    if (kind === 'python3') hostPython()
    else if (kind === 'binary') await hostBusybox()
    return undefined
  } catch (err) {
    return (err as Error).message
  }
}

/** Every regular file under `path`, for hashing; directories are walked. */
function walk (path: string, exclude: (p: string) => boolean, out: string[]): void {
  if (exclude(path)) return
  const st = statSync(path)
  if (st.isDirectory()) {
    for (const entry of readdirSync(path).sort()) walk(join(path, entry), exclude, out)
  } else if (st.isFile()) {
    out.push(`${path}\0${st.size}\0${Math.floor(st.mtimeMs)}`)
  }
}

/** A hash of what the image would hold: the recipe, and each source file's path, size and mtime. */
function fingerprint (kind: ImageKind, recipe: Recipe, extra: Record<string, string>): string {
  const entries: string[] = []
  for (const p of recipe.paths) walk(p, recipe.exclude, entries)
  const h = createHash('sha256').update(`${RECIPE_VERSION}\0${kind}\0${process.arch}\0`)
  for (const e of entries) h.update(e).update('\n')
  for (const [k, v] of Object.entries(recipe.links).sort()) h.update(`${k}->${v}\n`)
  for (const [k, v] of Object.entries(extra).sort()) h.update(`${k}\0`).update(v).update('\n')
  h.update(recipe.env.join('\n'))
  return h.digest('hex').slice(0, 16)
}

/** Assembles the root filesystem in a temporary directory. */
function stage (recipe: Recipe, extra: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'edge-rootfs-'))
  for (const p of recipe.paths) {
    mkdirSync(dirname(join(root, p)), { recursive: true })
    cpSync(p, join(root, p), { recursive: true, dereference: true, filter: (src) => !recipe.exclude(src) })
  }
  for (const [path, target] of Object.entries(recipe.links)) {
    const at = join(root, path)
    if (existsSync(at)) continue
    mkdirSync(dirname(at), { recursive: true })
    symlinkSync(target, at)
  }
  mkdirSync(join(root, 'etc'), { recursive: true })
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/tmp:/bin/sh\n')
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n')
  mkdirSync(join(root, 'tmp'), { recursive: true })
  chmodSync(join(root, 'tmp'), 0o1777)
  for (const [path, content] of Object.entries(extra)) {
    mkdirSync(dirname(join(root, path)), { recursive: true })
    writeFileSync(join(root, path), content, { mode: 0o755 })
  }
  return root
}

async function imageExists (docker: Docker, tag: string): Promise<boolean> {
  try {
    await docker.getImage(tag).inspect()
    return true
  } catch {
    return false
  }
}

/** `docker import` of a directory's tar, through the API. */
async function importRootfs (docker: Docker, root: string, repo: string, tag: string, env: string[]): Promise<void> {
  const tar = spawn('tar', ['--numeric-owner', '-C', root, '-c', '.'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  tar.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number>((resolve) => { tar.on('close', (code) => { resolve(code ?? 1) }) })
  const changes = [`USER ${RUN_AS}`, 'WORKDIR /tmp', ...env.map(e => `ENV ${e}`)]
  const stream = await docker.importImage(tar.stdout, { repo, tag, changes } as unknown as Record<string, unknown>)
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null, output: Array<{ error?: string }>) => {
      const failed = output?.find(o => o.error !== undefined)
      if (err !== null) reject(err)
      else if (failed !== undefined) reject(new ImageBuildError(`docker import: ${failed.error ?? ''}`))
      else resolve()
    })
  })
  if (await exited !== 0) throw new ImageBuildError(`tar of ${root} failed: ${stderr.trim()}`)
}

/**
 * Makes sure the runtime image of `kind` exists for this host, building it if its sources changed;
 * `extra` files (the in-container runner) are part of the image and of its hash. Older images of the
 * same kind are removed when no container uses them.
 */
export async function ensureImage (docker: Docker, kind: ImageKind, extra: Record<string, string> = {}): Promise<RuntimeImage> {
  const started = performance.now()
  const recipe = await recipeFor(kind)
  const repo = `${IMAGE_REPO}/${kind}`
  const tag = `${repo}:${fingerprint(kind, recipe, extra)}`
  if (await imageExists(docker, tag)) return { kind, tag, built: false, ms: performance.now() - started }
  const root = stage(recipe, extra)
  try {
    await importRootfs(docker, root, repo, tag.slice(repo.length + 1), recipe.env)
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
  for (const image of await docker.listImages({ filters: { reference: [repo] } })) {
    if (image.RepoTags?.includes(tag) === true) continue
    await docker.getImage(image.Id).remove().catch(() => {})
  }
  return { kind, tag, built: true, ms: performance.now() - started }
}
