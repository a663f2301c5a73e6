/**
 * The loops that run inside the containers, one per runtime image (baked in, so part of its hash).
 * Each loads the function once, says `{"ready":true}` (or `{"ready":false,"error":…}` and exits),
 * then reads one request per line on stdin and writes one response per line on stdout:
 *
 *   request   {"id":N,"ms":TIMEOUT_MS,"in":"<base64 input>"}
 *             {"id":N,"ping":true}   (answered {"id":N,"ok":true} without calling the function)
 *   response  {"id":N,"ok":true,"out":"<base64 output>","log":"<base64 of what it printed>"}
 *             {"id":N,"ok":false,"error":"<message>","log":"…"}
 *             {"id":N,"ok":true,"code":EXIT,"out":…,"log":…}    (binary functions)
 *
 * What the function itself prints goes to its call's `log`, never to the protocol's stdout.
 * Handlers get `params`: the input parsed as JSON, the input as text when it is not JSON, or `{}`
 * when there is none. A result that is a string or bytes is the output as is; anything else is
 * sent as JSON.
 */

export const RUNNER_DIR = '/edge'

/** Node: `module.exports = async (params, context) => result` (or `export default`, or a `handler` export). */
export const NODE_RUNNER = String.raw`// edge-agent runner for node functions
import { AsyncLocalStorage } from 'node:async_hooks'
import { createInterface } from 'node:readline'
import { pathToFileURL } from 'node:url'

const send = process.stdout.write.bind(process.stdout)
const errWrite = process.stderr.write.bind(process.stderr)
const calls = new AsyncLocalStorage()
const MAX_LOG = 64 * 1024
function capture (chunk, encoding, cb) {
  const call = calls.getStore()
  if (call === undefined) return errWrite(chunk, encoding, cb)
  if (call.log.length < MAX_LOG) call.log += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8')
  const done = typeof encoding === 'function' ? encoding : cb
  if (typeof done === 'function') process.nextTick(done)
  return true
}
process.stdout.write = capture
process.stderr.write = capture
const reply = (o) => { send(JSON.stringify(o) + '\n') }
const b64 = (s) => Buffer.from(s.slice(0, MAX_LOG), 'utf8').toString('base64')

let handler
try {
  const mod = await import(pathToFileURL('/fn/' + process.env.EDGE_ENTRY).href)
  for (const f of [mod.default, mod.handler, mod.default?.handler]) {
    if (typeof f === 'function') { handler = f; break }
  }
  if (handler === undefined) throw new Error(process.env.EDGE_ENTRY + ' exports no function: use module.exports = async (params, context) => result')
} catch (err) {
  reply({ ready: false, error: String(err?.stack ?? err) })
  process.exit(1)
}

function params (input) {
  if (input.length === 0) return {}
  const text = input.toString('utf8')
  try { return JSON.parse(text) } catch { return text }
}

function output (result) {
  if (result === undefined || result === null) return Buffer.alloc(0)
  if (typeof result === 'string') return Buffer.from(result, 'utf8')
  if (result instanceof Uint8Array) return Buffer.from(result.buffer, result.byteOffset, result.byteLength)
  return Buffer.from(JSON.stringify(result), 'utf8')
}

async function call (req, fn = handler, respond = reply) {
  const state = { log: '' }
  const context = {
    requestId: req.id,
    functionName: process.env.EDGE_FUNCTION,
    version: Number(process.env.EDGE_VERSION),
    deadline: Date.now() + req.ms,
    remainingMs () { return Math.max(0, this.deadline - Date.now()) }
  }
  try {
    const result = await calls.run(state, () => fn(params(Buffer.from(req.in, 'base64')), context))
    respond({ id: req.id, ok: true, out: output(result).toString('base64'), log: b64(state.log) })
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err)
    if (err instanceof Error && err.stack !== undefined) state.log += err.stack + '\n'
    respond({ id: req.id, ok: false, error: message.slice(0, 4000), log: b64(state.log) })
  }
}

// The whole call path once, with a stand-in for the function and nowhere to send the reply: a
// prewarmed container's first real call should not pay for the runner's own first run.
for (let i = 0; i < 2; i++) await call({ id: 0, ms: 1000, in: 'eyJhIjoxfQ==' }, async (p) => p, () => {})

reply({ ready: true })
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
lines.on('line', (line) => {
  const req = JSON.parse(line)
  if (req.ping === true) reply({ id: req.id, ok: true })
  else void call(req)
})
lines.on('close', () => { process.exit(0) })
`

