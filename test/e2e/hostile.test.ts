/**
 * Hostile input against the running daemon (TESTING.md "Hostile input"): each case checks the
 * exact reply code and enhanced code, and then that a fresh connection still delivers and that
 * no worker died on the way.
 */
import * as ClientHello from "../support/ClientHello.ts"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import {
  assertStillDelivers,
  type Daemon,
  readMailbox,
  rssOf,
  startDaemon,
  uniqueToken,
  waitForMail
} from "../support/Daemon.ts"
import { describeReply, type SmtpReply, SmtpClient } from "../support/SmtpClient.ts"

const messageSize = 10_000
const recipients = 5
const maxErrors = 10

const expectReply = (reply: SmtpReply | undefined, code: number, enhanced: string | undefined) => {
  assert.isDefined(reply)
  if (reply === undefined) return
  assert.deepStrictEqual([reply.code, reply.enhanced], [code, enhanced], describeReply(reply))
}


describe("hostile input", () => {
  let daemon: Daemon
  let workers: Array<number>

  beforeAll(async () => {
    daemon = await startDaemon({
      limits: { messageSize, recipients, errors: maxErrors },
      timeouts: { command: "2s" }
    })
    workers = daemon.workerPids()
  })

  afterAll(async () => {
    await daemon?.dispose()
  })

  /** The daemon still delivers, with the same worker processes as at the start (none crashed). */
  const survived = async () => {
    await assertStillDelivers(daemon)
    assert.deepStrictEqual(daemon.workerPids().sort(), [...workers].sort(), daemon.output().stderr)
  }

  const session = async (run: (client: SmtpClient) => Promise<void>) => {
    const client = await SmtpClient.open(daemon.ports.smtp)
    try {
      await run(client)
    } finally {
      client.destroy()
    }
  }

  const openTransaction = async (client: SmtpClient, to = "alice@example.test", mailParameters = "") => {
    expectReply(await client.request("EHLO client.test"), 250, undefined)
    expectReply(await client.request(`MAIL FROM:<sender@client.test>${mailParameters}`), 250, "2.1.0")
    expectReply(await client.request(`RCPT TO:<${to}>`), 250, "2.1.5")
  }

  /** The vector as written, its bytes, and the first bare line ending the daemon should record. */
  const smuggling: ReadonlyArray<readonly [string, string, "lf" | "cr"]> = [
    ["\\n.\\n", "\n.\n", "lf"],
    ["\\n.\\r\\n", "\n.\r\n", "lf"],
    ["\\r.\\r", "\r.\r", "cr"],
    ["\\r.\\r\\n", "\r.\r\n", "cr"],
    ["\\r\\n.\\n", "\r\n.\n", "lf"],
    ["\\r\\n.\\r", "\r\n.\r", "cr"]
  ]

  smuggling.forEach(([name, vector, bare], index) => {
    it(`SMTP smuggling with ${name} inside DATA: 550 5.5.2 at the real end, nothing smuggled is queued`, async () => {
      const token = uniqueToken(`smuggle${index}`)
      const victim = `smuggled${index}-${process.pid}`
      let port = 0
      await session(async (client) => {
        port = client.localPort
        await openTransaction(client)
        expectReply(await client.request("DATA"), 354, undefined)
        await client.send(
          `Subject: ${token}\r\n\r\nlegitimate ${token}${vector}` +
            `MAIL FROM:<evil@client.test>\r\nRCPT TO:<${victim}@catchall.test>\r\nDATA\r\n` +
            `Subject: smuggled ${token}\r\n\r\nsmuggled ${token}\r\n.\r\n`
        )
        expectReply(await client.readReply(), 550, "5.5.2")
        await client.quit()
      })
      await survived()
      assert.deepStrictEqual(daemon.maildir("catchall.test", victim), [])
      assert.isUndefined(readMailbox(daemon, "example.test", "alice").find((m) => m.text.includes(token)))
      const events = await daemon.sessionEvents(port)
      assert.strictEqual(events[0]?._tag, "SessionOpened", `no recorded session from port ${port}`)
      assert.isUndefined(events.find((e) => e._tag === "MessageQueued"))
      const content = events.flatMap((e) => (e._tag === "ContentReceived" ? [e.bareLineEnding] : []))
      assert.deepStrictEqual(content, [bare])
      const lines = events.flatMap((e) => (e._tag === "CommandReceived" ? [e.line] : []))
      assert.deepStrictEqual(lines, ["EHLO client.test", "MAIL FROM:<sender@client.test>", "RCPT TO:<alice@example.test>", "DATA", "QUIT"])
    })
  })

  it("bare LF ending a command line: 500 5.5.2 and close", async () => {
    await session(async (client) => {
      await client.send("EHLO client.test\n")
      expectReply(await client.readReply(), 500, "5.5.2")
      await client.expectClose()
    })
    await survived()
  })

  it("NUL inside a command: 500 5.5.2, the session continues", async () => {
    await session(async (client) => {
      await client.send("EHLO client\u0000.test\r\n")
      expectReply(await client.readReply(), 500, "5.5.2")
      expectReply(await client.request("NOOP"), 250, "2.0.0")
      await client.quit()
    })
    await survived()
  })

  it("a 2 MiB line without CRLF: 500 5.5.2 and close, and the worker's memory does not jump", async () => {
    const worker = workers[0]
    assert.isDefined(worker)
    const before = worker === undefined ? 0 : rssOf(worker)
    await session(async (client) => {
      await client.send(Buffer.alloc(2 * 1024 * 1024, 0x41))
      expectReply(await client.readReply(), 500, "5.5.2")
      await client.expectClose()
    })
    const after = worker === undefined ? 0 : rssOf(worker)
    assert.isBelow(after - before, 32 * 1024 * 1024, `RSS went from ${before} to ${after}`)
    await survived()
  })

  it("a 600-byte command line with CRLF: 500 5.5.2, the session continues", async () => {
    await session(async (client) => {
      expectReply(await client.request(`NOOP ${"x".repeat(593)}`), 500, "5.5.2")
      expectReply(await client.request("NOOP"), 250, "2.0.0")
      await client.quit()
    })
    await survived()
  })

  it("an unknown command: 500 5.5.2", async () => {
    await session(async (client) => {
      expectReply(await client.request("FOOBAR baz"), 500, "5.5.2")
      await client.quit()
    })
    await survived()
  })

  it("RCPT before MAIL: 503 5.5.1", async () => {
    await session(async (client) => {
      await client.request("EHLO client.test")
      expectReply(await client.request("RCPT TO:<alice@example.test>"), 503, "5.5.1")
      await client.quit()
    })
    await survived()
  })

  it("DATA before RCPT: 554 5.5.1 after MAIL, 503 5.5.1 without MAIL", async () => {
    await session(async (client) => {
      await client.request("EHLO client.test")
      expectReply(await client.request("DATA"), 503, "5.5.1")
      await client.request("MAIL FROM:<sender@client.test>")
      expectReply(await client.request("DATA"), 554, "5.5.1")
      await client.quit()
    })
    await survived()
  })

  it("MAIL before EHLO: 503 5.5.1", async () => {
    await session(async (client) => {
      expectReply(await client.request("MAIL FROM:<sender@client.test>"), 503, "5.5.1")
      await client.quit()
    })
    await survived()
  })

  it(`too many errors: ${maxErrors} bad commands, then 421 4.7.0 and close`, async () => {
    await session(async (client) => {
      await client.send("FOO\r\n".repeat(maxErrors))
      const replies = await client.readReplies(maxErrors + 1)
      for (const reply of replies.slice(0, maxErrors)) expectReply(reply, 500, "5.5.2")
      expectReply(replies[maxErrors], 421, "4.7.0")
      await client.expectClose()
    })
    await survived()
  })

  it("an unknown MAIL parameter: 555 5.5.4", async () => {
    await session(async (client) => {
      await client.request("EHLO client.test")
      expectReply(await client.request("MAIL FROM:<sender@client.test> FOO=BAR"), 555, "5.5.4")
      await client.quit()
    })
    await survived()
  })

  it("a declared SIZE over the limit: 552 5.3.4 at MAIL", async () => {
    await session(async (client) => {
      const ehlo = await client.request("EHLO client.test")
      assert.include(ehlo.lines, `SIZE ${messageSize}`)
      expectReply(await client.request(`MAIL FROM:<sender@client.test> SIZE=${messageSize * 2}`), 552, "5.3.4")
      expectReply(await client.request(`MAIL FROM:<sender@client.test> SIZE=${messageSize}`), 250, "2.1.0")
      await client.quit()
    })
    await survived()
  })

  it("an actual message over the limit: 552 5.3.4 after the content, nothing delivered, the session continues", async () => {
    const token = uniqueToken("oversize")
    await session(async (client) => {
      await openTransaction(client)
      expectReply(await client.request("DATA"), 354, undefined)
      const line = `${"y".repeat(98)}\r\n`
      await client.send(`Subject: ${token}\r\n\r\n${line.repeat(Math.ceil((messageSize * 2) / line.length))}.\r\n`)
      expectReply(await client.readReply(), 552, "5.3.4")
      expectReply(await client.request("NOOP"), 250, "2.0.0")
      await client.quit()
    })
    await survived()
    assert.isUndefined(readMailbox(daemon, "example.test", "alice").find((m) => m.text.includes(token)))
  })

  it(`too many recipients: ${recipients} accepted, the extras get 452 4.5.3, the message goes to the accepted ones`, async () => {
    const token = uniqueToken("rcpts")
    const users = Array.from({ length: recipients + 2 }, (_, i) => `r${i}-${process.pid}`)
    await session(async (client) => {
      await client.request("EHLO client.test")
      await client.request("MAIL FROM:<sender@client.test>")
      for (const [i, user] of users.entries()) {
        const reply = await client.request(`RCPT TO:<${user}@catchall.test>`)
        if (i < recipients) expectReply(reply, 250, "2.1.5")
        else expectReply(reply, 452, "4.5.3")
      }
      expectReply(await client.request("DATA"), 354, undefined)
      await client.send(`Subject: ${token}\r\n\r\n${token}\r\n.\r\n`)
      expectReply(await client.readReply(), 250, "2.0.0")
      await client.quit()
    })
    for (const user of users.slice(0, recipients)) await waitForMail(daemon, "catchall.test", user, token)
    await survived()
    for (const user of users.slice(recipients)) assert.deepStrictEqual(daemon.maildir("catchall.test", user), [])
  })

  it("invalid UTF-8 in addresses: 501 5.1.3 in RCPT, 501 5.1.7 in MAIL", async () => {
    await session(async (client) => {
      await client.request("EHLO client.test")
      await client.send(Buffer.concat([Buffer.from("MAIL FROM:<"), Buffer.from([0xc3, 0x28]), Buffer.from("@client.test> SMTPUTF8\r\n")]))
      expectReply(await client.readReply(), 501, "5.1.7")
      expectReply(await client.request("MAIL FROM:<sender@client.test> SMTPUTF8"), 250, "2.1.0")
      await client.send(Buffer.concat([Buffer.from("RCPT TO:<"), Buffer.from([0xff, 0xfe]), Buffer.from("@catchall.test>\r\n")]))
      expectReply(await client.readReply(), 501, "5.1.3")
      await client.quit()
    })
    await survived()
  })

  it("a non-ASCII address without SMTPUTF8: 553 5.6.7", async () => {
    await session(async (client) => {
      await client.request("EHLO client.test")
      expectReply(await client.request("MAIL FROM:<χρήστης@client.test>"), 553, "5.6.7")
      await client.request("MAIL FROM:<sender@client.test>")
      expectReply(await client.request("RCPT TO:<δοκιμή@catchall.test>"), 553, "5.6.7")
      await client.quit()
    })
    await survived()
  })

  it("a TLS ClientHello on the plaintext port: a 500 5.5.x or a timeout 421 4.4.2, then close; never a crash", async () => {
    const hello = await ClientHello.capture({ servername: "mx.postern.test" })
    assert.strictEqual(hello[0], 0x16, "a TLS handshake record")
    await session(async (client) => {
      await client.send(hello)
      // The hello's random bytes decide: a LF among them makes it a (bare-LF) line.
      const reply = await client.readReply(5000)
      if (reply.code === 500) assert.match(reply.enhanced ?? "", /^5\.5\.\d+$/, describeReply(reply))
      else expectReply(reply, 421, "4.4.2")
      await client.expectClose()
    })
    await survived()
  })

  it("idle past the command timeout: 421 4.4.2 and close", async () => {
    await session(async (client) => {
      const started = Date.now()
      await client.request("EHLO client.test")
      expectReply(await client.readReply(6000), 421, "4.4.2")
      assert.isAtLeast(Date.now() - started, 1500)
      await client.expectClose()
    })
    await survived()
  })

  it("thousands of recipients in one pipelined write: the limit holds, every command answered in order", async () => {
    const token = uniqueToken("flood")
    const count = 3000
    await session(async (client) => {
      await client.request("EHLO client.test")
      let group = "MAIL FROM:<sender@client.test>\r\n"
      for (let i = 0; i < count; i++) group += `RCPT TO:<many${i % recipients}-${process.pid}@catchall.test>\r\n`
      await client.send(group)
      const replies = await client.readReplies(count + 1, 10_000)
      expectReply(replies[0], 250, "2.1.0")
      replies.slice(1, recipients + 1).forEach((r) => expectReply(r, 250, "2.1.5"))
      const extras = replies.slice(recipients + 1)
      assert.strictEqual(extras.length, count - recipients)
      const odd = extras.find((r) => r.code !== 452 || r.enhanced !== "4.5.3")
      assert.isUndefined(odd, odd === undefined ? "" : describeReply(odd))
      expectReply(await client.request("DATA"), 354, undefined)
      await client.send(`Subject: ${token}\r\n\r\n${token}\r\n.\r\n`)
      expectReply(await client.readReply(), 250, "2.0.0")
      await client.quit()
    })
    await waitForMail(daemon, "catchall.test", `many0-${process.pid}`, token)
    await survived()
  })
})
