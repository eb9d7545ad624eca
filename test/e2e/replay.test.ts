/**
 * `postern replay` against the log of a daemon that has served real traffic: the session list,
 * one session's transcript, the JSON forms, and `--verify` replaying every session through the
 * machine with zero differences.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { type Daemon, jsonLines, startDaemon, uniqueToken, waitForMail } from "../support/Daemon.ts"
import { describeReply, queueIdOf, SmtpClient } from "../support/SmtpClient.ts"

describe("replay", () => {
  let daemon: Daemon
  let deliveredPort = 0
  let rejectedPort = 0
  let hostilePort = 0
  let queueId = ""
  let listed: Array<Record<string, unknown>> = []

  beforeAll(async () => {
    daemon = await startDaemon()
    const token = uniqueToken("replay")

    const delivering = await SmtpClient.open(daemon.ports.smtp)
    deliveredPort = delivering.localPort
    await delivering.request("EHLO client.test")
    await delivering.request("MAIL FROM:<sender@client.test>")
    await delivering.request("RCPT TO:<alice@example.test>")
    await delivering.request("DATA")
    await delivering.send(`Subject: ${token}\r\n\r\n${token}\r\n.\r\n`)
    const queued = await delivering.readReply()
    queueId = queueIdOf(queued) ?? ""
    assert.notStrictEqual(queueId, "", describeReply(queued))
    await delivering.quit()
    delivering.destroy()
    await waitForMail(daemon, "example.test", "alice", token)

    const rejecting = await SmtpClient.open(daemon.ports.submission)
    rejectedPort = rejecting.localPort
    await rejecting.request("EHLO client.test")
    await rejecting.request("MAIL FROM:<sender@client.test>")
    await rejecting.request("RCPT TO:<nobody@elsewhere.test>")
    await rejecting.request("RCPT TO:<carol@example.test>")
    await rejecting.quit()
    rejecting.destroy()

    const hostile = await SmtpClient.open(daemon.ports.smtp)
    hostilePort = hostile.localPort
    await hostile.send("NOOP\u0000\r\nFOO\r\n")
    await hostile.readReplies(2)
    await hostile.send("EHLO bare.lf\n")
    await hostile.readReply()
    await hostile.expectClose()
    hostile.destroy()

    const result = await daemon.replay([daemon.logDir, "--json"])
    assert.strictEqual(result.code, 0, result.stderr)
    listed = jsonLines(result.stdout)
  })

  afterAll(async () => {
    await daemon?.dispose()
  })

  const idOf = (port: number) => {
    const summary = listed.find((s) => s["peer"] === `127.0.0.1:${port}`)
    assert.isDefined(summary, `no session from port ${port}`)
    return String(summary?.["id"])
  }

  it("lists the sessions, one line each with id, peer, role and outcome", async () => {
    const result = await daemon.replay([daemon.logDir])
    assert.strictEqual(result.code, 0, result.stderr)
    const lines = result.stdout.split("\n").filter((l) => l.length > 0)
    const line = (port: number) => lines.find((l) => l.includes(` 127.0.0.1:${port} `))
    assert.match(line(deliveredPort) ?? "", new RegExp(`smtp\\s+quit\\s+queued: ${queueId}$`))
    assert.match(line(rejectedPort) ?? "", /submission\s+quit$/)
    assert.match(line(hostilePort) ?? "", /smtp\s+protocol$/)
    for (const port of [deliveredPort, rejectedPort, hostilePort]) {
      assert.include(line(port) ?? "", idOf(port))
    }
  })

  it("--session ID prints the transcript: client lines, server replies, the queueing", async () => {
    const id = idOf(deliveredPort)
    const result = await daemon.replay([daemon.logDir, "--session", id])
    assert.strictEqual(result.code, 0, result.stderr)
    const out = result.stdout
    for (
      const expected of [
        `-- connection from 127.0.0.1:${deliveredPort}`,
        "S: 220 mx.postern.test ESMTP Postern",
        "C: EHLO client.test",
        "S: 250-mx.postern.test",
        "S: 250 CHUNKING",
        "C: MAIL FROM:<sender@client.test>",
        "S: 250 2.1.0 Ok",
        "C: RCPT TO:<alice@example.test>",
        "S: 250 2.1.5 Ok",
        "C: DATA",
        "S: 354 End data with <CR><LF>.<CR><LF>",
        `-- queued as ${queueId}: from <sender@client.test> to <alice@example.test>`,
        `S: 250 2.0.0 Ok: queued as ${queueId}`,
        "C: QUIT",
        "S: 221 2.0.0 Bye",
        "-- closed: quit"
      ]
    ) assert.include(out, expected)
    const hostile = await daemon.replay([daemon.logDir, "--session", idOf(hostilePort)])
    assert.include(hostile.stdout, "C: NOOP\\x00   [nul]")
    assert.include(hostile.stdout, "S: 500 5.5.2 Error: NUL character received")
    assert.include(hostile.stdout, "S: 500 5.5.2 Error: bare <LF> received")
    assert.include(hostile.stdout, "-- closed: protocol")
  })

  it("--json gives one parseable object per line, for the list and for a session", async () => {
    const list = listed
    assert.isAtLeast(list.length, 3)
    for (const summary of list) {
      assert.isString(summary["id"])
      assert.isString(summary["peer"])
      assert.isString(summary["outcome"])
    }
    const delivered = list.find((s) => s["peer"] === `127.0.0.1:${deliveredPort}`)
    assert.deepStrictEqual(delivered?.["queued"], [queueId])
    const result = await daemon.replay([daemon.logDir, "--session", idOf(deliveredPort), "--json"])
    assert.strictEqual(result.code, 0, result.stderr)
    const events = jsonLines(result.stdout)
    const tags = events.map((e) => String(e["_tag"]))
    assert.strictEqual(tags[0], "SessionOpened")
    assert.strictEqual(tags[tags.length - 1], "SessionClosed")
    for (const tag of ["CommandReceived", "ReplySent", "ContentReceived", "MessageQueued"]) assert.include(tags, tag)
    const queued = events.find((e) => e["_tag"] === "MessageQueued")
    assert.strictEqual(queued?.["queueId"], queueId)
  })

  it("--verify replays every session through the machine: exit 0, zero differences", async () => {
    const result = await daemon.replay([daemon.logDir, "--verify"])
    assert.strictEqual(result.code, 0, result.stdout + result.stderr)
    assert.match(result.stdout, /verified \d+ sessions, \d+ replies: all identical/)
    const json = await daemon.replay([daemon.logDir, "--verify", "--json"])
    assert.strictEqual(json.code, 0, json.stdout + json.stderr)
    const lines = jsonLines(json.stdout)
    assert.strictEqual(lines.length, 1, json.stdout)
    const summary = lines[0] ?? {}
    assert.strictEqual(summary["failedSessions"], 0)
    assert.isAtLeast(Number(summary["sessions"]), 3)
    assert.isAbove(Number(summary["replies"]), 10)
  })

  it("--session with an unknown id exits non-zero", async () => {
    const result = await daemon.replay([daemon.logDir, "--session", "no-such-session"])
    assert.notStrictEqual(result.code, 0)
    assert.include(result.stderr, "no session no-such-session")
  })
})
