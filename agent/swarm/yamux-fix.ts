/**
 * Makes @chainsafe/libp2p-yamux send a window update as HashiCorp's yamux does: once half the
 * receive window has been consumed (or when a flag must go out), not after every data frame. It
 * sent one frame back for each frame received — in an idle swarm, whose traffic is small gossip
 * messages, 12 % of the agents' busy time went to those updates (agent/swarm/README.md). The
 * sender still has half a window in hand when the update arrives, so transfers do not stall.
 */
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'

interface Windowed {
  state: StreamState
  recvWindow: number
  recvWindowCapacity: number
  sendWindowUpdate: () => void
}

/** Whether a stream should tell its peer of the window it has freed now. */
export function windowUpdateDue (state: StreamState, recvWindow: number, capacity: number): boolean {
  // Init and SYNReceived carry the SYN / ACK flag; Paused only moves the epoch: the original decides.
  if (state === StreamState.Init || state === StreamState.SYNReceived || state === StreamState.Paused) return true
  return recvWindow - capacity >= recvWindow / 2
}

const proto = YamuxStream.prototype as unknown as Windowed & { __edgeFixed?: boolean }
if (typeof proto.sendWindowUpdate === 'function' && proto.__edgeFixed !== true) {
  const original = proto.sendWindowUpdate
  proto.sendWindowUpdate = function (this: Windowed): void {
    if (windowUpdateDue(this.state, this.recvWindow, this.recvWindowCapacity)) original.call(this)
  }
  proto.__edgeFixed = true
}
