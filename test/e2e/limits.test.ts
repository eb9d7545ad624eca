/**
 * Connection limits of the running daemon: per client address and in total. A refused client
 * gets 421 4.7.0 and is closed, the admitted ones keep working, and a freed slot is reused.
 * Other client addresses come from 127.0.0.2 and 127.0.0.3 (all of 127/8 is loopback).
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { type Daemon, sleep, startDaemon } from "../support/Daemon.ts"
import { type ConnectOptions, describeReply, SmtpClient } from "../support/SmtpClient.ts"

const perClient = 3
const total = 4

describe("connection limits", () => {
  let daemon: Daemon
  const open: Array<SmtpClient> = []

  beforeAll(async () => {
    daemon = await startDaemon({ limits: { connections: total, connectionsPerClient: perClient } })
    // The start-up probe's slot is released just after its connection closes.
    await sleep(300)
  })

  afterAll(async () => {
    for (const client of open) client.destroy()
    await daemon?.dispose()
  })

  const admitted = async (options: ConnectOptions = {}) => {
    const client = await SmtpClient.open(daemon.ports.smtp, options)
    open.push(client)
    return client
  }

  const refused = async (options: ConnectOptions = {}) => {
    const client = await SmtpClient.connect(daemon.ports.smtp, options)
    try {
      const reply = await client.readReply()
      assert.deepStrictEqual([reply.code, reply.enhanced], [421, "4.7.0"], describeReply(reply))
      await client.expectClose()
      return client.localPort
    } finally {
      client.destroy()
    }
  }

  /** A connection is admitted again once a slot is free (the release follows the close closely). */
  const admittedSoon = async (options: ConnectOptions = {}) => {
    const deadline = Date.now() + 3000
    while (true) {
      const client = await SmtpClient.connect(daemon.ports.smtp, options)
      const reply = await client.readReply()
      if (reply.code === 220) {
        open.push(client)
        return client
      }
      client.destroy()
      if (Date.now() > deadline) assert.fail(`still refused after a slot was freed: ${describeReply(reply)}`)
      await sleep(50)
    }
  }

  const admissionOf = async (port: number, address: string) => {
    const opened = (await daemon.sessionEvents(port, address))[0]
    return opened?._tag === "SessionOpened" ? opened.admission : undefined
  }

  const closeAll = async () => {
    for (const client of open.splice(0)) {
      if (!client.closed) await client.quit()
      client.destroy()
    }
    await sleep(200)
  }

  it(`connectionsPerClient = ${perClient}: the next connection gets 421 4.7.0 and is closed, the others still work`, async () => {
    const clients = [await admitted(), await admitted(), await admitted()]
    const port = await refused()
    for (const client of clients) {
      const reply = await client.request("NOOP")
      assert.strictEqual(reply.code, 250)
    }
    await clients[0]?.quit()
    const again = await admittedSoon()
    assert.strictEqual((await again.request("EHLO client.test")).code, 250)
    await closeAll()
    assert.strictEqual(await admissionOf(port, "127.0.0.1"), "client-limit")
  })

  it(`connections = ${total}: a connection from another client beyond the total gets 421 4.7.0`, async () => {
    const clients = [
      await admitted(),
      await admitted(),
      await admitted(),
      await admitted({ localAddress: "127.0.0.2" })
    ]
    const port = await refused({ localAddress: "127.0.0.3" })
    for (const client of clients) assert.strictEqual((await client.request("NOOP")).code, 250)
    await clients[3]?.quit()
    const again = await admittedSoon({ localAddress: "127.0.0.3" })
    assert.strictEqual((await again.request("EHLO client.test")).code, 250)
    await closeAll()
    assert.strictEqual(await admissionOf(port, "127.0.0.3"), "global-limit")
  })
})
