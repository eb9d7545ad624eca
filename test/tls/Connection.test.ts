/**
 * The connection adapter over real loopback sockets: reads in order, read deadlines, a peer
 * that stops reading, signals, and the end of the stream.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Tls from "node:tls"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Connection from "../../src/tls/Connection.ts"
import * as Certificates from "../support/Certificates.ts"

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

  it.live("startTls: a ClientHello received before the upgrade (implicit TLS) is handed to the handshake, with preRead bytes first", () =>
    Effect.gen(function*() {
      const directory = Fs.mkdtempSync(Path.join(Os.tmpdir(), "postern-connection-"))
      const pki = yield* Effect.promise(() => Certificates.makePki(directory, { leaves: [{ name: "mx", dns: ["mx.example.test"] }] }))
      const sockets = yield* Effect.promise(pair)
      const connection = Connection.fromSocket(sockets.server, { writeTimeout: 5_000 })
      // The client starts its handshake at once; the server reads part of it before upgrading.
      const client = Tls.connect({ socket: sockets.client, servername: "mx.example.test", ca: pki.ca.certificatePem })
      sockets.client.resume()
      const first = yield* connection.readWithin(5_000)
      assert.instanceOf(first, Uint8Array)
      if (!(first instanceof Uint8Array)) return
      assert.strictEqual(first[0], 0x16, "a TLS handshake record")
      yield* Effect.sleep("100 millis")
      const secure = yield* connection.startTls(
        { cert: pki.leaf("mx").certificatePem, key: pki.leaf("mx").keyPem },
        5_000,
        first
      )
      assert.strictEqual(secure.socket.getProtocol(), "TLSv1.3")
      assert.strictEqual(secure.clientHelloName, "mx.example.test")
      yield* connection.write(new TextEncoder().encode("220 ready\r\n"))
      const greeting = yield* Effect.promise(() =>
        new Promise<string>((resolve) => client.once("data", (chunk: Buffer) => resolve(chunk.toString("utf8"))))
      )
      assert.strictEqual(greeting, "220 ready\r\n")
      client.destroy()
      sockets.close()
      Fs.rmSync(directory, { recursive: true, force: true })
    }))

  it.live("startTls after discardPending: plaintext pipelined after STARTTLS is dropped, and the handshake still succeeds", () =>
    Effect.gen(function*() {
      const directory = Fs.mkdtempSync(Path.join(Os.tmpdir(), "postern-connection-"))
      const pki = yield* Effect.promise(() => Certificates.makePki(directory, { leaves: [{ name: "mx", dns: ["mx.example.test"] }] }))
      const sockets = yield* Effect.promise(pair)
      const connection = Connection.fromSocket(sockets.server, { writeTimeout: 5_000 })
      sockets.client.resume()
      sockets.client.write("NOOP\r\n")
      const pipelined = yield* Effect.gen(function*() {
        while (true) {
          yield* Effect.sleep("20 millis")
          const dropped = connection.discardPending()
          if (dropped > 0) return dropped
        }
      })
      assert.strictEqual(pipelined, 6)
      const upgraded = Effect.runPromise(connection.startTls({ cert: pki.leaf("mx").certificatePem, key: pki.leaf("mx").keyPem }, 5_000))
      const client = Tls.connect({ socket: sockets.client, servername: "mx.example.test", ca: pki.ca.certificatePem })
      const secure = yield* Effect.promise(() => upgraded)
      assert.isTrue(secure.socket.encrypted)
      assert.strictEqual(secure.clientHelloName, "mx.example.test")
      client.destroy()
      sockets.close()
      Fs.rmSync(directory, { recursive: true, force: true })
    }))
})
