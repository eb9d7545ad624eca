/**
 * The connection adapter over real loopback sockets: reads in order, read deadlines, a peer
 * that stops reading, signals, and the end of the stream.
 */
import * as Net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Connection from "../../src/tls/Connection.ts"

interface Pair {
  readonly server: Net.Socket
  readonly client: Net.Socket
  readonly close: () => void
}

/** A connected pair of sockets on 127.0.0.1; the client side does not read unless told to. */
const pair = (): Promise<Pair> =>
  new Promise((resolve) => {
    const listener = Net.createServer({ allowHalfOpen: true }, (server) => {
      resolve({
        server,
        client,
        close: () => {
          server.destroy()
          client.destroy()
          listener.close()
        }
      })
    })
    let client: Net.Socket
    listener.listen(0, "127.0.0.1", () => {
      const address = listener.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      client = Net.connect({ port, host: "127.0.0.1" })
      client.pause()
    })
  })

const text = (result: Connection.ReadResult | typeof Connection.TimedOut): string =>
  result instanceof Uint8Array ? new TextDecoder().decode(result) : String(result?.toString())

describe("Connection", () => {
  it.live("reads what the peer sends, in order, then undefined at the end of the stream", () =>
    Effect.gen(function*() {
      const sockets = yield* Effect.promise(pair)
      const connection = Connection.fromSocket(sockets.server, { writeTimeout: 5_000 })
      sockets.client.write("EHLO a\r\n")
      const first = yield* connection.readWithin(5_000)
      assert.strictEqual(text(first), "EHLO a\r\n")
      sockets.client.end("QUIT\r\n")
      const second = yield* connection.readWithin(5_000)
      assert.strictEqual(text(second), "QUIT\r\n")
      assert.isUndefined(yield* connection.readWithin(5_000))
      sockets.close()
    }))

  it.live("a read with nothing to read ends with TimedOut once its deadline passes", () =>
    Effect.gen(function*() {
      const sockets = yield* Effect.promise(pair)
      const connection = Connection.fromSocket(sockets.server, { writeTimeout: 5_000 })
      const result = yield* connection.readWithin(300)
      assert.strictEqual(result, Connection.TimedOut)
      // The connection is still usable afterwards.
      sockets.client.write("NOOP\r\n")
      assert.strictEqual(text(yield* connection.readWithin(5_000)), "NOOP\r\n")
      sockets.close()
    }))

  it.live("signal() wakes a pending read with Signalled", () =>
    Effect.gen(function*() {
      const sockets = yield* Effect.promise(pair)
      const connection = Connection.fromSocket(sockets.server, { writeTimeout: 5_000 })
      setTimeout(() => connection.signal(), 100)
      assert.strictEqual(yield* connection.readWithin(10_000), Connection.Signalled)
      sockets.close()
    }))

  it.live("a write to a peer that never reads gives up after the write timeout and destroys the socket", () =>
    Effect.gen(function*() {
      const sockets = yield* Effect.promise(pair)
      const connection = Connection.fromSocket(sockets.server, { writeTimeout: 500 })
      const chunk = new Uint8Array(1024 * 1024)
      // Fill the kernel buffers and the stream's until a write has to wait for 'drain'.
      for (let i = 0; i < 64 && !sockets.server.destroyed; i++) yield* connection.write(chunk)
      assert.isTrue(sockets.server.destroyed, "the stalled socket was destroyed")
      assert.isTrue(connection.isClosed())
      sockets.close()
    }))
})
