/**
 * Delivery through the running daemon with real clients: Python's smtplib, swaks, and a raw
 * client for BDAT and SMTPUTF8; local routing (known users, catch-all, discard, postmaster,
 * unknown users, other domains).
 */
import * as ChildProcess from "node:child_process"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import {
  assertStillDelivers,
  type Daemon,
  readMailbox,
  sleep,
  startDaemon,
  uniqueToken,
  waitForMail
} from "../support/Daemon.ts"
import { describeReply, queueIdOf, sendMessage, SmtpClient } from "../support/SmtpClient.ts"

const run = (file: string, args: ReadonlyArray<string>): Promise<{ code: number | null; stdout: string; stderr: string }> =>
  new Promise((resolve, reject) => {
    ChildProcess.execFile(file, args, { timeout: 30_000 }, (error, stdout, stderr) => {
      if (error !== null && typeof error.code !== "number") return reject(error)
      resolve({ code: error === null ? 0 : Number(error.code), stdout, stderr })
    })
  })

/** Header lines only (folded lines included): what the daemon may put before the message. */
const headerBlock = /^(?:[!-9;-~]+:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)+$/

/** smtplib with an explicit local hostname, so it never looks its own name up. */
const smtplibScript = `
import json, smtplib, sys
port, sender, rcpt, msg = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10)
ehlo = s.ehlo()
mail = s.mail(sender)
rc = s.rcpt(rcpt)
code, resp = s.data(msg.encode("utf-8"))
s.quit()
print(json.dumps({"ehlo": ehlo[0], "mail": mail[0], "rcpt": rc[0], "code": code, "resp": resp.decode()}))
`

