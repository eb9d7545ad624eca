/**
 * Crash safety: kill -9 of the primary and every worker in the middle of heavy traffic, twice,
 * restarting on the same state each time. Every message that was answered 250 must be
 * delivered exactly once, none twice, and no delivered file may be partial.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { type Daemon, sleep, startDaemon } from "../support/Daemon.ts"
import { SmtpClient } from "../support/SmtpClient.ts"

const senders = 8
const roundMillis = 1500
const rounds = 2

/** The content of one test message; the body is long enough to be caught half-written. */
const contentOf = (token: string): string => {
  const filler = Array.from({ length: 24 }, (_, i) => `${token} line ${i} ${"z".repeat(60)}\r\n`).join("")
  return `Subject: ${token}\r\nMessage-ID: <${token}@client.test>\r\n\r\n${filler}END ${token}\r\n`
}

describe("crash safety", () => {
  let daemon: Daemon

  beforeAll(async () => {
    daemon = await startDaemon({ workers: 2 })
  })

  afterAll(async () => {
    await daemon?.dispose()
  })

  /** Sends messages on one connection until it breaks; records the tokens answered 250. */
  const sender = async (round: number, index: number, accepted: Set<string>, stop: { stopped: boolean }) => {
    let client: SmtpClient | undefined
    try {
      client = await SmtpClient.open(daemon.ports.smtp)
      await client.request("EHLO client.test")
      for (let n = 0; !stop.stopped; n++) {
        const token = `crash-${process.pid}-r${round}-s${index}-n${n}`
        await client.send(`MAIL FROM:<sender@client.test>\r\nRCPT TO:<s${index}@catchall.test>\r\nDATA\r\n`)
        const replies = await client.readReplies(3)
        if (replies.map((r) => r.code).join() !== "250,250,354") {
          throw new Error(`unexpected replies ${replies.map((r) => r.raw).join("")}`)
        }
        await client.send(`${contentOf(token)}.\r\n`)
        const reply = await client.readReply()
        if (reply.code === 250) accepted.add(token)
      }
    } catch {
      // The connection died with the daemon: what was answered 250 is recorded.
    } finally {
      client?.destroy()
    }
  }

  /** Every delivered file of the senders' mailboxes: token (from the Message-ID) and text. */
  const delivered = (): Array<{ readonly file: string; readonly token: string | undefined; readonly text: string }> => {
    const out: Array<{ file: string; token: string | undefined; text: string }> = []
    for (let i = 0; i < senders; i++) {
      for (const file of daemon.maildir("catchall.test", `s${i}`)) {
        const text = Fs.readFileSync(file, "utf8")
        out.push({ file, token: /^Message-ID: <([^@>]+)@client\.test>\r$/m.exec(text)?.[1], text })
      }
    }
    return out
  }

  it("kill -9 of the primary and workers mid-flight, twice: every 250 delivered exactly once, nothing twice, nothing partial", async () => {
    const accepted = new Set<string>()
    const perRound: Array<number> = []
    for (let round = 0; round < rounds; round++) {
      const before = accepted.size
      const stop = { stopped: false }
      const running = Array.from({ length: senders }, (_, i) => sender(round, i, accepted, stop))
      await sleep(roundMillis)
      assert.strictEqual(daemon.workerPids().length, 2, "two workers serve")
      await daemon.kill9()
      stop.stopped = true
      await Promise.all(running)
      perRound.push(accepted.size - before)
      await daemon.restart()
    }
    for (const [round, count] of perRound.entries()) assert.isAbove(count, 0, `round ${round} accepted nothing`)

    const deadline = Date.now() + 20_000
    let missing: Array<string> = []
    while (true) {
      const tokens = new Set(delivered().map((d) => d.token))
      missing = [...accepted].filter((t) => !tokens.has(t))
      if (missing.length === 0 || Date.now() > deadline) break
      await sleep(200)
    }
    // Let any late (duplicate) delivery land before counting.
    await sleep(1500)
    const files = delivered()
    const counts = new Map<string, number>()
    for (const file of files) {
      assert.isDefined(file.token, `a delivered file without its Message-ID: ${file.file}\n${file.text.slice(0, 500)}`)
      if (file.token === undefined) continue
      counts.set(file.token, (counts.get(file.token) ?? 0) + 1)
      assert.isTrue(
        file.text.endsWith(contentOf(file.token)),
        `partial or altered message in ${Path.basename(file.file)}: ends with ${JSON.stringify(file.text.slice(-120))}`
      )
    }
    const twice = [...counts].filter(([, n]) => n > 1)
    assert.deepStrictEqual(twice, [], "messages delivered more than once")
    assert.deepStrictEqual(missing, [], `accepted ${accepted.size} (per round ${perRound.join(", ")}), not delivered:`)
    for (const token of accepted) assert.strictEqual(counts.get(token), 1, token)
  })
})