/** Python: `def handler(params, context)` (or `async def`), in handler.py or the entry file. */
export const PYTHON_RUNNER = String.raw`# edge-agent runner for python functions
import base64, importlib.util, inspect, io, json, os, sys, time, traceback

proto = sys.stdout
real_stderr = sys.stderr
sys.stdout = sys.stderr
MAX_LOG = 64 * 1024

def reply(o):
    proto.write(json.dumps(o, separators=(',', ':')) + '\n')
    proto.flush()

def b64(text):
    return base64.b64encode(text[:MAX_LOG].encode('utf-8', 'replace')).decode('ascii')

entry = os.environ['EDGE_ENTRY']
path = os.path.join('/fn', entry)
sys.path.insert(0, os.path.dirname(path))
try:
    spec = importlib.util.spec_from_file_location('function', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler = getattr(module, 'handler', None)
    if not callable(handler):
        raise RuntimeError(entry + ' has no handler: define handler(params, context)')
except BaseException:
    reply({'ready': False, 'error': traceback.format_exc()})
    sys.exit(1)

class Context:
    def __init__(self, req):
        self.request_id = req['id']
        self.function_name = os.environ.get('EDGE_FUNCTION')
        self.version = int(os.environ.get('EDGE_VERSION', '0'))
        self.deadline = time.time() + req['ms'] / 1000
    def remaining_ms(self):
        return max(0, int((self.deadline - time.time()) * 1000))

def params(data):
    if not data:
        return {}
    text = data.decode('utf-8', 'replace')
    try:
        return json.loads(text)
    except ValueError:
        return text

def output(result):
    if result is None:
        return b''
    if isinstance(result, (bytes, bytearray)):
        return bytes(result)
    if isinstance(result, str):
        return result.encode('utf-8')
    return json.dumps(result).encode('utf-8')

reply({'ready': True})
for line in sys.stdin:
    req = json.loads(line)
    if req.get('ping'):
        reply({'id': req['id'], 'ok': True})
        continue
    log = io.StringIO()
    sys.stdout = sys.stderr = log
    try:
        result = handler(params(base64.b64decode(req['in'])), Context(req))
        if inspect.isawaitable(result):
            import asyncio  # only for async handlers: it costs tens of ms at start
            result = asyncio.run(result)
        out = {'id': req['id'], 'ok': True, 'out': base64.b64encode(output(result)).decode('ascii')}
    except Exception as err:
        traceback.print_exc()
        out = {'id': req['id'], 'ok': False, 'error': (type(err).__name__ + ': ' + str(err))[:4000]}
    finally:
        sys.stdout = sys.stderr = real_stderr
    out['log'] = b64(log.getvalue())
    reply(out)
`

/**
 * Binaries: an executable that reads the request on stdin and writes the result on stdout, started
 * once per call by this busybox sh loop (the container stays warm; the process does not).
 */
export const BINARY_RUNNER = [
  '#!/bin/sh',
  '# edge-agent runner for binary functions',
  'fn="/fn/$EDGE_ENTRY"',
  'if [ ! -x "$fn" ]; then',
  '  printf \'{"ready":false,"error":"%s is not executable"}\\n\' "$EDGE_ENTRY"',
  '  exit 1',
  'fi',
  'printf \'{"ready":true}\\n\'',
  'while IFS= read -r line; do',
  '  rest=${line#*\\"id\\":}',
  '  id=${rest%%,*}',
  '  case "$line" in *\\"ping\\":true*) printf \'{"id":%s,"ok":true}\\n\' "$id"; continue ;; esac',
  '  rest=${line#*\\"in\\":\\"}',
  '  printf \'%s\' "${rest%%\\"*}" | base64 -d > /tmp/.edge-in 2>/dev/null',
  '  "$fn" < /tmp/.edge-in > /tmp/.edge-out 2> /tmp/.edge-err',
  '  code=$?',
  '  printf \'{"id":%s,"ok":true,"code":%d,"out":"%s","log":"%s"}\\n\' "$id" "$code" "$(base64 -w 0 /tmp/.edge-out)" "$(head -c 65536 /tmp/.edge-err | base64 -w 0)"',
  '  rm -f /tmp/.edge-in /tmp/.edge-out /tmp/.edge-err',
  'done',
  ''
].join('\n')
