/**
 * RFC 2920 PIPELINING against the running daemon: a whole transaction in one write gets its
 * replies in order, and the replies to a group come back together rather than one per packet.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { type Daemon, startDaemon, uniqueToken, waitForMail } from "../support/Daemon.ts"
import { describeReply, queueIdOf, SmtpClient } from "../support/SmtpClient.ts"

describe("pipelining", () => {
  let daemon: Daemon

  beforeAll(async () => {
    daemon = await startDaemon()
  })

  afterAll(async () => {
    await daemon?.dispose()
  })

  it("MAIL, RCPT, RCPT, DATA in one write get 250, 250, 250, 354 in order; the message is delivered to both", async () => {
    const token = uniqueToken("pipelined")
    const client = await SmtpClient.open(daemon.ports.smtp)
    try {
      const ehlo = await client.request("EHLO client.test")
      assert.include(ehlo.lines, "PIPELINING")
      await client.send(
        "MAIL FROM:<sender@client.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
      )
      const replies = await client.readReplies(4)
      assert.deepStrictEqual(
        replies.map((r) => [r.code, r.enhanced]),
        [[250, "2.1.0"], [250, "2.1.5"], [250, "2.1.5"], [354, undefined]],
        replies.map(describeReply).join("\n")
      )
      await client.send(`Subject: ${token}\r\n\r\n${token}\r\n.\r\nQUIT\r\n`)
      const [queued, bye] = await client.readReplies(2)
      assert.strictEqual(queued?.code, 250)
      assert.isDefined(queued === undefined ? undefined : queueIdOf(queued))
      assert.strictEqual(bye?.code, 221)
      await client.expectClose()
    } finally {
      client.destroy()
    }
    await waitForMail(daemon, "example.test", "alice", token)
    await waitForMail(daemon, "example.test", "bob", token)
  })

  it("the replies to a pipelined group arrive together (at most 2 reads for 4 replies)", async () => {
    const client = await SmtpClient.open(daemon.ports.smtp)
    try {
      await client.request("EHLO client.test")
      const before = client.dataEvents
      await client.send(
        "MAIL FROM:<sender@client.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
      )
      const replies = await client.readReplies(4)
      assert.deepStrictEqual(replies.map((r) => r.code), [250, 250, 250, 354])
      const reads = client.dataEvents - before
      assert.isAtMost(reads, 2, `the 4 replies came in ${reads} reads`)
      await client.send(".\r\n")
      assert.strictEqual((await client.readReply()).code, 250)
      // A group that ends in RSET and NOOP: NOOP ends the group, all three replies together.
      const second = client.dataEvents
      await client.send("RSET\r\nMAIL FROM:<sender@client.test>\r\nNOOP\r\n")
      const more = await client.readReplies(3)
      assert.deepStrictEqual(more.map((r) => r.code), [250, 250, 250])
      assert.strictEqual(client.dataEvents - second, 1)
      await client.quit()
    } finally {
      client.destroy()
    }
  })

  it("a client that pipelines the whole transaction with QUIT and then shuts down its side still gets 250 and 221", async () => {
    const token = uniqueToken("halfclose")
    const script = String.raw`
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(10)
data = b""
while not data.endswith(b"\r\n"):
    data += s.recv(4096)
s.sendall(b"EHLO client.test\r\nMAIL FROM:<sender@client.test>\r\nRCPT TO:<alice@example.test>\r\n")
s.sendall(b"DATA\r\n")
s.sendall(("Subject: " + sys.argv[2] + "\r\n\r\n" + sys.argv[2] + "\r\n.\r\nQUIT\r\n").encode())
s.shutdown(socket.SHUT_WR)
rest = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    rest += chunk
sys.stdout.write(rest.decode())
`
    const { execFileSync } = await import("node:child_process")
    const output = execFileSync("python3", ["-c", script, String(daemon.ports.smtp), token], { encoding: "utf8", timeout: 20_000 })
    assert.match(output, /^250 2\.0\.0 Ok: queued as \S+\r$/m, output)
    assert.match(output, /^221 2\.0\.0 Bye\r$/m, output)
    await waitForMail(daemon, "example.test", "alice", token)
  })
})
