import { test } from 'node:test'
import assert from 'node:assert/strict'
import { matchPeer, shortId } from '../../cli/output.js'

const a = '12D3KooWDdaFcoDxTqz6428s9Xn6ukyR8T8F4uWvU9EN9jvo5fws'
const b = '12D3KooWQ6yKYAY1knMz5ZDxgVaHp77Lv3KX7PFszFG88cpCW1Bt'
const c = '12D3KooWQJUjhziTxfHi78BCQhE8CU938djvXN3aMWBwEjPdmVrQ'

test('a peer is named by its whole id, a unique prefix, or the short form tables print', () => {
  assert.equal(matchPeer(a, []), a)
  assert.equal(matchPeer('12D3KooWDd', [a, b, c]), a)
  assert.equal(matchPeer(shortId(b), [a, b, c]), b)
  assert.equal(matchPeer('12D3Ko...8cpCW1Bt', [a, b, c]), b)
})

test('a name that fits several peers or none is one line saying what to do', () => {
  assert.throws(() => matchPeer('12D3KooWQ', [a, b, c]), /^UserError: '12D3KooWQ' matches 2 peers \(12D3Ko…pCW1Bt, 12D3Ko…PdmVrQ\): give more of the id$/)
  assert.throws(() => matchPeer('12D3Ko…nothere', [a, b, c]), /no peer known matches '12D3Ko…nothere': 'edge peers' lists them/)
  assert.throws(() => matchPeer('Qm', [a], 'edge-agent trust list'), /'edge-agent trust list' lists them/)
})
