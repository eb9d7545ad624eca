/**
 * The daemon looking after itself: a worker killed outright is restarted and recovers its
 * partition, SIGHUP re-reads the configuration for new sessions (and refuses a broken one),
 * and `postern replay --follow` shows sessions as they happen.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { type Daemon, sleep, startDaemon, uniqueToken, waitFor, waitForMail } from "../support/Daemon.ts"
import { describeReply, sendMessage, SmtpClient } from "../support/SmtpClient.ts"

const repoRoot = Path.resolve(import.meta.dirname, "../..")

const greetingOf = async (port: number): Promise<string> => {
  const client = await SmtpClient.connect(port)
  try {
    return (await client.readReply()).raw
  } finally {
    client.destroy()
  }
}

describe("supervision", () => {
  let daemon: Daemon

  beforeAll(async () => {
    daemon = await startDaemon({ workers: 2 })
  })

  afterAll(async () => {
    await daemon?.dispose()
  })

  it("a worker killed with SIGKILL is restarted by the primary, and mail keeps flowing", async () => {
    const before = daemon.workerPids()
    assert.strictEqual(before.length, 2)
    const victim = before[0] ?? 0
    process.kill(victim, "SIGKILL")
    await waitFor("a replacement worker", () => {
      const now = daemon.workerPids()
      return now.length === 2 && !now.includes(victim) ? now : undefined
    }, 15_000)
    assert.include(daemon.output().stderr, "restarting it")
    // Whichever worker the kernel hands them to, new connections are served.
    for (let i = 0; i < 4; i++) {
      const token = uniqueToken("restart")
      const reply = await sendMessage(daemon.ports.smtp, {
        from: "sender@client.test",
        to: ["alice@example.test"],
        content: `Subject: ${token}\r\n\r\n${token}\r\n`
      })
      assert.strictEqual(reply.code, 250, describeReply(reply))
      await waitForMail(daemon, "example.test", "alice", token)
    }
  })

  it("SIGHUP re-reads the configuration: new sessions greet with the new hostname; a broken file is refused and the old one kept", async () => {
    const original = Fs.readFileSync(daemon.configFile, "utf8")
    try {
      Fs.writeFileSync(daemon.configFile, original.replace("mx.postern.test", "reloaded.postern.test"))
      process.kill(daemon.pid(), "SIGHUP")
      // Every worker must have the new settings: greet often enough to meet both.
      let reloaded = 0
      for (let attempt = 0; attempt < 150 && reloaded < 8; attempt++) {
        reloaded = (await greetingOf(daemon.ports.smtp)).includes("reloaded.postern.test") ? reloaded + 1 : 0
        if (reloaded === 0) await sleep(100)
      }
      assert.strictEqual(reloaded, 8, "eight greetings in a row with the reloaded hostname")

      Fs.writeFileSync(daemon.configFile, "export default { limits: { messageSize: -1 } }\n")
      process.kill(daemon.pid(), "SIGHUP")
      await waitFor("the refusal of the broken file", () =>
        daemon.output().stderr.includes("reload refused") ? true : undefined, 15_000)
      await sleep(300)
      for (let i = 0; i < 4; i++) assert.include(await greetingOf(daemon.ports.smtp), "reloaded.postern.test")
    } finally {
      Fs.writeFileSync(daemon.configFile, original)
    }
  })

  it("replay --follow prints the client and server lines of a session while the daemon runs", async () => {
    const follower = ChildProcess.spawn(process.execPath, ["src/main.ts", "replay", daemon.logDir, "--follow"], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    let errors = ""
    follower.stdout.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")))
    follower.stderr.on("data", (chunk: Buffer) => (errors += chunk.toString("utf8")))
    try {
      // Following starts at the end of the log: the session must come after it has begun.
      await waitFor("the follower to start", () => (errors.includes("following") ? true : undefined), 15_000)
      await sleep(500)
      const token = uniqueToken("follow")
      const client = await SmtpClient.open(daemon.ports.smtp)
      const reply = await client.request(`EHLO ${token}.client.test`)
      assert.strictEqual(reply.code, 250)
      await client.quit()
      const seen = await waitFor("the followed session", () =>
        output.includes(`C: EHLO ${token}.client.test`) && output.includes("S: 221 2.0.0 Bye") ? output : undefined, 15_000)
      assert.include(seen, `C: EHLO ${token}.client.test`)
    } finally {
      follower.kill("SIGKILL")
    }
  })

  it("a user added by SIGHUP is accepted and delivered: delivery routes with the reloaded table too", async () => {
    const original = Fs.readFileSync(daemon.configFile, "utf8")
    try {
      const edited = original.replace(/"alice",\s*"bob"/, '"alice", "bob", "carol"')
      assert.notStrictEqual(edited, original, "the fixture lists alice and bob")
      Fs.writeFileSync(daemon.configFile, edited)
      process.kill(daemon.pid(), "SIGHUP")
      // Both workers must know carol before the message goes out, whichever takes it.
      let accepted = 0
      for (let attempt = 0; attempt < 150 && accepted < 8; attempt++) {
        const client = await SmtpClient.open(daemon.ports.smtp)
        await client.request("EHLO client.test")
        await client.request("MAIL FROM:<sender@client.test>")
        const reply = await client.request("RCPT TO:<carol@example.test>")
        client.destroy()
        accepted = reply.code === 250 ? accepted + 1 : 0
        if (accepted === 0) await sleep(100)
      }
      assert.strictEqual(accepted, 8)
      for (let i = 0; i < 4; i++) {
        const token = uniqueToken("carol")
        const reply = await sendMessage(daemon.ports.smtp, {
          from: "sender@client.test",
          to: ["carol@example.test"],
          content: `Subject: ${token}\r\n\r\n${token}\r\n`
        })
        assert.strictEqual(reply.code, 250, describeReply(reply))
        await waitForMail(daemon, "example.test", "carol", token)
      }
    } finally {
      Fs.writeFileSync(daemon.configFile, original)
      process.kill(daemon.pid(), "SIGHUP")
    }
  })
})
