/**
 * The PROXY protocol on a listener that trusts 127.0.0.0/8: the session runs as the announced
 * client (recorded in SessionOpened and in the Received header), a garbage header closes the
 * connection, and a listener without the PROXY protocol treats the header as a bad command.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { type Daemon, jsonLines, startDaemon, uniqueToken, waitForMail } from "../support/Daemon.ts"
import { describeReply, SmtpClient } from "../support/SmtpClient.ts"

const header = "PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\r\n"

describe("PROXY protocol", () => {
  let daemon: Daemon
  let proxied = 0

  beforeAll(async () => {
    daemon = await startDaemon({
      extraListeners: [{ role: "smtp", proxyProtocol: { trustedNetworks: ["127.0.0.0/8"] } }]
    })
    proxied = daemon.ports.extra[0] ?? 0
  })

  afterAll(async () => {
    await daemon?.dispose()
  })

  it("a PROXY v1 header, then SMTP: the session works and is recorded with the announced peer", async () => {
    const token = uniqueToken("proxy")
    const client = await SmtpClient.connect(proxied)
    const port = client.localPort
    try {
      await client.send(header)
      const greeting = await client.readReply()
      assert.strictEqual(greeting.code, 220, describeReply(greeting))
      assert.strictEqual((await client.request("EHLO client.test")).code, 250)
      assert.strictEqual((await client.request("MAIL FROM:<sender@client.test>")).code, 250)
      assert.strictEqual((await client.request("RCPT TO:<alice@example.test>")).code, 250)
      assert.strictEqual((await client.request("DATA")).code, 354)
      await client.send(`Subject: ${token}\r\n\r\n${token}\r\n.\r\n`)
      const queued = await client.readReply()
      assert.strictEqual(queued.code, 250, describeReply(queued))
      await client.quit()
    } finally {
      client.destroy()
    }
    const mail = await waitForMail(daemon, "example.test", "alice", token)
    assert.include(mail.text, "Received: from client.test (unknown [203.0.113.7])")

    const listed = await daemon.replay([daemon.logDir, "--json"])
    assert.strictEqual(listed.code, 0, listed.stderr)
    const summary = jsonLines(listed.stdout).find((s) => s["peer"] === "203.0.113.7:40000")
    assert.isDefined(summary, listed.stdout)
    const shown = await daemon.replay([daemon.logDir, "--session", String(summary?.["id"]), "--json"])
    const opened = jsonLines(shown.stdout).find((e) => e["_tag"] === "SessionOpened")
    assert.deepStrictEqual(opened?.["peer"], { address: "203.0.113.7", port: 40000 })
    assert.deepStrictEqual(opened?.["proxiedBy"], { address: "127.0.0.1", port })
    assert.deepStrictEqual(opened?.["local"], { address: "127.0.0.1", port: proxied })
  })

  it("the header and the first command in one write: both are honoured", async () => {
    const client = await SmtpClient.connect(proxied)
    try {
      await client.send(`${header}EHLO client.test\r\n`)
      const [greeting, ehlo] = await client.readReplies(2)
      assert.strictEqual(greeting?.code, 220)
      assert.strictEqual(ehlo?.code, 250)
      await client.quit()
    } finally {
      client.destroy()
    }
  })

  it("a garbage header closes the connection without a greeting", async () => {
    const client = await SmtpClient.connect(proxied)
    try {
      await client.send("HELLO THERE, I AM NOT A PROXY\r\n")
      await client.expectClose()
      assert.strictEqual(client.unread, "")
      assert.isUndefined(client.transcript.find((entry) => entry.from === "S"))
    } finally {
      client.destroy()
    }
  })

  it("on a listener without the PROXY protocol the header is just an unknown command", async () => {
    const client = await SmtpClient.open(daemon.ports.smtp)
    try {
      const reply = await client.request(header.trimEnd())
      assert.deepStrictEqual([reply.code, reply.enhanced], [500, "5.5.2"], describeReply(reply))
      await client.quit()
    } finally {
      client.destroy()
    }
  })
})