describe("delivery", () => {
  let daemon: Daemon

  beforeAll(async () => {
    daemon = await startDaemon()
  })

  afterAll(async () => {
    await daemon?.dispose()
  })

  it("smtplib delivers to alice@example.test: 250 queued, exact body in her Maildir with a Received header naming the queue id", async () => {
    const token = uniqueToken("smtplib")
    const content = `From: sender@client.test\r\nTo: alice@example.test\r\nSubject: smtplib ${token}\r\n` +
      `Message-ID: <${token}@client.test>\r\n\r\nHello from smtplib.\r\n.a line that starts with a dot\r\n..two dots\r\n${token}\r\n`
    const result = await run("python3", ["-c", smtplibScript, String(daemon.ports.smtp), "sender@client.test", "alice@example.test", content])
    assert.strictEqual(result.code, 0, result.stderr)
    const outcome = JSON.parse(result.stdout) as { ehlo: number; mail: number; rcpt: number; code: number; resp: string }
    assert.deepStrictEqual([outcome.ehlo, outcome.mail, outcome.rcpt, outcome.code], [250, 250, 250, 250], result.stdout)
    const queueId = /queued as (\S+)/.exec(outcome.resp)?.[1]
    assert.isDefined(queueId, outcome.resp)

    const mail = await waitForMail(daemon, "example.test", "alice", token)
    assert.include(mail.file, "/mail/example.test/alice/new/")
    assert.isTrue(mail.text.endsWith(content), `the file must end with the exact message:\n${mail.text}`)
    const prefix = mail.text.slice(0, mail.text.length - content.length)
    assert.match(prefix, headerBlock)
    assert.match(
      prefix,
      new RegExp(`Received: from client\\.test \\(unknown \\[127\\.0\\.0\\.1\\]\\)\\r\\n\\tby mx\\.postern\\.test \\(Postern\\) with ESMTP id ${queueId}\\b`)
    )
  })

  it("swaks delivers to bob@example.test", async () => {
    const token = uniqueToken("swaks")
    const result = await run("swaks", [
      "--server",
      `127.0.0.1:${daemon.ports.smtp}`,
      "--helo",
      "client.test",
      "--from",
      "sender@client.test",
      "--to",
      "bob@example.test",
      "--header",
      `Subject: swaks ${token}`,
      "--body",
      `body ${token}`,
      "--timeout",
      "10"
    ])
    assert.strictEqual(result.code, 0, result.stdout + result.stderr)
    assert.match(result.stdout, /^<[-~] {1,2}250 2\.0\.0 Ok: queued as \S+$/m)
    const mail = await waitForMail(daemon, "example.test", "bob", token)
    assert.include(mail.text, `Subject: swaks ${token}`)
  })

  it("BDAT (CHUNKING): BDAT 10 then BDAT 0 LAST delivers the concatenated chunks", async () => {
    const token = uniqueToken("bdat")
    const first = "Subject: x" // exactly 10 octets
    const rest = `\r\n\r\n${token}\r\n`
    const client = await SmtpClient.open(daemon.ports.smtp)
    try {
      const ehlo = await client.request("EHLO client.test")
      assert.include(ehlo.lines, "CHUNKING")
      assert.strictEqual((await client.request("MAIL FROM:<sender@client.test>")).code, 250)
      assert.strictEqual((await client.request("RCPT TO:<alice@example.test>")).code, 250)
      await client.send(`BDAT ${first.length}\r\n${first}`)
      const chunk = await client.readReply()
      assert.strictEqual(chunk.code, 250, describeReply(chunk))
      assert.strictEqual(chunk.enhanced, "2.0.0")
      await client.send(`BDAT ${Buffer.byteLength(rest)}\r\n${rest}`)
      assert.strictEqual((await client.readReply()).code, 250)
      await client.send("BDAT 0 LAST\r\n")
      const last = await client.readReply()
      assert.strictEqual(last.code, 250, describeReply(last))
      assert.isDefined(queueIdOf(last), describeReply(last))
      await client.quit()
    } finally {
      client.destroy()
    }
    const mail = await waitForMail(daemon, "example.test", "alice", token)
    assert.isTrue(mail.text.endsWith(`${first}${rest}`), mail.text)
  })

  it("SMTPUTF8: a UTF-8 mailbox in a catch-all domain is accepted and delivered", async () => {
    const token = uniqueToken("utf8")
    const user = "δοκιμή"
    const content = `Subject: =?UTF-8?Q?x?=\r\n\r\nΚαλημέρα ${token}\r\n`
    const reply = await sendMessage(daemon.ports.smtp, {
      from: "χρήστης@client.test",
      to: [`${user}@catchall.test`],
      mailParameters: "SMTPUTF8",
      content
    })
    assert.strictEqual(reply.code, 250, describeReply(reply))
    const mail = await waitForMail(daemon, "catchall.test", user, token)
    assert.isTrue(mail.text.endsWith(content), mail.text)
  })

  it("a message to a discard domain is queued (250) and no file appears", async () => {
    const token = uniqueToken("discard")
    const reply = await sendMessage(daemon.ports.smtp, {
      from: "sender@client.test",
      to: ["nobody@sink.test"],
      content: `Subject: ${token}\r\n\r\n${token}\r\n`
    })
    assert.strictEqual(reply.code, 250, describeReply(reply))
    assert.isDefined(queueIdOf(reply))
    // A later message to alice is delivered, so the discard one had its chance to be written.
    await assertStillDelivers(daemon)
    await sleep(200)
    assert.deepStrictEqual(daemon.maildir("sink.test", "nobody"), [])
  })

  it("RCPT TO:<Postmaster> is accepted and delivered to the primary domain's postmaster", async () => {
    const token = uniqueToken("postmaster")
    const client = await SmtpClient.open(daemon.ports.smtp)
    try {
      await client.request("EHLO client.test")
      await client.request("MAIL FROM:<sender@client.test>")
      const rcpt = await client.request("RCPT TO:<Postmaster>")
      assert.strictEqual(rcpt.code, 250, describeReply(rcpt))
      assert.strictEqual(rcpt.enhanced, "2.1.5")
      assert.strictEqual((await client.request("DATA")).code, 354)
      await client.send(`Subject: ${token}\r\n\r\n${token}\r\n.\r\n`)
      assert.strictEqual((await client.readReply()).code, 250)
      await client.quit()
    } finally {
      client.destroy()
    }
    await waitForMail(daemon, "example.test", "postmaster", token)
  })

  it("an unknown user of a local domain gets 550 5.1.1", async () => {
    const client = await SmtpClient.open(daemon.ports.smtp)
    try {
      await client.request("EHLO client.test")
      await client.request("MAIL FROM:<sender@client.test>")
      const rcpt = await client.request("RCPT TO:<carol@example.test>")
      assert.strictEqual(rcpt.code, 550, describeReply(rcpt))
      assert.strictEqual(rcpt.enhanced, "5.1.1")
      await client.quit()
    } finally {
      client.destroy()
    }
  })

  it("a domain that is not local gets 554 5.7.1 Relay access denied with no rule configured (no open relay)", async () => {
    const client = await SmtpClient.open(daemon.ports.smtp)
    try {
      await client.request("EHLO client.test")
      await client.request("MAIL FROM:<sender@client.test>")
      const rcpt = await client.request("RCPT TO:<someone@elsewhere.test>")
      assert.strictEqual(rcpt.code, 554, describeReply(rcpt))
      assert.strictEqual(rcpt.enhanced, "5.7.1")
      assert.match(rcpt.lines.join(" "), /<someone@elsewhere\.test>: Relay access denied/)
      await client.quit()
    } finally {
      client.destroy()
    }
    assert.deepStrictEqual(readMailbox(daemon, "elsewhere.test", "someone"), [])
  })
})

describe("delivery with reverse DNS on", () => {
  let daemon: Daemon

  beforeAll(async () => {
    daemon = await startDaemon({ reverseDns: true })
  })

  afterAll(async () => {
    await daemon?.dispose()
  })

  it("names the client by its reverse lookup (127.0.0.1 is localhost in /etc/hosts) in the Received header", async () => {
    const token = uniqueToken("rdns")
    const reply = await sendMessage(daemon.ports.smtp, {
      from: "sender@client.test",
      to: ["alice@example.test"],
      content: `Subject: ${token}\r\n\r\n${token}\r\n`
    })
    assert.strictEqual(reply.code, 250, describeReply(reply))
    const delivered = await waitForMail(daemon, "example.test", "alice", token)
    assert.match(delivered.text, /^Received: from \S+ \(localhost \[127\.0\.0\.1\]\)/)
  })
})
